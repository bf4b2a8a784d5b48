"""Typed configuration (SPEC §1a).

One TOML file, validated by pydantic models that forbid unknown keys. Every
error is reported as ``<file>: <key path>: <reason>`` so a technician can go
straight to the line (Frigate-style).
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, ValidationError, field_validator, model_validator

DEFAULT_CONFIG_PATH = "/etc/casegate/casegate.toml"

ROOM_TYPES = (
    "entrance", "security_check", "belongings", "info_collection", "waiting",
    "interrogation", "identification", "medical", "counselling", "duty",
    "corridor", "toilet", "exit", "evidence_store",
)


class ConfigError(Exception):
    """A config problem, already worded for a human: file: key: reason."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or [message]


# Every device kind's model lives in its driver folder (drivers/<kind>/config.py) and is
# found through the registry; the base is shared with them.
from drivers.common.config import ID_PATTERN, DeviceBase, Strict  # noqa: E402,F401
from drivers.registry import specs as _driver_specs  # noqa: E402
from rules.validation import KeyPathError as _KeyError  # noqa: E402
from rules.validation import format_validation_error as _format_validation_error  # noqa: E402


class CenterConfig(Strict):
    id: str = Field(default="demo-center", pattern=r"^[a-z0-9-]+$")
    name: str = "示范执法办案管理中心"
    timezone: str = "Asia/Shanghai"

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo
        try:
            ZoneInfo(v)
        except Exception:
            raise ValueError(f"unknown time zone {v!r}")
        return v


class StorageConfig(Strict):
    dir: str = "/var/lib/casegate"
    synchronous: Literal["full", "normal"] = "full"
    retain_days: int = Field(default=180, ge=1)
    max_mb: float = Field(default=2048, gt=0)
    snapshots_max_mb: float = Field(default=512, gt=0)   # camera JPEGs; oldest removed first
    # Checkpoints of the folded state (SPEC §7): start = newest checkpoint + the journal's tail.
    checkpoint_every_s: float = Field(default=600, gt=0)        # at most this long between checkpoints
    checkpoint_every_events: int = Field(default=100_000, ge=1)  # or after this many events
    checkpoint_keep: int = Field(default=3, ge=1)               # newest checkpoints kept on disk
    replay_notify_after_s: float = Field(default=3.0, ge=0)     # longer replays report progress to systemd
    clock_step_s: float = Field(default=2.0, gt=0)              # wall vs monotonic drift journaled as clock.stepped


class MqttConfig(Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str = ""
    topic_prefix: str = "casegate"
    protocol: Literal[5, 311] = 5
    username: str = ""
    password_file: str = ""
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    max_inflight: int = Field(default=100, ge=1, le=65535)
    max_request_bytes: int = Field(default=65536, ge=256)
    # The MQTT client in its own process (gateway/uplink_process.py): paho's
    # per-message Python work then no longer shares the journal writer's GIL.
    uplink_process: bool = True
    # v2 per-client rate limits on requests that make the gateway publish or work a lot
    # (token buckets per mqtt:<client> + response topic; all clients together get twice this):
    resend_events_per_min: int = Field(default=200_000, ge=1)   # events re-published by events/resend
    heavy_requests_per_min: int = Field(default=20, ge=1)       # state/republish, snapshots, enrolment, reload

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not v or any(c in v for c in "#+\0") or v.startswith("/") or v.endswith("/"):
            raise ValueError("must be a topic without wildcards or leading/trailing '/'")
        return v

    @model_validator(mode="after")
    def _tls_files(self):
        if self.cert_file and not self.key_file:
            raise ValueError("cert_file needs key_file")
        return self

    def read_password(self) -> str | None:
        if not self.password_file:
            return None
        return Path(self.password_file).read_text(encoding="utf-8").strip()


class MetricsConfig(Strict):
    # host:port for Prometheus text at /metrics; empty = off (SPEC §5). Keep it on loopback
    # or a management network: the numbers describe the center.
    listen: str = ""

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        if v:
            host, _, port = v.rpartition(":")
            if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise ValueError(f"must be host:port, e.g. 127.0.0.1:9108, got {v!r}")
        return v


class SigningConfig(Strict):
    """[signing] (SPEC §8 v3): signed chain heads with the device key in <storage.dir>/keys/."""
    every_s: float = Field(default=60, gt=0)    # journal chain.signed this often while the journal advanced


class RoomConfig(Strict):
    id: str = Field(pattern=ID_PATTERN)
    type: Literal[ROOM_TYPES]  # type: ignore[valid-type]
    name: str = ""
    adjacent: list[str] = []
    # v3: the recorder system (审讯主机) of this room: its recording/state reports (source and
    # MQTT client = this id) are recording evidence; any other report needs by = an officer
    recorder: str = Field(default="", pattern=r"^([A-Za-z0-9_.-]{1,64})?$")


class AlarmsConfig(Strict):
    """[alarms] (SPEC §1a v2): alarm management as ISA-18.2 does it."""
    escalate_after_s: float = Field(default=120, gt=0)    # an unacknowledged critical alarm -> alarm.escalated level 1
    escalate_every_s: float = Field(default=300, gt=0)    # then level 2, 3, ... until acknowledged
    escalate_max_level: int = Field(default=3, ge=0)      # no escalation events past this level (0 = until acknowledged)
    max_shelve_h: float = Field(default=8, gt=0, le=168)  # longest alarm/shelve (facility alarms only)
    max_maintenance_h: float = Field(default=72, gt=0, le=720)  # longest device/maintenance
    max_unacked_cleared: int = Field(default=1000, ge=10)  # cleared-unacknowledged alarms kept standing; oldest dropped (counted)


DeviceConfig = Annotated[
    Union[tuple(s.config for s in _driver_specs().values())],  # type: ignore[valid-type]
    Field(discriminator="driver"),
]


def __getattr__(name: str):
    """``from gateway.config import CameraConfig`` and the like: each driver's model by its
    class name (the models live in drivers/<kind>/config.py)."""
    for s in _driver_specs().values():
        mod = importlib.import_module(s.config.__module__)
        if hasattr(mod, name) and isinstance(getattr(mod, name), type):
            return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ClockConfig(Strict):
    # v3 (SPEC §7): unsynchronised this long raises clock_unsynchronised (rules/clock.py)
    unsynced_alarm_s: float = Field(default=300, gt=0)


class Config(Strict):
    center: CenterConfig = CenterConfig()
    storage: StorageConfig = StorageConfig()
    mqtt: MqttConfig = MqttConfig()
    metrics: MetricsConfig = MetricsConfig()
    rooms: list[RoomConfig] = []
    devices: list[DeviceConfig] = []
    rules: dict[str, Any] = {}      # [rules.<code>] tables, and [rules] legal_disabled_reason (DOMAIN v3)
    alarms: AlarmsConfig = AlarmsConfig()
    clock: ClockConfig = ClockConfig()
    signing: SigningConfig = SigningConfig()

    @model_validator(mode="after")
    def _cross_refs(self):
        room_ids = [r.id for r in self.rooms]
        seen: set[str] = set()
        for i, r in enumerate(self.rooms):
            if r.id in seen:
                raise _KeyError(f"rooms[{i}].id", f"duplicate room id {r.id!r}")
            seen.add(r.id)
            for j, a in enumerate(r.adjacent):
                if a not in room_ids:
                    raise _KeyError(f"rooms[{i}].adjacent[{j}]", f"unknown room {a!r}")
        dev_seen: set[str] = set()
        for i, d in enumerate(self.devices):
            if d.id in dev_seen:
                raise _KeyError(f"devices[{i}].id", f"duplicate device id {d.id!r}")
            dev_seen.add(d.id)
            for key, room in d.room_refs():
                if room not in room_ids:
                    raise _KeyError(f"devices[{i}].{key}", f"unknown room {room!r}")
        # Rule tables are validated by the rule catalog, which owns their schemas.
        from rules.catalog import validate_rules_config
        validate_rules_config(self.rules)
        return self

    # ---- helpers -------------------------------------------------------
    @property
    def prefix(self) -> str:
        return f"{self.mqtt.topic_prefix}/{self.center.id}"

    @property
    def storage_dir(self) -> Path:
        return Path(self.storage.dir)

    @property
    def socket_path(self) -> Path:
        return self.storage_dir / "casegate.sock"

    @property
    def journal_path(self) -> Path:
        return self.storage_dir / "journal.db"

    def room(self, room_id: str) -> RoomConfig | None:
        for r in self.rooms:
            if r.id == room_id:
                return r
        return None

    def rules_config_hash(self) -> str:
        """Hash of what the folded state depends on (center, rooms, devices, rules);
        storage and MQTT settings do not change it (a checkpoint stays usable)."""
        d = self.model_dump(mode="json", include={"center", "rooms", "devices", "rules"})
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]

    def redacted(self) -> dict:
        """The config as a dict, safe to print: secrets are files, never values,
        but paths to keys are still shown."""
        return self.model_dump(mode="json")


def format_validation_error(file: str, err: ValidationError) -> list[str]:
    # the discriminated-union tag pydantic inserts into a device's path is a driver kind
    return _format_validation_error(file, err, skip=frozenset(_driver_specs()), model=Config)


def config_path(cli_value: str | None) -> str:
    return cli_value or os.environ.get("CASEGATE_CONFIG") or DEFAULT_CONFIG_PATH


def parse_config(data: dict, file: str = "<config>") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        problems = format_validation_error(file, e)
        raise ConfigError("\n".join(problems), problems) from None


def load_config(path: str | os.PathLike) -> Config:
    p = Path(path)
    name = str(p)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{name}: file not found — write one (config/small-center.toml is a start, "
                          f"config/reference.toml lists every key), or pass --config PATH "
                          f"(or set CASEGATE_CONFIG)") from None
    except OSError as e:
        raise ConfigError(f"{name}: cannot read: {e.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{name}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{name}: TOML syntax error: {e}") from None
    return parse_config(data, p.name)
