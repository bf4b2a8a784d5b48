"""[[devices]] driver = "card_reader" (SPEC §1a, §4.2)."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from drivers.common.config import ID_PATTERN, DeviceBase, Strict, url_endpoint  # noqa: F401


class CardReaderConfig(DeviceBase):
    driver: Literal["card_reader"]
    port: str
    baudrate: int = 9600
    room: str
    repeat_ms: int = Field(default=1000, ge=0)
    reconnect_max_s: float = Field(default=30, gt=0)   # cap of the reopen backoff while the port is gone

    capabilities: ClassVar[frozenset[str]] = frozenset({"presence"})

    def serial_ports(self) -> list[tuple[str, str]]:
        return [(self.id, self.port)]

    def endpoint(self) -> tuple[str, int] | None:
        return url_endpoint(self.port, {"socket": 0}) if self.port.startswith("socket://") else None
