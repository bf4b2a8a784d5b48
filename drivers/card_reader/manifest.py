"""Declares the card_reader driver to the registry (drivers/registry.py)."""
from drivers.card_reader.config import CardReaderConfig
from drivers.registry import DriverSpec

DRIVER = DriverSpec(
    kind="card_reader",
    config=CardReaderConfig,
    driver="drivers.card_reader.driver:CardReaderDriver",
    emits=("card.swiped", "device.online", "device.offline", "device.error"),
    summary="125 kHz EM4100 card reader on a serial port",
    example="""\
[[devices]]
id = "card-int1"
driver = "card_reader"
port = "/dev/ttyUSB0"
room = "interrogation-1"
""",
)
