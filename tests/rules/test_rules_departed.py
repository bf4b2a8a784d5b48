"""Departed persons leave the folded state (issue 24 item 4, rules/departed.py): once the
连续传唤 window (at least 48 h) has passed and nothing open refers to them. Dropping them
changes no rule output: the same scenario with the sweep disabled produces the same
journal, replay (in process and `casegate replay --input`) equals live, and a restart from
a checkpoint taken between departure and drop ends in the same state."""
from __future__ import annotations

import pickle

import pytest

from gateway.checkpoint import engine_state, restore_engine
from rules import departed
from rules.engine import Engine
from rules.replay import replay_input
from helpers.scenario import H, T0, Scenario, bind, enter, leave, make_config, register, tag_of
from helpers.rules_replay import produced, replay_cli


def stay(t, pid, role="suspect"):
    """Registered at t, bound, checked out, through the exit (person.left derived)."""
    return [register(t, pid, role, case_type="criminal" if role == "suspect" else None),
            bind(t, pid), (t + 5, "person.checkout_approved", {"person": pid, "by": "O1"}),
            enter(t + 10, pid, "exit"), enter(t + 10, "O1", "exit"),
            leave(t + 120, pid, "exit"), leave(t + 121, "O1", "exit")]


def steps():
    return ([register(0, "O1", "officer"), bind(0, "O1")]
            + stay(0, "S1")                                   # leaves at ~0 h
            + [register(10, "V1", "visitor", visitor_kind="lawyer"), bind(10, "V1")]
            + stay(20, "V1", "visitor")
            # S2 leaves with his belongings still in compartment 3: custody not closed
            + [register(60, "S2", "suspect", case_type="criminal"), bind(60, "S2"),
               (70, "belongings.assigned", {"person": "S2", "locker": "locker-b1", "compartment": 3}),
               (80, "evidence.added", {"item": "E2000017C101", "locker": "locker-b1", "compartment": 3})]
            + stay(90, "S2")
            + stay(3 * H, "S3") + stay(3 * H + 3600, "S3")        # back within 12 h: 连续传唤
            + stay(30 * H, "S4")                                   # a departure: S1 is 30 h gone, kept
            + stay(50 * H, "S5")                                   # 50 h: S1, V1 dropped; S2 kept
            + stay(51 * H, "S1"))                                  # S1 again: a first stay now


def run(sweep: bool, monkeypatch=None) -> Scenario:
    if not sweep:
        monkeypatch.setattr(departed, "sweep", lambda engine, now: 0)
    s = Scenario(derive=True)
    s.run(steps())
    s.until(60 * H)
    return s


def test_departed_dropped_after_the_window_unless_referred(monkeypatch):
    s = Scenario(derive=True)
    s.run([x for x in steps() if x[0] < 30 * H + 200])
    persons = s.engine.state.persons
    assert persons["S1"].left and persons["V1"].left          # 30 h: still inside the window
    spells = s.engine.memo["unattended_suspect"].setdefault("_spells", {})
    spells["S1"] = [[T0 + 60.0, T0 + 100.0]]                   # an old grace spell of his
    s.run([x for x in steps() if 30 * H + 200 <= x[0] < 51 * H])
    assert "S1" not in persons and "V1" not in persons
    assert persons["S2"].left                                  # belongings still held
    assert "O1" in persons                                     # officers stay
    assert "S4" in persons and "S5" in persons                 # recent
    st = s.engine.state                                        # their bands' records go too
    for pid in ("S1", "V1", "S2"):
        assert tag_of(pid) not in st.tag_seen and tag_of(pid) not in st.tag_last_room
    assert tag_of("S4") in st.tag_seen and tag_of("O1") in st.tag_seen
    assert "S1" not in s.engine.memo["unattended_suspect"]["_spells"]    # and his spells
    assert [a["persons"] for a in s.raised("consecutive_summons")] == [["S3"]]
    assert not s.raised("unauthorized_exit")
    s.run([x for x in steps() if x[0] >= 51 * H])
    assert persons["S1"].prev_left_at is None                  # no earlier stay on record


def test_dropping_changes_no_rule_output(monkeypatch):
    with_sweep = run(True)
    kept = run(False, monkeypatch)
    assert "S1" in kept.engine.state.persons and "V1" not in with_sweep.engine.state.persons
    assert produced(with_sweep) == produced(kept)
    assert len(with_sweep.engine.state.persons) < len(kept.engine.state.persons)


def test_replay_and_checkpoint_restart_equal_live(tmp_path):
    live = run(True)
    out = replay_input(live.journal, live.config)
    assert [(e.ts, e.type, e.data) for e in out] == produced(live)
    cli = replay_cli(tmp_path, live.journal, None)
    assert [(e["ts"], e["type"], e["data"]) for e in cli] == produced(live)

    # A checkpoint at 40 h (S1 departed, not yet dropped), restored, the rest replayed.
    s = Scenario(derive=True)
    s.run([x for x in steps() if x[0] < 40 * H])
    blob = pickle.dumps(engine_state(s.engine))
    eng = Engine(make_config())
    restore_engine(eng, pickle.loads(blob))
    s.engine = eng
    s.run([x for x in steps() if x[0] >= 40 * H])
    s.until(60 * H)
    assert set(s.engine.state.persons) == set(live.engine.state.persons)
    assert s.engine.departed == live.engine.departed
    assert produced(s) == produced(live)


@pytest.mark.parametrize("gap_h", [12, 72])
def test_keep_follows_the_consecutive_summons_window(gap_h):
    s = Scenario(derive=True, rules={"consecutive_summons": {"min_gap_h": gap_h}})
    s.run([register(0, "O1", "officer"), bind(0, "O1")] + stay(0, "S1") + stay(60 * H, "S9")
          + stay(61 * H, "S1"))
    dropped = gap_h * H <= 60 * H
    assert ("S1" not in s.engine.state.persons or s.engine.state.persons["S1"].prev_left_at is None) == dropped
    assert bool(s.raised("consecutive_summons")) == (not dropped and gap_h == 72)


def test_a_standing_alarm_keeps_the_person_until_acknowledged():
    """At the exit before checkout: unauthorized_exit (critical) stands unacknowledged
    after he left; he stays while it does (its escalations still name him)."""
    s = Scenario(derive=True)
    s.run([register(0, "O1", "officer"), bind(0, "O1"), register(0, "S6", "suspect", case_type="criminal"),
           bind(0, "S6"), enter(10, "S6", "exit"), enter(10, "O1", "exit"),
           (100, "person.checkout_approved", {"person": "S6", "by": "O1"}), leave(120, "S6", "exit")]
          + stay(50 * H, "S7"))
    (alarm,) = s.raised("unauthorized_exit")
    assert s.engine.state.persons["S6"].left and "S6" in s.engine.departed
    assert ("unauthorized_exit", "S6") in s.engine._last_id
    s.run([(50 * H + 600, "alarm.acknowledged", {"alarm_id": alarm["alarm_id"], "by": "O1"})]
          + stay(52 * H, "S8"))
    assert "S6" not in s.engine.state.persons and "S6" not in s.engine.departed
    assert not [k for k in s.engine._last_id if k[1] == "S6"]


def test_a_band_an_alarm_or_timer_still_names_keeps_its_records():
    s = Scenario(derive=True)
    s.run([x for x in steps() if x[0] < 30 * H + 200])
    st, later = s.engine.state, s.engine.now + 50 * H
    named, timed = tag_of("S1"), tag_of("V1")
    s.engine.alarms[("tag_low_battery", named)] = {}
    s.engine.timers[("tag_signal_lost", timed, "")] = (later + H, 0)
    departed._sweep_leftovers(s.engine, later, departed.keep_seconds(s.engine))
    assert named in st.tag_seen and timed in st.tag_seen
    assert tag_of("S2") not in st.tag_seen                         # nothing names it
    # at most once an hour of event time
    del s.engine.alarms[("tag_low_battery", named)]
    departed._sweep_leftovers(s.engine, later + 60, departed.keep_seconds(s.engine))
    assert named in st.tag_seen
    departed._sweep_leftovers(s.engine, later + departed.RECHECK_S, departed.keep_seconds(s.engine))
    assert named not in st.tag_seen


def test_a_devices_last_alarm_id_is_forgotten_once_the_alarm_is_over():
    """Not only persons' keys: a device's (code, subject) -> last alarm id stays while its
    alarm is raised or standing, and leaves at the next sweep after (at someone's departure,
    at most hourly; the 90-day soak: +25 a day of rooms' and devices' keys before)."""
    s = Scenario(derive=True)
    s.run([register(0, "O1", "officer"), bind(0, "O1")])
    s.step(20, "device.offline", {"device": "doors-a", "error": "timeout"}, source="doors-a")
    (alarm,) = s.raised("device_offline")
    keys = [k for k in s.engine._last_id if k[0] == "device_offline"]
    assert len(keys) == 1
    s.step(30, "device.online", {"device": "doors-a"}, source="doors-a")
    assert s.cleared("device_offline")
    s.run(stay(3 * H, "S1"))
    standing = alarm["alarm_id"] in s.engine.book.standing
    assert (keys[0] in s.engine._last_id) == standing      # an unacknowledged one keeps its key
    if standing:
        s.step(5 * H, "alarm.acknowledged", {"alarm_id": alarm["alarm_id"], "by": "O1"}, source="cli")
        s.run(stay(6 * H, "S2"))
    assert keys[0] not in s.engine._last_id
    s.step(9 * H, "device.offline", {"device": "doors-a", "error": "timeout"}, source="doors-a")
    again = s.raised("device_offline")[-1]
    assert again["alarm_id"] != alarm["alarm_id"] and keys[0] in s.engine._last_id
