"""[[devices]] driver = "camera_events" (SPEC §1a, §4.7)."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from drivers.common.config import DeviceBase, url_endpoint

VENDORS = ("hikvision", "dahua", "onvif")


class CameraEventsConfig(DeviceBase):
    driver: Literal["camera_events"]
    vendor: Literal["hikvision", "dahua", "onvif"]
    url: str                                          # http(s)://host[:port] of the camera (or NVR)
    username: str = "admin"
    password_file: str                                # read at start; the secret never sits in the config
    channels: dict[str, str]                          # channel -> room ({"1" = "interrogation-1"})
    offline_s: float = Field(default=30, gt=0)        # no heartbeat/event/bytes this long -> device.offline
    still_s: float = Field(default=300, gt=0)         # no motion in a channel's room this long -> camera.still
    active_expiry_s: float = Field(default=5, gt=0)   # events that only ever say "active" end after this
    reconnect_step_s: float = Field(default=5, gt=0)  # backoff: 5, 10, 15 ... s between reconnects
    reconnect_max_s: float = Field(default=300, gt=0)  # ... capped here
    healthy_s: float = Field(default=60, ge=0)        # a stream that lived this long resets the backoff
    connect_timeout_s: float = Field(default=5, gt=0)  # TCP connect and HTTP answer
    snapshot_timeout_s: float = Field(default=5, gt=0)   # the whole answer, not per read
    snapshot_max_mb: float = Field(default=8, gt=0)   # a bigger answer is refused (streamed to disk meanwhile)
    pull_timeout_s: float = Field(default=5, gt=0)    # ONVIF PullMessages long-poll (Timeout)
    subscription_s: float = Field(default=60, gt=0)   # ONVIF InitialTerminationTime / Renew
    ca_file: str = ""                                 # https: PEM certificate(s) to trust (the camera's
    #                                                   self-signed one, or its CA); "" = the system's CAs
    tls_verify: bool = True                           # https: check the certificate; false only on purpose

    capabilities: ClassVar[frozenset[str]] = frozenset({"snapshot", "motion", "tamper"})

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        from urllib.parse import urlparse
        u = urlparse(v)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError("must be http(s)://host[:port] (the camera's web address)")
        if u.username or u.password:
            raise ValueError("must not hold the user or password (use username and password_file)")
        try:
            u.port
        except ValueError:
            raise ValueError("port out of range") from None
        return v.rstrip("/")

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("name at least one channel: { \"1\" = \"<room>\" }")
        return v

    def room_refs(self) -> list[tuple[str, str]]:
        return [(f"channels.{ch}", room) for ch, room in self.channels.items()]

    def covered_rooms(self) -> dict[str, tuple[str, ...]]:
        return {self.id: tuple(dict.fromkeys(self.channels.values()))}

    def public_files(self) -> list[tuple[str, str]]:
        return [(f"devices.{self.id}.ca_file", self.ca_file)] if self.ca_file else []

    def endpoint(self) -> tuple[str, int] | None:
        return url_endpoint(self.url, {"http": 80, "https": 443})

    def camera_id(self, channel: str) -> str:
        """The ``camera`` of a channel's motion/tamper/snapshot events: the device id when the
        device has one channel, else ``<device>:<channel>`` (camera_tamper is per camera, and
        maintenance of the device covers ``<device>:…`` subjects, rules/alarm_states.py)."""
        return self.id if len(self.channels) == 1 else f"{self.id}:{channel}"
