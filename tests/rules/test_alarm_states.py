"""Alarm lifecycle (rules/alarm_states.py) on the injectable clock: ISA-18.2
states (ack before / after clear), escalation, shelving, maintenance - each
also through replay and restart (rebuild), since they are folds of events."""
from __future__ import annotations

from rules.model import format_ts
from rules.engine import Engine
from rules.replay import alarm_rows, rebuild, reconcile, replay
from helpers.scenario import DEVICES, ROOMS, T0, Scenario, arrive, enter, parse_config

INT = "interrogation-1"


def cfg(alarms: dict | None = None, rules: dict | None = None):
    # The lone interrogations here happen in an unrecorded room: interrogation_not_recorded
    # (its own escalations) would interleave with the lone_interrogation ones under test.
    rules = {"interrogation_not_recorded": {"enabled": False}, "legal_disabled_reason": "test: switched off for this test", **(rules or {})}
    return parse_config({"center": {"id": "test-center"}, "rooms": ROOMS, "devices": DEVICES,
                         "rules": rules, "alarms": alarms or {}})


def rows(events):
    return list(alarm_rows(events))


def lone(s: Scenario, t_in=100, t_out=200):
    """A lone interrogation: lone_interrogation raised at t_in+30, cleared at t_out
    (None: still going; the script is run up to t_in+30 only)."""
    s.run(arrive(0, "S1", "suspect", case_type="criminal") + arrive(0, "O1", "officer") +
          arrive(0, "O2", "officer") + arrive(0, "V1", "visitor") +
          [enter(t_in, "S1", INT), enter(t_in, "O1", INT)])
    if t_out is None:
        s.until(t_in + 31)
    else:
        s.run([enter(t_out, "O2", INT)])
    (a,) = s.raised("lone_interrogation")
    return a


def ack(s: Scenario, t, a, by="O1", note=None):
    return s.step(t, "alarm.acknowledged", dict(a, by=by, note=note), source="mqtt:central")


def restart_book(s: Scenario):
    eng = Engine(s.config)
    journaled = rebuild(eng, s.journal, s.config.center.id)
    assert reconcile(eng, journaled) == []
    return eng


def standing(eng, code="lone_interrogation") -> dict:
    """The standing alarms of one code (other rules raise tag alarms etc. in these scripts)."""
    return {aid: (r["active"], r["ack"]["by"] if r["ack"] else None, r["level"])
            for aid, r in eng.book.standing.items() if r["data"]["code"] == code}


def listed(eng, code="lone_interrogation") -> list[dict]:
    return [x for x in eng.book.listing() if x["code"] == code]


# ---- states ---------------------------------------------------------------------------------
def test_ack_after_clear_leaves_the_standing_list_and_survives_replay_and_restart():
    s = Scenario(cfg({"escalate_after_s": 1000}))
    a = lone(s)
    s.until(300)
    aid = a["alarm_id"]
    assert s.cleared("lone_interrogation")                          # cleared at 200 ...
    assert standing(s.engine) == {aid: (False, None, 0)}           # ... and still unacknowledged
    (x,) = listed(s.engine)
    assert (x["active"], x["acknowledged"], x["shelved"]) == (False, False, False)
    assert x["alarm_id"] == aid and x["message"] == a["message"]
    # restart before the ack: the cleared-unacked alarm is still standing
    assert standing(restart_book(s)) == standing(s.engine)
    ack(s, 400, a)
    assert standing(s.engine) == {}
    assert s.engine.book.recent_acked == {aid: "O1"}
    assert rows(replay(s.journal, s.config)) == rows(s.alarm_events)
    eng = restart_book(s)
    assert standing(eng) == {} and eng.book.recent_acked == {aid: "O1"}
    assert standing(eng, "tag_signal_lost") == standing(s.engine, "tag_signal_lost")


def test_ack_while_active_keeps_it_standing_until_it_clears():
    s = Scenario(cfg({"escalate_after_s": 1000}))
    s.run(arrive(0, "S1", "suspect", case_type="criminal") + arrive(0, "O1", "officer") +
          [enter(100, "S1", INT), enter(100, "O1", INT)])
    s.until(150)
    (a,) = s.active("lone_interrogation")
    ack(s, 160, a)
    assert standing(s.engine) == {a["alarm_id"]: (True, "O1", 0)}
    (x,) = listed(s.engine)
    assert x["active"] is True and x["acknowledged"] is True and x["ack"]["by"] == "O1"
    s.run([enter(170, "O1", "corridor"), (171, "presence.left", {"person": "O1", "tag": None, "room": INT})])
    s.step(200, "person.left", {"person": "S1"})
    assert s.cleared("lone_interrogation") and standing(s.engine) == {}


def test_cleared_unacked_alarms_are_bounded_with_a_counted_drop():
    s = Scenario(cfg({"max_unacked_cleared": 10}))
    steps = arrive(0, "S1", "suspect")
    for i in range(15):                          # 15 door_held_open alarms, raised and cleared
        t = 10 + i * 300
        steps += [(t, "door.opened", {"door": "int1-door", "room": INT}),
                  (t + 200, "door.closed", {"door": "int1-door", "room": INT})]
    s.run(steps)
    assert len(s.raised("door_held_open")) == 15
    assert len(standing(s.engine, "door_held_open")) == 10 and s.engine.book.dropped_unacked == 5
    kept = [r["data"]["since"] for r in s.engine.book.standing.values() if r["data"]["code"] == "door_held_open"]
    assert kept == sorted(kept) and kept[0] == s.raised("door_held_open")[5]["since"]   # the oldest went


# ---- escalation ---------------------------------------------------------------------------
def test_escalation_levels_on_a_compressed_clock_and_none_after_ack():
    s = Scenario(cfg({"escalate_after_s": 10, "escalate_every_s": 20}))
    a = lone(s, 100, None)                       # raised at 130
    s.until(185)
    assert [(t, d["level"], d["unacked_s"], d["active"]) for _, t, d in s.lifecycle("alarm.escalated")] == \
        [(140.0, 1, 10.0, True), (160.0, 2, 30.0, True), (180.0, 3, 50.0, True)]
    esc = s.lifecycle("alarm.escalated")[0][2]
    assert esc["alarm_id"] == a["alarm_id"] and esc["code"] == "lone_interrogation"
    assert esc["legal_basis"] == a["legal_basis"] and esc["persons"] == a["persons"]
    assert "升级1级" in esc["message"]["zh"] and "2026-11-26 08:02:10 +08:00" in esc["message"]["en"]
    ack(s, 190, a)
    s.until(3000)
    assert [d["level"] for _, _, d in s.lifecycle("alarm.escalated")] == [1, 2, 3]
    assert rows(replay(s.journal, s.config)) == rows(s.alarm_events)


def test_escalation_goes_on_after_clear_until_acknowledged():
    s = Scenario(cfg({"escalate_after_s": 10, "escalate_every_s": 100}))
    a = lone(s, 100, 150)                        # raised at 130, cleared at 150
    s.until(400)
    assert [(t, d["level"], d["active"]) for _, t, d in s.lifecycle("alarm.escalated")] == \
        [(140.0, 1, True), (240.0, 2, False), (340.0, 3, False)]
    assert "cleared, not acknowledged" in s.lifecycle("alarm.escalated")[1][2]["message"]["en"]
    ack(s, 400, a)
    s.until(5000)
    assert len(s.lifecycle("alarm.escalated")) == 3
    assert rows(replay(s.journal, s.config)) == rows(s.alarm_events)


def test_defaults_120_then_every_300_and_only_critical():
    s = Scenario(cfg())
    lone(s, 100, None)                           # critical, raised at 130
    s.run([(200, "door.opened", {"door": "int1-door", "room": INT})])   # warning: never escalates
    s.until(1000)
    assert [(t, d["level"], d["code"]) for _, t, d in s.lifecycle("alarm.escalated")] == \
        [(250.0, 1, "lone_interrogation"), (550.0, 2, "lone_interrogation"), (850.0, 3, "lone_interrogation")]


def test_a_late_timer_jumps_to_the_level_due_and_replays_the_same():
    """After downtime the engine is advanced once to "now": one escalation at the
    level due by then (not a burst of missed ones); replay gives the same."""
    s = Scenario(cfg({"escalate_after_s": 10, "escalate_every_s": 20, "escalate_max_level": 0}))
    lone(s, 100, None)
    made = s.engine.advance(T0 + 1000)           # the gateway was down from 130 to 1000
    assert [(d.type, d.data["level"], d.ts - T0) for d in made] == [("alarm.escalated", 44, 1000.0)]
    for d in made:
        s._feed(d, T0 + 1000)
    s.until(1021)
    assert [d["level"] for _, _, d in s.lifecycle("alarm.escalated")] == [44, 45]
    assert rows(replay(s.journal, s.config)) == rows(s.alarm_events)


# ---- shelving ---------------------------------------------------------------------------------
def shelve(s, t, code, scope, for_s, by="O1"):
    return s.step(t, "alarm.shelved", {"code": code, "scope": scope, "until": format_ts(s.t0 + t + for_s),
                                       "reason": "door contact faulty", "by": by}, source="mqtt:central")


def test_shelved_alarm_is_journaled_flagged_and_expiry_republishes_it():
    s = Scenario(cfg(rules={"door_held_open": {"limit_s": 10}}))
    s.run(arrive(0, "O1", "officer"))
    shelve(s, 5, "door_held_open", INT, 100)                  # until 105
    s.run([(20, "door.opened", {"door": "int1-door", "room": INT}),
           (20, "door.opened", {"door": "exit-door", "room": "exit"})])
    s.until(60)
    by_door = {a["details"].get("door") if a["details"] else None: a for a in s.active("door_held_open")}
    ours = [e for e in s.conditions() if e.data["code"] == "door_held_open"]
    assert {(e.data["room"], e.data.get("shelved"), e.data.get("suppressed_by")) for e in ours} == \
        {(INT, True, "shelved"), ("exit", None, None)}            # the scope: only the room shelved
    assert len(by_door) == 2
    s.until(200)
    (_, t, un), = s.lifecycle("alarm.unshelved")
    assert t == 105.0 and un == {"code": "door_held_open", "scope": INT, "by": None, "reason": "expired"}
    again = [e for e in s.conditions() if e.data["code"] == "door_held_open" and e.epoch - T0 == 105.0]
    assert [(e.type, e.data["room"], "shelved" in e.data) for e in again] == [("alarm.raised", INT, False)]
    assert again[0].data["alarm_id"] == next(e.data["alarm_id"] for e in ours if e.data["room"] == INT)
    assert s.engine.book.shelves == {}
    assert rows(replay(s.journal, s.config)) == rows(s.alarm_events)


def test_shelving_is_ignored_for_legal_alarms_even_if_journaled():
    s = Scenario(cfg())
    s.run(arrive(0, "O1", "officer"))
    shelve(s, 5, "lone_interrogation", None, 3600)
    assert s.engine.book.shelves == {}
    a = lone(s, 100, None)
    assert "shelved" not in a


def test_raised_and_cleared_while_shelved_needs_no_ack():
    s = Scenario(cfg(rules={"door_held_open": {"limit_s": 10}}))
    s.run(arrive(0, "O1", "officer"))
    shelve(s, 5, "door_held_open", None, 1000)
    s.run([(20, "door.opened", {"door": "int1-door", "room": INT}),
           (50, "door.closed", {"door": "int1-door", "room": INT})])
    assert [e.type for e in s.conditions()] == ["alarm.raised", "alarm.cleared"]
    assert all(e.data.get("shelved") for e in s.conditions())
    assert standing(s.engine, "door_held_open") == {}       # nobody was alarmed: nothing to acknowledge


def test_manual_unshelve_and_restart_keeps_the_shelf():
    s = Scenario(cfg(rules={"door_held_open": {"limit_s": 10}}))
    s.run(arrive(0, "O1", "officer"))
    shelve(s, 5, "door_held_open", "exit-door", 1000)
    s.run([(20, "door.opened", {"door": "exit-door", "room": "exit"})])
    s.until(40)
    eng = restart_book(s)
    assert eng.book.shelves == s.engine.book.shelves and len(eng.book.shelves) == 1
    s.step(50, "alarm.unshelved", {"code": "door_held_open", "scope": "exit-door", "by": "O1"}, source="cli")
    (a,) = s.active("door_held_open")
    assert "shelved" not in a and s.conditions()[-1].type == "alarm.raised"
    s.until(2000)
    assert s.lifecycle("alarm.unshelved") == []             # no expiry after a manual unshelve
    assert rows(replay(s.journal, s.config)) == rows(s.alarm_events)


# ---- maintenance --------------------------------------------------------------------------------
def test_maintenance_suppresses_device_offline_and_ends_by_itself():
    s = Scenario(cfg())
    s.run(arrive(0, "O1", "officer"))
    s.step(10, "device.maintenance", {"device": "cam-wait1", "until": format_ts(T0 + 310),
                                      "reason": "lens cleaning", "by": "O1"}, source="mqtt:central")
    s.step(20, "device.offline", {"device": "cam-wait1", "error": "no frames"}, source="cam-wait1")
    s.step(30, "device.offline", {"device": "doors-a", "error": "timeout"}, source="doors-a")
    offl = {e.data["subject"] if "subject" in e.data else e.data["details"]["device"]: e.data
            for e in s.conditions() if e.data["code"] == "device_offline"}
    assert offl["cam-wait1"]["suppressed_by"] == "maintenance" and offl["cam-wait1"]["shelved"] is True
    assert "shelved" not in offl["doors-a"]                  # another device: not suppressed
    s.until(400)
    assert [(t, d) for _, t, d in s.lifecycle("device.maintenance_ended")] == \
        [(310.0, {"device": "cam-wait1", "by": None, "reason": "expired"})]
    last = [e for e in s.conditions() if e.data["code"] == "device_offline"][-1]
    assert (last.type, last.epoch - T0, last.data["details"]["device"], "shelved" in last.data) == \
        ("alarm.raised", 310.0, "cam-wait1", False)           # still offline: announced now
    assert rows(replay(s.journal, s.config)) == rows(s.alarm_events)
    assert restart_book(s).book.maintenance == {}


def test_maintenance_never_hides_a_legal_alarm():
    s = Scenario(cfg())
    s.run(arrive(0, "O1", "officer") + arrive(0, "S1", "suspect", case_type="criminal"))
    s.step(5, "device.maintenance", {"device": "cam-int1", "until": format_ts(T0 + 3600),
                                     "reason": "x", "by": "O1"}, source="cli")
    s.run([enter(100, "S1", INT), enter(100, "O1", INT)])
    s.until(200)
    (a,) = s.active("lone_interrogation")
    assert "shelved" not in a


def test_a_reload_of_the_alarms_table_applies_to_pending_escalations():
    s = Scenario(cfg({"escalate_after_s": 10, "escalate_every_s": 20}))
    lone(s, 100, None)                           # raised at 130
    s.until(150)                                 # level 1 at 140
    s.engine.reconfigure(cfg({"escalate_after_s": 10, "escalate_every_s": 100}))
    s.until(400)
    assert [(t, d["level"]) for _, t, d in s.lifecycle("alarm.escalated")] == [(140.0, 1), (240.0, 2), (340.0, 3)]


def test_shelve_and_maintenance_events_are_plain_data_in_the_book():
    """Checkpoints serialise the folded state: the book must be JSON-able plain data."""
    import dataclasses
    import json
    s = Scenario(cfg(rules={"door_held_open": {"limit_s": 10}}))
    s.run(arrive(0, "O1", "officer"))
    shelve(s, 5, "door_held_open", INT, 100)
    s.step(6, "device.maintenance", {"device": "cam-wait1", "until": format_ts(T0 + 310), "reason": "x",
                                     "by": "O1"}, source="cli")
    lone(s, 100, 200)
    book = dataclasses.asdict(s.engine.book)
    assert json.loads(json.dumps(book)) == book


def test_escalate_max_level_stops_the_escalation():
    s = Scenario(cfg({"escalate_after_s": 10, "escalate_every_s": 20, "escalate_max_level": 2}))
    lone(s, 100, None)
    s.until(1000)
    assert [(t, d["level"]) for _, t, d in s.lifecycle("alarm.escalated")] == [(140.0, 1), (160.0, 2)]
    s2 = Scenario(cfg({"escalate_after_s": 10, "escalate_every_s": 20, "escalate_max_level": 2}))
    lone(s2, 100, None)
    made = s2.engine.advance(T0 + 1000)          # a late timer never jumps past the cap
    assert [d.data["level"] for d in made] == [2] and s2.engine.next_deadline() != made[0].ts


def test_a_long_gap_with_rule_timers_in_it_escalates_each_alarm_once():
    """Issue 28 item 3: during downtime other rule timers fall due one after the other
    (here a door held open); the catch-up advance still escalates each alarm once, to the
    level due at its end, and replay of the journal gives the same."""
    for cap, level in ((0, 44), (None, 3)):                 # no cap; the default (3)
        alarms = {"escalate_after_s": 10, "escalate_every_s": 20}
        if cap is not None:
            alarms["escalate_max_level"] = cap
        s = Scenario(cfg(alarms, rules={"door_held_open": {"limit_s": 300}}))
        lone(s, 100, None)                                   # raised at 130
        s.run([(131, "door.opened", {"door": "int1-door", "room": INT})])   # its timer: 431, in the gap
        made = s.engine.advance(T0 + 1000)                  # down from 131 to 1000
        esc = [(d.data["alarm_id"], d.data["level"]) for d in made if d.type == "alarm.escalated"]
        assert len(esc) == len({a for a, _ in esc}) == 1 and esc[0][1] == level, esc
        assert any(d.type == "alarm.raised" and d.data["code"] == "door_held_open" for d in made)
        for d in made:
            s._feed(d, T0 + 1000)
        s.until(1200)
        after = [d["level"] for _, t, d in s.lifecycle("alarm.escalated") if t > 1000]
        assert (after[:3] == [45, 46, 47]) if cap == 0 else after == [], after    # then on as before; capped: none
        assert rows(replay(s.journal, s.config)) == rows(s.alarm_events)


# ---- property: lifecycle events interleaved with any rule input replay identically -------------------
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from helpers.rules_replay import _setup, _to_events, step as rule_step  # noqa: E402
from gateway.checkpoint import snapshot  # noqa: E402
from helpers.rules_checks import check as check_checkpoint, comparable, full_replay, restart_from  # noqa: E402

life_step = st.one_of(
    st.tuples(st.just("ack"), st.integers(0, 3), st.just(0.0)),
    st.tuples(st.just("shelve"), st.sampled_from(["door_held_open", "tag_low_battery", "headcount_mismatch",
                                                   "device_offline", "tag_signal_lost"]),
              st.sampled_from([5.0, 60.0, 600.0])),
    st.tuples(st.just("unshelve"), st.sampled_from(["door_held_open", "tag_low_battery"]), st.just(0.0)),
    st.tuples(st.just("maint"), st.sampled_from(["cam-int1", "zone-stations", "doors-a"]),
              st.sampled_from([0.0, 30.0, 900.0])),
    st.tuples(st.just("offline"), st.sampled_from(["cam-int1", "doors-a"]), st.booleans()),
)


# derandomize: the same 60 examples every run. Random ones found the divergence below (present
# since release 2) about one run in five, which made this a CI flake instead of a finding.
@settings(max_examples=60, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.one_of(rule_step, life_step), st.sampled_from([0.0, 3.0, 20.0, 45.0, 400.0])),
                max_size=50))
# found by random runs: the journal ends with rule output, the checkpoint was written after it
@example(script=[(("offline", "cam-int1", True), 400.0), (("unshelve", "door_held_open", 0.0), 0.0)])
def test_property_lifecycle_replays_and_restarts_identically(script):
    s = Scenario(cfg({"escalate_after_s": 30, "escalate_every_s": 60}))
    s.run(_setup())
    t = 1.0
    blob, ckpt_seq = snapshot(s.engine), s.seq            # a checkpoint half-way through the script
    for i, (item, dt) in enumerate(script):
        if i == len(script) // 2:
            blob, ckpt_seq = snapshot(s.engine), s.seq
        t += dt
        kind, a, b = item
        if kind == "ack":
            recs = [r for r in s.engine.book.standing.values() if r["ack"] is None]
            if recs:
                ack(s, t, recs[a % len(recs)]["data"])
        elif kind == "shelve":
            shelve(s, t, a, None, b)
        elif kind == "unshelve":
            if s.engine.book.shelf_key(a, None) in s.engine.book.shelves:
                s.step(t, "alarm.unshelved", {"code": a, "scope": None, "by": "O1"}, source="cli")
        elif kind == "maint":
            if b == 0.0:
                if a in s.engine.book.maintenance:
                    s.step(t, "device.maintenance_ended", {"device": a, "by": "O1", "reason": None}, source="cli")
            else:
                s.step(t, "device.maintenance", {"device": a, "until": format_ts(s.t0 + t + b), "reason": "x",
                                                 "by": "O1"}, source="cli")
        elif kind == "offline":
            s.step(t, "device.offline" if b else "device.online", {"device": a, "error": None}, source=a)
        else:
            for st_ in _to_events([(item, 0.0)]):
                s.step(t, *st_[1:])
    s.until(s.engine.now - T0 + 2 * 3600)
    full, full_out = full_replay(s.journal, s.config)
    assert rows(full_out) == rows(s.alarm_events)
    # a restart from that checkpoint + the journal's tail: the same state and the same alarms
    part, part_out, _ = restart_from(blob, s.journal, s.config, ckpt_seq)
    assert comparable(part) == comparable(full)
    assert rows(part_out) == rows(e for e in full_out if e.seq > ckpt_seq)
    # restart = rebuild from the journal: the same book (states, shelves, maintenance, levels)
    eng = Engine(s.config)
    journaled = rebuild(eng, s.journal, s.config.center.id)
    assert reconcile(eng, journaled) == []
    assert eng.book == s.engine.book
    # suppressed alarms are exactly those of facility codes matching a shelf/maintenance
    from rules.catalog import CATALOG
    for e in s.conditions():
        if e.data.get("shelved"):
            assert not CATALOG[e.data["code"]].legal


def test_shelve_at_a_timer_instant_replays_in_the_live_order():
    """Found by the property above (present since release 2): S1 enters waiting-1 and
    tag_signal_lost is shelved for 60 s at the same time, so at 00:01:01 the shelf expires and
    S1's unattended_suspect falls due in one timer tick. Live (gateway.core, like the Scenario)
    seals each tick draft with what it causes before the next: the unshelve, the tag alarms it
    re-sends unshelved, then unattended_suspect. Replay used to queue the tick's drafts together
    and put unattended_suspect before the re-sent tag alarms: the same alarms in another journal
    order. Replay, restart and a checkpoint taken before that instant + the tail follow live."""
    test_property_lifecycle_replays_and_restarts_identically.hypothesis.inner_test(
        script=[(("enter", "S1", "waiting-1"), 0.0), (("shelve", "tag_signal_lost", 60.0), 0.0)])
    config = cfg({"escalate_after_s": 30, "escalate_every_s": 60})
    steps = _setup() + [enter(1.0, "S1", "waiting-1"),
                        (1.0, "alarm.shelved", {"code": "tag_signal_lost", "scope": None, "until": format_ts(T0 + 61),
                                                "reason": "x", "by": "O1"}, "mqtt:central")]
    s = check_checkpoint(steps, cut=len(steps), until_h=2.0, config=config)    # checkpoint before 00:01:01
    tick = [(e.type, e.data.get("code"), e.data.get("shelved")) for e in s.alarm_events if e.epoch - T0 == 61.0]
    assert tick[0] == ("alarm.unshelved", "tag_signal_lost", None) and len(tick) > 2
    assert tick[-1] == ("alarm.raised", "unattended_suspect", None)     # after the re-sent tag alarms
