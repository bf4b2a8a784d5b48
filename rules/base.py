"""The rule registry and the vocabulary rule families share.

A rule is registered under its alarm code, declared beside it with
``rules.declare.alarm`` (the catalog, ``rules.catalog.CATALOG``, is those
declarations), with the event types that can change its condition:

* ``@rule(code, on=(...), timer=fn)``: a plain function ``fn(ctx, ev, t) ->
  list[Draft]`` (``ctx`` is the engine: state, settings and the alarm helpers
  ``hold/raise_/clear/arm/disarm``; ``t`` the event's time). ``timer(ctx,
  subject, kind, deadline)`` is called when a deadline it armed is due.
* ``@room_rule(code, room_types)`` / ``@person_rule(code, ...)`` /
  ``@tag_rule(code)``: the function is a *check* ``check(ctx, subject, t) ->
  Facts | None`` for a room / person / tag; the engine re-checks the subjects
  an event touched and holds the condition for the rule's ``grace_s`` (if its
  settings have one) before raising - no flapping while people walk through
  doors - and clears it when the check returns None.

Rules do no I/O and never read the clock: same events in, same alarms out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

# Events that can change who is in a room (and hence any room condition).
ROOM_EVENTS = ("presence.entered", "presence.left", "person.registered", "person.left",
               "person.checkout_approved", "wristband.bound", "wristband.unbound")


@dataclass(slots=True)
class Facts:
    """What a rule found: the alarm's room, persons, message fragments, details.

    ``zh`` may instead be a zero-argument callable returning ``(zh, en)``
    (``en`` then None): the text is only formatted when an alarm is drafted,
    which keeps re-checking a standing condition cheap."""
    room: str | None
    persons: list[str]
    zh: Any
    en: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def text(self) -> tuple[str, str]:
        if callable(self.zh):
            return self.zh()
        return self.zh, self.en or ""


@dataclass(slots=True)
class Rule:
    code: str
    on: tuple[str, ...]
    fn: Callable | None               # fn(ctx, ev, t) -> drafts (None: a room/person/tag check rule)
    check: Callable | None = None     # check(ctx, subject, t) -> Facts | None (hold rules)
    timer: Callable | None = None     # timer(ctx, subject, kind, deadline) -> drafts
    grace: str | None = "grace_s"     # settings attribute giving the hold time
    scope: str = "custom"             # custom | room | person | tag
    room_types: frozenset[str] | None = None
    room_keys: tuple[str, ...] | None = None   # person rules: counters that affect room-mates
    camera_rooms: bool = False                 # room rules: only rooms with a camera view
    # custom rules: event types on which the rule only ever looks at the event's own
    # suspects (ctx.dirty_suspects) - the engine skips the call when there are none
    suspects_only: tuple[str, ...] = ()


RULES: dict[str, Rule] = {}
NONE: tuple = ()
# code -> fn(ctx, t) -> drafts: re-derive a rule's deadlines after a config
# reload exactly as a restart (a replay under the new config) would.
ON_RECONFIGURE: dict[str, Callable] = {}


def on_reconfigure(code: str):
    def deco(fn):
        ON_RECONFIGURE[code] = fn
        return fn
    return deco


def rule(code: str, on: tuple[str, ...], timer: Callable | None = None,
         check: Callable | None = None, grace: str | None = "grace_s",
         suspects_only: tuple[str, ...] = ()):
    def deco(fn):
        RULES[code] = Rule(code, tuple(on), fn, check, timer, grace, suspects_only=tuple(suspects_only))
        return fn
    return deco


def room_rule(code: str, room_types: frozenset[str] | None, on: tuple[str, ...] = ROOM_EVENTS,
              grace: str | None = "grace_s", camera_rooms: bool = False):
    """check(ctx, room, t) re-run for every room the event touched (of
    ``room_types``, or with the alarm pending/active). ``camera_rooms``: only
    rooms a camera has reported on."""
    def deco(check):
        RULES[code] = Rule(code, tuple(on), None, check, None, grace, "room", room_types,
                           None, camera_rooms)
        return check
    return deco


def person_rule(code: str, room_types: frozenset[str] | None = None, on: tuple[str, ...] = ROOM_EVENTS,
                grace: str | None = "grace_s", room_keys: tuple[str, ...] | None = None):
    """check(ctx, suspect, t) re-run for every suspect the event touched: the
    event's own suspects, and the other suspects in the touched rooms. With
    ``room_keys`` (room counters, see rules.state.count_keys; a key ending in
    ":" is a prefix), the others are re-checked only when a presence event made
    one of those counters cross zero in the room (e.g. the last attendant left):
    nothing else can change their condition. With ``room_types``, only suspects
    in such a room or with the alarm pending/active are checked."""
    def deco(check):
        RULES[code] = Rule(code, tuple(on), None, check, None, grace, "person", room_types, room_keys)
        return check
    return deco


def tag_rule(code: str, on: tuple[str, ...] = ("tag.status", "wristband.bound", "wristband.unbound",
                                                "person.left"), grace: str | None = "grace_s"):
    """check(ctx, tag, t) re-run for the tags the event touched."""
    def deco(check):
        RULES[code] = Rule(code, tuple(on), None, check, None, grace, "tag")
        return check
    return deco


def room_pass(rules: list[Rule]):
    """One pass over the touched rooms running every room rule (catalog order)."""
    specs = [(r.code, r.check, r.room_types, r.camera_rooms) for r in rules]

    def fn(ctx, ev, t):
        out = NONE
        rt = ctx.room_types
        alarms = ctx.alarms
        timers = ctx.timers
        cameras = ctx.state.cameras
        for room in ctx.dirty_rooms:
            typ = rt.get(room)
            for code, check, types, cam in specs:
                if (types is not None and typ not in types) or (cam and room not in cameras):
                    if (code, room) not in alarms and (code, room, "") not in timers:
                        continue            # not a room for this rule, nothing pending
                f = check(ctx, room, t)
                if f is None and (code, room) not in alarms and (code, room, "") not in timers:
                    continue
                r = ctx.hold(code, room, t, f)
                if r:
                    out = out + r if out else r
        return out
    return fn


def _crossed(ctx, ev, relevant: frozenset[str]) -> frozenset[str] | None:
    """For a presence event: the ``relevant`` room counters of the moving person
    that crossed zero in its room, "visitor:" standing for any "visitor:<kind>"
    (None = not a presence event: assume anything changed); "for:" likewise
    stands for any "for:<person>" (a guardian or lawyer of someone)."""
    typ = ev.type
    if typ != "presence.entered" and typ != "presence.left":
        return None
    d = ev.data
    p = ctx.state.persons.get(d.get("person") or "")
    if p is None or p.left:
        return _EMPTY
    out = None
    c = None
    for k in p.keys:
        kk = "visitor:" if k.startswith("visitor:") else ("for:" if k.startswith("for:") else k)
        if kk not in relevant:
            continue
        if c is None:
            c = ctx.state.counts.get(d.get("room")) or {}
        if c.get(k, 0) == (1 if typ == "presence.entered" else 0):
            if out is None:
                out = set()
            out.add(kk)
    return frozenset(out) if out else _EMPTY


_EMPTY: frozenset = frozenset()


def person_pass(rules: list[Rule]):
    """One pass over the touched suspects running every person rule (catalog order)."""
    specs = [(r.code, r.check, r.room_types, frozenset(r.room_keys) if r.room_keys is not None else None)
             for r in rules]
    relevant = frozenset(k for *_, keys in specs if keys for k in keys)
    n = len(specs)
    none_expand = [False] * n
    all_expand = [True] * n

    def fn(ctx, ev, t):
        own = ctx.dirty_suspects
        crossed = _crossed(ctx, ev, relevant)
        if crossed is None:
            expand = all_expand
        elif not crossed:
            if not own:
                return NONE
            expand = none_expand
        else:
            expand = [keys is None or not keys.isdisjoint(crossed) for _, _, _, keys in specs]
        suspects = ctx.touched_suspects() if expand is not none_expand else own
        out = NONE
        rt = ctx.room_types
        presence = ctx.state.presence
        alarms = ctx.alarms
        timers = ctx.timers
        for pid in suspects:
            rooms = presence.get(pid)
            types = [rt.get(r) for r in rooms] if rooms else ()
            mine = pid in own
            for i in range(n):
                if not mine and not expand[i]:
                    continue
                code, check, want, _ = specs[i]
                tracked = (code, pid) in alarms or (code, pid, "") in timers
                if want is not None and not tracked:
                    for x in types:
                        if x in want:
                            break
                    else:
                        continue
                f = check(ctx, pid, t)
                if f is None and not tracked:
                    continue
                r = ctx.hold(code, pid, t, f)
                if r:
                    out = out + r if out else r
        return out
    return fn


def tag_pass(rules: list[Rule]):
    specs = [(r.code, r.check) for r in rules]

    def fn(ctx, ev, t):
        out = NONE
        alarms = ctx.alarms
        timers = ctx.timers
        for tag in ctx.dirty_tags:
            for code, check in specs:
                f = check(ctx, tag, t)
                if f is None and (code, tag) not in alarms and (code, tag, "") not in timers:
                    continue
                r = ctx.hold(code, tag, t, f)
                if r:
                    out = out + r if out else r
        return out
    return fn


PASSES = {"room": room_pass, "person": person_pass, "tag": tag_pass}


_TABLES: dict[tuple, dict[str, list[tuple[Callable, bool]]]] = {}


def dispatch_table(codes, enabled) -> dict[str, list[tuple[Callable, bool]]]:
    """Event type -> its runners ``(fn(ctx, ev, t), suspects_only)``, the enabled rules in
    ``codes`` order (catalog order = evaluation order = journal order of their drafts).
    Room/person/tag check rules of one event type share one pass over the touched
    subjects, run at the position of the first of them.

    Built once per (codes, enabled, declared rules) and shared, read-only, by the engines
    of a process: 0.7 ms a build, and a restart or reload builds one per engine (the rule
    cases' upgrade and reload checks spent 3 s of their 15 here)."""
    key = (tuple(codes), frozenset(enabled), tuple((c, id(r)) for c, r in RULES.items()))
    table = _TABLES.get(key)
    if table is None:
        types = sorted({t for r in RULES.values() for t in r.on})
        built = {typ: _runners(typ, codes, enabled) for typ in types}
        table = {typ: runners for typ, runners in built.items() if runners}
        if len(_TABLES) >= 64:        # a few configs per process; bounded all the same
            _TABLES.clear()
        _TABLES[key] = table
    return table


def _runners(typ: str, codes, enabled) -> list[tuple[Callable, bool]]:
    runners: list = []
    grouped: dict[str, list[Rule]] = {}
    for code in codes:
        r = RULES.get(code)
        if r is None or code not in enabled or typ not in r.on:
            continue
        if r.scope == "custom":
            runners.append((r.fn, typ in r.suspects_only))
            continue
        if r.scope not in grouped:
            grouped[r.scope] = []
            runners.append(r.scope)       # placeholder at the first rule's position
        grouped[r.scope].append(r)
    return [(PASSES[x](grouped[x]), False) if isinstance(x, str) else x for x in runners]


# ---- message helpers ---------------------------------------------------------
def local(ctx, epoch: float | None) -> str:
    """A time for people in an alarm message: the center's local time with its
    offset (details keep RFC 3339 UTC for machines)."""
    from rules.model import format_local
    if epoch is None:
        return "-"
    center = getattr(getattr(ctx, "config", None), "center", None)
    return format_local(epoch, getattr(center, "timezone", None))


def duration(seconds: float) -> str:
    from rules.model import format_duration
    return format_duration(seconds)


ROLE_ZH = {"suspect": "嫌疑人", "officer": "民警", "staff": "工作人员", "visitor": "来访人员"}


def is_card(tag: str) -> bool:
    """125 kHz EM4100 cards are 10 hex digits (SPEC §4.2); active tags are 8."""
    return len(tag) == 10
