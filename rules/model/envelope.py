"""The event envelope of SPEC §2: ids, timestamps, the hash chain, topics."""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple

GENESIS = "0" * 64

# Events that may be shed under the disk cap (SPEC §2 journal.shed). Everything
# else - alarms, person, wristband, presence, custody, evidence, locker, door -
# is a record of the case and is never shed.
TELEMETRY_TYPES = frozenset({
    "tag.status", "card.swiped", "camera.headcount", "camera.face_recognized",
    "camera.face_unknown", "camera.still", "camera.snapshot",
    "device.online", "device.offline", "device.error",
})


def uuid7() -> str:
    """RFC 9562 UUIDv7: 48-bit ms timestamp, version 7, 12 random bits, variant
    10, 62 random bits; sorts by time. Composed from hex strings (one per event
    on the hot path: 3x faster than big-int arithmetic and formatting)."""
    ms = f"{(time.time_ns() // 1_000_000) & 0xFFFFFFFFFFFF:012x}"
    r = os.urandom(10).hex()
    return f"{ms[:8]}-{ms[8:]}-7{r[:3]}-{_VARIANT[int(r[3], 16) & 3]}{r[4:7]}-{r[7:19]}"


_VARIANT = "89ab"     # the top two bits of the 4th group are 10; the next two random


_sec_cache: tuple[int, str] = (-1, "")


def format_ts(epoch: float) -> str:
    """RFC 3339 UTC with milliseconds: 2026-11-26T20:30:03.123Z."""
    global _sec_cache
    ms = int(round(epoch * 1000))
    sec = ms // 1000
    cached = _sec_cache
    if cached[0] == sec:
        prefix = cached[1]
    else:  # one strftime per second, not per event (hot path of the writer)
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _sec_cache = (sec, prefix)
    return f"{prefix}.{ms % 1000:03d}Z"


_ZONES: dict[str, Any] = {}


def zone(tz: str | None):
    """A ZoneInfo for ``[center] timezone`` (cached); UTC when unset or unknown."""
    key = tz or "UTC"
    z = _ZONES.get(key)
    if z is None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
        try:
            z = ZoneInfo(key)
        except (ZoneInfoNotFoundError, ValueError):
            z = timezone.utc
        _ZONES[key] = z
    return z


def format_local(epoch: float, tz: str | None, seconds: bool = True, offset: bool = True) -> str:
    """A time for people, in the center's timezone: ``2026-11-28 09:18:26 +08:00``.

    The offset is kept by default: an alarm message read at the central site
    (another timezone, or UTC logs) must not be misread by hours."""
    dt = datetime.fromtimestamp(epoch, zone(tz))
    text = dt.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    if offset:
        off = dt.strftime("%z")
        text += f" {off[:3]}:{off[3:]}"
    return text


def format_duration(seconds: float) -> str:
    """A duration for people: ``45 s``, ``33 min``, ``2 h 05 min``, ``3 d 04 h``."""
    s = int(round(abs(seconds)))
    sign = "-" if seconds < 0 else ""
    if s < 60:
        return f"{sign}{s} s"
    if s < 3600:
        return f"{sign}{s // 60} min"
    if s < 86400:
        return f"{sign}{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{sign}{s // 86400} d {s % 86400 // 3600:02d} h"


def parse_ts(text: str) -> float:
    """Inverse of format_ts; also accepts any ISO 8601 with offset, or a date."""
    t = text.strip()
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    dt = datetime.fromisoformat(t)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    # Normalised to whole ms exactly as seal() computes it, so a replayed
    # event's epoch is bit-identical to the live one (rules compare times).
    return round(dt.timestamp() * 1000) / 1000


def parse_local_ts(text: str, tz: str | None) -> float:
    """Like parse_ts, but a time without an offset is in ``tz`` (the center's
    timezone): ``2026-11-28T18:00:00`` in Asia/Shanghai is 10:00Z (SPEC §2)."""
    t = text.strip()
    if t.endswith("Z") or t.endswith("z"):
        return parse_ts(t[:-1] + "Z")
    dt = datetime.fromisoformat(t)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=zone(tz))
    return round(dt.timestamp() * 1000) / 1000


def canonical(env: dict) -> str:
    body = {k: v for k, v in env.items() if k not in ("prev", "hash")}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# One encoder, built once: json.dumps with keyword options builds a new
# JSONEncoder on every call (measurable on the writer's hot path).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def dump_data(data: Any) -> str:
    """The data object as canonical JSON (sorted keys, compact, UTF-8)."""
    return _CANONICAL.encode(data)


# A JSON string literal, exactly json.dumps(v, ensure_ascii=False) for a str,
# without dumps' per-call encoder set-up (C function).
_s = json.encoder.encode_basestring


def canonical_parts(id: str, seq: int, ts: str, center: str, type: str, source: str, data_json: str) -> str:
    """Exactly ``canonical()`` of the envelope, composed from parts so the data
    is serialised once per event (keys in sorted order)."""
    return (f'{{"center":{_s(center)},"data":{data_json},"id":{_s(id)},"seq":{seq},'
            f'"source":{_s(source)},"ts":{_s(ts)},"type":{_s(type)}}}')


def chain_hash(prev: str, canonical_text: str) -> str:
    return hashlib.sha256((prev + canonical_text).encode("utf-8")).hexdigest()


@dataclass(slots=True)
class Draft:
    """An event before the journal gives it seq and hash.

    ``ts`` is when it happened (epoch seconds); None means "now" at journaling.
    Not frozen: a frozen dataclass sets every field through object.__setattr__,
    and a Draft is built for every event; nothing mutates one after submit.
    """
    type: str
    data: dict[str, Any]
    source: str = "gateway"
    ts: float | None = None
    id: str = field(default_factory=uuid7)


class Event(NamedTuple):
    """A sealed event: immutable. A NamedTuple, not a frozen dataclass, because
    one is built per event on the writer's hot path (3x cheaper to construct)."""
    id: str
    seq: int
    ts: str
    center: str
    type: str
    source: str
    data: dict[str, Any]
    prev: str
    hash: str
    epoch: float = 0.0  # ts as a float, cached for rules; not part of the envelope
    data_json: str | None = None  # data as canonical JSON, cached; not part of the envelope

    def envelope(self) -> dict:
        return {"id": self.id, "seq": self.seq, "ts": self.ts, "center": self.center,
                "type": self.type, "source": self.source, "data": self.data,
                "prev": self.prev, "hash": self.hash}

    def to_json(self) -> str:
        data = self.data_json if self.data_json is not None else dump_data(self.data)
        return (f'{{"id":{_s(self.id)},"seq":{self.seq},"ts":{_s(self.ts)},"center":{_s(self.center)},'
                f'"type":{_s(self.type)},"source":{_s(self.source)},"data":{data},'
                f'"prev":{_s(self.prev)},"hash":{_s(self.hash)}}}')

    @property
    def domain(self) -> str:
        return self.type.split(".", 1)[0]

    @property
    def action(self) -> str:
        return self.type.split(".", 1)[1] if "." in self.type else ""

    @classmethod
    def from_envelope(cls, env: dict) -> "Event":
        return cls(env["id"], env["seq"], env["ts"], env["center"], env["type"], env["source"],
                   env["data"], env["prev"], env["hash"], parse_ts(env["ts"]))


def seal(draft: Draft, seq: int, center: str, prev: str, now: float) -> Event:
    """Give a draft its place in the chain."""
    epoch = draft.ts if draft.ts is not None else now
    ts = format_ts(epoch)
    data_json = dump_data(draft.data)
    h = chain_hash(prev, canonical_parts(draft.id, seq, ts, center, draft.type, draft.source, data_json))
    return Event(draft.id, seq, ts, center, draft.type, draft.source, draft.data, prev, h,
                 round(epoch * 1000) / 1000, data_json)


def verify_envelope(env: dict, expected_prev: str | None) -> str | None:
    """Return None if the envelope's hash is right (and prev matches), else why not."""
    if expected_prev is not None and env.get("prev") != expected_prev:
        return "prev does not match the previous event's hash"
    if chain_hash(env.get("prev", ""), canonical(env)) != env.get("hash"):
        return "hash does not match content"
    return None


def topic_for(prefix: str, ev: Event) -> str:
    if ev.domain == "alarm" and not is_suppressed_alarm(ev.data):
        return f"{prefix}/alarms/{ev.data.get('code', 'unknown')}"
    return f"{prefix}/events/{ev.domain}/{ev.action}"


def is_suppressed_alarm(data: Any) -> bool:
    """A shelved alarm, or one of a device under maintenance (rules/alarm_states.py):
    journaled and delivered like every event, but on ``P/events/alarm/<action>``
    instead of the annunciation topic ``P/alarms/<code>`` - so nobody is alarmed,
    and an archive consumer still sees every seq (no gap to repair)."""
    return isinstance(data, dict) and data.get("shelved") is True
