"""The persons of the center (DOMAIN v2/v3: the person as the law sees them) and their
folds: registration, updates, rests, checkout approval, leaving."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rules.model import Event, parse_ts
from rules.state.registry import folds
from rules.state.tags import forget_former

if TYPE_CHECKING:
    from rules.state.center import State


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


@folds("person.registered")
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


@folds("person.updated")
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


@folds("person.rest")
def _rest(s: State, ev: Event) -> None:
    d = ev.data
    p = s.persons.get(d["person"])
    if p is None or p.left:
        return
    start = _epoch(d.get("from"), ev.epoch)
    end = _epoch(d.get("to"), None)
    p.rests = p.rests + ((start, end, str(d.get("kind") or "rest")),)


@folds("person.checkout_approved")
def _checkout(s: State, ev: Event) -> None:
    p = s.persons.get(ev.data["person"])
    if p:
        p.checkout_approved = True
        p.checkout_at = ev.epoch


@folds("person.left")
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
        forget_former(s, t)
    s.visited.pop(pid, None)
    b = s.belongings.get(pid)
    if b is not None:
        c = s.compartments.get((b.locker, b.compartment))
        if c is None or not c.items:      # nothing left behind: the assignment ends
            del s.belongings[pid]
            if c is not None and c.holder == pid:
                c.prev_holder, c.holder = pid, None

