"""Declares the locker driver to the registry (drivers/registry.py)."""
from drivers.locker.config import LockerConfig
from drivers.registry import DriverSpec

DRIVER = DriverSpec(
    kind="locker",
    config=LockerConfig,
    driver="drivers.locker.driver:LockerDriver",
    emits=("locker.opened", "locker.closed", "locker.unlock_requested", "evidence.added", "evidence.removed",
           "device.online", "device.offline", "device.error"),
    summary="smart locker: lock board and optional UHF inventory reader",
    example="""\
[[devices]]
id = "locker-ev1"
driver = "locker"
purpose = "evidence"
port = "/dev/ttyUSB2"
""",
)
