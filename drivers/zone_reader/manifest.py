"""Declares the zone_reader driver to the registry (drivers/registry.py)."""
from drivers.zone_reader.config import ZoneReaderConfig
from drivers.registry import DriverSpec

DRIVER = DriverSpec(
    kind="zone_reader",
    config=ZoneReaderConfig,
    driver="drivers.zone_reader.driver:ZoneReaderDriver",
    emits=("presence.entered", "presence.left", "tag.status", "door.passed", "device.online", "device.offline", "device.error"),
    summary="2.4 GHz active RFID base stations (MR7901) that connect to casegate",
    example="""\
[[devices]]
id = "zone-stations"
driver = "zone_reader"
listen = "0.0.0.0:4501"
stations = { "861694034205896" = "interrogation-1" }
""",
)
