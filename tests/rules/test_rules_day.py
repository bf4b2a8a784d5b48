"""A day in the center (rule_day.py): 10 suspects of 2 cases, 8 officers, 7 staff,
a guardian, 24 h; the alarm list is asserted exactly, then replayed."""
from __future__ import annotations

from collections import Counter

from helpers import rule_day as day
from rules.catalog import CATALOG
from rules.replay import alarm_rows, replay, trace
from helpers.scenario import H, Scenario

# (event, code, hh:mm:ss.mmm, persons): every rule event of the day, in journal order
EXPECTED = [
    ("raised", "procedure_skipped", "08:15:00.000", ["S2"]),                   # 1
    ("cleared", "procedure_skipped", "08:17:00.000", ["S2"]),
    ("raised", "female_search_without_female_staff", "08:21:10.000", ["S3"]),  # 5
    ("cleared", "female_search_without_female_staff", "08:21:20.000", ["S3"]),
    ("raised", "tag_signal_lost", "09:31:00.000", ["S8"]),                     # 21
    ("cleared", "tag_signal_lost", "09:31:30.000", ["S8"]),
    ("raised", "tag_low_battery", "10:30:00.000", ["S1"]),                     # 19
    ("raised", "unattended_suspect", "10:31:00.000", ["S4"]),                  # 22
    ("raised", "unattended_suspect", "10:31:00.000", ["S8"]),
    ("cleared", "unattended_suspect", "10:32:00.000", ["S4"]),
    ("cleared", "unattended_suspect", "10:32:00.000", ["S8"]),
    ("raised", "collusion_risk", "10:40:05.000", ["S2", "S3"]),                # 24 (S2, S3: case C1)
    ("raised", "mixed_waiting_room", "10:40:30.000", ["S2", "S3", "S7"]),
    ("cleared", "mixed_waiting_room", "10:41:00.000", ["S2", "S3", "S7"]),
    ("cleared", "collusion_risk", "10:41:00.000", ["S2", "S3"]),
    ("raised", "collusion_risk", "11:10:55.000", ["S1", "S4"]),                # 3
    ("cleared", "collusion_risk", "11:11:00.000", ["S1", "S4"]),
    ("raised", "lone_interrogation", "11:30:30.000", ["S6", "O5"]),            # 2
    ("cleared", "lone_interrogation", "11:35:00.000", ["S6", "O5"]),
    ("raised", "headcount_mismatch", "11:40:30.000", []),                      # 15
    ("cleared", "headcount_mismatch", "11:40:40.000", []),
    ("raised", "vital_signs_abnormal", "12:00:30.000", ["S10"]),               # 8
    ("cleared", "vital_signs_abnormal", "12:01:00.000", ["S10"]),
    ("raised", "wristband_tamper", "12:10:00.000", ["S10"]),                   # 17
    ("cleared", "wristband_tamper", "12:10:30.000", ["S10"]),
    ("raised", "sos", "12:15:00.000", ["O2"]),                                 # 18
    ("cleared", "sos", "12:15:05.000", ["O2"]),
    ("raised", "lone_interrogation", "12:20:30.000", ["S4", "O4"]),            # 13
    ("raised", "officer_left_interrogation", "12:21:00.000", ["O3", "S4"]),
    ("cleared", "lone_interrogation", "12:22:00.000", ["S4", "O4"]),
    ("cleared", "officer_left_interrogation", "12:22:00.000", ["O3", "S4"]),
    ("raised", "interrogation_not_recorded", "12:41:00.000", ["S4", "O3", "O4"]),   # 23
    ("cleared", "interrogation_not_recorded", "12:45:00.000", ["S4", "O3", "O4"]),
    ("raised", "unauthorized_exit", "13:01:00.000", ["S4"]),                   # 14
    ("raised", "unauthorized_exit", "13:01:05.000", ["S4"]),                   # update: door opened
    ("cleared", "unauthorized_exit", "13:02:10.000", ["S4"]),
    ("raised", "device_offline", "13:30:00.000", []),                          # 12
    ("cleared", "device_offline", "13:40:00.000", []),
    ("raised", "station_impostor", "13:50:00.000", []),                        # 23
    ("cleared", "station_impostor", "13:55:00.000", []),
    ("raised", "suspect_motionless", "14:00:00.000", ["S6"]),                  # 16
    ("raised", "minor_without_guardian", "14:00:10.000", ["S9"]),              # 6
    ("cleared", "minor_without_guardian", "14:02:00.000", ["S9"]),
    ("cleared", "suspect_motionless", "14:20:00.000", ["S6"]),
    ("raised", "camera_tamper", "14:30:00.000", []),                           # 26
    ("cleared", "camera_tamper", "14:31:00.000", []),
    ("raised", "belongings_forgotten", "15:35:30.000", ["S8"]),                # 10
    ("raised", "detention_warning", "16:00:00.000", ["S7"]),                   # 7
    ("cleared", "belongings_forgotten", "16:00:00.000", ["S8"]),
    ("raised", "evidence_unauthorized_removal", "16:01:12.000", ["O1"]),           # 11
    ("raised", "evidence_not_returned", "16:20:00.000", ["O1"]),               # 25
    ("raised", "detention_warning", "16:30:00.000", ["S7"]),                   # update: 30 min left
    ("cleared", "evidence_unauthorized_removal", "16:30:10.000", ["O1"]),
    ("cleared", "evidence_not_returned", "16:30:12.000", ["O1"]),
    ("raised", "detention_timeout", "17:00:00.000", ["S7"]),
    ("raised", "rest_overdue", "17:00:00.000", ["S5"]),                        # 4
    ("cleared", "detention_warning", "17:31:20.000", ["S7"]),
    ("cleared", "detention_timeout", "17:31:20.000", ["S7"]),
    ("raised", "door_held_open", "17:42:00.000", []),                          # 9
    ("cleared", "door_held_open", "17:43:00.000", []),
    ("cleared", "rest_overdue", "18:00:00.000", ["S5"]),                      # out 30 min = a real break
    ("cleared", "tag_low_battery", "18:21:20.000", ["S1"]),                    # S1 left
    ("raised", "locker_unauthorized_open", "20:00:00.000", []),                # 20
    ("raised", "locker_open_too_long", "20:01:00.000", []),
    ("cleared", "locker_open_too_long", "20:02:00.000", []),
    ("cleared", "locker_unauthorized_open", "20:02:00.000", []),
]


def hms(t: float) -> str:
    return f"{int(t // 3600):02d}:{int(t % 3600 // 60):02d}:{t % 60:06.3f}"


def run_day(lag: float = 0.3) -> Scenario:
    s = Scenario(day.config(), lag=lag)
    s.run(day.steps())
    s.until(24 * H)
    return s


def test_day_alarm_list_exact():
    s = run_day()
    got = [(e.type.split(".")[1], e.data["code"], hms(e.epoch - s.t0), e.data["persons"])
           for e in s.conditions()]
    assert got == EXPECTED


def test_day_covers_the_catalog_except_long_holds():
    """The codes the day does not raise are derived from the catalog (the rules' declarations),
    not listed here: long holds, the DOMAIN v2 detention codes (multi-day clocks, re-summons), a
    female minor (none in this day), the gateway's own clock (synchronised all day), and any new
    rule. Each must have a positive case in rule_cases.py, as every code must (a new rule = its
    module + its cases there; test_rules_alarm_codes.py runs them)."""
    from helpers.rule_cases import CASES
    codes = {c for _, c, _, _ in EXPECTED}
    assert codes <= set(CATALOG), sorted(codes - set(CATALOG))
    not_in_day = set(CATALOG) - codes
    with_positive_case = {c.code for c in CASES if c.expected}
    assert not_in_day - with_positive_case == set(), \
        "raised neither by the rule day nor by a positive case in tests/rules/rule_cases.py (add one there)"
    assert len(codes) > len(not_in_day)     # the day stays the broad scenario it is


def test_day_ends_quiet():
    s = run_day()
    assert s.engine.alarms == {}
    assert s.engine.state.active_alarms == {}
    assert not any(p.role == "suspect" and not p.left for p in s.engine.state.persons.values())
    # everybody else is somewhere: 8 officers in duty, staff at their posts, the guardian
    occ = s.engine.state.occupancy()
    assert sorted(x["person"] for x in occ["duty"]) == ["G1"] + [f"O{i}" for i in range(1, 9)]


def test_day_alarm_ids_unique_per_alarm_and_stable():
    a, b = run_day(), run_day(lag=0.9)
    ids_a = [(e.type, e.data["alarm_id"]) for e in a.alarm_events]
    assert ids_a == [(e.type, e.data["alarm_id"]) for e in b.alarm_events]
    raised = Counter(e.data["alarm_id"] for e in a.alarm_events if e.type == "alarm.raised")
    # two raises of one id are the two updates (door opened, 30 min left)
    assert sorted(n for n in raised.values() if n > 1) == [2, 2]


def test_day_replay_equal():
    s = run_day()
    again = replay(s.journal, s.config)
    assert list(alarm_rows(again)) == list(alarm_rows(s.alarm_events))


def test_day_trace_of_s5():
    s = run_day()
    tr = trace(s.journal, "S5")
    rooms = [x["room"] for x in tr]
    assert rooms == ["entrance", "security-1", "belongings-1", "info-1", "waiting-6", "interrogation-1",
                     "toilet-1", "interrogation-1", "waiting-6", "belongings-1", "exit"]
    assert tr[5]["entered"] == "2026-11-26T13:00:00.000Z" and tr[5]["left"] == "2026-11-26T15:00:00.000Z"
    assert tr[5]["seconds"] == 7200.0
    assert tr[-1]["left"] == "2026-11-26T19:01:20.000Z"
