"""Time as events carry it (SPEC §2) and as people read it: RFC 3339 UTC with
milliseconds in envelopes, the center's timezone for people, durations in words.

Part of the event model (rules/model): rules, gateway and tests format and parse
times only through here, so a replayed event's epoch is bit-identical to the live one."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

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
