"""[[devices]] driver = "modbus_doors" (SPEC §1a, §4.3)."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from drivers.common.config import ID_PATTERN, DeviceBase, Strict, url_endpoint  # noqa: F401


class DoorInput(Strict):
    input: int = Field(ge=0)
    door: str = Field(pattern=ID_PATTERN)
    room: str
    closed_when: Literal[0, 1] = 1
    exit: bool = False          # a way out of the center: opening it or passing out counts as leaving (SPEC v2)


class ModbusDoorsConfig(DeviceBase):
    driver: Literal["modbus_doors"]
    url: str
    unit: int = Field(default=1, ge=0, le=247)
    poll_ms: int = Field(default=200, ge=10)
    first_input: int = Field(default=0, ge=0)
    count: int | None = Field(default=None, ge=1, le=2000)
    timeout_ms: int = Field(default=500, ge=10)
    doors: list[DoorInput] = []
    chatter_max_changes: int = Field(default=30, ge=1)   # per door: reported changes allowed per window...
    chatter_window_s: float = Field(default=60, gt=0)     # ...beyond that a chattering contact is suppressed (counted)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not (v.startswith("tcp://") or v.startswith("rtu://")):
            raise ValueError(f"must start with tcp:// or rtu://, got {v!r}")
        return v

    capabilities: ClassVar[frozenset[str]] = frozenset({"doors"})

    def room_refs(self) -> list[tuple[str, str]]:
        return [(f"doors[{j}].room", door.room) for j, door in enumerate(self.doors)]

    def door_ids(self) -> list[str]:
        return [d.door for d in self.doors]

    def exit_doors(self) -> set[str]:
        return {d.door for d in self.doors if d.exit}

    def serial_ports(self) -> list[tuple[str, str]]:
        return [(self.id, self.url[len("rtu://"):].split("?", 1)[0])] if self.url.startswith("rtu://") else []

    def endpoint(self) -> tuple[str, int] | None:
        return url_endpoint(self.url, {"tcp": 502})
