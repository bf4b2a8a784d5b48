"""Presence of RFID tags in rooms, for any reader vendor (capability ``presence``).

A driver that declares ``presence`` (drivers/common/config.py CAPABILITIES) reports
``presence.entered`` / ``presence.left`` and keeps a :class:`PresenceTracker`: per
(tag, room) since when, last heard, and which sources (stations, antennas, a door)
hear it. The vendor part is only turning its frames into ``seen`` / ``gone`` calls;
the timeout (``presence.left`` after silence), several sources per room and the
takeover after a restart are the same for every vendor, so they live here.

The daemon side of the interface is ``Driver.restore_presence`` (drivers/base.py):
before it starts a driver whose device declares ``presence``, the daemon hands it
who the journal says is in a room now; a driver keeping a tracker passes them to
:meth:`PresenceTracker.restore` for its rooms. Without that a tag still
in its room would be announced as entering again after a restart, and one that left
while the daemon was down would never leave.
"""
from __future__ import annotations

from typing import Any, Iterable

#: (tag, room, since): since is the wall-clock epoch of the ``presence.entered``
PresentTag = tuple[str, str, float]


class PresenceTracker:
    """Pure presence logic: per (tag, room) since/last-seen/sources. ``now`` is a
    monotonic clock reading supplied by the caller (one thread owns a tracker)."""

    __slots__ = ("timeout", "entries")

    def __init__(self, timeout_s: float):
        self.timeout = timeout_s
        # (tag, room) -> [since, last_seen, sources]
        self.entries: dict[tuple[str, str], list] = {}

    def seen(self, tag: str, room: str, source: str, now: float) -> bool:
        """An in-range record; True if the tag just entered the room."""
        e = self.entries.get((tag, room))
        if e is None:
            self.entries[(tag, room)] = [now, now, {source}]
            return True
        e[1] = now
        e[2].add(source)
        return False

    def gone(self, tag: str, room: str, source: str | None, now: float) -> float | None:
        """An out-of-range record from ``source`` (None = every source, e.g. a
        door passed out). Returns the seconds spent if the tag left the room."""
        key = (tag, room)
        e = self.entries.get(key)
        if e is None:
            return None
        if source is not None:
            e[2].discard(source)
            if e[2]:
                return None
        del self.entries[key]
        return max(0.0, now - e[0])

    def expire(self, now: float) -> list[tuple[str, str, float]]:
        """(tag, room, seconds spent) of every tag not heard for ``timeout``; they left."""
        cutoff = now - self.timeout
        out = []
        for key, e in self.entries.items():
            if e[1] <= cutoff:
                out.append((key[0], key[1], max(0.0, now - e[0])))
        for tag, room, _ in out:
            del self.entries[(tag, room)]
        return out

    def hold(self, source: str, now: float) -> int:
        """Keep what ``source`` established as it is (a station whose identity is in
        doubt: nobody vanishes on its silence either). Returns the entries held."""
        n = 0
        for e in self.entries.values():
            if source in e[2]:
                e[1] = now
                n += 1
        return n

    def restore(self, present: Iterable[PresentTag], rooms: set[str], now: float, wall: float) -> int:
        """Take over ``present`` entries in ``rooms`` that are not tracked already.

        A restored entry has no source behind it yet: the first record confirms it,
        an out-of-range record or the timeout ends it. ``since`` keeps the time spent
        (``presence.left`` seconds) counted from the original entry."""
        n = 0
        for tag, room, since in present:
            if room in rooms and (tag, room) not in self.entries:
                self.entries[(tag, room)] = [now - max(0.0, wall - since), now, set()]
                n += 1
        return n

    def rooms_of(self, tag: str) -> list[str]:
        return [r for (t, r) in self.entries if t == tag]

    def __len__(self) -> int:
        return len(self.entries)


def entered_data(ctx: Any, tag: str, room: str) -> dict:
    """``presence.entered`` [person, tag, room] (SPEC §3), the same for every vendor."""
    return {"person": ctx.person_for(tag), "tag": tag, "room": room}


def left_data(ctx: Any, tag: str, room: str, seconds: float) -> dict:
    """``presence.left`` [person, tag, room, seconds]."""
    return {"person": ctx.person_for(tag), "tag": tag, "room": room, "seconds": round(seconds, 3)}
