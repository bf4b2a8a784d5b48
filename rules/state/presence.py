"""Who is in which room: a holder's Presence and the presence.* folds; a suspect's room log."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rules.model import Event
from rules.state.registry import folds
from rules.state.tags import drop_untagged

if TYPE_CHECKING:
    from rules.state.center import State


ROOM_LOG_MAX = 200              # a suspect's room stays kept for person/rest checks (a day is ~50)


@dataclass(slots=True)
class Presence:
    room: str
    since: float
    tag: str
    tags: set[str] = field(default_factory=set)   # every tag of this holder seen in the room
    keys: tuple[str, ...] = ()                     # what it adds to the room's counts


def _who(d: dict) -> str:
    return d.get("person") or f"tag:{d['tag']}"


@folds("presence.entered")
def _entered(s: State, ev: Event) -> None:
    d = ev.data
    tag = d.get("tag") or ""
    who = d.get("person") or f"tag:{tag}"
    room = d["room"]
    s._add_presence(who, room, tag, ev.epoch)
    if tag and (who in s.former_tags or len(s.presence[who]) > 1):
        # a tag of his is seen: presences kept without a tag (band unbound inside) end
        drop_untagged(s, who, room)
    if tag:
        s.tag_seen[tag] = ev.epoch
        s.tag_last_room[tag] = room
    v = s.visited.get(who)
    if v is not None:
        v.add(room)
    _log_room(s, who, room, ev.epoch, None)


def _log_room(s: State, who: str, room: str, start: float | None, end: float | None) -> None:
    """Keep a suspect's room stays (Person.room_log): an entry opens a stay, a
    leaving closes the open stay in that room."""
    p = s.persons.get(who)
    if p is None or p.role != "suspect" or p.left:
        return
    if start is None:
        entry = p.open_stays.pop(room, None)
        if entry is not None:
            entry[2] = end
        return
    if room in p.open_stays:
        return
    entry = [room, start, None]
    p.room_log.append(entry)
    p.open_stays[room] = entry
    if len(p.room_log) > 2 * ROOM_LOG_MAX:     # trimmed in chunks: O(1) per stay
        del p.room_log[:ROOM_LOG_MAX]


@folds("presence.left")
def _left_room(s: State, ev: Event) -> None:
    d = ev.data
    who = d.get("person") or f"tag:{d['tag']}"
    room = d["room"]
    tag = d.get("tag") or None
    pr = s.presence.get(who)
    if (pr is None or room not in pr) and tag:
        # The person field is stale (bound/unbound meanwhile): use the current holder.
        who = s.tag_owner.get(tag) or f"tag:{tag}"
    if s._remove_presence(who, room, tag):
        _log_room(s, who, room, None, ev.epoch)
    if tag:
        s.tag_seen[tag] = max(s.tag_seen.get(tag, ev.epoch), ev.epoch)
        s.tag_last_room[tag] = room

