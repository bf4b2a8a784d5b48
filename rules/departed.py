"""Departed persons leave the folded state once nothing can refer to them (issue 24 item 4).

Before this, every suspect and visitor who ever came stayed in ``State.persons``
(with ``left = True``) for the life of the journal: +0.3 MB a day of state, RSS and
checkpoint in a busy center, forever.

Who is dropped: a suspect or visitor (officers and staff are kept: a departed
officer may still acknowledge or shelve alarms, and their number is the staff's)
whose stay ended (``person.left``) at least ``keep_s`` ago and to whom nothing open
refers:

* ``keep_s`` = the 连续传唤 window (``[rules.consecutive_summons] min_gap_h``, the
  only rule that reads a departed person's record: ``prev_left_at`` on a new
  registration), and never less than ``MIN_KEEP_S`` (48 h) so that a reload that
  lengthens the window within that margin still sees the earlier stay;
* no belongings assignment left open (items still in a compartment: the custody
  chain is not closed);
* no alarm or rule timer whose subject is the person, no active or standing
  (unacknowledged) alarm naming them (so every later update, escalation or clear
  of such an alarm still reads their name).

What a dropped person changes: a later registration of the same id is a first
stay (``prev_left_at`` None) — which for consecutive_summons is the same outcome
as a gap longer than the window; commands naming the id answer ``not_found``
(as for someone never registered) instead of "not present".

What else goes with them: their last alarm ids and grace spells; and
(``_sweep_leftovers``, at most once per ``RECHECK_S`` of event
time, from the same sweep): the records of bands nobody holds (``tag_seen``,
``tag_last_room``, ``tag_status``: 60 a day in bench/state_growth.py, whose bands are
never reused) once unseen for ``keep_s`` and referred to by no alarm, timer or rule
memo; and ``identity_left`` entries older than ``keep_s`` (a registration under that
identity reads them for the 连续传唤 gap only: older = no earlier stay, as for a dropped
person). A band bound again later starts afresh: its first presence or status fills
these in as they would for a new band.

Deterministic: the sweep runs inside the fold of ``person.left`` (a journaled event)
and reads only event times and folded state, so live, checkpoint + tail and a full
replay drop the same persons at the same point, and ``casegate replay`` gives the
same alarms. Bounded: each departure enqueues one id; each sweep pops from the
front while the front is old enough (the queue is in departure order), so the
queue holds about one window of departures plus those still referred to.
"""
from __future__ import annotations

MIN_KEEP_S = 48 * 3600.0
DROPPED_ROLES = frozenset({"suspect", "visitor"})
# Persons still referred to are looked at again at most this often (event time):
# a standing alarm can keep one for weeks; re-checking each on every departure
# would make a sweep O(those) every time.
RECHECK_S = 3600.0


def keep_seconds(engine) -> float:
    s = getattr(engine, "settings", {}).get("consecutive_summons")
    gap_h = getattr(s, "min_gap_h", 12.0) if s is not None else 12.0
    return max(MIN_KEEP_S, float(gap_h) * 3600.0)


def _referred(engine, pid: str) -> bool:
    st = engine.state
    if pid in st.belongings:
        return True
    for key in engine.alarms:
        if key[1] == pid:
            return True
    for tk in engine.timers:
        if tk[1] == pid:
            return True
    for a in st.active_alarms.values():
        if pid in (a.get("persons") or ()):
            return True
    for rec in engine.book.standing.values():     # cleared but not yet acknowledged, escalating
        if pid in (rec["data"].get("persons") or ()):
            return True
    return False


def note_departure(engine, pid: str, t: float) -> None:
    """``person.left`` of ``pid`` was folded at rule time ``t`` (monotonic): queue it,
    sweep what is due."""
    q = engine.departed       # pid -> (left_at, queued at, next look); insertion order = queued order
    q.pop(pid, None)
    p = engine.state.persons.get(pid)
    if p is not None and p.left and p.role in DROPPED_ROLES:
        q[pid] = (p.left_at, t, t)
    sweep(engine, t)


def sweep(engine, now: float) -> int:
    """Drop the queued departed persons due at ``now``; returns how many."""
    q = engine.departed
    keep = keep_seconds(engine)
    if not q:
        _sweep_leftovers(engine, now, keep)
        return 0
    persons = engine.state.persons
    gone: set[str] = set()
    later: list[tuple[str, float | None, float, float]] = []
    for pid in list(q):
        left_at, queued, look = q[pid]
        if queued + keep > now:
            break                            # queued order: the rest are younger
        if look > now:
            continue
        p = persons.get(pid)
        if p is None or not p.left or p.left_at != left_at:
            del q[pid]                       # came back (a new stay) or already gone
            continue
        if _referred(engine, pid):
            later.append((pid, left_at, queued, now + RECHECK_S))
            continue
        del q[pid]
        del persons[pid]
        gone.add(pid)
    for pid, left_at, queued, look in later:
        q[pid] = (left_at, queued, look)     # stays in place (dict order kept on update)
    if gone:
        _forget(engine, gone, now)
    _sweep_leftovers(engine, now, keep)
    return len(gone)


def _forget(engine, gone: set[str], now: float) -> None:
    """What the engine keeps per person besides State.persons, for the dropped ones."""
    # The last alarm id per (code, subject) only tells apart two raises in one ms;
    # the person's are days old: measured +7.5 kB a day in bench/state_growth.py.
    last = engine._last_id
    for key in [k for k in last if k[1] in gone]:
        del last[key]
    # Their grace spells (Engine._spell_start) that lie before the code's window_s:
    # the next start would prune them, and none ever comes. Measured +2 kB a day of
    # unattended_suspect spells in bench/state_growth.py.
    windows = getattr(engine, "windows", {})
    for code, m in engine.memo.items():
        spells = m.get("_spells")
        if not spells:
            continue
        since = now - windows.get(code, (0.0, 0.0))[0]
        for pid in gone:
            if pid in spells and all(end <= since for _, end in spells[pid]):
                del spells[pid]


def _mentioned(engine) -> set:
    """Every subject of an alarm or timer, every name in an alarm's data, every key of
    the rules' memos (two levels): what a band's or person's record may still serve."""
    out: set = set()
    for key in engine.alarms:
        out.add(key[1])
    for tk in engine.timers:
        out.add(tk[1])
    datas = list(engine.state.active_alarms.values()) + [r["data"] for r in engine.book.standing.values()]
    for d in datas:
        out.update(v for v in d.values() if isinstance(v, str))
        for v in d.values():
            if isinstance(v, (list, tuple)):
                out.update(x for x in v if isinstance(x, str))
            elif isinstance(v, dict):
                out.update(x for x in v.values() if isinstance(x, str))
    for m in engine.memo.values():
        for k, v in m.items():
            out.add(k)
            if isinstance(v, dict):
                out.update(v)
    return out


def _sweep_leftovers(engine, now: float, keep: float) -> None:
    """Band records nobody holds and identities' old departures (see the module doc)."""
    last = getattr(engine, "leftovers_swept_at", None)
    if last is not None and now - last < RECHECK_S:
        return
    engine.leftovers_swept_at = now
    st = engine.state
    old = now - keep
    stale = [t for t, seen in st.tag_seen.items()
             if seen <= old and t not in st.tag_owner and t not in st.former_owner and t not in st.bound_at
             and not st.tag_rooms.get(t) and f"tag:{t}" not in st.presence]
    stale += [t for t in st.tag_status if t not in st.tag_seen]      # (a status always sets seen)
    if stale:
        busy = _mentioned(engine)
        for t in stale:
            if t in busy:
                continue
            st.tag_seen.pop(t, None)
            st.tag_last_room.pop(t, None)
            st.tag_status.pop(t, None)
            st.tag_rooms.pop(t, None)
    idl = st.identity_left
    for h in [h for h, at in idl.items() if at <= old]:
        del idl[h]
    _forget_old_alarm_ids(engine, now)


def _forget_old_alarm_ids(engine, now: float) -> None:
    """The last alarm id of a (code, subject) that is neither raised nor standing unacknowledged
    tells apart only a raise in the same millisecond as that one (Engine._raise): once journal
    time has moved on it serves nothing. Rooms' and devices' keys are never dropped with a person: the 90-day soak
    measured +25 a day (661 at day 7, 2,057 at day 65)."""
    from rules.engine import alarm_id
    from rules.model import format_ts
    since = format_ts(engine.journal_time(now))
    last, standing = engine._last_id, engine.book.standing
    for key in [k for k, aid in last.items() if k not in engine.alarms and aid not in standing
                and not aid.startswith(alarm_id(k[0], k[1], since))]:
        del last[key]
