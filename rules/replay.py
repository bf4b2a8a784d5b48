"""Replay (`casegate replay`), trajectories (`casegate trace`) and the
restart reconciliation of alarms.

Replay runs a fresh :class:`rules.engine.Engine` over journaled events exactly
as the core feeds it live: every event through ``apply``, drafts sealed and
fed back before the next input. Journaled rule output (``source == "rules"``)
is not applied - it is regenerated - but its time is used as a timer tick
(``engine.advance(ev.epoch)``): a live alarm at time D means the live timer
had reached D, so replay reaches D at the same point of the sequence. This
keeps replay identical to live even when a later event is back-dated.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator

from gateway.events import GENESIS, Draft, Event, parse_ts, seal


class Replayer:
    """Feeds events into an engine the way the core does; collects its alarms."""

    def __init__(self, engine, center: str):
        self.engine = engine
        self.center = center
        self.prev = GENESIS
        self.produced: list[Event] = []

    def feed(self, ev: Event) -> list[Event]:
        """Apply one journaled event; return the rule events it caused (sealed, applied)."""
        eng = self.engine
        if ev.source == "rules":
            drafts = eng.advance(ev.epoch)
        else:
            drafts = eng.apply(ev)
        return self._loop(drafts, ev.seq)

    def tick(self, now: float) -> list[Event]:
        """The live timer: advance to ``now`` (the engine fires due deadlines at their time)."""
        return self._loop(self.engine.advance(now), self.engine.state.last_seq)

    def _loop(self, drafts: list[Draft], seq: int) -> list[Event]:
        if not drafts:
            return []
        out: list[Event] = []
        pending = list(drafts)
        i = 0
        while i < len(pending):
            d = pending[i]
            i += 1
            e = seal(d, seq, self.center, self.prev,
                     d.ts if d.ts is not None else self.engine.journal_time(self.engine.now))
            self.prev = e.hash
            out.append(e)
            pending.extend(self.engine.apply(e))
        self.produced.extend(out)
        return out


def replay(events: Iterable[Event], config) -> list[Event]:
    """Re-run the rules over journaled events; return the alarm events produced."""
    from rules.engine import Engine
    r = Replayer(Engine(config), config.center.id)
    for ev in events:
        r.feed(ev)
    return r.produced


def rebuild(engine, events: Iterable[Event], center: str,
            journaled: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Restart = replay: feed journaled events into ``engine``; return the
    alarms the journal had active (for :func:`reconcile`). From a checkpoint,
    ``events`` is the tail and ``journaled`` the alarms active at the checkpoint."""
    journaled = dict(journaled or {})
    r = Replayer(engine, center)
    for ev in events:
        if ev.source == "rules":
            if ev.type == "alarm.raised":
                journaled[ev.data["alarm_id"]] = ev.data
            elif ev.type == "alarm.cleared":
                journaled.pop(ev.data["alarm_id"], None)
        r.feed(ev)
    return journaled


def reconcile(engine, journaled_active: dict[str, dict[str, Any]]) -> list[Draft]:
    """After a restart-replay (the config may have changed): clear what the
    journal has active but the rules do not, raise what the rules have active
    but the journal does not, re-send what differs. Time: the engine's clock.

    A journaled alarm's ``since`` proves the live timer had reached that time,
    so the engine is first advanced to the latest one (a caller that skipped
    journaled rule events without ticking, like ``Core.rebuild``, would
    otherwise see a timer alarm as missing and clear + re-raise it)."""
    if journaled_active:
        horizon = max(parse_ts(a["since"]) for a in journaled_active.values() if a.get("since"))
        if horizon > engine.now:
            _fold_back(engine, engine.advance(horizon))
    t = engine.journal_time(engine.now)
    mine = engine.active()
    out: list[Draft] = []
    for aid in sorted(journaled_active):
        if aid not in mine:
            data = {k: v for k, v in journaled_active[aid].items() if k != "acknowledged"}
            details = dict(data.get("details") or {})
            details["reconciled"] = True
            data["details"] = details
            out.append(Draft("alarm.cleared", data, "rules", t))
    for aid in sorted(mine):
        j = journaled_active.get(aid)
        data = mine[aid]
        if j is None or {k: v for k, v in j.items() if k != "acknowledged"} != data:
            out.append(Draft("alarm.raised", data, "rules", t))
    return out


def _fold_back(engine, drafts: list[Draft]) -> None:
    """Regenerated alarms: fold them into the engine (off-chain, like Core._feed_replay)."""
    center = getattr(getattr(engine.config, "center", None), "id", "")
    pending = list(drafts)
    while pending:
        d = pending.pop(0)
        pending.extend(engine.apply(seal(d, engine.state.last_seq, center, "",
                                         d.ts or engine.journal_time(engine.now))))


def trace(events: Iterable[Event], person: str) -> list[dict[str, Any]]:
    """The rooms ``person`` was in (轨迹回放): [{room, entered, left, seconds}],
    in order of entering; ``left``/``seconds`` are None while still there.
    Times are RFC 3339 UTC. A stay ends at presence.left or person.left."""
    out: list[dict[str, Any]] = []
    open_: dict[str, tuple[int, float]] = {}          # room -> (index in out, entered epoch)
    for ev in events:
        typ = ev.type
        if typ == "presence.entered":
            d = ev.data
            if d.get("person") != person:
                continue
            room = d.get("room")
            if room in open_:
                continue
            open_[room] = (len(out), ev.epoch)
            out.append({"room": room, "entered": ev.ts, "left": None, "seconds": None})
        elif typ == "presence.left":
            d = ev.data
            if d.get("person") != person:
                continue
            _close(out, open_, d.get("room"), ev)
        elif typ == "person.left" and ev.data.get("person") == person:
            for room in list(open_):
                _close(out, open_, room, ev)
    return out


def _close(out, open_, room, ev) -> None:
    v = open_.pop(room, None)
    if v is None:
        return
    i, since = v
    out[i]["left"] = ev.ts
    out[i]["seconds"] = round(max(0.0, ev.epoch - since), 3)


def alarm_rows(events: Iterable[Event]) -> Iterator[tuple[str, str, str, str, tuple[str, ...]]]:
    """(type, alarm_id, code, since, persons) of alarm events - for comparisons and printing."""
    for e in events:
        if e.type.startswith("alarm."):
            d = e.data
            yield (e.type, d["alarm_id"], d["code"], d["since"], tuple(d.get("persons") or ()))


__all__ = ["Replayer", "replay", "rebuild", "reconcile", "trace", "alarm_rows"]
