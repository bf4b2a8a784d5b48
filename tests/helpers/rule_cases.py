"""A positive and a negative scenario (at least) for every alarm code.

Each case: (code, name, steps, until_s, rules config, expected) where expected
is the exact list of (event type, t relative to T0) of that code's rule events
(``alarm.raised`` twice for the same alarm = an update). Shared by
test_rules_alarm_codes.py (asserts) and test_rules_replay.py (replay equality).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from helpers.scenario import H, arrive, bind, enter, leave, move, register, status, tag_of


@dataclass
class Case:
    code: str
    name: str
    steps: list
    until: float
    expected: list[tuple[str, float]]
    rules: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.code}:{self.name}"


CASES: list[Case] = []
R, C = "alarm.raised", "alarm.cleared"


def case(code, name, steps, until, expected, rules=None):
    CASES.append(Case(code, name, steps, until, expected, rules or {}))


def team(t=0, *extra, case_id="C1", case_type="criminal"):
    """Suspect S1 (+ officers O1, O2) registered and bound at t."""
    out = arrive(t, "S1", "suspect", gender="male", case_id=case_id, case_type=case_type) + \
        arrive(t, "O1", "officer") + arrive(t, "O2", "officer")
    for x in extra:
        out += x
    return out


def into(t, room, *pids):
    return [enter(t, p, room) for p in pids]


INT = "interrogation-1"


def rec(t0, t1, room=INT, every=60, source="recorder-1"):
    """The recorder system reporting "recording" every ``every`` s from t0 to t1."""
    out, t = [], t0
    while t <= t1:
        out.append((t, "recording.started", {"room": room, "source": source}))
        t += every
    return out


def rec_stop(t, room=INT, source="recorder-1"):
    return (t, "recording.stopped", {"room": room, "source": source})

# ---- lone_interrogation ---------------------------------------------------------------------
case("lone_interrogation", "one officer", [team(), into(100, INT, "S1", "O1"), enter(200, "O2", INT)],
     300, [(R, 130), (C, 200)])
case("lone_interrogation", "officer steps out 40 s", [team(), into(100, INT, "S1", "O1", "O2"),
     leave(200, "O2", INT), enter(240, "O2", INT)], 300, [(R, 230), (C, 240)])
case("lone_interrogation", "two officers", [team(), into(100, INT, "S1", "O1", "O2")], 3000, [])
case("lone_interrogation", "officer steps out 20 s, grace 30",
     [team(), into(100, INT, "S1", "O1", "O2"), leave(200, "O2", INT), enter(220, "O2", INT)], 3000, [])
case("lone_interrogation", "staff is no investigator",
     [team(0, arrive(0, "ST1", "staff")), into(100, INT, "S1", "O1", "ST1")], 300, [(R, 130)])
case("lone_interrogation", "visitor is no investigator",
     [team(0, arrive(0, "V1", "visitor", visitor_kind="lawyer")), into(100, INT, "S1", "O1", "V1")],
     300, [(R, 130)])
case("lone_interrogation", "officers without suspect", [team(), into(100, INT, "O1")], 3000, [])
case("lone_interrogation", "relaxed for administrative cases while recording",
     [team(case_type="administrative"), rec(50, 3000), into(100, INT, "S1", "O1")], 3000, [],
     {"lone_interrogation": {"relaxed_case_types": ["administrative"]}})
case("lone_interrogation", "relaxation needs the recording",
     [team(case_type="administrative"), into(100, INT, "S1", "O1")], 300, [(R, 130)],
     {"lone_interrogation": {"relaxed_case_types": ["administrative"]}})
case("lone_interrogation", "recording stops under a relaxed case type",
     [team(case_type="administrative"), rec(50, 170), into(100, INT, "S1", "O1"), rec_stop(200)], 300,
     [(R, 230)], {"lone_interrogation": {"relaxed_case_types": ["administrative"]}})
case("lone_interrogation", "recorder goes silent under a relaxed case type",
     [team(case_type="administrative"), rec(50, 110), into(100, INT, "S1", "O1")], 600,
     [(R, 110 + 120 + 30)], {"lone_interrogation": {"relaxed_case_types": ["administrative"]}})
case("lone_interrogation", "relaxation does not cover criminal cases",
     [team(), into(100, INT, "S1", "O1")], 300, [(R, 130)],
     {"lone_interrogation": {"relaxed_case_types": ["administrative"]}})
case("lone_interrogation", "disabled", [team(), into(100, INT, "S1", "O1")], 3000, [],
     {"lone_interrogation": {"enabled": False}, "legal_disabled_reason": "test: switched off for this test"})
case("lone_interrogation", "grace from config",
     [team(), into(100, INT, "S1", "O1")], 300, [(R, 110)], {"lone_interrogation": {"grace_s": 10}})

# ---- unattended_suspect --------------------------------------------------------------------
case("unattended_suspect", "alone in waiting room",
     [team(), enter(100, "S1", "waiting-1"), enter(300, "O1", "waiting-1")], 400, [(R, 160), (C, 300)])
case("unattended_suspect", "staff attends",
     [team(0, arrive(0, "ST1", "staff")), into(100, "waiting-1", "S1", "ST1")], 3000, [])
case("unattended_suspect", "a visitor does not attend",
     [team(0, arrive(0, "V1", "visitor", visitor_kind="doctor")), into(100, "medical-1", "S1", "V1")],
     300, [(R, 160)])
LAW = {"unattended_suspect": {"lawyer_rooms": ["interrogation-2"]}}
case("unattended_suspect", "lawyer meeting in a lawyer room",
     [team(0, arrive(0, "L1", "visitor", visitor_kind="lawyer", **{"for": "S1"})),
      into(100, "interrogation-2", "S1", "L1"), leave(1000, "L1", "interrogation-2")], 1100, [(R, 1060)], LAW)
case("unattended_suspect", "a lawyer outside the lawyer rooms does not attend",
     [team(0, arrive(0, "L1", "visitor", visitor_kind="lawyer", **{"for": "S1"})),
      into(100, "interrogation-1", "S1", "L1")], 300, [(R, 160)], LAW)
case("unattended_suspect", "another suspect's lawyer does not exempt",
     [team(0, arrive(0, "L1", "visitor", visitor_kind="lawyer", **{"for": "S9"})),
      into(100, "interrogation-2", "S1", "L1")], 300, [(R, 160)], LAW)
case("unattended_suspect", "attendant out for 30 s",
     [team(), into(100, "waiting-1", "S1", "O1"), leave(200, "O1", "waiting-1"),
      enter(230, "O1", "waiting-1")], 3000, [])

# ---- officer_left_interrogation ---------------------------------------------------------------
case("officer_left_interrogation", "out 100 s while a colleague stays",
     [team(), into(100, INT, "S1", "O1", "O2"), leave(200, "O2", INT), enter(300, "O2", INT)],
     400, [(R, 260), (C, 300)])
case("officer_left_interrogation", "back within grace",
     [team(), into(100, INT, "S1", "O1", "O2"), leave(200, "O2", INT), enter(250, "O2", INT)], 3000, [])
case("officer_left_interrogation", "interrogation over first",
     [team(), into(100, INT, "S1", "O1", "O2"), move(200, "S1", INT, "waiting-1"),
      leave(201, "O2", INT)], 3000, [])
case("officer_left_interrogation", "cleared when the session ends",
     [team(), into(100, INT, "S1", "O1", "O2"), leave(200, "O2", INT), move(400, "S1", INT, "waiting-1")],
     500, [(R, 260), (C, 400)])

# ---- detention_warning / detention_timeout --------------------------------------------------------
DET = [register(0, "S1", "suspect", case_id="C1", case_type="criminal"), bind(0, "S1")]
case("detention_warning", "criminal 12 h: -60 then -30 min, one alarm escalated",
     DET + [(13 * H, "person.left", {"person": "S1"})], 14 * H, [(R, 11 * H), (R, 11.5 * H), (C, 13 * H)])
case("detention_timeout", "criminal 12 h", DET + [(13 * H, "person.left", {"person": "S1"})], 14 * H,
     [(R, 12 * H), (C, 13 * H)])
case("detention_timeout", "administrative 8 h",
     [register(0, "S1", "suspect", case_type="administrative")], 9 * H, [(R, 8 * H)])
case("detention_warning", "administrative 8 h",
     [register(0, "S1", "suspect", case_type="administrative")], 9 * H, [(R, 7 * H), (R, 7.5 * H)])
case("detention_timeout", "approved 24 h (limit_h)",
     [register(0, "S1", "suspect", case_type="criminal", limit_h=24)], 23.9 * H, [])
case("detention_timeout", "approved 24 h reached",
     [register(0, "S1", "suspect", case_type="administrative", limit_h=24)], 25 * H, [(R, 24 * H)])
case("detention_timeout", "fractional hours from config",
     [register(0, "S1", "suspect", case_type="criminal")], 3 * H, [(R, 1800)],
     {"detention_timeout": {"criminal_h": 0.5, "warn_before_min": [10]}})
case("detention_warning", "fractional hours from config",
     [register(0, "S1", "suspect", case_type="criminal")], 3 * H, [(R, 1200)],
     {"detention_timeout": {"criminal_h": 0.5, "warn_before_min": [10]}})
case("detention_timeout", "left in time", DET + [(5 * H, "person.left", {"person": "S1"})], 30 * H, [])
case("detention_warning", "left in time", DET + [(5 * H, "person.left", {"person": "S1"})], 30 * H, [])
case("detention_timeout", "officers have no limit", [register(0, "O1", "officer")], 30 * H, [])
case("detention_warning", "disabled", DET, 13 * H, [], {"detention_warning": {"enabled": False}, "legal_disabled_reason": "test: switched off for this test"})

# ---- rest_overdue ---------------------------------------------------------------------------------
case("rest_overdue", "4 h continuous",
     [team(), into(100, INT, "S1", "O1", "O2"), move(20000, "S1", INT, "waiting-1")], 22000,
     [(R, 100 + 4 * H), (C, 21800)])
case("rest_overdue", "a 30 s step out does not reset",
     [team(), into(100, INT, "S1", "O1", "O2"), move(3 * H, "S1", INT, "corridor"),
      move(3 * H + 30, "S1", "corridor", INT)], 5 * H, [(R, 100 + 4 * H)])
case("rest_overdue", "a real break (30 min) resets",
     [team(), into(100, INT, "S1", "O1", "O2"), move(3 * H, "S1", INT, "waiting-1"),
      move(3 * H + 1800, "S1", "waiting-1", INT)], 3 * H + 1800 + 3.9 * H, [])
case("rest_overdue", "a 10 min toilet trip is no rest",
     [team(), into(100, INT, "S1", "O1", "O2"), move(3 * H, "S1", INT, "toilet-1"),
      move(3 * H + 600, "S1", "toilet-1", INT)], 5 * H, [(R, 100 + 4 * H)])
case("rest_overdue", "a recorded meal restarts the count",
     [team(), into(100, INT, "S1", "O1", "O2"),
      (3 * H, "person.rest", {"person": "S1", "kind": "meal", "from": "2026-11-26T02:30:00Z",
                              "to": "2026-11-26T03:00:00Z", "by": "O1"})], 3 * H + 3.9 * H, [])
case("rest_overdue", "a rest recorded late clears the alarm",
     [team(), into(100, INT, "S1", "O1", "O2"),
      (4.5 * H, "person.rest", {"person": "S1", "kind": "rest", "from": "2026-11-26T04:00:00Z",
                                "to": "2026-11-26T04:20:00Z", "by": "O1"})], 8.5 * H,
     [(R, 100 + 4 * H), (C, 4.5 * H), (R, 4 * H + 1200 + 4 * H)])
case("rest_overdue", "limit from config",
     [team(), into(100, INT, "S1", "O1", "O2")], 2 * H, [(R, 100 + 3600)], {"rest_overdue": {"limit_h": 1}})

# ---- minor_without_guardian ---------------------------------------------------------------------
MINOR = arrive(0, "M1", "suspect", minor=True, case_id="C9") + arrive(0, "O1", "officer") + \
    arrive(0, "O2", "officer")
case("minor_without_guardian", "no guardian",
     [MINOR, arrive(0, "G1", "visitor", visitor_kind="guardian", **{"for": "M1"}),
      into(100, INT, "M1", "O1", "O2"), enter(200, "G1", INT)], 300, [(R, 110), (C, 200)])
case("minor_without_guardian", "guardian walks in with them",
     [MINOR, arrive(0, "G1", "visitor", visitor_kind="guardian", **{"for": "M1"}),
      into(100, INT, "M1", "O1", "O2", "G1")], 3000, [])
case("minor_without_guardian", "appropriate adult (visitor_kind guardian, DOMAIN: 法定代理人/合适成年人)",
     [MINOR, arrive(0, "A1", "visitor", visitor_kind="guardian", **{"for": "M1"}),
      into(100, INT, "M1", "O1", "O2", "A1")], 3000, [])
case("minor_without_guardian", "a lawyer is no guardian",
     [MINOR, arrive(0, "L1", "visitor", visitor_kind="lawyer"), into(100, INT, "M1", "O1", "O2", "L1")],
     300, [(R, 110)])
case("minor_without_guardian", "adult suspect", [team(), into(100, INT, "S1", "O1", "O2")], 3000, [])
case("minor_without_guardian", "two guardians, one for another minor",
     [MINOR, arrive(0, "M2", "suspect", minor=True, case_id="C9"),
      arrive(0, "G2", "visitor", visitor_kind="guardian", **{"for": "M2"}),
      arrive(0, "G1", "visitor", visitor_kind="guardian", **{"for": "M1"}),
      into(100, INT, "M1", "M2", "O1", "O2", "G2"), enter(300, "G1", INT)], 400, [(R, 110), (C, 300)])
case("minor_without_guardian", "a guardian for nobody in particular does not count",
     [MINOR, arrive(0, "G1", "visitor", visitor_kind="guardian"), into(100, INT, "M1", "O1", "O2", "G1")],
     300, [(R, 110)])

# ---- female_minor_without_female_staff --------------------------------------------------------------
FMIN = arrive(0, "FM", "suspect", gender="female", minor=True, case_id="C8") + \
    arrive(0, "O1", "officer", gender="male") + arrive(0, "O2", "officer", gender="male") + \
    arrive(0, "ST2", "staff", gender="female") + arrive(0, "G1", "visitor", visitor_kind="guardian", **{"for": "FM"})
case("female_minor_without_female_staff", "female staff in the adjacent room",
     [FMIN, into(100, INT, "FM", "O1", "O2", "G1"), enter(100, "ST2", "waiting-1"),
      move(300, "ST2", "waiting-1", INT)], 400, [(R, 110), (C, 300)])
case("female_minor_without_female_staff", "female staff present",
     [FMIN, into(100, INT, "FM", "O1", "O2", "G1", "ST2")], 3000, [])
case("female_minor_without_female_staff", "a male minor",
     [arrive(0, "MM", "suspect", gender="male", minor=True, case_id="C8"), arrive(0, "O1", "officer"),
      into(100, INT, "MM", "O1")], 3000, [])
case("female_minor_without_female_staff", "an adult woman is not this rule's",
     [arrive(0, "FA", "suspect", gender="female", case_id="C8"), arrive(0, "O1", "officer"),
      into(100, INT, "FA", "O1")], 3000, [])

# ---- collusion_risk ---------------------------------------------------------------------------------
CO = team() + arrive(0, "S2", "suspect", case_id="C1", case_type="criminal")
case("collusion_risk", "same room",
     [CO, into(100, "waiting-1", "S1", "S2", "O1"), move(200, "S2", "waiting-1", "waiting-3")],
     300, [(R, 105), (C, 200)])
case("collusion_risk", "adjacent rooms", [CO, enter(100, "S1", "waiting-1"), enter(100, "S2", "waiting-2")],
     300, [(R, 105)])
case("collusion_risk", "adjacency is symmetric",
     [CO, enter(100, "S1", "waiting-2"), enter(100, "S2", "waiting-1")], 300, [(R, 105)])
case("collusion_risk", "different cases",
     [team(), arrive(0, "S3", "suspect", case_id="C2"), into(100, "waiting-1", "S1", "S3")], 3000, [])
case("collusion_risk", "identification room is not exempt by type",
     [CO, into(100, "identification-1", "S1", "S2"), move(500, "S2", "identification-1", "medical-1")],
     3000, [(R, 105), (C, 500)])
IDS = {"room": "identification-1", "case_id": "C1", "by": "O1"}
case("collusion_risk", "approved identification session",
     [CO, (90, "identification.started", IDS), into(100, "identification-1", "S1", "S2"),
      move(500, "S2", "identification-1", "medical-1"), (510, "identification.ended", IDS)], 3000, [])
case("collusion_risk", "session ends with both still there",
     [CO, (90, "identification.started", IDS), into(100, "identification-1", "S1", "S2"),
      (500, "identification.ended", IDS)], 600, [(R, 505)])
# (max_s far out: tests/test_protections_daemon.py replays this case days after T0)
case("lone_identification", "one officer presides",
     [CO, (90, "identification.started", IDS), into(100, "identification-1", "S1", "S2", "O1"),
      enter(200, "O2", "identification-1")], 600, [(R, 120), (C, 200)],
     rules={"lone_identification": {"max_s": 1e7}})
case("lone_identification", "the session ends by itself after max_s",
     [CO, (90, "identification.started", IDS), into(100, "identification-1", "S1", "S2", "O1")], 3000,
     [(R, 120), (C, 690)], rules={"lone_identification": {"max_s": 600}})
# DOMAIN v3 flapping (程序规定(刑) art. 259): the second officer out 25 s / in 5 s — spells add up
# (140-165, then 170-175 makes 30 s): raised at 175 although no single spell reached 30 s
case("lone_identification", "the second officer steps out 25 s of every 30 s",
     [CO, into(95, "identification-1", "S1", "S2", "O1", "O2"), (100, "identification.started", IDS)]
     + [x for k in range(5) for x in (leave(140 + 30 * k, "O2", "identification-1"),
                                     enter(165 + 30 * k, "O2", "identification-1"))],
     600, [(R, 175), (C, 195), (R, 235), (C, 255)], rules={"lone_identification": {"max_s": 1e7}})
case("lone_identification", "two officers preside",
     [CO, (90, "identification.started", IDS), into(100, "identification-1", "S1", "O1", "O2")], 600, [])
case("lone_identification", "no session: not an identification",
     [CO, into(100, "identification-1", "S1", "O1")], 600, [])
case("collusion_risk", "a session for another case does not exempt",
     [CO, (90, "identification.started", dict(IDS, case_id="C2")), into(100, "identification-1", "S1", "S2")],
     600, [(R, 105)])
case("collusion_risk", "one alarm for three, updated as they come and go",
     [CO, arrive(0, "S3", "suspect", case_id="C1", case_type="criminal"),
      into(100, "waiting-1", "S1", "S2"), enter(200, "S3", "waiting-2"), move(300, "S1", "waiting-1", "medical-1"),
      move(400, "S2", "waiting-1", "interrogation-2")], 500, [(R, 105), (R, 200), (R, 300), (C, 400)])
case("collusion_risk", "passing by for 3 s",
     [CO, enter(100, "S1", "waiting-1"), enter(100, "S2", "corridor"), move(200, "S2", "corridor", "waiting-1"),
      move(203, "S2", "waiting-1", "corridor")], 3000, [])

# ---- unauthorized_exit -----------------------------------------------------------------------------
case("unauthorized_exit", "suspect at the exit",
     [team(), move(100, "S1", "corridor", "exit"), move(150, "S1", "exit", "corridor")], 300,
     [(R, 100), (C, 150)])
case("unauthorized_exit", "checked out",
     [team(), (90, "person.checkout_approved", {"person": "S1", "by": "O1"}), enter(100, "S1", "exit")],
     300, [])
case("unauthorized_exit", "exit door opens: alarm updated",
     [team(), enter(100, "S1", "exit"), (110, "door.opened", {"door": "exit-door", "room": "exit"})],
     300, [(R, 100), (R, 110)])
case("unauthorized_exit", "gone through the exit: stays active",
     [team(), enter(100, "S1", "exit"), leave(110, "S1", "exit")], 3000, [(R, 100)])
case("unauthorized_exit", "officer at the exit",
     [team(), enter(100, "O1", "exit"), (110, "door.opened", {"door": "exit-door", "room": "exit"})], 300, [])

# ---- procedure_skipped -------------------------------------------------------------------------------
case("procedure_skipped", "straight to interrogation",
     [team(), into(100, INT, "S1", "O1", "O2"), move(200, "S1", INT, "security-1"),
      move(300, "S1", "security-1", "info-1")], 400, [(R, 100), (C, 300)])
case("procedure_skipped", "by the book",
     [team(), enter(10, "S1", "security-1"), move(20, "S1", "security-1", "info-1"),
      move(30, "S1", "info-1", INT)], 400, [])
case("procedure_skipped", "required steps from config",
     [team(), enter(10, "S1", "security-1"), move(20, "S1", "security-1", INT)], 400, [],
     {"procedure_skipped": {"required": ["security_check"]}})

# ---- belongings -----------------------------------------------------------------------------------------
BEL = team() + [(10, "belongings.assigned", {"person": "S1", "locker": "locker-b1", "compartment": 3}),
                (20, "evidence.added", {"locker": "locker-b1", "compartment": 3, "item": "B0001"})]
case("belongings_forgotten", "checked out, items still in",
     [BEL, (1000, "person.checkout_approved", {"person": "S1", "by": "O1"}),
      (1100, "evidence.removed", {"locker": "locker-b1", "compartment": 3, "item": "B0001"})],
     1200, [(R, 1000), (C, 1100)])
case("belongings_forgotten", "handed back before checkout",
     [BEL, (900, "evidence.removed", {"locker": "locker-b1", "compartment": 3, "item": "B0001"}),
      (1000, "person.checkout_approved", {"person": "S1", "by": "O1"})], 1200, [])
case("belongings_overdue", "held 24 h", BEL, 25 * H, [(R, 10 + 24 * H)])
case("belongings_overdue", "handed back in time",
     [BEL, (1000, "evidence.removed", {"locker": "locker-b1", "compartment": 3, "item": "B0001"})],
     30 * H, [])
case("belongings_overdue", "cleared when handed back",
     [BEL, (25 * H, "evidence.removed", {"locker": "locker-b1", "compartment": 3, "item": "B0001"})],
     26 * H, [(R, 10 + 24 * H), (C, 25 * H)])

# ---- wristband ------------------------------------------------------------------------------------------
case("wristband_tamper", "strap opened then closed",
     [team(), status(100, "S1", tamper=True), status(200, "S1", tamper=False)], 300, [(R, 100), (C, 200)])
case("wristband_tamper", "unbound band", [status(100, None, tag="ABCDEF01", tamper=True)], 300, [])
case("wristband_tamper", "status without tamper", [team(), status(100, "S1", battery=50)], 300, [])
case("sos", "button pressed and reset",
     [team(), status(100, "O1", sos=True), status(110, "O1", sos=False)], 300, [(R, 100), (C, 110)])
case("sos", "no button", [team(), status(100, "O1")], 300, [])
case("sos", "unbound tag", [status(100, None, tag="ABCDEF01", sos=True)], 300, [])
case("sos", "cleared when the person leaves",
     [team(), status(100, "S1", sos=True), (200, "person.left", {"person": "S1"})], 300, [(R, 100), (C, 200)])
case("tag_low_battery", "below 20 %",
     [team(), status(100, "S1", battery=15), status(200, "S1", battery=90)], 300, [(R, 100), (C, 200)])
case("tag_low_battery", "low-battery bit", [team(), status(100, "S1", battery="low")], 300, [(R, 100)])
case("tag_low_battery", "at 20 %", [team(), status(100, "S1", battery=20)], 300, [])
case("tag_low_battery", "cleared when unbound",
     [team(), status(100, "S1", battery=10),
      (200, "wristband.unbound", {"tag": tag_of("S1"), "person": "S1"})], 300, [(R, 100), (C, 200)])
case("vital_signs_abnormal", "150 bpm for 30 s",
     [team(), status(100, "S1", heart_rate=150), status(200, "S1", heart_rate=80)], 300, [(R, 130), (C, 200)])
case("vital_signs_abnormal", "40 bpm for 30 s", [team(), status(100, "S1", heart_rate=40)], 300, [(R, 130)])
case("vital_signs_abnormal", "150 bpm for 20 s",
     [team(), status(100, "S1", heart_rate=150), status(120, "S1", heart_rate=80)], 300, [])
case("vital_signs_abnormal", "no reading", [team(), status(100, "S1", heart_rate=None)], 300, [])
case("tag_signal_lost", "left range, back later",
     [arrive(0, "S1", "suspect"), enter(10, "S1", "waiting-1"), leave(100, "S1", "waiting-1"), enter(200, "S1", "waiting-1")],
     300, [(R, 160), (C, 200)])
case("tag_signal_lost", "never seen after binding", [arrive(0, "S1", "suspect")], 300, [(R, 60)])
case("tag_signal_lost", "back within 60 s",
     [arrive(0, "S1", "suspect"), enter(10, "S1", "waiting-1"), leave(100, "S1", "waiting-1"), enter(150, "S1", "corridor")],
     3000, [])
case("tag_signal_lost", "a status report counts as seen",
     [arrive(0, "S1", "suspect"), enter(10, "S1", "waiting-1"), leave(100, "S1", "waiting-1"), status(150, "S1", battery=70)],
     200, [])
case("tag_signal_lost", "cards are not tracked",
     [register(0, "O9", "officer"), bind(0, "O9", "14008EC793")], 3000, [])
case("tag_signal_lost", "unbound tag", [enter(10, None, "waiting-1", tag="ABCDEF01"),
                                        leave(20, None, "waiting-1", tag="ABCDEF01")], 3000, [])

# ---- camera ---------------------------------------------------------------------------------------------
CAM = team() + into(100, INT, "S1", "O1", "O2")
case("suspect_motionless", "camera reports 300 s still",
     [CAM, (1000, "camera.still", {"camera": "cam-int1", "room": INT, "seconds": 300}),
      (1100, "camera.headcount", {"camera": "cam-int1", "room": INT, "count": 3})], 1200, [(R, 1000), (C, 1100)])
case("suspect_motionless", "still since 100 s, the rest is waited for",
     [CAM, (1000, "camera.still", {"camera": "cam-int1", "room": INT, "seconds": 100})], 1300, [(R, 1200)])
case("suspect_motionless", "motion before the limit",
     [CAM, (1000, "camera.still", {"camera": "cam-int1", "room": INT, "seconds": 100}),
      (1100, "camera.still", {"camera": "cam-int1", "room": INT, "seconds": 0})], 3000, [])
case("suspect_motionless", "no suspect in the room",
     [team(), into(100, INT, "O1"), (1000, "camera.still", {"camera": "cam-int1", "room": INT, "seconds": 400})],
     3000, [])
case("headcount_mismatch", "camera sees one more",
     [CAM, (200, "camera.headcount", {"camera": "cam-int1", "room": INT, "count": 4}),
      (300, "camera.headcount", {"camera": "cam-int1", "room": INT, "count": 3})], 400, [(R, 230), (C, 300)])
case("headcount_mismatch", "counts agree",
     [CAM, (200, "camera.headcount", {"camera": "cam-int1", "room": INT, "count": 3})], 3000, [])
case("headcount_mismatch", "mismatch for 20 s",
     [CAM, (200, "camera.headcount", {"camera": "cam-int1", "room": INT, "count": 2}),
      (220, "camera.headcount", {"camera": "cam-int1", "room": INT, "count": 3})], 3000, [])
case("headcount_mismatch", "camera goes offline",
     [CAM, (200, "camera.headcount", {"camera": "cam-int1", "room": INT, "count": 2}),
      (400, "device.offline", {"device": "cam-int1", "error": "timeout"})], 500, [(R, 230), (C, 400)])

# ---- facility -----------------------------------------------------------------------------------------------
case("door_held_open", "open 200 s", [(100, "door.opened", {"door": "exit-door", "room": "exit"}),
                                      (300, "door.closed", {"door": "exit-door", "room": "exit"})],
     400, [(R, 220), (C, 300)])
case("door_held_open", "open 100 s", [(100, "door.opened", {"door": "exit-door", "room": "exit"}),
                                      (200, "door.closed", {"door": "exit-door", "room": "exit"})], 3000, [])
case("door_held_open", "badged open 200 s names the badge",
     [arrive(0, "O1", "officer"), (95, "card.swiped", {"card": "0A1B2C3D4E", "reader": "card-exit", "room": "exit",
                                                       "person": "O1"}),
      (100, "door.opened", {"door": "exit-door", "room": "exit"}),
      (300, "door.closed", {"door": "exit-door", "room": "exit"})], 400, [(R, 220), (C, 300)])
LO = {"locker": "locker-ev1", "compartment": 5}
case("locker_open_too_long", "open 100 s", [(100, "locker.opened", LO), (200, "locker.closed", LO)],
     300, [(R, 160), (C, 200)])
case("locker_open_too_long", "open 50 s", [(100, "locker.opened", LO), (150, "locker.closed", LO)], 3000, [])
case("locker_unauthorized_open", "no unlock command",
     [(100, "locker.opened", LO), (120, "locker.closed", LO)], 300, [(R, 100), (C, 120)])
case("locker_unauthorized_open", "unlocked by command",
     [(90, "locker.unlock_requested", dict(LO, by="O1", order=None)), (100, "locker.opened", LO),
      (120, "locker.closed", LO)], 300, [])
case("locker_unauthorized_open", "command too long ago",
     [(50, "locker.unlock_requested", dict(LO, by="O1", order=None)), (100, "locker.opened", LO)],
     300, [(R, 100)])
case("locker_unauthorized_open", "command for another compartment",
     [(90, "locker.unlock_requested", {"locker": "locker-ev1", "compartment": 6, "by": "O1", "order": None}),
      (100, "locker.opened", LO)], 300, [(R, 100)])
EV = dict(LO, item="E0001")
ORDER = {"order": "ORD1", "item": "E0001", "action": "withdraw", "case_id": "C1", "by": "O1", "expires": None}
case("evidence_unauthorized_removal", "no order",
     [(10, "evidence.added", EV), (100, "evidence.removed", EV), (200, "evidence.added", EV)], 300,
     [(R, 100), (C, 200)])
case("evidence_unauthorized_removal", "unlocked by O1, no order",
     [(10, "evidence.added", EV), (60, "locker.unlock_requested", dict(LO, by="O1", order=None)),
      (100, "evidence.removed", EV)], 300, [(R, 100)])
case("evidence_unauthorized_removal", "withdraw order", [(10, "evidence.added", EV), (50, "custody.ordered", ORDER),
                                                         (100, "evidence.removed", EV)], 300, [])
case("evidence_unauthorized_removal", "order expired",
     [(10, "evidence.added", EV), (50, "custody.ordered", dict(ORDER, expires="2026-11-26T00:01:00.000Z")),
      (100, "evidence.removed", EV)], 300, [(R, 100)])
case("evidence_unauthorized_removal", "a deposit order does not let it out",
     [(10, "evidence.added", EV), (50, "custody.ordered", dict(ORDER, action="deposit")),
      (100, "evidence.removed", EV)], 300, [(R, 100)])
case("evidence_unauthorized_removal", "order spent by an earlier withdrawal",
     [(10, "evidence.added", EV), (50, "custody.ordered", ORDER), (100, "evidence.removed", EV),
      (200, "evidence.added", EV), (300, "evidence.removed", EV)], 400, [(R, 300)])
case("evidence_unauthorized_removal", "order after the fact clears",
     [(10, "evidence.added", EV), (100, "evidence.removed", EV), (150, "custody.ordered", ORDER)], 300,
     [(R, 100), (C, 150)])
case("evidence_unauthorized_removal", "belongings locker",
     [(10, "evidence.added", {"locker": "locker-b1", "compartment": 1, "item": "B1"}),
      (100, "evidence.removed", {"locker": "locker-b1", "compartment": 1, "item": "B1"})], 300, [])

# ---- female_search_without_female_staff ---------------------------------------------------------------------
FEM = arrive(0, "F1", "suspect", gender="female", case_id="C3") + arrive(0, "O1", "officer", gender="male") + \
    arrive(0, "ST2", "staff", gender="female")
case("female_search_without_female_staff", "male officer only",
     [FEM, into(100, "security-1", "F1", "O1"), enter(200, "ST2", "security-1")], 300, [(R, 110), (C, 200)])
case("female_search_without_female_staff", "female staff present",
     [FEM, into(100, "security-1", "F1", "O1", "ST2")], 3000, [])
case("female_search_without_female_staff", "a doctor examines her",
     [FEM, arrive(0, "D1", "visitor", visitor_kind="doctor", gender="male"),
      into(100, "security-1", "F1", "O1", "D1")], 3000, [])
case("female_search_without_female_staff", "male suspect",
     [team(), into(100, "security-1", "S1", "O1")], 3000, [])
case("female_search_without_female_staff", "not a search room",
     [FEM, into(100, "waiting-1", "F1", "O1")], 3000, [])

# ---- interrogation_not_recorded -----------------------------------------------------------------------
case("interrogation_not_recorded", "recording stops mid-questioning",
     [team(), rec(50, 290), into(100, INT, "S1", "O1", "O2"), rec_stop(300), rec(500, 600)], 700,
     [(R, 360), (C, 500)])
case("interrogation_not_recorded", "never recorded",
     [team(), into(100, INT, "S1", "O1", "O2")], 300, [(R, 160)])
case("interrogation_not_recorded", "recorder goes silent",
     [team(), rec(50, 200), into(100, INT, "S1", "O1", "O2")], 500, [(R, 170 + 120 + 60)])
case("interrogation_not_recorded", "recorded throughout",
     [team(), rec(50, 3000), into(100, INT, "S1", "O1", "O2")], 3000, [])
case("interrogation_not_recorded", "no officer: no questioning",
     [team(), enter(100, "S1", INT)], 3000, [])
case("interrogation_not_recorded", "stopped after the suspect left",
     [team(), rec(50, 170), into(100, INT, "S1", "O1", "O2"), move(180, "S1", INT, "waiting-1"),
      rec_stop(200)], 3000, [])

# ---- mixed_waiting_room ------------------------------------------------------------------------------------
MIX = arrive(0, "S1", "suspect", gender="male", case_id="C1") + \
    arrive(0, "F1", "suspect", gender="female", case_id="C2") + \
    arrive(0, "M1", "suspect", gender="male", minor=True, case_id="C3") + \
    arrive(0, "V1", "suspect", gender="male", vulnerable=True, case_id="C4") + \
    arrive(0, "S2", "suspect", gender="male", case_id="C5") + arrive(0, "ST1", "staff")
case("mixed_waiting_room", "a man and a woman", [MIX, into(100, "waiting-3", "ST1", "S1", "F1"),
     move(500, "F1", "waiting-3", "waiting-2")], 600, [(R, 130), (C, 500)])
case("mixed_waiting_room", "a minor with an adult", [MIX, into(100, "waiting-3", "ST1", "S1", "M1")],
     300, [(R, 130)])
case("mixed_waiting_room", "a vulnerable person in a waiting room", [MIX, into(100, "waiting-3", "ST1", "V1")],
     300, [(R, 130)])
case("mixed_waiting_room", "two men", [MIX, into(100, "waiting-3", "ST1", "S1", "S2")], 3000, [])
case("mixed_waiting_room", "led through for 20 s",
     [MIX, into(100, "waiting-3", "ST1", "S1"), enter(100, "F1", "waiting-3"), leave(120, "F1", "waiting-3")],
     3000, [])
case("mixed_waiting_room", "not a waiting room", [MIX, into(100, "medical-1", "ST1", "S1", "F1")], 3000, [])

# ---- evidence custody deadlines ------------------------------------------------------------------------------
DEP = {"order": "DEP1", "item": "E0002", "action": "deposit", "case_id": "C1", "by": "O1", "expires": None}
EV2 = dict(LO, item="E0002")
case("evidence_handover_overdue", "not handed over in 24 h",
     [team(), (100, "custody.ordered", DEP), (30 * H, "evidence.added", EV2)], 31 * H,
     [(R, 100 + 24 * H), (C, 30 * H)])
case("evidence_handover_overdue", "handed over in time",
     [team(), (100, "custody.ordered", DEP), (5 * H, "evidence.added", EV2)], 30 * H, [])
case("evidence_handover_overdue", "already in the locker",
     [team(), (50, "evidence.added", EV2), (100, "custody.ordered", DEP)], 30 * H, [])
case("evidence_handover_overdue", "a belongings locker is no hand-over",
     [team(), (100, "custody.ordered", DEP),
      (200, "evidence.added", {"locker": "locker-b1", "compartment": 2, "item": "E0002"})], 25 * H,
     [(R, 100 + 24 * H)])
case("evidence_handover_overdue", "limit from config",
     [team(), (100, "custody.ordered", DEP)], 3 * H, [(R, 100 + 2 * H)], {"evidence_handover_overdue": {"limit_h": 2}})
WD = dict(ORDER, due="2026-11-26T18:00:00")   # no offset: the center timezone, Asia/Shanghai: 10:00Z
case("evidence_not_returned", "withdrawn and not back by due",
     [(10, "evidence.added", EV), (50, "custody.ordered", WD), (100, "evidence.removed", EV),
      (11 * H, "evidence.added", EV)], 12 * H, [(R, 10 * H), (C, 11 * H)])
case("evidence_not_returned", "back in time",
     [(10, "evidence.added", EV), (50, "custody.ordered", WD), (100, "evidence.removed", EV),
      (9 * H, "evidence.added", EV)], 12 * H, [])
case("evidence_not_returned", "a withdrawal without due",
     [(10, "evidence.added", EV), (50, "custody.ordered", ORDER), (100, "evidence.removed", EV)], 30 * H, [])
case("evidence_not_returned", "taken out after its due",
     [(10, "evidence.added", EV), (50, "custody.ordered", dict(WD, due="2026-11-26T00:01:00Z")),
      (100, "evidence.removed", EV)], 200, [(R, 100)])

# ---- camera_tamper -------------------------------------------------------------------------------------------
def tam(t, kind, active, cam="cam-int1", room=INT):
    return (t, "camera.tampered", {"camera": cam, "room": room, "kind": kind, "active": active})


case("camera_tamper", "interrogation camera covered",
     [tam(100, "covered", True), tam(200, "covered", False)], 300, [(R, 100), (C, 200)])
case("camera_tamper", "covered then moved: one alarm, updated",
     [tam(100, "covered", True), tam(150, "moved", True), tam(200, "covered", False), tam(250, "moved", False)],
     300, [(R, 100), (R, 150), (R, 200), (C, 250)])
case("camera_tamper", "a corridor camera is not watched",
     [tam(100, "covered", True, "cam-corr", "corridor")], 300, [])
case("camera_tamper", "waiting room video lost", [tam(100, "video_lost", True, "cam-wait1", "waiting-1")],
     300, [(R, 100)])
case("camera_tamper", "video back: device.online ends video_lost",
     [tam(100, "video_lost", True, "cam-wait1", "waiting-1"),
      (150, "device.online", {"device": "cam-wait1", "error": None})], 300, [(R, 100), (C, 150)])
case("camera_tamper", "device.online does not end a covered lens",
     [tam(100, "covered", True), (150, "device.online", {"device": "cam-int1", "error": None})], 300, [(R, 100)])

# ---- device_offline ---------------------------------------------------------------------------------------------
case("device_offline", "camera offline then back",
     [(100, "device.offline", {"device": "cam-int1", "error": "no frames"}),
      (200, "device.online", {"device": "cam-int1", "error": None})], 300, [(R, 100), (C, 200)])
case("device_offline", "online only", [(100, "device.online", {"device": "cam-int1", "error": None})], 300, [])
case("device_offline", "one zone base station offline then back",
     [(100, "device.offline", {"device": "zone-stations/861694034205896", "error": "silent 90 s",
                               "station": "861694034205896"}),
      (200, "device.online", {"device": "zone-stations/861694034205896", "error": None})], 300, [(R, 100), (C, 200)])
case("device_offline", "error is not offline",
     [(100, "device.error", {"device": "cam-int1", "error": "crc"})], 300, [])

# ---- clock_unsynchronised (issue 22: [clock] unsynced_alarm_s, default 300) -------------------------------
case("clock_unsynchronised", "unsynchronised 300 s, then synchronised",
     [(100, "clock.sync", {"synchronised": False, "source": "adjtimex"}),
      (900, "clock.sync", {"synchronised": True, "source": "adjtimex"})], 1000, [(R, 400), (C, 900)])
case("clock_unsynchronised", "synchronised again within 300 s; unknown raises nothing",
     [(100, "clock.sync", {"synchronised": False, "source": "adjtimex"}),
      (350, "clock.sync", {"synchronised": True, "source": "adjtimex"}),
      (400, "clock.sync", {"synchronised": None, "source": "unknown"})], 2000, [])

# ---- station_impostor (zone reader: one station device = "<zone id>/<dev_id>") ---------------------------
ZS = "zone-stations/861694034205896"
IMPOSTOR = {"device": ZS, "station": "861694034205896", "impostor": True, "kind": "second_peer",
            "error": "dev_id claimed by 127.0.0.3:5000 while 127.0.0.1:4000 is alive",
            "peers": ["127.0.0.1:4000", "127.0.0.3:5000"]}
case("station_impostor", "second live peer, resolved later",
     [(100, "device.error", IMPOSTOR), (150, "device.error", dict(IMPOSTOR, kind="reg_code")),
      (400, "device.online", {"device": ZS, "error": None, "station": "861694034205896"})],
     500, [(R, 100), (C, 400)])
case("station_impostor", "station offline/online and plain errors are no impostor",
     [(100, "device.offline", {"device": ZS, "error": "silent"}),
      (150, "device.error", {"device": ZS, "error": "connection flood"}),
      (200, "device.online", {"device": ZS, "error": None})], 300, [])

# ---- DOMAIN v2: the detention clock (issue 13) ---------------------------------------------------------
def upd(t, pid, by="O1", reason="approved", **changes):
    return (t, "person.updated", {"person": pid, "changes": changes, "by": by, "reason": reason})


def left(t, pid):
    return (t, "person.left", {"person": pid})


OFF = arrive(0, "O1", "officer")
case("detention_timeout", "the clock starts at arrived_at, not at registration",
     [register(2 * H, "S1", "suspect", case_type="criminal", arrived_at="2026-11-26T00:00:00Z")],
     13 * H, [(R, 12 * H)])
case("detention_timeout", "continued inquiry: 12 h default",
     [register(0, "S1", "suspect", case_type="inquiry")], 13 * H, [(R, 12 * H)])
case("detention_timeout", "continued inquiry of a vulnerable person: 4 h",
     [register(0, "S1", "suspect", case_type="inquiry", vulnerable=True)], 5 * H, [(R, 4 * H)])
case("detention_timeout", "administrative 12 h tier",
     [register(0, "S1", "suspect", case_type="administrative", limit_h=12)], 13 * H, [(R, 12 * H)])
case("detention_timeout", "case-type change keeps arrived_at",
     [OFF, register(0, "S1", "suspect", case_type="administrative"), upd(1 * H, "S1", case_type="criminal")],
     13 * H, [(R, 12 * H)])
case("detention_timeout", "re-registration in the same stay keeps the clock",
     [register(0, "S1", "suspect", case_type="criminal"), register(5 * H, "S1", "suspect", case_type="criminal")],
     13 * H, [(R, 12 * H)])
case("detention_timeout", "a criminal limit beyond the law is held to 24 h",
     [register(0, "S1", "suspect", case_type="criminal", limit_h=48)], 30 * H, [(R, 24 * H)])
case("detention_timeout", "detention ends the summons clock",
     [OFF, register(0, "S1", "suspect", case_type="criminal"),
      upd(2 * H, "S1", detained_at="2026-11-26T02:00:00Z")], 20 * H, [])
case("detention_timeout", "extension approved before the limit",
     [OFF, register(0, "S1", "suspect", case_type="administrative"), upd(6 * H, "S1", limit_h=24)], 23 * H, [])
case("detention_timeout", "a limit lengthened after it expired never clears the timeout",
     [OFF, register(0, "S1", "suspect", case_type="administrative"), upd(9 * H, "S1", limit_h=24)], 23 * H,
     [(R, 8 * H)])
case("detention_timeout", "vulnerable withdrawn after the 4 h expired: the timeout stands",
     [OFF, register(0, "S1", "suspect", case_type="inquiry", vulnerable=True), upd(5 * H, "S1", vulnerable=False)],
     13 * H, [(R, 4 * H)])
case("detention_warning", "continued inquiry of a vulnerable person: at 3 h",
     [register(0, "S1", "suspect", case_type="inquiry", vulnerable=True)], 3.9 * H, [(R, 3 * H), (R, 3.5 * H)])
case("detention_warning", "custody transfer: 2 h before the 24 h",
     [OFF, register(0, "S1", "suspect", case_type="criminal"),
      upd(1 * H, "S1", detained_at="2026-11-26T01:00:00Z"), left(24.5 * H, "S1")], 26 * H,
     [(R, 23 * H), (C, 24.5 * H)])
case("custody_transfer_overdue", "still in the center 24 h after detention",
     [OFF, register(0, "S1", "suspect", case_type="criminal"),
      upd(1 * H, "S1", detained_at="2026-11-26T01:00:00Z"), left(26 * H, "S1")], 27 * H,
     [(R, 25 * H), (C, 26 * H)])
case("custody_transfer_overdue", "transferred in time",
     [OFF, register(0, "S1", "suspect", case_type="criminal"),
      upd(1 * H, "S1", detained_at="2026-11-26T01:00:00Z"), left(20 * H, "S1")], 30 * H, [])
case("consecutive_summons", "registered again 4 h after leaving",
     [register(0, "S1", "suspect", case_type="criminal"), left(1 * H, "S1"),
      register(5 * H, "S1", "suspect", case_type="criminal"), left(6 * H, "S1")], 7 * H, [(R, 5 * H), (C, 6 * H)])
case("consecutive_summons", "registered again 13 h after leaving",
     [register(0, "S1", "suspect", case_type="criminal"), left(1 * H, "S1"),
      register(14 * H, "S1", "suspect", case_type="criminal")], 15 * H, [])
case("consecutive_summons", "re-registration within the stay is no new summons",
     [register(0, "S1", "suspect", case_type="criminal"), register(1 * H, "S1", "suspect", case_type="criminal")],
     2 * H, [])

def passed(t, pid, door, room, direction):
    return (t, "door.passed", {"door": door, "room": room, "tag": tag_of(pid), "person": pid, "direction": direction})


case("unauthorized_exit", "an exit = true door opens in a corridor",
     [team(), enter(100, "S1", "corridor"), (110, "door.opened", {"door": "side-door", "room": "corridor"})],
     300, [(R, 110)])
case("unauthorized_exit", "a door tag passing out at an exit door",
     [team(), passed(100, "S1", "side-door", "corridor", "out")], 300, [(R, 100)])
case("unauthorized_exit", "a door tag passing in",
     [team(), passed(100, "S1", "side-door", "corridor", "in")], 300, [])
case("unauthorized_exit", "an ordinary door opens in the corridor",
     [team(), enter(100, "S1", "interrogation-1"), (110, "door.opened", {"door": "int1-door", "room": "interrogation-1"})],
     300, [])
case("unauthorized_exit", "checked out, then through the exit door",
     [team(), (90, "person.checkout_approved", {"person": "S1", "by": "O1"}),
      passed(100, "S1", "side-door", "corridor", "out")], 300, [])
case("unauthorized_exit", "a checkout after the escape clears it with a reason",
     [team(), enter(100, "S1", "exit"), leave(110, "S1", "exit"),
      (200, "person.checkout_approved", {"person": "S1", "by": "O1"})], 300, [(R, 100), (C, 200)])

# ---- grace periods that add up (window_s) ------------------------------------------------------------
def flap(t0, pid, a, b, n, every=10, gap=2):
    """One tag flapping between two stations: out of a into b for ``gap`` s, every ``every`` s."""
    out = []
    for i in range(n):
        t = t0 + i * every
        out += move(t, pid, a, b) + move(t + gap, pid, b, a)
    return out


case("lone_interrogation", "out 25 s, back 5 s, out 25 s adds up",
     [team(), into(100, INT, "S1", "O1", "O2"), leave(200, "O2", INT), enter(225, "O2", INT),
      leave(230, "O2", INT), enter(255, "O2", INT)], 400, [(R, 235), (C, 255)])
case("lone_interrogation", "a tag flapping between two stations",
     [team(), into(100, INT, "S1", "O1", "O2"), flap(200, "O2", INT, "waiting-1", 30)], 600, [])
case("lone_interrogation", "absences further apart than the window",
     [team(), into(100, INT, "S1", "O1", "O2"), leave(200, "O2", INT), enter(225, "O2", INT),
      leave(600, "O2", INT), enter(625, "O2", INT)], 800, [])
case("lone_interrogation", "absences further apart than window_s = grace_s (the smallest window allowed)",
     [team(), into(100, INT, "S1", "O1", "O2"), leave(200, "O2", INT), enter(225, "O2", INT),
      leave(260, "O2", INT), enter(285, "O2", INT)], 400, [], {"lone_interrogation": {"window_s": 30}})
case("unattended_suspect", "attendant out 50 s, back 5 s, out again adds up",
     [team(), into(100, "waiting-1", "S1", "O1"), leave(200, "O1", "waiting-1"), enter(250, "O1", "waiting-1"),
      leave(255, "O1", "waiting-1"), enter(400, "O1", "waiting-1")], 500, [(R, 265), (C, 400)])
case("unattended_suspect", "the attendant's tag flapping between two stations",
     [team(), into(100, "waiting-1", "S1", "O1"), flap(200, "O1", "waiting-1", "corridor", 30)], 600, [])

UNB = (300, "wristband.unbound", {"tag": tag_of("S1"), "person": "S1"})
case("suspect_untracked", "registered without a band",
     [register(0, "S1", "suspect", case_type="criminal"), bind(100, "S1")], 200, [(R, 60), (C, 100)])
case("suspect_untracked", "band unbound while inside",
     [team(), into(100, "waiting-1", "S1", "O1"), UNB, (500, "person.left", {"person": "S1"})], 600,
     [(R, 360), (C, 500)])
case("suspect_untracked", "band bound within 60 s",
     [register(0, "S1", "suspect", case_type="criminal"), bind(30, "S1")], 300, [])
case("suspect_untracked", "an officer without a band", [register(0, "O1", "officer")], 300, [])
case("suspect_untracked", "a card is no tracking band",
     [register(0, "S1", "suspect", case_type="criminal"), bind(0, "S1", "14008EC793")], 300, [(R, 60)])
case("wristband_tamper", "unbinding a present suspect's band does not clear it",
     [team(), into(100, "waiting-1", "S1", "O1"), status(200, "S1", tamper=True), UNB,
      (400, "person.left", {"person": "S1"})], 600, [(R, 200), (C, 400)])
case("unattended_suspect", "unbinding does not make him vanish",
     [team(), enter(100, "S1", "waiting-1"), UNB, enter(400, "O1", "waiting-1")], 600, [(R, 160), (C, 400)])

__all__ = ["CASES", "Case", "tag_of"]
