"""The center model: a fold of journaled events.

Nothing here does I/O and nothing reads a clock: ``State.fold(event)`` is the
only way it changes (times come from ``event.epoch``), so a restart (replay of
the journal) rebuilds it exactly.

Indexes are kept so that every fold and every rule query is O(changed room),
never O(persons): presence is held twice, per person (``presence``) and per
room (``rooms``), and per tag (``tag_rooms``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rules.model import Event, parse_local_ts, parse_ts

# custody.ordered actions that authorise taking an item out of a cabinet.
AUTHORISING_ACTIONS = frozenset({"withdraw", "return", "release", "dispose"})
ROOM_LOG_MAX = 200              # a suspect's room stays kept for person/rest checks (a day is ~50)
MINOR_BELOW_AGE = 18            # 未成年人保护法 art. 2
VULNERABLE_BELOW_AGE = 16       # 继续盘问规定 art. 10 (inquiry only)


@dataclass(slots=True)
class Person:
    id: str
    role: str                      # suspect | officer | staff | visitor
    name: str = ""
    gender: str | None = None
    minor: bool = False
    case_id: str | None = None
    case_type: str | None = None
    limit_h: float | None = None
    visitor_kind: str | None = None
    registered_at: float = 0.0     # time of the (first) person.registered of this stay
    checkout_approved: bool = False
    checkout_at: float | None = None
    left: bool = False
    left_at: float | None = None
    keys: tuple[str, ...] = ()     # room counters this person adds to (count_keys), cached
    # ---- DOMAIN v2: the person as the law sees them -------------------------------------
    arrived_at: float = 0.0        # 到案时间: the detention clock starts here (default: registration)
    age: int | None = None
    vulnerable: bool = False       # pregnant/nursing, under 16, over 70 (继续盘问规定 art. 10)
    for_person: str | None = None  # a guardian's minor
    detained_at: float | None = None   # 拘留: starts the 24 h clock to the detention house
    prev_left_at: float | None = None  # end of this person's previous stay (consecutive summons)
    reregistered: int = 0          # person.registered again within this stay (never resets the clock)
    rests: tuple[tuple[float, float | None, str], ...] = ()   # recorded (from, to|None, kind)
    # ---- DOMAIN v3 -------------------------------------------------------------------------
    approver: bool = False         # an officer who is a 办案部门负责人 (approves longer limits)
    identity: str | None = None    # hash of the ID-card number: the same man under a new person id
    # the suspect's recent room stays [room, from, to|None], oldest first, between ROOM_LOG_MAX and
    # twice that kept: what person/rest is checked against (no rest during questioning)
    room_log: list[list] = field(default_factory=list)
    open_stays: dict[str, list] = field(default_factory=dict)   # room -> its open room_log entry


@dataclass(slots=True)
class Presence:
    room: str
    since: float
    tag: str
    tags: set[str] = field(default_factory=set)   # every tag of this holder seen in the room
    keys: tuple[str, ...] = ()                     # what it adds to the room's counts


@dataclass(slots=True)
class Door:
    door: str
    room: str | None
    open: bool
    since: float


@dataclass(slots=True)
class UnlockRequest:
    at: float
    by: str | None
    order: str | None


@dataclass(slots=True)
class Compartment:
    locker: str
    compartment: int
    open: bool = False
    since: float = 0.0                              # of the current open/closed state
    items: dict[str, float] = field(default_factory=dict)   # item -> added at
    unlock: UnlockRequest | None = None             # the latest locker.unlock_requested
    holder: str | None = None                       # person whose belongings it holds
    prev_holder: str | None = None                  # holder before the last change


@dataclass(slots=True)
class Belongings:
    person: str
    locker: str
    compartment: int
    since: float


@dataclass(slots=True)
class CustodyOrder:
    order: str
    item: str
    action: str
    case_id: str | None
    by: str | None
    expires: float | None
    at: float
    used: bool = False          # authorised a removal whose item has not come back yet
    due: float | None = None    # withdraw: the item is to be back by then


@dataclass(slots=True)
class Removal:
    item: str
    locker: str
    compartment: int
    at: float
    order: str | None           # the custody order that authorised it, None = unauthorised


@dataclass(slots=True)
class Recording:
    """A room's audio/video recorder (同步录音录像) as its recorder system reports it."""
    room: str
    recording: bool
    since: float            # of the current state
    seen: float             # last report (the recorder re-sends its state periodically)
    source: str | None = None
    # True: the room's configured recorder (审讯主机) said so; False: an officer by hand
    # (``by``), which never enables the one-officer relaxation (治安管理处罚法 2025 art. 108)
    evidence: bool = True


@dataclass(slots=True)
class CameraView:
    camera: str
    room: str
    count: int | None = None
    count_at: float = 0.0
    still_since: float | None = None   # start of the current stillness, None = motion seen
    motion_at: float = 0.0


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
        from rules.model import format_ts
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
        fn = _FOLDS.get(ev.type)
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


def count_keys(p: Person) -> tuple[str, ...]:
    """The room counters a present person adds to: the role; "attendant" for
    officers and staff; "female_attendant"; "visitor:<kind>" and "for:<person>"; for suspects
    "minor_suspect" and "case:<case_id>"."""
    role = p.role
    keys = [role]
    if role in ("officer", "staff"):
        keys.append("attendant")
        if p.gender == "female":
            keys.append("female_attendant")
    elif role == "visitor" and p.visitor_kind:
        keys.append(f"visitor:{p.visitor_kind}")
        if p.for_person:
            keys.append(f"for:{p.for_person}")      # the person he represents (guardian, lawyer)
    elif role == "suspect":
        if p.minor:
            keys.append("minor_suspect")
        if p.case_id:
            keys.append(f"case:{p.case_id}")
    return tuple(keys)


def _epoch(v, default: float | None) -> float | None:
    """An RFC 3339 time from event data (the request handler normalised it), else default."""
    if v is None or v == "":
        return default
    try:
        return parse_ts(str(v))
    except (ValueError, TypeError):
        return default


def _derive_protection(p: Person) -> None:
    """DOMAIN v3, protection from the data held: under 18 is a minor (未成年人保护法
    art. 2); under 16 in continued inquiry is vulnerable (继续盘问规定 art. 10). The
    request handlers refuse a contradiction; a journal carrying one is held to the age."""
    if p.age is None or p.role != "suspect":
        return
    if p.age < MINOR_BELOW_AGE:
        p.minor = True
    if p.age < VULNERABLE_BELOW_AGE and p.case_type == "inquiry":
        p.vulnerable = True


def _registered(s: State, ev: Event) -> None:
    d = ev.data
    pid = d["person"]
    limit = d.get("limit_h")
    old = s.persons.get(pid)
    arrived = _epoch(d.get("arrived_at"), ev.epoch)
    age = d.get("age")
    p = Person(
        id=pid, role=d["role"], name=d.get("name") or "", gender=d.get("gender"),
        minor=bool(d.get("minor")), case_id=d.get("case_id"), case_type=d.get("case_type"),
        limit_h=float(limit) if limit is not None else None, visitor_kind=d.get("visitor_kind"),
        registered_at=ev.epoch, arrived_at=arrived,
        age=int(age) if isinstance(age, (int, float)) and not isinstance(age, bool) else None,
        vulnerable=bool(d.get("vulnerable")), for_person=d.get("for"),
        approver=bool(d.get("approver")) and d["role"] == "officer", identity=d.get("identity") or None)
    _derive_protection(p)
    if old is not None and not old.left:
        # Re-registration within the same stay (not yet left): an update of the
        # same person. The clock keeps the earliest arrival; detention, rest
        # records and checkout state carry over.
        p.registered_at = old.registered_at
        p.arrived_at = min(old.arrived_at, arrived)
        p.detained_at = old.detained_at
        p.prev_left_at = old.prev_left_at
        p.rests = old.rests
        p.checkout_approved, p.checkout_at = old.checkout_approved, old.checkout_at
        p.reregistered = old.reregistered + 1
        p.room_log, p.open_stays = old.room_log, old.open_stays
        # DOMAIN v3: a re-registration changes no limit (person/update does, with approval)
        p.case_type, p.limit_h, p.vulnerable = old.case_type, old.limit_h, old.vulnerable
        s.persons[pid] = p
        p.keys = count_keys(p)
        if pid in s.presence:
            s._recount(pid)
        return
    if old is not None:
        p.prev_left_at = old.left_at
    if p.identity is not None and p.identity in s.identity_left:
        # the same man under a new person id (DOMAIN v3 identity): his last stay counts
        p.prev_left_at = max(p.prev_left_at or 0.0, s.identity_left[p.identity])
    s.persons[pid] = p
    p.keys = count_keys(p)
    s.visited[pid] = set(s.presence.get(pid, ()))
    if pid in s.presence:
        s._recount(pid)


# person.updated changes (SPEC v2) and how each is folded
UPDATABLE = ("case_type", "limit_h", "case_id", "detained_at", "vulnerable")


def _updated(s: State, ev: Event) -> None:
    d = ev.data
    p = s.persons.get(d["person"])
    ch = d.get("changes")
    if p is None or p.left or not isinstance(ch, dict):
        return
    if "case_type" in ch and ch["case_type"] != p.case_type:
        p.case_type = ch["case_type"]
        if "limit_h" not in ch:
            p.limit_h = None           # a new case type starts from its own default limit
    if "limit_h" in ch:
        lim = ch["limit_h"]
        p.limit_h = float(lim) if lim is not None else None
    if "case_id" in ch:
        p.case_id = ch["case_id"]
    if "detained_at" in ch:
        new = _epoch(ch["detained_at"], ev.epoch) if ch["detained_at"] is not None else None
        if p.detained_at is None:
            p.detained_at = new
        elif new is not None:
            # issue 30.5: the earliest 拘留 time of the stay holds; the 送押 deadline
            # (刑事诉讼法 art. 85) never moves later
            p.detained_at = min(p.detained_at, new)
    if "vulnerable" in ch:
        p.vulnerable = bool(ch["vulnerable"])
    _derive_protection(p)
    keys = count_keys(p)
    if keys != p.keys:
        p.keys = keys
        if p.id in s.presence:
            s._recount(p.id)


def _rest(s: State, ev: Event) -> None:
    d = ev.data
    p = s.persons.get(d["person"])
    if p is None or p.left:
        return
    start = _epoch(d.get("from"), ev.epoch)
    end = _epoch(d.get("to"), None)
    p.rests = p.rests + ((start, end, str(d.get("kind") or "rest")),)


def _checkout(s: State, ev: Event) -> None:
    p = s.persons.get(ev.data["person"])
    if p:
        p.checkout_approved = True
        p.checkout_at = ev.epoch


def _left(s: State, ev: Event) -> None:
    pid = ev.data["person"]
    p = s.persons.get(pid)
    if p:
        p.left = True
        p.left_at = ev.epoch
        if p.identity:
            s.identity_left[p.identity] = ev.epoch
        for entry in p.open_stays.values():
            entry[2] = ev.epoch
        p.open_stays = {}
    for room in list(s.presence.get(pid, ())):
        s._remove_presence(pid, room, None)
    for t in s.person_tags.pop(pid, ()):
        s.tag_owner.pop(t, None)
        s.bound_at.pop(t, None)
    for t in list(s.former_tags.get(pid, ())):
        _forget_former(s, t)
    s.visited.pop(pid, None)
    b = s.belongings.get(pid)
    if b is not None:
        c = s.compartments.get((b.locker, b.compartment))
        if c is None or not c.items:      # nothing left behind: the assignment ends
            del s.belongings[pid]
            if c is not None and c.holder == pid:
                c.prev_holder, c.holder = pid, None


def _bound(s: State, ev: Event) -> None:
    tag, pid = ev.data["tag"], ev.data["person"]
    old = s.tag_owner.get(tag)
    if old == pid:
        return
    _forget_former(s, tag)
    old_key = old if old is not None else f"tag:{tag}"
    if old is not None:
        s.person_tags.get(old, set()).discard(tag)
    s.tag_owner[tag] = pid
    s.person_tags.setdefault(pid, set()).add(tag)
    s.bound_at[tag] = ev.epoch
    s.tag_seen[tag] = max(s.tag_seen.get(tag, ev.epoch), ev.epoch)
    s._move_tag(tag, old_key, pid, ev.epoch)
    if s.tag_rooms.get(tag):
        _drop_untagged(s, pid)
    v = s.visited.get(pid)
    if v is not None:
        v.update(s.tag_rooms.get(tag, ()))


def _forget_former(s: State, tag: str) -> None:
    pid = s.former_owner.pop(tag, None)
    if pid is not None:
        f = s.former_tags.get(pid)
        if f is not None:
            f.discard(tag)
            if not f:
                del s.former_tags[pid]


def _drop_untagged(s: State, pid: str, keep: str | None = None) -> None:
    """The person is tracked by a tag again: presences kept without a tag
    (where an unbound suspect was last seen) end."""
    for room, p in list(s.presence.get(pid, {}).items()):
        if not p.tags and room != keep:
            s._remove_presence(pid, room, None)


def _unbound(s: State, ev: Event) -> None:
    tag = ev.data["tag"]
    pid = s.tag_owner.pop(tag, None)
    s.bound_at.pop(tag, None)
    if pid is None:
        return
    tags = s.person_tags.get(pid)
    if tags is not None:
        tags.discard(tag)
        if not tags:
            del s.person_tags[pid]
    rooms = s.presence.get(pid, {})
    kept = {room: pr.since for room, pr in rooms.items() if tag in pr.tags}
    s._move_tag(tag, pid, f"tag:{tag}", ev.epoch)
    p = s.persons.get(pid)
    if p is not None and p.role == "suspect" and not p.left:
        # He is still in the center: keep him where he was last seen (every
        # presence rule keeps judging him) and keep the band's alarms his.
        s.former_owner[tag] = pid
        s.former_tags.setdefault(pid, set()).add(tag)
        for room, since in kept.items():
            if room not in s.presence.get(pid, {}):
                s._add_presence(pid, room, "", since)


def _who(d: dict) -> str:
    return d.get("person") or f"tag:{d['tag']}"


def _entered(s: State, ev: Event) -> None:
    d = ev.data
    tag = d.get("tag") or ""
    who = d.get("person") or f"tag:{tag}"
    room = d["room"]
    s._add_presence(who, room, tag, ev.epoch)
    if tag and (who in s.former_tags or len(s.presence[who]) > 1):
        # a tag of his is seen: presences kept without a tag (band unbound inside) end
        _drop_untagged(s, who, room)
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


def _tag_status(s: State, ev: Event) -> None:
    d = ev.data
    tag = d.get("tag")
    if not tag:
        return
    st = s.tag_status.get(tag)
    if st is None:
        st = s.tag_status[tag] = {}
    for k, v in d.items():
        if k not in ("tag", "person"):
            st[k] = v
    s.tag_seen[tag] = ev.epoch


def _door(s: State, ev: Event) -> None:
    d = ev.data
    s.doors[d["door"]] = Door(d["door"], d.get("room"), ev.type == "door.opened", ev.epoch)


def _locker_open(s: State, ev: Event) -> None:
    c = s.compartment(ev.data["locker"], ev.data["compartment"])
    c.open = ev.type == "locker.opened"
    c.since = ev.epoch


def _unlock(s: State, ev: Event) -> None:
    d = ev.data
    c = s.compartment(d["locker"], d["compartment"])
    c.unlock = UnlockRequest(ev.epoch, d.get("by"), d.get("order"))


def _badge(s: State, ev: Event) -> None:
    d = ev.data
    if d.get("person") and d.get("room"):
        s.last_badge[d["room"]] = (d["person"], ev.epoch)


def _order_valid(o: CustodyOrder, t: float) -> bool:
    return (o.action in AUTHORISING_ACTIONS and not o.used
            and (o.expires is None or o.expires > t))


def _evidence_added(s: State, ev: Event) -> None:
    d = ev.data
    item = str(d["item"]).upper()
    c = s.compartment(d["locker"], d["compartment"])
    c.items[item] = ev.epoch
    if s.removed.pop(item, None) is not None:
        # The item came back: the orders that let it out are spent.
        ids = s.orders_by_item.get(item)
        if ids:
            keep = []
            for oid in ids:
                o = s.orders.get(oid)
                if o is not None and o.used:
                    del s.orders[oid]
                elif o is not None:
                    keep.append(oid)
            s.orders_by_item[item] = keep


def _evidence_removed(s: State, ev: Event) -> None:
    d = ev.data
    item = str(d["item"]).upper()
    c = s.compartment(d["locker"], d["compartment"])
    c.items.pop(item, None)
    order = None
    for oid in s.orders_by_item.get(item, ()):
        o = s.orders.get(oid)
        if o is not None and _order_valid(o, ev.epoch):
            o.used = True
            order = oid
            break
    s.removed[item] = Removal(item, c.locker, c.compartment, ev.epoch, order)
    if not c.items and c.holder is not None:
        # Belongings handed back: the assignment ends with the last item.
        holder = c.holder
        b = s.belongings.get(holder)
        if b is not None and (b.locker, b.compartment) == (c.locker, c.compartment):
            del s.belongings[holder]
        c.prev_holder, c.holder = holder, None


def _custody(s: State, ev: Event) -> None:
    d = ev.data
    item = str(d["item"]).upper()
    expires = _order_time(d.get("expires"), s.timezone)
    o = CustodyOrder(d["order"], item, d.get("action", ""), d.get("case_id"), d.get("by"),
                     expires, ev.epoch, due=_order_time(d.get("due"), s.timezone))
    s.orders[o.order] = o
    s.orders_by_item.setdefault(item, []).append(o.order)
    r = s.removed.get(item)
    if r is not None and r.order is None and _order_valid(o, ev.epoch):
        r.order = o.order           # authorised after the fact
        o.used = True


def _order_time(text, tz: str) -> float | None:
    """A custody order's expires/due: RFC 3339, a time without an offset being
    in the center's timezone (SPEC §2); unreadable = none."""
    if not text:
        return None
    try:
        return parse_local_ts(text, tz)
    except (ValueError, TypeError):
        return None


def _recording(s: State, ev: Event) -> None:
    d = ev.data
    room = d["room"]
    on = ev.type == "recording.started"
    r = s.recording.get(room)
    # v2 events carry no by/recorder: they came from the recorder system
    evidence = bool(d.get("recorder", d.get("by") is None))
    if r is None or r.recording != on:
        s.recording[room] = Recording(room, on, ev.epoch, ev.epoch, d.get("source"), evidence)
    else:
        r.seen = ev.epoch
        r.source = d.get("source")
        r.evidence = evidence


def _identification(s: State, ev: Event) -> None:
    d = ev.data
    room, case = d["room"], d["case_id"]
    if ev.type == "identification.started":
        s.identifications.setdefault(room, {})[case] = ev.epoch
    else:
        sessions = s.identifications.get(room)
        if sessions is not None:
            sessions.pop(case, None)
            if not sessions:
                del s.identifications[room]


def _tampered(s: State, ev: Event) -> None:
    d = ev.data
    cam, kind = d["camera"], d["kind"]
    if d.get("active"):
        s.tampered.setdefault(cam, {})[kind] = [d.get("room"), ev.epoch]
    else:
        kinds = s.tampered.get(cam)
        if kinds is not None:
            kinds.pop(kind, None)
            if not kinds:
                del s.tampered[cam]


def _belongings(s: State, ev: Event) -> None:
    d = ev.data
    pid = d["person"]
    c = s.compartment(d["locker"], d["compartment"])
    old = s.belongings.get(pid)
    if old is not None:
        oc = s.compartments.get((old.locker, old.compartment))
        if oc is not None and oc.holder == pid and oc is not c:
            oc.prev_holder, oc.holder = pid, None
    if c.holder is not None and c.holder != pid:
        s.belongings.pop(c.holder, None)
    c.prev_holder, c.holder = c.holder, pid
    s.belongings[pid] = Belongings(pid, c.locker, c.compartment, ev.epoch)


def _headcount(s: State, ev: Event) -> None:
    d = ev.data
    v = _camera(s, d)
    try:
        v.count = int(d["count"])
    except (TypeError, ValueError, KeyError):
        v.count = None
    v.count_at = ev.epoch
    v.motion_at = ev.epoch          # detection runs only on motion (SPEC §4.6)
    v.still_since = None


def _camera(s: State, d: dict) -> CameraView:
    room = d["room"]
    v = s.cameras.get(room)
    if v is None:
        v = s.cameras[room] = CameraView(d.get("camera", ""), room)
    elif d.get("camera"):
        v.camera = d["camera"]
    return v


def _still(s: State, ev: Event) -> None:
    d = ev.data
    v = _camera(s, d)
    try:
        secs = float(d.get("seconds") or 0)
    except (TypeError, ValueError):
        secs = 0.0
    if secs > 0:
        v.still_since = ev.epoch - secs
    else:
        v.still_since = None
        v.motion_at = ev.epoch


def _face(s: State, ev: Event) -> None:
    v = _camera(s, ev.data)
    v.motion_at = ev.epoch
    v.still_since = None


def _device(s: State, ev: Event) -> None:
    dev = ev.data.get("device")
    if not dev:
        return
    if ev.type == "device.offline":
        s.devices_offline.setdefault(dev, ev.epoch)
        for v in s.cameras.values():
            if v.camera == dev:          # a dead camera's count is no longer a fact
                v.count = None
                v.still_since = None
    elif ev.type == "device.online":
        s.devices_offline.pop(dev, None)
        s.device_errors.pop(dev, None)
        kinds = s.tampered.get(dev)
        if kinds is not None and kinds.pop("video_lost", None) is not None and not kinds:
            del s.tampered[dev]        # video is back, whatever a restarted camera process remembers
    else:
        s.device_errors[dev] = str(ev.data.get("error") or "")


def _alarm_raised(s: State, ev: Event) -> None:
    old = s.active_alarms.get(ev.data["alarm_id"])
    new = dict(ev.data)
    if old is not None and "acknowledged" in old:   # an update keeps its acknowledgement
        new["acknowledged"] = old["acknowledged"]
    s.active_alarms[ev.data["alarm_id"]] = new


def _alarm_cleared(s: State, ev: Event) -> None:
    s.active_alarms.pop(ev.data["alarm_id"], None)


def _alarm_ack(s: State, ev: Event) -> None:
    a = s.active_alarms.get(ev.data["alarm_id"])
    if a is not None:
        a["acknowledged"] = {"by": ev.data.get("by"), "note": ev.data.get("note"), "ts": ev.ts}


_FOLDS = {
    "person.registered": _registered,
    "person.checkout_approved": _checkout,
    "person.updated": _updated,
    "person.rest": _rest,
    "person.left": _left,
    "wristband.bound": _bound,
    "wristband.unbound": _unbound,
    "presence.entered": _entered,
    "presence.left": _left_room,
    "tag.status": _tag_status,
    "door.opened": _door,
    "door.closed": _door,
    "locker.opened": _locker_open,
    "locker.closed": _locker_open,
    "locker.unlock_requested": _unlock,
    "card.swiped": _badge,
    "door.passed": _badge,
    "evidence.added": _evidence_added,
    "evidence.removed": _evidence_removed,
    "custody.ordered": _custody,
    "belongings.assigned": _belongings,
    "camera.headcount": _headcount,
    "camera.still": _still,
    "camera.face_recognized": _face,
    "camera.face_unknown": _face,
    "device.online": _device,
    "device.offline": _device,
    "device.error": _device,
    "recording.started": _recording,
    "recording.stopped": _recording,
    "identification.started": _identification,
    "identification.ended": _identification,
    "camera.tampered": _tampered,
    "alarm.raised": _alarm_raised,
    "alarm.cleared": _alarm_cleared,
    "alarm.acknowledged": _alarm_ack,
}
