"""Declares the modbus_doors driver to the registry (drivers/registry.py)."""
from drivers.modbus_doors.config import ModbusDoorsConfig
from drivers.registry import DriverSpec

DRIVER = DriverSpec(
    kind="modbus_doors",
    config=ModbusDoorsConfig,
    driver="drivers.modbus_doors.driver:ModbusDoorsDriver",
    emits=("door.opened", "door.closed", "device.online", "device.offline", "device.error"),
    summary="door contacts on a Modbus TCP/RTU digital-input module",
    example="""\
[[devices]]
id = "doors-a"
driver = "modbus_doors"
url = "tcp://10.0.0.30:502"
doors = [ { input = 0, door = "int1-door", room = "interrogation-1" } ]
""",
)
