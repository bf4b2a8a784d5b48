"""The center model: a fold of journaled events (the State and its indexes).

Nothing here does I/O and nothing reads a clock: ``State.fold(event)`` is the
only way it changes (times come from ``event.epoch``), so a restart (replay of
the journal) rebuilds it exactly. The folds live beside their domain in this
package (persons, presence, tags, custody, rooms, cameras, devices, alarms) and
register themselves (rules/state/registry.py).

Indexes are kept so that every fold and every rule query is O(changed room),
never O(persons): presence is held twice, per person (``presence``) and per
room (``rooms``), and per tag (``tag_rooms``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rules.model import Event, format_ts
from rules.state.custody import Compartment
from rules.state.presence import Presence
from rules.state.registry import FOLDS

if TYPE_CHECKING:
    from rules.state.cameras import CameraView
    from rules.state.custody import Belongings, CustodyOrder, Removal
    from rules.state.persons import Person
    from rules.state.rooms import Door, Recording


@dataclass
class State:
    persons: dict[str, Person] = field(default_factory=dict)
    tag_owner: dict[str, str] = field(default_factory=dict)          # tag/card -> person
    # person (or "tag:<TAG>" for unbound tags) -> room -> Presence
    presence: dict[str, dict[str, Presence]] = field(default_factory=dict)
    active_alarms: dict[str, dict[str, Any]] = field(default_factory=dict)  # alarm_id -> alarm data
    last_seq: int = 0
    last_ts: float = 0.0
    # ---- indexes and the rest of the center ---------------------------------
    rooms: dict[str, dict[str, Presence]] = field(default_factory=dict)     # room -> holder -> Presence
    # room -> counts of present persons by key (see count_keys): O(1) "is there an officer?"
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    person_tags: dict[str, set[str]] = field(default_factory=dict)          # person -> tags/cards
    bound_at: dict[str, float] = field(default_factory=dict)                # tag -> bound at
    tag_rooms: dict[str, dict[str, int]] = field(default_factory=dict)      # tag -> rooms it is present in (-> holders)
    tag_seen: dict[str, float] = field(default_factory=dict)                # tag -> last presence/status/bind
    tag_last_room: dict[str, str] = field(default_factory=dict)             # tag -> last room it was seen in
    tag_status: dict[str, dict[str, Any]] = field(default_factory=dict)     # tag -> latest tag.status fields
    # A band unbound from a suspect still in the center: tag -> that suspect, and
    # suspect -> those tags. Its tamper/SOS/vital alarms stay his (unbinding never
    # silences an alarm) until he leaves or the band is bound again.
    former_owner: dict[str, str] = field(default_factory=dict)
    former_tags: dict[str, set[str]] = field(default_factory=dict)
    visited: dict[str, set[str]] = field(default_factory=dict)              # person -> rooms entered since registration
    doors: dict[str, Door] = field(default_factory=dict)
    compartments: dict[tuple[str, int], Compartment] = field(default_factory=dict)
    belongings: dict[str, Belongings] = field(default_factory=dict)         # person -> compartment held
    orders: dict[str, CustodyOrder] = field(default_factory=dict)           # order id -> order
    orders_by_item: dict[str, list[str]] = field(default_factory=dict)      # item -> order ids
    removed: dict[str, Removal] = field(default_factory=dict)               # item -> removal (item out)
    cameras: dict[str, CameraView] = field(default_factory=dict)            # room -> camera view
    devices_offline: dict[str, float] = field(default_factory=dict)         # device -> since
    device_errors: dict[str, str] = field(default_factory=dict)
    # room -> (person, at) of the last card badge (card.swiped, door.passed) by a known
    # person: door_held_open names who opened the door.
    last_badge: dict[str, tuple[str, float]] = field(default_factory=dict)
    recording: dict[str, Recording] = field(default_factory=dict)           # room -> recorder state
    identity_left: dict[str, float] = field(default_factory=dict)           # identity hash -> last left the center
    # room -> case_id -> started at: approved identification sessions (辨认)
    identifications: dict[str, dict[str, float]] = field(default_factory=dict)
    # camera -> kind -> [room, since]: active tamper conditions (covered/moved/video_lost)
    tampered: dict[str, dict[str, list]] = field(default_factory=dict)
    # times without an offset (custody orders) are read in this zone: [center] timezone
    timezone: str = "UTC"

    # ---- queries -------------------------------------------------------
    def person_for(self, tag: str) -> str | None:
        return self.tag_owner.get(tag)

    def tags_of(self, person: str) -> list[str]:
        return sorted(self.person_tags.get(person, ()))

    def rooms_of(self, person: str) -> dict[str, Presence]:
        return self.presence.get(person, {})

    def count(self, room: str, key: str) -> int:
        c = self.counts.get(room)
        return c.get(key, 0) if c else 0

    def visited_types(self, person: str, room_types: dict[str, str]) -> set[str]:
        """Room types the person has been in since registration (rooms -> types
        from config; kept as room ids so a config reload re-types them)."""
        return {room_types.get(r) for r in self.visited.get(person, ())} - {None}

    def occupants(self, room: str) -> list[tuple[str, Presence]]:
        return list(self.rooms.get(room, {}).items())

    def compartment(self, locker: str, compartment: int) -> Compartment:
        key = (locker, int(compartment))
        c = self.compartments.get(key)
        if c is None:
            c = self.compartments[key] = Compartment(locker, int(compartment))
        return c

    def occupancy(self) -> dict[str, list[dict[str, Any]]]:
        rooms: dict[str, list[dict[str, Any]]] = {}
        for room in sorted(self.rooms):
            holders = self.rooms[room]
            if not holders:
                continue
            lst = rooms[room] = []
            for who in sorted(holders):
                p = self.persons.get(who)
                lst.append({"person": who, "role": p.role if p else None,
                            "since": format_ts(holders[who].since)})
        return rooms

    # ---- the fold ------------------------------------------------------
    def fold(self, ev: Event) -> None:
        self.last_seq = ev.seq
        if ev.epoch > self.last_ts:
            self.last_ts = ev.epoch
        fn = FOLDS.get(ev.type)
        if fn is not None:
            fn(self, ev)

    # ---- internal helpers used by folds ----------------------------------
    def _add_presence(self, who: str, room: str, tag: str, since: float) -> None:
        pr = self.presence.get(who)
        if pr is None:
            pr = self.presence[who] = {}
        p = pr.get(room)
        if p is None:
            person = self.persons.get(who)
            keys = person.keys if person is not None and not person.left else ()
            p = pr[room] = Presence(room, since, tag, set(), keys)
            occ = self.rooms.get(room)
            if occ is None:
                occ = self.rooms[room] = {}
            occ[who] = p
            if keys:
                c = self.counts.get(room)
                if c is None:
                    c = self.counts[room] = {}
                for k in keys:
                    c[k] = c.get(k, 0) + 1
        if tag and tag not in p.tags:
            p.tags.add(tag)
            self._tag_here(tag, room)

    def _remove_presence(self, who: str, room: str, tag: str | None) -> bool:
        """Remove ``tag`` (or, with tag None, the whole holder) from room; True if
        the holder is no longer in the room."""
        pr = self.presence.get(who)
        if not pr:
            return False
        p = pr.get(room)
        if p is None:
            return False
        if tag:
            if tag not in p.tags:
                return False           # that tag was not seen here: nothing ends
            p.tags.discard(tag)
            self._tag_gone(tag, room)
            if p.tags:
                if p.tag == tag:
                    p.tag = min(p.tags)
                return False
        else:
            for tg in p.tags:
                self._tag_gone(tg, room)
        del pr[room]
        if not pr:
            del self.presence[who]
        if p.keys:
            c = self.counts[room]
            for k in p.keys:
                n = c[k] - 1
                if n:
                    c[k] = n
                else:
                    del c[k]
        occ = self.rooms.get(room)
        if occ is not None:
            occ.pop(who, None)
            if not occ:
                del self.rooms[room]
        return True

    def _recount(self, who: str) -> None:
        """A person's role/attributes changed while present: redo their counts."""
        for room, p in list(self.presence.get(who, {}).items()):
            tags, since = sorted(p.tags) or [""], p.since
            self._remove_presence(who, room, None)
            for tag in tags:
                self._add_presence(who, room, tag, since)

    def _tag_here(self, tag: str, room: str) -> None:
        s = self.tag_rooms.get(tag)
        if s is None:
            s = self.tag_rooms[tag] = {}
        s[room] = s.get(room, 0) + 1

    def _tag_gone(self, tag: str, room: str) -> None:
        s = self.tag_rooms.get(tag)
        if s is not None and room in s:
            n = s[room] - 1
            if n:
                s[room] = n
            else:
                del s[room]
                if not s:
                    del self.tag_rooms[tag]

    def _move_tag(self, tag: str, old: str, new: str, t: float) -> None:
        """Re-key a tag's current presence from holder ``old`` to ``new`` (on bind/unbind)."""
        for room in sorted(self.tag_rooms.get(tag, ())):
            p = self.presence.get(old, {}).get(room)
            since = p.since if p is not None else t
            if p is not None and tag in p.tags:
                self._remove_presence(old, room, tag)
            self._add_presence(new, room, tag, since)

