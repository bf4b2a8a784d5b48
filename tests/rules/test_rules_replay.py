"""Replay equality, restart (rebuild + reconcile), trajectories."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.rule_cases import CASES
from helpers.rules_replay import _setup, _to_events, step
from rules.model import GENESIS, Draft, seal
from rules.engine import Engine
from rules.replay import Replayer, alarm_rows, rebuild, reconcile, replay, trace
from helpers.rules_checks import check_indexes  # at import: importing it inside @given nests @given
from helpers.scenario import T0, Scenario, arrive, enter, leave, make_config, move

INT = "interrogation-1"


def rows(events):
    return [(typ, aid, code, since, persons) for typ, aid, code, since, persons in alarm_rows(events)]


def live(steps, rules=None, until=None, lag=0.3):
    s = Scenario(make_config(rules), lag=lag)
    s.run(steps)
    if until is not None:
        s.until(until)
    return s


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_replay_equals_live(c):
    s = live(c.steps, c.rules, c.until)
    assert rows(replay(s.journal, s.config)) == rows(s.alarm_events)


@pytest.mark.parametrize("lag", [0.0, 0.5, 0.999])
def test_timer_lag_does_not_change_alarms(lag):
    c = next(c for c in CASES if c.id == "rest_overdue:4 h continuous")
    base = live(c.steps, c.rules, c.until, lag=0.3)
    other = live(c.steps, c.rules, c.until, lag=lag)
    assert rows(other.alarm_events) == rows(base.alarm_events)


def test_replay_with_acknowledgements():
    s = Scenario()
    s.run(arrive(0, "S1", "suspect") + arrive(0, "O1", "officer") + [enter(10, "S1", "waiting-1")])
    s.until(100)
    (a,) = s.active("unattended_suspect")
    ack = dict(a, by="O1", note="on my way")
    s.step(110, "alarm.acknowledged", ack, source="mqtt:central")
    assert s.engine.state.active_alarms[a["alarm_id"]]["acknowledged"]["by"] == "O1"
    assert s.active("unattended_suspect"), "an acknowledgement does not clear"
    s.step(200, *enter(200, "O1", "waiting-1")[1:])
    assert rows(replay(s.journal, s.config)) == rows(s.alarm_events)


def test_replay_uses_journaled_alarm_times_as_timer_ticks():
    """A back-dated event after a timer alarm: replay must see the alarm first, as live did."""
    s = Scenario()
    s.run(arrive(0, "S1", "suspect") + arrive(0, "O1", "officer") + [enter(10, "S1", "waiting-1")])
    s.until(80)                                  # unattended raised at 70, live
    # the zone reader reports late: the officer had entered at 65 (stamped 65, journaled after)
    s.step(65, *enter(65, "O1", "waiting-1")[1:])
    assert [x[0] for x in s.events("unattended_suspect")] == ["alarm.raised", "alarm.cleared"]
    assert s.events("unattended_suspect")[1][2] == 70.0   # evaluated at the engine clock
    assert rows(replay(s.journal, s.config)) == rows(s.alarm_events)


# ---- restart: rebuild + reconcile ---------------------------------------------------------
def restart(journal, config):
    eng = Engine(config)
    journaled = rebuild(eng, journal, config.center.id)
    return eng, journaled, reconcile(eng, journaled)


LONE = arrive(0, "S1", "suspect", case_type="criminal") + arrive(0, "O1", "officer") + \
    [enter(100, "S1", INT), enter(100, "O1", INT)]


def test_restart_same_config_reconciles_nothing():
    s = live(LONE, until=200)
    eng, journaled, drafts = restart(s.journal, s.config)
    assert drafts == []
    assert set(eng.active()) == set(journaled) == {a["alarm_id"] for a in s.active()}
    assert eng.state.active_alarms.keys() == s.engine.state.active_alarms.keys()


def test_restart_with_rule_disabled_clears_it():
    s = live(LONE, until=200)
    (a,) = s.active("lone_interrogation")
    cfg = make_config({"lone_interrogation": {"enabled": False}, "legal_disabled_reason": "test: switched off for this test"})
    eng, journaled, drafts = restart(s.journal, cfg)
    assert [(d.type, d.data["alarm_id"]) for d in drafts] == [("alarm.cleared", a["alarm_id"])]
    assert drafts[0].data["details"]["reconciled"] is True


def test_restart_with_rule_enabled_raises_it_once():
    s = live(LONE + [(300, "door.closed", {"door": "d", "room": "corridor"})],
             {"lone_interrogation": {"enabled": False}, "legal_disabled_reason": "test: switched off for this test"})
    assert s.active("lone_interrogation") == []
    cfg = make_config()
    eng, journaled, drafts = restart(s.journal, cfg)
    assert [(d.type, d.data["code"], d.data["since"]) for d in drafts] == \
        [("alarm.raised", "lone_interrogation", "2026-11-26T00:02:10.000Z")]
    assert drafts[0].ts == T0 + 300            # reconciled at the engine's clock
    # journal the reconciliation like the core does, restart again: nothing left to do
    journal = list(s.journal)
    prev, seq = journal[-1].hash, journal[-1].seq
    for d in drafts:
        seq += 1
        ev = seal(d, seq, cfg.center.id, prev, d.ts)
        prev = ev.hash
        journal.append(ev)
        eng.apply(ev)
    _, _, again = restart(journal, cfg)
    assert again == []


def test_restart_after_downtime_fires_missed_deadlines_at_their_time():
    s = live(arrive(0, "S1", "suspect") + [enter(10, "S1", "waiting-1")])   # nothing fired yet
    eng, journaled, drafts = restart(s.journal, s.config)
    assert drafts == []
    late = eng.advance(T0 + 3600)            # the gateway was down for an hour
    codes = [(d.data["code"], d.ts - T0) for d in late]
    assert ("unattended_suspect", 70.0) in codes


def test_rebuild_like_the_core_matches():
    """gateway.core.Core.rebuild skips journaled rule events without ticking; without
    back-dated events that gives the same engine state."""
    c = next(c for c in CASES if c.id == "officer_left_interrogation:out 100 s while a colleague stays")
    s = live(c.steps, c.rules, c.until)
    eng = Engine(s.config)
    for ev in s.journal:
        if ev.source == "rules":
            if ev.type == "alarm.escalated":
                # lifecycle timers (escalation) need the tick Replayer.feed gives them
                for d in eng.advance(ev.epoch):
                    eng.apply(seal(d, ev.seq, "x", "", d.ts))
            continue
        pending = [ev]
        while pending:
            for d in eng.apply(pending.pop(0)):
                pending.append(seal(d, ev.seq, "x", "", d.ts))
    assert eng.active() == s.engine.active()
    assert eng.next_deadline() == s.engine.next_deadline()


# ---- trace ----------------------------------------------------------------------------------
def test_trace():
    steps = arrive(0, "S1", "suspect") + [enter(10, "S1", "entrance"), move(70, "S1", "entrance", "security-1"),
                                          enter(75, "S1", "corridor"), leave(100, "S1", "corridor"),
                                          (500, "person.left", {"person": "S1"})]
    s = live(steps)
    assert trace(s.journal, "S1") == [
        {"room": "entrance", "entered": "2026-11-26T00:00:10.000Z", "left": "2026-11-26T00:01:10.000Z",
         "seconds": 60.0},
        {"room": "security-1", "entered": "2026-11-26T00:01:10.000Z", "left": "2026-11-26T00:08:20.000Z",
         "seconds": 430.0},
        {"room": "corridor", "entered": "2026-11-26T00:01:15.000Z", "left": "2026-11-26T00:01:40.000Z",
         "seconds": 25.0},
    ]
    assert trace(s.journal, "nobody") == []
    s2 = live(arrive(0, "S2", "suspect") + [enter(10, "S2", "waiting-1")])
    assert trace(s2.journal, "S2") == [{"room": "waiting-1", "entered": "2026-11-26T00:00:10.000Z",
                                        "left": None, "seconds": None}]


# ---- property: any event sequence replays identically ------------------------------------------
@settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(step, st.sampled_from([0.0, 0.5, 3.0, 20.0, 45.0, 400.0])), max_size=60))
def test_property_replay_equals_live(script):
    s = Scenario()
    s.run(_setup() + _to_events(script))
    s.until(s.engine.now - T0 + 5 * 3600)
    assert rows(replay(s.journal, s.config)) == rows(s.alarm_events)
    check_indexes(s.engine.state)
    # every raised alarm is cleared at most once, never cleared unless raised
    open_: set[str] = set()
    for e in s.conditions():
        aid = e.data["alarm_id"]
        if e.type == "alarm.raised":
            open_.add(aid)
        else:
            assert aid in open_
            open_.remove(aid)
    assert open_ == {a["alarm_id"] for a in s.engine.alarms.values()}
    assert set(s.engine.state.active_alarms) == open_
    # alarm times never go backwards in the journal
    times = [e.epoch for e in s.alarm_events]
    assert times == sorted(times)


def test_replayer_chains_its_output():
    c = next(c for c in CASES if c.id == "lone_interrogation:one officer")
    s = live(c.steps, c.rules, c.until)
    r = Replayer(Engine(s.config), "test-center")
    for ev in s.journal:
        r.feed(ev)
    prev = GENESIS
    for e in r.produced:
        assert e.prev == prev
        prev = e.hash


def test_replay_ignores_alarm_drafts_in_input():
    """Journaled rule events are regenerated, never trusted: a forged alarm in the input is dropped."""
    s = live(arrive(0, "O1", "officer"))
    forged = seal(Draft("alarm.raised", {"alarm_id": "x:1", "code": "sos", "severity": "critical", "room": None,
                                         "persons": [], "since": "2026-11-26T00:00:00.000Z",
                                         "message": {"zh": "", "en": ""}, "details": {}, "snapshot": None},
                        "rules", T0 + 5), 99, "test-center", s.journal[-1].hash, T0 + 5)
    assert [r for r in rows(replay(s.journal + [forged], s.config)) if r[2] == "sos"] == []


@settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(step, st.sampled_from([-15.0, -2.0, 0.0, 0.5, 3.0, 20.0, 45.0, 400.0])), max_size=60))
def test_property_back_dated_events_replay_equal(script):
    """Drivers may stamp an event earlier than the one before (a zone reader's
    presence timeout): live and replay still agree."""
    s = Scenario()
    s.run(_setup() + _to_events(script))
    s.until(s.engine.now - T0 + 5 * 3600)
    assert rows(replay(s.journal, s.config)) == rows(s.alarm_events)


def test_camera_snapshot_attaches_to_its_alarm_and_survives_updates_and_replay():
    """视频联动: camera.snapshot [alarm_id] re-sends the active alarm with ``snapshot``
    once; a later update (persons changed) keeps it; replay derives the same."""
    s = Scenario()
    s.run(arrive(0, "S1", "suspect") + arrive(0, "O1", "officer") + arrive(0, "S2", "suspect", case_id="c2"))
    s.run([enter(10, "S1", INT), enter(10, "O1", INT)])
    s.until(100)
    (a,) = s.active("lone_interrogation")
    assert a["snapshot"] is None
    aid = a["alarm_id"]
    pic = "/var/lib/casegate/snapshots/cam-int1-x-1-alarm.jpg"
    n = len(s.alarm_events)
    s.step(101, "camera.snapshot", {"camera": "cam-int1", "room": INT, "file": pic,
                                    "reason": "alarm", "alarm_id": aid}, source="cam-int1")
    new = s.alarm_events[n:]
    assert [(e.type, e.data["alarm_id"], e.data["snapshot"], e.data["since"]) for e in new] == [
        ("alarm.raised", aid, pic, a["since"])]
    assert s.engine.state.active_alarms[aid]["snapshot"] == pic
    # a second picture for the same alarm, a picture of an unknown alarm, a command snapshot: nothing
    for t, extra in ((102, {"alarm_id": aid}), (103, {"alarm_id": "lone_interrogation:00"}), (104, {})):
        s.step(t, "camera.snapshot", {"camera": "cam-int1", "room": INT, "file": f"{pic}{t}",
                                      "reason": "alarm" if extra else "command", **extra}, source="cam-int1")
    assert len(s.alarm_events) == n + 1
    # S2 is brought in too: the update names both suspects and keeps the picture
    s.run([enter(120, "S2", INT)])
    s.until(300)
    (a2,) = s.active("lone_interrogation")
    assert a2["alarm_id"] == aid and a2["snapshot"] == pic and {"S1", "S2"} <= set(a2["persons"])
    assert len(s.alarm_events) > n + 1
    assert rows(replay(s.journal, s.config)) == rows(s.alarm_events)
    assert [e.data.get("snapshot") for e in replay(s.journal, s.config)] == \
        [e.data.get("snapshot") for e in s.alarm_events]
