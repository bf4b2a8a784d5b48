"""The engine contract: deadlines, ids, sources, acknowledgements, config."""
from __future__ import annotations

import pytest

from gateway.config import ConfigError
from rules.model import Draft, seal
from rules.catalog import CATALOG, rule_settings
from rules.engine import Engine, alarm_id
from helpers.scenario import H, T0, Scenario, arrive, enter, leave, make_config, move, status

INT = "interrogation-1"


def ev(t, typ, data, source="test", seq=1):
    return seal(Draft(typ, data, source, T0 + t), seq, "test-center", "0" * 64, T0 + t)


def feed(engine, steps):
    out = []
    for i, (t, typ, data) in enumerate(steps, 1):
        out += engine.apply(ev(t, typ, data, seq=i))
    return out


def test_time_based_alarm_fires_at_its_deadline_within_a_second():
    eng = Engine(make_config())
    feed(eng, arrive(0, "S1", "suspect") + [enter(10, "S1", "waiting-1")])
    # the tag-signal sweep armed at binding (60 s, a harmless early wake-up since the tag
    # was seen at 10 s), then the unattended suspect at 10 + 60 s
    assert eng.next_deadline() == T0 + 60
    assert eng.advance(T0 + 59.999) == []
    deadlines = []
    while (d := eng.next_deadline()) is not None and d < T0 + 100:
        deadlines.append(d - T0)
        drafts = eng.advance(d + 0.999)             # the core's timer wakes up to 1 s late
        for dr in drafts:
            assert dr.ts == d                       # ... the alarm carries the deadline
    assert 70.0 in deadlines


def test_advance_fires_in_deadline_order_across_rules():
    eng = Engine(make_config())
    feed(eng, arrive(0, "S1", "suspect") + arrive(0, "O1", "officer") +
         [enter(1, "S1", INT), enter(1, "O1", INT),                         # lone at 31
          (2, "door.opened", {"door": "exit-door", "room": "exit"}),         # door at 122
          status(3, "S1", heart_rate=200)])                                  # vital at 33
    drafts = eng.advance(T0 + 1000)
    got = [(d.data["code"], d.ts - T0) for d in drafts if d.type == "alarm.raised"]
    assert got == sorted(got, key=lambda x: x[1])
    assert ("lone_interrogation", 31.0) in got and ("vital_signs_abnormal", 33.0) in got
    assert ("door_held_open", 122.0) in got


def test_rule_events_are_folded_not_evaluated():
    eng = Engine(make_config())
    feed(eng, arrive(0, "S1", "suspect"))
    out = eng.apply(ev(5, "presence.entered", {"person": "S1", "tag": "X", "room": "exit"}, source="rules", seq=9))
    assert out == [] and "exit" in eng.state.presence["S1"]
    assert eng.alarms == {}


def test_alarm_id_is_deterministic_and_one_per_subject():
    s1 = Scenario().run(arrive(0, "S1", "suspect") + [enter(10, "S1", "exit"),
                                                       (20, "door.opened", {"door": "exit-door", "room": "exit"})])
    s2 = Scenario(lag=0.9).run(arrive(0, "S1", "suspect") + [enter(10, "S1", "exit"),
                                                              (20, "door.opened", {"door": "exit-door", "room": "exit"})])
    a1 = [e.data for e in s1.alarm_events if e.data["code"] == "unauthorized_exit"]
    a2 = [e.data for e in s2.alarm_events if e.data["code"] == "unauthorized_exit"]
    assert [a["alarm_id"] for a in a1] == [a["alarm_id"] for a in a2]
    assert len({a["alarm_id"] for a in a1}) == 1          # the door opening updated the same alarm
    assert a1[0]["alarm_id"] == alarm_id("unauthorized_exit", "S1", "2026-11-26T00:00:10.000Z")
    assert a1[1]["since"] == a1[0]["since"] and a1[1]["details"] == {"door": "exit-door", "way": "exit_door"}


def test_same_subject_raised_again_gets_a_new_id():
    s = Scenario().run(arrive(0, "S1", "suspect") + [
        enter(10, "S1", "exit"), move(20, "S1", "exit", "corridor"), move(30, "S1", "corridor", "exit")])
    ids = [e.data["alarm_id"] for e in s.alarm_events
           if e.data["code"] == "unauthorized_exit" and e.type == "alarm.raised"]
    assert len(ids) == 2 and ids[0] != ids[1]


def test_acknowledgement_is_folded_and_does_not_clear():
    s = Scenario().run(arrive(0, "S1", "suspect") + [status(10, "S1", sos=True)])
    (a,) = s.active("sos")
    s.step(20, "alarm.acknowledged", dict(a, by="O1", note="coming"), source="cli")
    assert s.engine.state.active_alarms[a["alarm_id"]]["acknowledged"] == \
        {"by": "O1", "note": "coming", "ts": "2026-11-26T00:00:20.000Z"}
    assert s.active("sos")
    s.step(30, *status(30, "S1", sos=False)[1:])
    assert a["alarm_id"] not in s.engine.state.active_alarms


def test_acknowledgement_survives_an_update():
    s = Scenario().run([arrive(0, "S1", "suspect", case_type="administrative")])
    s.until(7 * H + 1)
    (a,) = s.active("detention_warning")
    s.step(7 * H + 2, "alarm.acknowledged", dict(a, by="O1", note=None), source="mqtt:central")
    s.until(7.5 * H + 1)
    st = s.engine.state.active_alarms[a["alarm_id"]]
    assert st["details"]["minutes_left"] == 30.0 and st["acknowledged"]["by"] == "O1"


def test_messages_name_people_and_rooms_in_both_languages():
    s = Scenario().run(arrive(0, "S1", "suspect", name="张三") + arrive(0, "O1", "officer", name="李四") +
                       [enter(10, "S1", INT), enter(10, "O1", INT)])
    s.until(100)
    (a,) = s.active("lone_interrogation")
    assert a["message"]["zh"] == "单人讯问：讯问室1(interrogation-1) 嫌疑人张三(S1)在场，办案民警1人（应不少于2人）"
    assert a["message"]["en"] == ("Interrogation with fewer than two investigators: 讯问室1(interrogation-1): "
                                  "suspect 张三(S1) with 1 investigator(s), 2 required")
    assert a["persons"] == ["S1", "O1"] and a["room"] == INT
    assert a["details"] == {"investigators": ["O1"], "required": 2}


def test_alarm_persons_and_rooms():
    s = Scenario().run(arrive(0, "S1", "suspect", case_id="C1") + arrive(0, "S2", "suspect", case_id="C1") +
                       [enter(10, "S2", "waiting-2"), enter(10, "S1", "waiting-1"),
                        (20, "device.offline", {"device": "cam-wait1", "error": "x"})])
    s.until(100)
    (c,) = s.active("collusion_risk")
    assert c["persons"] == ["S1", "S2"] and c["room"] == "waiting-1"      # the first person's room
    assert c["details"] == {"case_id": "C1", "rooms": {"S1": "waiting-1", "S2": "waiting-2"}}
    (d,) = s.active("device_offline")
    assert d["room"] == "waiting-1" and d["persons"] == []


def test_update_when_persons_change():
    s = Scenario().run(arrive(0, "S1", "suspect") + arrive(0, "S2", "suspect") +
                       [enter(10, "S1", INT)])
    s.until(100)
    s.step(110, *enter(110, "S2", INT)[1:])
    lone = [(e.type, e.data["persons"]) for e in s.alarm_events if e.data["code"] == "lone_interrogation"]
    assert lone == [("alarm.raised", ["S1"]), ("alarm.raised", ["S1", "S2"])]


def test_reconfigure_clears_disabled_rules():
    s = Scenario().run(arrive(0, "S1", "suspect") + [enter(10, "S1", "exit")])
    (a,) = s.active("unauthorized_exit")
    drafts = s.engine.reconfigure(make_config({"unauthorized_exit": {"enabled": False}, "legal_disabled_reason": "test: switched off for this test"}))
    assert [(d.type, d.data["alarm_id"]) for d in drafts] == [("alarm.cleared", a["alarm_id"])]
    s.run(move(20, "S1", "exit", "corridor"))            # no more evaluation
    assert s.active("unauthorized_exit") == []


def test_back_dated_event_is_evaluated_at_the_engine_clock():
    eng = Engine(make_config())
    feed(eng, arrive(0, "S1", "suspect") + [enter(100, "S1", "exit")])
    out = eng.apply(ev(50, "presence.entered", {"person": "S1", "tag": "T", "room": "corridor"}, seq=50))
    assert eng.now == T0 + 100 and all(d.ts >= T0 + 100 for d in out)


def test_engine_without_rooms_or_devices():
    eng = Engine(make_config(rooms=[], devices=[]))
    out = feed(eng, arrive(0, "S1", "suspect") + [enter(1, "S1", "somewhere")])
    assert out == [] and eng.state.presence["S1"]
    assert eng.advance(T0 + 100)                    # unattended, in a room the config does not know


def test_rules_config_validation():
    with pytest.raises(ConfigError) as e:
        make_config({"lone_interrogation": {"grace": 3}})
    assert "rules.lone_interrogation.grace" in str(e.value)
    with pytest.raises(ConfigError) as e:
        make_config({"no_such_alarm": {}})
    assert "rules.no_such_alarm" in str(e.value)
    cfg = make_config({"rest_overdue": {"break_min": 45}, "minor_without_guardian": {"grace_s": 0},
                       "female_search_without_female_staff": {"grace_s": 5},
                       "detention_timeout": {"criminal_h": 10}})
    st = rule_settings(cfg.rules)
    assert st["rest_overdue"].break_min == 45 and st["detention_timeout"].criminal_h == 10
    assert set(st) == set(CATALOG)


def test_detention_defaults_stay_within_the_law():
    """A center may be stricter than the law, never looser (DOMAIN v3: center defaults ≤ the law's
    base limits, 刑事诉讼法 art. 119, 治安管理处罚法 2025 art. 97, 继续盘问规定 arts. 10-11)."""
    for key, value in (("criminal_h", 24.5), ("administrative_h", 25), ("inquiry_h", 49),
                       ("vulnerable_inquiry_h", 5), ("criminal_h", 24), ("administrative_h", 12),
                       ("inquiry_h", 24)):
        with pytest.raises(ConfigError) as e:
            make_config({"detention_timeout": {key: value}})
        assert f"rules.detention_timeout.{key}" in str(e.value)
    with pytest.raises(ConfigError):
        make_config({"custody_transfer_overdue": {"limit_h": 30}})
    with pytest.raises(ConfigError):
        make_config({"consecutive_summons": {"min_gap_h": 6}})


def test_every_catalog_code_has_a_rule():
    from rules.base import RULES
    assert set(RULES) == set(CATALOG)


def test_unbound_tags_count_nobody():
    s = Scenario().run(arrive(0, "S1", "suspect") + arrive(0, "O1", "officer") +
                       [enter(10, "S1", INT), enter(10, None, INT, tag="ABCDEF01"), enter(10, "O1", INT)])
    s.until(100)
    assert s.active("lone_interrogation")


def test_officer_leaving_the_center_clears_officer_left():
    s = Scenario().run(arrive(0, "S1", "suspect") + arrive(0, "O1", "officer") + arrive(0, "O2", "officer") +
                       [enter(10, "S1", INT), enter(10, "O1", INT), enter(10, "O2", INT), leave(20, "O2", INT)])
    s.until(100)
    assert s.active("officer_left_interrogation")
    s.step(200, "person.left", {"person": "O2"})
    assert s.active("officer_left_interrogation") == []


def test_malformed_events_do_not_stop_the_engine(caplog):
    eng = Engine(make_config())
    out = feed(eng, [(1, "presence.entered", {"person": "S1"}),                 # no room, no tag
                     (2, "person.registered", {"role": "suspect"}),              # no person
                     (3, "locker.opened", {"locker": "L"}),                      # no compartment
                     (4, "camera.headcount", {"camera": "c", "room": "r", "count": "many"})])
    assert out == [] and eng.errors == 3
    out = feed(eng, arrive(10, "S1", "suspect") + [enter(11, "S1", "exit")])
    assert [d.data["code"] for d in out] == ["unauthorized_exit"]
