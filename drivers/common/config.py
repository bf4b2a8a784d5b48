"""The base of every device's config model (SPEC §1a ``[[devices]]``).

A driver folder declares its own model (``drivers/<kind>/config.py``), a subclass of
:class:`DeviceBase` with ``driver: Literal["<kind>"]``; ``gateway.config`` builds the
device union from the registry. The hooks below let the application and the rules ask a
device what it covers without knowing its kind: a new kind overrides the ones that apply
and inherits sensible nothing-to-say defaults for the rest.
"""
from __future__ import annotations

from typing import ClassVar
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field

# Device, camera and room ids name files and topic levels: not ".", "..", hidden or "-x".
ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"

# What a device can do, asked by the daemon and the rules instead of its kind:
CAPABILITIES = {
    "presence": "reports which tags/cards are in which room (maintenance covers its tag_* alarms)",
    "doors": "reports door contacts (maintenance covers door_held_open of its doors)",
    "locker": "takes locker/open; has a purpose (evidence | belongings)",
    "snapshot": "takes camera/snapshot; asked for a picture when a critical alarm rises in its room (视频联动)",
    "faces": "recognises enrolled faces; re-reads the face store on reload_faces()",
    "headcount": "counts people in its room (maintenance covers headcount_mismatch)",
    "motion": "reports motion and stillness of its room (suspect_motionless)",
    "tamper": "reports being covered, moved or losing video (camera_tamper)",
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceBase(Strict):
    id: str = Field(pattern=ID_PATTERN)
    enabled: bool = True

    capabilities: ClassVar[frozenset[str]] = frozenset()

    def room_refs(self) -> list[tuple[str, str]]:
        """(key path, room id) of every room this config names; each must be a configured room."""
        room = getattr(self, "room", None)
        return [("room", room)] if isinstance(room, str) else []

    def covered_rooms(self) -> dict[str, tuple[str, ...]]:
        """Device id (or ``<id>/<sub-device>``) -> the rooms it watches (device_offline, maintenance)."""
        rooms = tuple(dict.fromkeys(r for _, r in self.room_refs()))
        return {self.id: rooms} if rooms else {}

    def door_ids(self) -> list[str]:
        """Doors whose contacts this device reports (maintenance covers their door_held_open)."""
        return []

    def exit_doors(self) -> set[str]:
        """Doors that are ways out of the center (leaving through one ends a stay)."""
        return set()

    def serial_ports(self) -> list[tuple[str, str]]:
        """(name, port) of every serial port this device opens (local paths and pyserial URLs)."""
        return []

    def secret_files(self) -> list[tuple[str, str]]:
        """(config key, path) of files the daemon must read at start (passwords, keys)."""
        path = getattr(self, "password_file", "")
        return [(f"devices.{self.id}.password_file", path)] if isinstance(path, str) and path else []

    def public_files(self) -> list[tuple[str, str]]:
        """(config key, path) of files the driver reads at start that are not secret (CA
        certificates): `config check` and `doctor` report them missing or unreadable like the
        secret files, but the daemon's uplink does not wait for them (only this device fails)."""
        return []

    def endpoint(self) -> tuple[str, int] | None:
        """A TCP (host, port) the device is reached at, for ``casegate doctor``; None if not networked."""
        return None

    def listen_address(self) -> str | None:
        """host:port this device's driver listens on (servers such as the zone reader), for ``doctor``."""
        return None


def url_endpoint(url: str, default_ports: dict[str, int]) -> tuple[str, int] | None:
    """(host, port) of ``scheme://host[:port]/…`` when the scheme is a networked one."""
    u = urlparse(url)
    if u.scheme not in default_ports or not u.hostname:
        return None
    try:
        return u.hostname, u.port or default_ports[u.scheme]
    except ValueError:          # a port out of range
        return None
