"""The engine inside the real gateway core: live timer, journal, restart = replay."""
from __future__ import annotations

from gateway.config import parse_config
from gateway.core import Core
from rules.model import Draft, format_ts
from gateway.journal import Journal, iter_events, open_reader
from rules.engine import Engine
from rules.replay import alarm_rows, replay
from helpers.rules_replay import _setup
from helpers.scenario import DEVICES, ROOMS, T0, Scenario, arrive, enter
from helpers.polling import poll


def wait_for(pred, timeout=5.0) -> bool:
    return bool(poll(pred, timeout))


def config(tmp_path, rules=None):
    return parse_config({"center": {"id": "t-center"}, "storage": {"dir": str(tmp_path / "state")},
                         "mqtt": {"enabled": False}, "rooms": ROOMS, "devices": DEVICES, "rules": rules or {}})


def journal_events(cfg):
    conn = open_reader(cfg.journal_path)
    try:
        return list(iter_events(conn))
    finally:
        conn.close()


def start(cfg, clock):
    j = Journal(cfg.journal_path, cfg.storage.synchronous)
    eng = Engine(cfg)
    core = Core(cfg, j, eng, clock=lambda: clock[0])
    core.rebuild()
    core.start()
    return j, eng, core


def test_live_timer_restart_and_reconcile(tmp_path):
    cfg = config(tmp_path)
    clock = [T0]
    j, eng, core = start(cfg, clock)
    for t, typ, data in arrive(0, "S1", "suspect") + [enter(10, "S1", "waiting-1")]:
        clock[0] = T0 + t
        core.submit(Draft(typ, data, "test", T0 + t)).result(5)
    clock[0] = T0 + 75                       # the core's timer sees the 70 s deadline pass
    assert wait_for(lambda: any(a["code"] == "unattended_suspect" for a in eng.active().values()))
    core.stop()
    j.close()
    evs = journal_events(cfg)
    raised = [e for e in evs if e.type == "alarm.raised" and e.data["code"] == "unattended_suspect"]
    assert len(raised) == 1 and raised[0].epoch == T0 + 70 and raised[0].data["since"] == "2026-11-26T00:01:10.000Z"
    live_rows = list(alarm_rows(e for e in evs if e.source == "rules"))
    assert list(alarm_rows(replay(evs, cfg))) == live_rows

    # restart with the same config: same alarms, nothing reconciled
    j2, eng2, core2 = start(cfg, clock)
    core2.call(lambda c: (None, [])).result(20)   # queued after whatever the restart caught up: all processed
    core2.stop()
    j2.close()
    assert eng2.active() == eng.active()
    assert [e for e in journal_events(cfg) if e.source == "rules"] == [e for e in evs if e.source == "rules"]

    # restart with the rule disabled: the journaled alarm is cleared
    cfg3 = config(tmp_path, {"unattended_suspect": {"enabled": False}, "legal_disabled_reason": "test: switched off for this test"})
    j3, eng3, core3 = start(cfg3, clock)
    assert wait_for(lambda: any(e.type == "alarm.cleared" for e in journal_events(cfg3)))
    core3.stop()
    j3.close()
    cleared = [e for e in journal_events(cfg3) if e.type == "alarm.cleared"]
    assert [e.data["alarm_id"] for e in cleared] == [raised[0].data["alarm_id"]]


def test_a_tick_with_an_expiry_and_an_alarm_is_journaled_as_the_scenario_and_replay_order_it(tmp_path):
    """The real core, not the Scenario harness (tests/rules/test_alarm_states.py
    test_shelve_at_a_timer_instant_replays_in_the_live_order): at 00:01:01 the shelf of
    tag_signal_lost expires and S1's unattended_suspect falls due in one timer tick. The core
    journals the unshelve and the tag alarms it re-sends before unattended_suspect; the Scenario
    and replay give the same journal order."""
    cfg = config(tmp_path)
    clock = [T0]
    j, eng, core = start(cfg, clock)
    shelve = (1, "alarm.shelved", {"code": "tag_signal_lost", "scope": None, "until": format_ts(T0 + 61),
                                   "reason": "x", "by": "O1"}, "mqtt:central")
    steps = [s + ("test",) for s in _setup() + [enter(1, "S1", "waiting-1")]] + [shelve]
    clock[0] = T0 + 1                        # each input carries its own time; no deadline before 60
    for r in [core.submit(Draft(typ, data, source, T0 + t)) for t, typ, data, source in steps]:
        r.result(20)
    clock[0] = T0 + 62                       # one tick: the tag timers (60), the expiry and S1's timer (61)
    core.call(lambda c: (None, [])).result(20)   # wakes the writer: its batch starts with that tick
    assert any(a["code"] == "unattended_suspect" for a in eng.active().values())
    core.stop()
    j.close()
    evs = journal_events(cfg)
    live = list(alarm_rows(e for e in evs if e.source == "rules"))
    i = [r[0] for r in live].index("alarm.unshelved")      # the tick at 00:01:01: the expiry, its
    assert [(r[0], r[2]) for r in live[i:]] == [("alarm.unshelved", "tag_signal_lost")] + \
        [("alarm.raised", "tag_signal_lost")] * 6 + [("alarm.raised", "unattended_suspect")]   # re-sends, then S1
    assert list(alarm_rows(replay(evs, cfg))) == live
    s = Scenario(cfg)
    s.run(steps)
    s.until(62)
    assert list(alarm_rows(s.alarm_events)) == live
