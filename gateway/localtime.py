"""Times a person or a file gives: without an offset they are the center's local time.

SPEC §3 v3 / issue 22: ``2026-12-06T18:00:00`` typed from a 传唤证 in a center in
Asia/Shanghai is 10:00Z, never 18:00Z. One reader for every way in: CLI flags
(``--arrived-at``, ``--since``, ``--until``), MQTT request fields (``arrived_at``,
``detained_at``, ``from``, ``to``, ``expires``, ``due``) and the data of events in a
``replay --input`` file. JSON written by casegate keeps RFC 3339 UTC.
"""
from __future__ import annotations

from typing import Any

from rules.model import format_ts, parse_local_ts


def parse_given(text: str, tz: str | None) -> float:
    """Epoch seconds of an RFC 3339 time (or ``YYYY-MM-DD HH:MM[:SS]``); without an
    offset it is in ``tz`` (``[center] timezone``). ValueError says how to write it."""
    t = str(text).strip()
    try:
        return parse_local_ts(t, tz)
    except (ValueError, TypeError):
        raise ValueError(f"{text!r} is not a time: use RFC 3339, e.g. 2026-12-06T18:00:00 (read in "
                         f"{tz or 'UTC'}, the center's time zone) or 2026-12-06T10:00:00Z") from None


def has_offset(text: str) -> bool:
    from datetime import datetime
    t = str(text).strip()
    if t[-1:] in ("Z", "z"):
        return True
    try:
        return datetime.fromisoformat(t).tzinfo is not None
    except ValueError:
        return True            # not ours to judge: the reader of the field says it is bad


# Where events carry times a person gave (the request fields above, as journaled).
GIVEN_TIMES: dict[str, tuple[tuple[str, ...], ...]] = {
    "person.registered": (("arrived_at",),),
    "person.updated": (("changes", "detained_at"),),
    "person.rest": (("from",), ("to",)),
    "custody.ordered": (("expires",), ("due",)),
}


def normalise_given_times(type: str, data: dict[str, Any], tz: str | None) -> int:
    """In an event from a file (``replay --input``): a given time without an offset
    becomes RFC 3339 UTC read in ``tz``, as the live request handler journals it.
    Changes ``data`` in place; returns how many fields were rewritten."""
    n = 0
    for path in GIVEN_TIMES.get(type, ()):
        holder: Any = data
        for key in path[:-1]:
            holder = holder.get(key) if isinstance(holder, dict) else None
        if not isinstance(holder, dict):
            continue
        v = holder.get(path[-1])
        if isinstance(v, str) and v.strip() and not has_offset(v):
            try:
                holder[path[-1]] = format_ts(parse_given(v, tz))
                n += 1
            except ValueError:
                pass                # left as given: the state reads it as unreadable = none
    return n
