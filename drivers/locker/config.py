"""[[devices]] driver = "locker" (SPEC §1a, §4.4, §4.5)."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from drivers.common.config import ID_PATTERN, DeviceBase, Strict, url_endpoint  # noqa: F401


class InventoryConfig(Strict):
    port: str
    baudrate: int = 57600
    address: int = Field(default=0xFF, ge=0, le=255)
    antennas: dict[str, list[int]] = {}    # antenna -> compartments
    labels: dict[str, int] = {}            # EPC (or prefix) -> compartment
    poll_ms: int = Field(default=2000, ge=50)
    missing_after: int = Field(default=2, ge=1)
    ant_byte: bool = False                 # reader adds an Ant bitmask after Status (UHFReader288-style)


class LockerConfig(DeviceBase):
    driver: Literal["locker"]
    purpose: Literal["evidence", "belongings"] = "evidence"
    port: str
    baudrate: int = 19200
    board: int = Field(default=0, ge=0, le=15)
    compartments: int = Field(default=16, ge=1, le=16)
    poll_ms: int = Field(default=500, ge=20)
    unlock_timeout_ms: int = Field(default=1000, ge=50)
    inventory: InventoryConfig | None = None

    capabilities: ClassVar[frozenset[str]] = frozenset({"locker"})

    def serial_ports(self) -> list[tuple[str, str]]:
        out = [(self.id, self.port)]
        if self.inventory:
            out.append((f"{self.id}.inventory", self.inventory.port))
        return out

    def endpoint(self) -> tuple[str, int] | None:
        return url_endpoint(self.port, {"socket": 0}) if self.port.startswith("socket://") else None
