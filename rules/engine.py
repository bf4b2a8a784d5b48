"""The rule engine: fold an event into the state, run the rules, return alarm drafts.

Contract with the core (gateway/core.py) and with replay (rules/replay.py):

* ``apply(ev)`` is called for every journaled event in seq order. It first
  fires deadlines up to ``ev.epoch`` (``advance``), folds ``ev`` into the
  state and runs the rules. Returned drafts are sealed by the caller and fed
  back through ``apply`` before the next input, so the rules see their own
  alarms in order.
* Events whose ``source == "rules"`` are folded but never evaluated: during a
  replay they are skipped by the caller and regenerated instead.
* ``advance(now)`` fires time-based rules whose deadline is <= now, each at
  its own deadline time, so live and replay raise identical alarms. The
  caller seals and applies each draft it returns together with everything
  that draft causes before the next one (the core: one ``_seal_apply`` per
  draft; replay: ``Replayer._ticks``), so an expiry's re-sent alarms come
  before a later timer's alarm in the journal, live and in replay alike.
* No I/O, no wall clock: ``now`` always comes from an event or the caller.

Time. The engine's clock (``self.now``) is the latest event time or the
deadline of the latest timer that drafted something; it never goes back. An
event stamped earlier than the clock (a driver that back-dates) is evaluated
at the clock. ``advance(now)`` moves the clock only to deadlines whose firing
produced drafts, never to ``now`` itself, so the live timer's wall-clock
instants leave no trace that replay could not reproduce from the journal:
replay advances to each journaled rule event's time, which is exactly such a
deadline. (Residual: a timer that fires with no draft but changes a rule's
bookkeeping - rest_overdue's end of a break - can still order differently
against an event back-dated across it. Drivers should stamp events when they
are emitted.)

Wall-clock steps (SPEC §7). The core stamps events from a monotonic base
(gateway/timebase.py): journal time never goes back, and when the wall clock
jumps forward journal time jumps with it, journaled as ``clock.stepped`` with
``journal_jump_s``. Rules must count real elapsed time, so the engine keeps
``clock_shift`` = the sum of those jumps (a fold of the journal, so replay
derives the same) and works on *rule time* = journal time - clock_shift:
events are applied with ``epoch`` shifted, ``advance``/``next_deadline`` take
and give journal time, and every draft (its ``ts``, an alarm's ``since``) is
stamped back in journal time. A backward step needs no shift: journal time
keeps running on the monotonic clock. Times that rules write into alarm
*details/messages* are rule time; ``journal_time(t)`` converts (they differ
only after a forward step).

v3 corrections (SPEC §7 "v3 time"). ``clock.sync`` events say when the clock
became unsynchronised; the engine notes that point (rule time, timer count).
A ``clock.stepped`` with ``kind = "correction"`` then says the wall clock was
wrong all that while and is right now: rule time jumps with journal time
(``clock_shift`` becomes the journal's lead on the now-true wall clock), and
what the engine recorded from journal time during the window -- state times,
rule bookkeeping, alarm-book times, timers armed in the window -- is re-based
by the same jump (``_rebase``: times in [window start, now + REBASE_MARGIN_S]),
then deadlines derived from absolute times (到案 + limit) are re-derived from
the state (the rules' on_reconfigure hooks). A fold of the journal, so replay
and a checkpoint + tail do exactly what live did. A backward correction is
not re-based (rule time never goes back): the window's times stay on the
clock's footing, as in v2.

Alarms. One alarm per (code, subject) at a time, kept in ``self.alarms``.
``alarm_id`` = ``<code>:<16 hex of sha256(code|subject|since)>``, ``since``
being the RFC 3339 time the alarm was raised (for a time-based rule: its
deadline), so a restart or replay produces the same ids. An alarm whose
persons/room change while active is re-sent as ``alarm.raised`` with the
same ``alarm_id`` and ``since`` (an update); ``alarm.cleared`` carries the
last data. Acknowledgements are folded into ``state.active_alarms`` and into
``self.book`` (rules/alarm_states.py: active/acknowledged states, escalation,
shelving, maintenance; its timers fire inside ``advance`` in time order with
the rules' own).
"""
from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from heapq import heapify, heappop, heappush
from typing import Any

from rules.model import Draft, Event, format_ts
from rules import alarm_states, citations, departed
from rules.base import NONE, ON_RECONFIGURE, RULES, Facts, Rule, dispatch_table
from rules.catalog import CATALOG, rule_settings, spell_windows     # (importing it finds every rule family)
from rules.state import State

log = logging.getLogger("casegate.rules")

Key = tuple[str, str]            # (code, subject)
TimerKey = tuple[str, str, str]  # (code, subject, kind)


# A correction re-bases times up to this far past the engine's clock: the window's
# own short deadlines (grace periods, escalation steps) armed from its times.
REBASE_MARGIN_S = 600.0


def _shifted(obj: Any, lo: float, hi: float, by: float, seen: set[int] | None = None) -> Any:
    """``obj`` with every float time in [lo, hi] moved ``by`` (dicts, lists and
    dataclass/plain objects in place, each once; tuples rebuilt). Times are epochs
    (~1.8e9): no count or duration falls in such a window. Set members and dict
    keys are left alone (hashes)."""
    if isinstance(obj, float):
        return round(obj + by, 3) if lo <= obj <= hi else obj
    if isinstance(obj, (str, int, bool, type(None), set, frozenset)):
        return obj
    if isinstance(obj, tuple):
        new = tuple(_shifted(x, lo, hi, by, seen) for x in obj)
        return type(obj)(*new) if hasattr(obj, "_fields") else new
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return obj
    seen.add(id(obj))
    if isinstance(obj, list):
        obj[:] = [_shifted(x, lo, hi, by, seen) for x in obj]
        return obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            obj[k] = _shifted(v, lo, hi, by, seen)
        return obj
    names = getattr(type(obj), "__slots__", None) or list(getattr(obj, "__dict__", {}))
    for name in ([names] if isinstance(names, str) else names):
        if hasattr(obj, name):
            try:
                setattr(obj, name, _shifted(getattr(obj, name), lo, hi, by, seen))
            except (AttributeError, TypeError):       # frozen / read-only: not a fold's time
                pass
    return obj


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def alarm_id(code: str, subject: str, since: str) -> str:
    h = hashlib.sha256(f"{code}|{subject}|{since}".encode()).hexdigest()[:16]
    return f"{code}:{h}"


# Facts a rule journals (not alarms) that the other rules must see, as they see the same
# fact from a request: a session ending by itself (rules.identification).
RULE_FACTS = frozenset({"identification.ended"})

class Engine:
    def __init__(self, config):
        self.state = State()
        self.now = 0.0
        self.clock_shift = 0.0           # sum of forward journal-time jumps (clock.stepped)
        self.journal_ahead = 0.0         # journal time - wall clock after the last clock.stepped
        self.clock_synced: bool | None = None     # the last clock.sync's state
        self.unsynced_from: tuple[float, int] | None = None   # (rule time, timer count) it went unsynced
        self._stepped_out: list[Draft] = []
        self.alarms: dict[Key, dict[str, Any]] = {}
        self.by_id: dict[str, Key] = {}
        self._last_id: dict[Key, str] = {}
        self.timers: dict[TimerKey, tuple[float, int]] = {}
        self._heap: list[tuple[float, int, TimerKey]] = []
        self._n = 0
        self.errors = 0                  # events not understood + rule failures (logged)
        self.memo: defaultdict[str, dict] = defaultdict(dict)   # rule code -> its bookkeeping
        # per-event scratch, set by apply()
        self.dirty_rooms: list[str] = []
        self.dirty_people: list[str] = []
        self.dirty_tags: list[str] = []
        self.dirty_suspects: list[str] = []    # the event's own persons that are suspects
        self._suspects: list[str] | None = None
        self.event: Event | None = None
        self.book = alarm_states.AlarmBook()   # alarm states, shelves, maintenance (plain data)
        self.departed: dict[str, tuple] = {}   # departed persons queued to leave the state (rules/departed.py)
        self.configure(config)

    # ---- configuration -----------------------------------------------------------
    def configure(self, config) -> None:
        self.config = config
        self.settings = rule_settings(getattr(config, "rules", {}) or {})
        center = getattr(config, "center", None)
        self.state.timezone = getattr(center, "timezone", None) or "UTC"   # custody times without offset
        self._configure_rooms(list(getattr(config, "rooms", []) or []))
        self._configure_devices(getattr(config, "devices", []) or [])
        self.enabled = {c for c, s in self.settings.items() if s.enabled}
        self.alarm_devices = alarm_states.device_map(config)
        # codes whose grace periods add up (see _spell_start): code -> (window_s, min_absence_s)
        self.windows: dict[str, tuple[float, float]] = spell_windows(self.settings)
        # Per event type, the runners in catalog order (rules.base.dispatch_table)
        self.dispatch = dispatch_table(CATALOG, self.enabled)

    def _configure_rooms(self, rooms: list) -> None:
        self.room_types: dict[str, str] = {r.id: r.type for r in rooms}
        self.room_names: dict[str, str] = {r.id: r.name for r in rooms if r.name}
        adj: dict[str, set[str]] = {r.id: set() for r in rooms}
        for r in rooms:
            for a in r.adjacent:
                adj.setdefault(r.id, set()).add(a)
                adj.setdefault(a, set()).add(r.id)
        self.adjacent: dict[str, tuple[str, ...]] = {k: tuple(sorted(v)) for k, v in adj.items()}
        self.rooms_by_type: dict[str, list[str]] = {}
        for r in rooms:
            self.rooms_by_type.setdefault(r.type, []).append(r.id)

    def _configure_devices(self, devices: list) -> None:
        self.device_rooms: dict[str, tuple[str, ...]] = {}
        self.locker_purpose: dict[str, str] = {}
        self.exit_doors: set[str] = set()     # doors marked exit = true (ways out of the center)
        # Each device says what it covers (drivers/common/config.py DeviceBase): no kind is named here.
        for d in devices:
            self.device_rooms.update(d.covered_rooms())
            self.exit_doors.update(d.exit_doors())
            if "locker" in d.capabilities:
                self.locker_purpose[d.id] = d.purpose

    def reconfigure(self, config) -> list[Draft]:
        """Apply a reloaded config. Alarms of rules now disabled are cleared
        (returned drafts must be journaled); pending timers keep their
        deadlines; new thresholds apply to conditions that start from now on."""
        self.configure(config)
        out: list[Draft] = []
        for key in list(self.alarms):
            if key[0] not in self.enabled:
                out.append(self._clear(key, self.now))
        for tk in list(self.timers):
            if tk[0] not in self.enabled:
                del self.timers[tk]
        for code in list(self.memo):
            if code not in self.enabled:
                del self.memo[code]
        # Rules whose deadlines depend on the config (time limits) re-derive
        # them now, as a restart under the new config would (reload == restart).
        for code, fn in ON_RECONFIGURE.items():
            if code in self.enabled:
                out.extend(fn(self, self.now))
        alarm_states.reschedule(self)
        return out

    # ---- the contract --------------------------------------------------------------
    def apply(self, ev: Event) -> list[Draft]:
        if ev.type == "clock.stepped":
            self._clock_stepped(ev)
        elif ev.type == "clock.sync":
            self._clock_sync(ev)
        if self.clock_shift:
            ev = ev._replace(epoch=round((ev.epoch - self.clock_shift) * 1000) / 1000)
        t = ev.epoch
        heap = self._heap
        due = self.book.due
        out = self._advance(t) if (heap and heap[0][0] <= t) or (due is not None and due <= t) else []
        if self._stepped_out:
            out.extend(self._stepped_out)
            self._stepped_out = []
        if t > self.now:
            self.now = t
        else:
            t = self.now
        rules = self.dispatch.get(ev.type) if ev.source != "rules" or ev.type in RULE_FACTS else None
        try:
            if rules:
                self.event = ev
                self._touch(ev)
            self.state.fold(ev)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            # A malformed event (missing/ill-typed field) must not stop the
            # gateway's only writer; it is journaled anyway. Deterministic, so
            # replay skips it the same way.
            self.errors += 1
            log.warning("event seq %s (%s) not understood: %r", ev.seq, ev.type, e)
            return out
        if ev.type == "person.left":
            departed.note_departure(self, ev.data["person"], t)
        if ev.type in alarm_states.FOLDED:
            try:
                out.extend(alarm_states.fold(self, ev, t))
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                self.errors += 1
                log.warning("alarm event seq %s (%s) not understood: %r", ev.seq, ev.type, e)
        if ev.type == "camera.snapshot" and ev.source != "rules":
            out.extend(self._attach_snapshot(ev, t))
        if rules:
            for fn, suspects_only in rules:
                if suspects_only and not self.dirty_suspects:
                    continue
                try:
                    res = fn(self, ev, t)
                except Exception:                      # a rule bug must not stop the others
                    self.errors += 1
                    log.exception("rule %s failed on seq %s", getattr(fn, "__name__", fn), ev.seq)
                    continue
                if res:
                    out.extend(res)
        return out

    def _clock_stepped(self, ev: Event) -> None:
        d = ev.data if isinstance(ev.data, dict) else {}
        jump = d.get("journal_jump_s")
        jump = float(jump) if _number(jump) and jump > 0 else 0.0
        ahead = d.get("journal_ahead_s")
        if not (_number(ahead) and ahead >= 0):
            ahead = None
        if d.get("kind") == "correction" and ahead is not None:
            # after the correction journal time - true time = the journal's lead on the wall clock
            rebase = round(jump - ahead + self.clock_shift, 3)
            if rebase > 0:
                self.clock_shift = round(float(ahead), 3)
                try:
                    self._stepped_out = self._rebase(rebase, ev)
                except Exception:             # a rule's odd bookkeeping must not stop the writer
                    self.errors += 1
                    log.exception("clock correction: re-basing seq %s failed", ev.seq)
                self.journal_ahead = float(ahead)
                # what fell due within the jump is noticed now, stamped now: journal ts in order
                self.now = max(self.now, round(ev.epoch - self.clock_shift, 3))
                return
        if jump:
            self.clock_shift = round(self.clock_shift + jump, 3)
        if ahead is not None:
            self.journal_ahead = float(ahead)

    def _clock_sync(self, ev: Event) -> None:
        d = ev.data if isinstance(ev.data, dict) else {}
        synced = d.get("synchronised")
        if synced is False and self.clock_synced is not False:
            self.unsynced_from = (max(self.now, ev.epoch - self.clock_shift), self._n)
        elif synced is True:
            self.unsynced_from = None
        self.clock_synced = synced if isinstance(synced, bool) else None

    def _rebase(self, by: float, ev: Event) -> list[Draft]:
        """A correction: what was timed during the unsynchronised window moves ``by``
        forward (see the module docstring). Returns the re-derived alarms' drafts."""
        window = self.unsynced_from
        if window is None:
            return []
        lo, n0 = window
        hi = self.now + REBASE_MARGIN_S
        self.state = _shifted(self.state, lo, hi, by)
        self.memo = _shifted(self.memo, lo, hi, by)
        self.book = _shifted(self.book, lo, hi, by)
        for tk, (dl, n) in list(self.timers.items()):
            if n > n0 and dl >= lo:
                self.timers[tk] = (round(dl + by, 3), n)
        self._heap = [(dl, n, tk) for tk, (dl, n) in self.timers.items()]
        heapify(self._heap)
        alarm_states.reschedule(self)
        self.unsynced_from = (round(lo + by, 3), self._n)
        t = round(ev.epoch - self.clock_shift, 3)
        out: list[Draft] = []
        for code, fn in ON_RECONFIGURE.items():
            if code in self.enabled:
                out.extend(fn(self, t))
        return out

    def true_now(self, journal_now: float) -> float:
        """Journal time now -> the best estimate of true time now (= rule time): a default 到案."""
        return round((journal_now - self.clock_shift) * 1000) / 1000 if self.clock_shift else journal_now

    def journal_time(self, t: float) -> float:
        """Rule time -> journal time (what people and the envelope see)."""
        return round((t + self.clock_shift) * 1000) / 1000 if self.clock_shift else t

    def advance(self, now: float) -> list[Draft]:
        """Fire deadlines up to journal time ``now``."""
        if self.clock_shift:
            now -= self.clock_shift
        return self._advance(now)

    def _advance(self, now: float) -> list[Draft]:
        out: list[Draft] = []
        heap = self._heap
        timers = self.timers
        while heap and heap[0][0] <= now:
            d, n, tk = heappop(heap)
            cur = timers.get(tk)
            if cur is None or cur[1] != n:
                continue
            if self.book.due is not None and self.book.due <= d:
                # escalations/expiries due first (only before a live timer: a stale
                # heap entry must not decide how far they go, see alarm_states.fire)
                out.extend(alarm_states.fire(self, d, now))
            del timers[tk]
            code, subject, kind = tk
            if code not in self.enabled:
                continue
            if d < self.now:
                d = self.now            # armed in the past: fire now (never back in time)
            r = RULES[code]
            if r.timer is not None:
                res = r.timer(self, subject, kind, d)
            else:
                res = self._hold_fire(r, subject, d)
            if res:
                # Only a tick with an effect moves the clock: its alarm is journaled
                # at d, so replay reaches d at the same point (see module docstring).
                self.now = d
                out.extend(res)
                alarm_states.note_timer_alarms(self, res, d)
        if self.book.due is not None and self.book.due <= now:
            out.extend(alarm_states.fire(self, now))
        return out

    def next_deadline(self) -> float | None:
        heap = self._heap
        timers = self.timers
        due = self.book.due
        while heap:
            d, n, tk = heap[0]
            cur = timers.get(tk)
            if cur is not None and cur[1] == n:
                return self.journal_time(d if due is None or d < due else due)
            heappop(heap)
        return None if due is None else self.journal_time(due)

    def active(self) -> dict[str, dict[str, Any]]:
        """alarm_id -> alarm data of every alarm the rules hold active."""
        return {a["alarm_id"]: a for a in self.alarms.values()}

    # ---- what an event touched ---------------------------------------------------------
    def _touch(self, ev: Event) -> None:
        d = ev.data
        typ = ev.type
        st = self.state
        self._suspects = None
        if typ == "presence.entered" or typ == "presence.left":      # the hot path
            tag = d.get("tag") or ""
            pid = d.get("person")
            self.dirty_rooms = [d.get("room")]
            self.dirty_tags = [tag] if tag else []
            if pid:
                self.dirty_people = [pid]
                p = st.persons.get(pid)
                self.dirty_suspects = [pid] if p is not None and p.role == "suspect" else []
            else:
                self.dirty_people = [f"tag:{tag}"]
                self.dirty_suspects = []
            return
        rooms: list[str] = []
        people: list[str] = []
        tags: list[str] = []
        dom = typ.partition(".")[0]
        if dom == "person":
            pid = d.get("person")
            people = [pid]
            rooms = list(st.presence.get(pid, ()))
            tags = sorted(st.person_tags.get(pid, ()))
            former = st.former_tags.get(pid)
            if former:                       # bands unbound while he was here (rules.state)
                tags += sorted(former)
        elif dom == "wristband":
            tag = d.get("tag")
            tags = [tag]
            people = [d.get("person")]
            old = st.tag_owner.get(tag)
            if old is not None and old != d.get("person"):
                people.append(old)
            rooms = sorted(st.tag_rooms.get(tag, ()))
        elif dom == "tag":
            tag = d.get("tag")
            tags = [tag]
            owner = st.tag_owner.get(tag) or d.get("person")
            people = [owner] if owner else []
        elif dom in ("door", "camera", "recording", "identification"):
            rooms = [d.get("room")]
        elif dom == "device":
            rooms = list(self.device_rooms.get(d.get("device"), ()))
        self.dirty_rooms = rooms
        self.dirty_people = people
        self.dirty_tags = tags
        persons = st.persons
        sus = []
        for pid in people:
            p = persons.get(pid)
            if p is not None and p.role == "suspect":
                sus.append(pid)
        self.dirty_suspects = sus

    def touched_suspects(self) -> list[str]:
        """Suspects an event may have changed the situation of (event order, no dups)."""
        s = self._suspects
        if s is None:
            persons = self.state.persons
            seen: dict[str, None] = dict.fromkeys(self.dirty_suspects)
            rooms = self.state.rooms
            counts = self.state.counts
            for room in self.dirty_rooms:
                c = counts.get(room)
                if not c or not c.get("suspect"):
                    continue
                occ = rooms.get(room)
                if occ:
                    for who in occ:
                        p = persons.get(who)
                        if p is not None and p.role == "suspect":
                            seen[who] = None
            s = self._suspects = list(seen)
        return s

    # ---- helpers for rules ---------------------------------------------------------------
    def person(self, who: str):
        """The registered, not yet departed person ``who`` (None for tags and the departed)."""
        p = self.state.persons.get(who)
        if p is None or p.left:
            return None
        return p

    def label(self, who: str) -> str:
        p = self.state.persons.get(who)
        if p is not None and p.name:
            return f"{p.name}({who})"
        return who

    def room_label(self, room: str | None) -> str:
        if room is None:
            return "-"
        name = self.room_names.get(room)
        return f"{name}({room})" if name else room

    def mem(self, code: str) -> dict:
        """A rule's own bookkeeping (derived from events only, so replay rebuilds it)."""
        return self.memo[code]

    def alarm(self, code: str, subject: str) -> dict[str, Any] | None:
        return self.alarms.get((code, subject))

    def tracked(self, code: str, subject: str) -> bool:
        """A hold rule's subject has an alarm pending (timer) or active."""
        return (code, subject) in self.alarms or (code, subject, "") in self.timers

    def arm(self, code: str, subject: str, deadline: float, kind: str = "") -> None:
        self._n += 1
        tk = (code, subject, kind)
        self.timers[tk] = (deadline, self._n)
        heappush(self._heap, (deadline, self._n, tk))
        if len(self._heap) > 4096 and len(self._heap) > 4 * len(self.timers):
            self._heap = [(d, n, k) for k, (d, n) in self.timers.items()]
            heapify(self._heap)

    def disarm(self, code: str, subject: str, kind: str = "") -> None:
        self.timers.pop((code, subject, kind), None)

    def armed(self, code: str, subject: str, kind: str = "") -> float | None:
        v = self.timers.get((code, subject, kind))
        return v[0] if v is not None else None

    def hold(self, code: str, subject: str, t: float, facts: Facts | None,
             grace: float | None = None) -> list[Draft] | tuple:
        """The condition of (code, subject) is ``facts`` (None = false) at t.

        False: cancel the pending timer, clear an active alarm. True: raise
        after it has held for the grace time (the rule's ``grace_s`` unless
        given), update an active alarm whose persons or room changed."""
        key = (code, subject)
        tk = (code, subject, "")
        window = self.windows.get(code) if self.windows else None
        if facts is None:
            if tk in self.timers:
                del self.timers[tk]
                if window:
                    self._spell_end(code, subject, t)
            if key in self.alarms:
                return [self._clear(key, t)]
            return NONE
        a = self.alarms.get(key)
        if a is not None:
            if a["persons"] != facts.persons or a["room"] != facts.room:
                return [self._update(key, t, facts)]
            return NONE
        if tk in self.timers:
            return NONE
        if grace is None:
            attr = RULES[code].grace
            grace = getattr(self.settings[code], attr, 0) if attr else 0
        if grace <= 0:
            return [self._raise(key, t, facts)]
        if window:
            self.arm(code, subject, t + self._spell_start(code, subject, t, grace, window[0]))
            return NONE
        self.arm(code, subject, t + grace)
        return NONE

    # ---- grace periods that add up (settings window_s, min_absence_s) ------------------
    # A condition's spells (start, end) within the last ``window_s`` add up
    # towards the grace time, so stepping out 25 s, back 5 s, out 25 s... raises;
    # a spell shorter than ``min_absence_s`` (a tag flapping between two
    # stations, a door transit) does not count. Kept in memo[code]["_spells"]
    # (plain lists: checkpoints serialise them).
    def _spell_start(self, code: str, subject: str, t: float, grace: float, window: float) -> float:
        spells = self.memo[code].setdefault("_spells", {}).setdefault(subject, [])
        since = t - window
        while spells and spells[0][1] <= since:
            spells.pop(0)
        used = sum(end - max(start, since) for start, end in spells)
        spells.append([t, t])             # open: its end is set when the condition ends
        return max(grace - used, self.windows[code][1], 0.0)

    def _spell_end(self, code: str, subject: str, t: float) -> None:
        spells = self.memo[code].get("_spells", {}).get(subject)
        if not spells:
            return
        start = spells[-1][0]
        if t - start < self.windows[code][1]:
            spells.pop()                  # too short to count
        else:
            spells[-1][1] = t
        if not spells:
            del self.memo[code]["_spells"][subject]

    def _spells_reset(self, code: str, subject: str) -> None:
        spells = self.memo[code].get("_spells") if code in self.memo else None
        if spells:
            spells.pop(subject, None)

    def _hold_fire(self, r: Rule, subject: str, d: float) -> list[Draft] | tuple:
        if r.check is None or (r.code, subject) in self.alarms:
            return NONE
        facts = r.check(self, subject, d)
        if facts is None:
            return NONE
        self._spells_reset(r.code, subject)        # raised: its absences are spent
        return [self._raise((r.code, subject), d, facts)]

    def raise_(self, code: str, subject: str, t: float, facts: Facts,
               since: float | None = None) -> list[Draft]:
        """Raise now, or update the active alarm if anything changed. ``since``:
        when the condition began if that is a fact of the folded state (a legal
        deadline), so the alarm id does not depend on when it was noticed (a
        reload after the deadline and a restart then agree)."""
        key = (code, subject)
        a = self.alarms.get(key)
        if a is None:
            return [self._raise(key, t, facts, since)]
        if (a["persons"] != facts.persons or a["room"] != facts.room
                or a["details"] != facts.details):
            return [self._update(key, t, facts)]
        return []

    def clear(self, code: str, subject: str, t: float) -> list[Draft]:
        key = (code, subject)
        if key in self.alarms:
            return [self._clear(key, t)]
        return []

    def clear_because(self, code: str, subject: str, t: float, reason: str) -> list[Draft]:
        """Clear with ``details.cleared_reason``: the alarm stays in the record and
        says why it ended (e.g. a checkout approved after an escape)."""
        key = (code, subject)
        if key not in self.alarms:
            return []
        data = dict(self.alarms[key])
        data["details"] = dict(data.get("details") or {}, cleared_reason=reason)
        self.alarms[key] = data
        return [self._clear(key, t)]

    # ---- drafting ---------------------------------------------------------------------
    def _draft(self, type: str, data: dict[str, Any], t: float) -> Draft:
        return Draft(type, data, "rules", self.journal_time(t))

    def _data(self, code: str, aid: str, since: str, facts: Facts) -> dict[str, Any]:
        spec = CATALOG[code]
        zh, en = facts.text()
        basis = citations.basis_for(self, code, facts.persons, facts.details) if spec.legal else None
        return {"alarm_id": aid, "code": code, "severity": spec.severity, "room": facts.room,
                "persons": list(facts.persons), "since": since,
                "message": {"zh": f"{spec.zh}：{zh}", "en": f"{spec.en}: {en}"},
                "details": facts.details, "legal_basis": list(spec.legal_basis if basis is None else basis), "snapshot": None}

    def _raise(self, key: Key, t: float, facts: Facts, since_epoch: float | None = None) -> Draft:
        code, subject = key
        since = format_ts(self.journal_time(t if since_epoch is None else since_epoch))
        aid = alarm_id(code, subject, since)
        last = self._last_id.get(key)
        if last is not None and last.startswith(aid):   # raised, cleared, raised in one ms
            n = last[len(aid) + 1:]
            aid = f"{aid}-{int(n) + 1 if n.isdigit() else 2}"
        data = alarm_states.flag(self, key, self._data(code, aid, since, facts))
        self.alarms[key] = data
        self.by_id[aid] = key
        self._last_id[key] = aid
        return self._draft("alarm.raised", data, t)

    def _update(self, key: Key, t: float, facts: Facts) -> Draft:
        old = self.alarms[key]
        data = alarm_states.flag(self, key, self._data(key[0], old["alarm_id"], old["since"], facts))
        data["snapshot"] = old.get("snapshot")
        self.alarms[key] = data
        return self._draft("alarm.raised", data, t)

    def _attach_snapshot(self, ev: Event, t: float) -> list[Draft]:
        """视频联动: a camera took a picture for an active alarm (the daemon asks
        for one when a critical alarm is raised in a camera's room). The alarm
        is re-sent as ``alarm.raised`` with the same id and ``snapshot`` set;
        being an event-driven update, replay re-derives it the same way."""
        d = ev.data if isinstance(ev.data, dict) else {}
        key = self.by_id.get(d.get("alarm_id") or "")
        f = d.get("file")
        if key is None or not isinstance(f, str) or self.alarms[key].get("snapshot"):
            return []
        data = dict(self.alarms[key])
        data["snapshot"] = f
        self.alarms[key] = data
        return [self._draft("alarm.raised", data, t)]

    def _clear(self, key: Key, t: float) -> Draft:
        data = self.alarms.pop(key)
        self.by_id.pop(data["alarm_id"], None)
        return self._draft("alarm.cleared", dict(data), t)
