"""[[devices]] driver = "zone_reader" (SPEC §1a, §4.1)."""
from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from drivers.common.config import ID_PATTERN, DeviceBase, Strict, url_endpoint  # noqa: F401


class ZoneReaderConfig(DeviceBase):
    driver: Literal["zone_reader"]
    listen: str = "0.0.0.0:4501"
    stations: dict[str, str] = {}          # dev_id -> room
    exciters: dict[str, str] = {}          # exciter address (decimal) -> room
    presence_timeout_s: float = Field(default=10, gt=0)
    heartbeat_s: float = Field(default=30, gt=0)
    max_connections: int = Field(default=256, ge=1)
    idle_timeout_s: float = Field(default=120, gt=0)
    reg_code: int | None = None            # if set, a register with another code gets 0xFE
    # v2 hostile network (SPEC §4.1). Pinned addresses, filled from `stations` values
    # written as {room, ip}: dev_id -> the only address that station may log in from.
    station_ips: dict[str, str] = {}
    login_timeout_s: float = Field(default=5, gt=0)        # register/login must finish within this
    max_pending: int = Field(default=64, ge=1)             # connections not logged in yet, in total
    max_pending_per_ip: int = Field(default=8, ge=1)       # ... and per source address
    # a second peer claiming a logged-in dev_id: the old connection is dead if it sends
    # nothing for this long (its next heartbeat); None = heartbeat_s + 5
    conflict_probe_s: float | None = Field(default=None, gt=0)
    conflict_clear_s: float = Field(default=120, gt=0)     # quiet time after which station_impostor clears
    flood_per_min: int = Field(default=60, ge=1)           # refused+evicted+timed-out connections/min = a flood

    @model_validator(mode="before")
    @classmethod
    def _pinned_stations(cls, data: Any) -> Any:
        """`stations` values may be a room or {room, ip}: split the pins out
        so `stations` stays dev_id -> room for everything that reads it."""
        if not isinstance(data, dict) or not isinstance(data.get("stations"), dict):
            return data
        import ipaddress
        rooms: dict[str, Any] = {}
        pins: dict[str, Any] = dict(data.get("station_ips") or {})
        for dev_id, v in data["stations"].items():
            if isinstance(v, dict):
                extra = set(v) - {"room", "ip"}
                if extra or "room" not in v:
                    raise ValueError(f"stations.{dev_id}: must be a room id or {{room, ip}}"
                                     + (f"; unknown key {sorted(extra)[0]!r}" if extra else "; room missing"))
                rooms[dev_id] = v["room"]
                if v.get("ip") is not None:
                    try:
                        pins[dev_id] = str(ipaddress.ip_address(str(v["ip"])))
                    except ValueError:
                        raise ValueError(f"stations.{dev_id}.ip: not an IP address: {v['ip']!r}") from None
            else:
                rooms[dev_id] = v
        return {**data, "stations": rooms, "station_ips": pins}

    hr_step_bpm: float = Field(default=10, gt=0)       # tag.status when heart rate moves this far from the last sent
    status_every_s: float = Field(default=300, gt=0)   # otherwise at most one tag.status per tag this often

    capabilities: ClassVar[frozenset[str]] = frozenset({"presence"})

    def room_refs(self) -> list[tuple[str, str]]:
        return ([(f"stations.{k}", v) for k, v in self.stations.items()]
                + [(f"exciters.{k}", v) for k, v in self.exciters.items()])

    def covered_rooms(self) -> dict[str, tuple[str, ...]]:
        # one base station = device "<zone reader id>/<dev_id>" (device_offline, station_impostor)
        return {f"{self.id}/{dev_id}": (room,) for dev_id, room in self.stations.items()}

    def listen_address(self) -> str | None:
        return self.listen

    def probe_s(self) -> float:
        return self.conflict_probe_s if self.conflict_probe_s is not None else self.heartbeat_s + 5

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, _, port = v.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"must be host:port, got {v!r}")
        return v
