"""A day in the center: 10 suspects of 2 cases, 8 officers, 7 staff, a
guardian; 24 h of center time scripted as (t, type, data) steps.

Mostly by the book, with deliberate incidents whose alarms test_rules_day.py
asserts exactly (see INCIDENTS).
"""
from __future__ import annotations

from helpers.scenario import H, ROOMS, arrive, enter, leave, make_config, status

MIN = 60.0

DAY_ROOMS = [r for r in ROOMS if not r["id"].startswith("waiting")] + [
    {"id": "waiting-1", "type": "waiting", "name": "候问室1", "adjacent": ["waiting-2"]},
    {"id": "waiting-2", "type": "waiting", "name": "候问室2"},
    {"id": "waiting-3", "type": "waiting", "name": "候问室3"},
    {"id": "waiting-4", "type": "waiting", "name": "候问室4"},
    {"id": "waiting-5", "type": "waiting", "name": "候问室5"},
    {"id": "waiting-6", "type": "waiting", "name": "候问室6"},
    {"id": "waiting-7", "type": "waiting", "name": "候问室7"},      # women
]
# interrogation-1 is adjacent to waiting-1 in ROOMS; identification-1 to waiting-3.

INCIDENTS = """
 1 S2 taken to interrogation before info collection          procedure_skipped
 2 S6 questioned by O5 alone for 5 min                         lone_interrogation
 3 S1 and S4 (case C1) meet in the toilet for 10 s              collusion_risk
 4 S5 questioned 4 h+ (a 40 s toilet visit is no rest)         rest_overdue
 5 female S3 searched, female staff 20 s late                  female_search_without_female_staff
 6 minor S9 questioned, guardian 2 min late                    minor_without_guardian
 7 S7 (administrative, 8 h) kept too long                      detention_warning (+update), detention_timeout
 8 S10 heart rate 140 for 1 min                                vital_signs_abnormal
 9 exit door held open 3 min                                   door_held_open
10 S8 checked out with belongings still in the locker          belongings_forgotten
11 evidence item E0002 taken out without an order              evidence_unauthorized_removal
12 waiting-room camera offline 10 min                          device_offline
13 O3 leaves S4's interrogation for 2 min, O4 stays            officer_left_interrogation (+ lone_interrogation)
14 S4 wanders to the exit, the exit door opens                 unauthorized_exit (+update)
15 camera counts one person too many in interrogation-1        headcount_mismatch
16 S6 motionless in waiting-1                                  suspect_motionless
17 S10's strap opened for 30 s                                  wristband_tamper
18 O2 presses SOS                                              sos
19 S1's battery low                                            tag_low_battery
20 evidence compartment 2 forced open, left open 2 min         locker_unauthorized_open, locker_open_too_long
21 S8's tag unseen for 90 s                                    tag_signal_lost
22 staff ST4 leaves waiting-4 (S4, S8) for 2 min               unattended_suspect x2
23 interrogation-2's recorder stopped 12:40-12:45 (S4)         interrogation_not_recorded
24 female S3 led into the men's waiting-3 for 1 min            mixed_waiting_room, collusion_risk (S2)
25 withdrawn E0001 due back 16:20, returned 16:30              evidence_not_returned
26 the waiting-1 camera covered for 1 min                      camera_tamper
27 an impostor claims interrogation-1's base station 5 min     station_impostor
The recorders of both interrogation rooms report every 100 s; women and the
minor S9 are held apart in their own waiting rooms; the guardian G1 is S9's.
"""

SUSPECTS = [f"S{i}" for i in range(1, 11)]
CASE = {s: ("C1" if i < 5 else "C2") for i, s in enumerate(SUSPECTS)}
# one suspect of each case per waiting room; none of case C1 next to interrogation-1
WAIT = {"S6": "waiting-1", "S1": "waiting-2", "S2": "waiting-3", "S7": "waiting-3",
        "S3": "waiting-7", "S8": "waiting-4", "S4": "waiting-4", "S9": "waiting-5",
        "S5": "waiting-6", "S10": "waiting-6"}
STAFF_ROOM = {"ST1": "security-1", "ST2": "waiting-1", "ST7": "waiting-2", "ST3": "waiting-3",
              "ST4": "waiting-4", "ST5": "waiting-5", "ST6": "waiting-6", "ST8": "waiting-7"}
INT1, INT2 = "interrogation-1", "interrogation-2"


def config():
    return make_config(rooms=DAY_ROOMS)


def walk(t, pids, a, b):
    """A group moves from a to b at t (each leaves a, enters b, in order)."""
    out = []
    for p in pids:
        if a:
            out.append(leave(t, p, a))
        if b:
            out.append(enter(t, p, b))
    return out


def headcount(t, room, n):
    return (t, "camera.headcount", {"camera": "cam-int1", "room": room, "count": n})


def release(t, sus, esc, forget=False):
    """Belongings back, checkout approval, out through the exit, person.left."""
    i = SUSPECTS.index(sus)
    out = walk(t, esc, "duty", WAIT[sus])
    out += walk(t, [sus] + esc, WAIT[sus], "belongings-1")
    if not forget:
        out.append((t + 20, "evidence.removed", {"locker": "locker-b1", "compartment": i + 1,
                                                 "item": f"B{i + 1:04d}"}))
    out.append((t + 30, "person.checkout_approved", {"person": sus, "by": esc[0]}))
    out += walk(t + 1 * MIN, [sus] + esc, "belongings-1", "exit")
    out.append((t + 1 * MIN + 10, "door.opened", {"door": "exit-door", "room": "exit"}))
    out.append(leave(t + 1 * MIN + 20, sus, "exit"))
    out.append((t + 1 * MIN + 20, "person.left", {"person": sus}))
    out.append((t + 1 * MIN + 30, "door.closed", {"door": "exit-door", "room": "exit"}))
    out += walk(t + 1 * MIN + 40, esc, "exit", "duty")
    return out


def steps() -> list:
    s: list = []
    # 07:00 staff, officers and a guardian arrive
    for i in range(1, 9):
        s += arrive(7 * H, f"O{i}", "officer", name=f"警{i}", gender="female" if i == 8 else "male")
        s.append(enter(7 * H, f"O{i}", "duty"))
    for st, room in STAFF_ROOM.items():
        s += arrive(7 * H, st, "staff", gender="female" if st in ("ST1", "ST8") else "male")
        s.append(enter(7 * H, st, room))
    s += arrive(7 * H, "G1", "visitor", visitor_kind="guardian", **{"for": "S9"})
    # the interrogation rooms' recorder system reports every 100 s (23: INT2 stopped 12:40-12:45)
    for room in (INT1, INT2):
        t = 7 * H
        while t <= 20 * H:
            if not (room == INT2 and 12 * H + 40 * MIN <= t < 12 * H + 45 * MIN):
                s.append((t, "recording.started", {"room": room, "source": "recorder"}))
            t += 100
    s.append((12 * H + 40 * MIN, "recording.stopped", {"room": INT2, "source": "recorder"}))
    s.append((12 * H + 45 * MIN, "recording.started", {"room": INT2, "source": "recorder"}))
    # 24: S3 led into waiting-3 (S2, S7) by mistake for a minute
    s += walk(10 * H + 40 * MIN, ["S3"], "waiting-7", "waiting-3")
    s += walk(10 * H + 41 * MIN, ["S3"], "waiting-3", "waiting-7")
    # 26: the waiting-1 camera covered for a minute
    s.append((14 * H + 30 * MIN, "camera.tampered",
              {"camera": "cam-wait1", "room": "waiting-1", "kind": "covered", "active": True}))
    s.append((14 * H + 31 * MIN, "camera.tampered",
              {"camera": "cam-wait1", "room": "waiting-1", "kind": "covered", "active": False}))
    s.append(enter(7 * H, "G1", "duty"))

    # 08:00 - 09:38 intake, one suspect every 10 min, escorted by O1+O2 (C1) / O5+O6 (C2)
    for i, sus in enumerate(SUSPECTS):
        t = 8 * H + i * 10 * MIN
        esc = ["O1", "O2"] if CASE[sus] == "C1" else ["O5", "O6"]
        s += arrive(t, sus, "suspect", name=f"嫌{sus[1:]}", case_id=CASE[sus],
                    case_type="criminal" if CASE[sus] == "C1" else "administrative",
                    gender="female" if sus == "S3" else "male", minor=(sus == "S9"))
        s.append(enter(t, sus, "entrance"))
        s += walk(t, esc, "duty", "entrance")
        if sus == "S3":           # 5: the female staff member stepped out, back 20 s late
            s.append(leave(t + 30, "ST1", "security-1"))
            s.append(enter(t + 1 * MIN + 20, "ST1", "security-1"))
        s += walk(t + 1 * MIN, [sus] + esc, "entrance", "security-1")
        s += walk(t + 3 * MIN, [sus] + esc, "security-1", "belongings-1")
        s.append((t + 3 * MIN + 10, "belongings.assigned", {"person": sus, "locker": "locker-b1",
                                                            "compartment": i + 1}))
        s.append((t + 3 * MIN + 20, "evidence.added", {"locker": "locker-b1", "compartment": i + 1,
                                                       "item": f"B{i + 1:04d}"}))
        if sus == "S2":           # 1: to interrogation-2 before info collection
            s += walk(t + 5 * MIN, [sus] + esc, "belongings-1", INT2)
            s += walk(t + 7 * MIN, [sus] + esc, INT2, "info-1")
            s += walk(t + 9 * MIN, [sus], "info-1", WAIT[sus])
            s += walk(t + 9 * MIN, esc, "info-1", "duty")
            continue
        s += walk(t + 5 * MIN, [sus] + esc, "belongings-1", "info-1")
        s += walk(t + 8 * MIN, [sus], "info-1", WAIT[sus])
        s += walk(t + 8 * MIN, esc, "info-1", "duty")

    # 21: S8's tag unseen 90 s (09:30)
    s.append(leave(9 * H + 30 * MIN, "S8", "waiting-4"))
    s.append(enter(9 * H + 31 * MIN + 30, "S8", "waiting-4"))

    # 10:00-11:00 S1 in interrogation-1 with O1+O2; 19: S1's battery low
    s += walk(10 * H, ["O1", "O2"], "duty", WAIT["S1"])
    s += walk(10 * H, ["S1", "O1", "O2"], WAIT["S1"], INT1)
    s.append(status(10 * H + 30 * MIN, "S1", battery=15))
    s += walk(11 * H, ["S1", "O1", "O2"], INT1, WAIT["S1"])
    s += walk(11 * H, ["O1", "O2"], WAIT["S1"], "duty")

    # 22: ST4 leaves waiting-4 (S3, S8) for 2 min at 10:30
    s += walk(10 * H + 30 * MIN, ["ST4"], "waiting-4", "corridor")
    s += walk(10 * H + 32 * MIN, ["ST4"], "corridor", "waiting-4")

    # 3: S1 and S4 (case C1) in the toilet together for 10 s, each escorted
    s += walk(11 * H + 10 * MIN, ["O1"], "duty", WAIT["S1"])
    s += walk(11 * H + 10 * MIN, ["S1", "O1"], WAIT["S1"], "toilet-1")
    s += walk(11 * H + 10 * MIN + 50, ["O3"], "duty", WAIT["S4"])
    s += walk(11 * H + 10 * MIN + 50, ["S4", "O3"], WAIT["S4"], "toilet-1")
    s += walk(11 * H + 11 * MIN, ["S1", "O1"], "toilet-1", WAIT["S1"])
    s += walk(11 * H + 11 * MIN, ["O1"], WAIT["S1"], "duty")
    s += walk(11 * H + 13 * MIN, ["S4", "O3"], "toilet-1", WAIT["S4"])
    s += walk(11 * H + 13 * MIN, ["O3"], WAIT["S4"], "duty")

    # 2: S6 questioned by O5 alone in interrogation-1, O6 joins 5 min late (11:30)
    s += walk(11 * H + 30 * MIN, ["O5"], "duty", WAIT["S6"])
    s += walk(11 * H + 30 * MIN, ["S6", "O5"], WAIT["S6"], INT1)
    s += walk(11 * H + 35 * MIN, ["O6"], "duty", INT1)
    # 15: the camera counts 4 for 40 s while 3 are in the room; later counts are right
    s.append(headcount(11 * H + 40 * MIN, INT1, 4))
    s.append(headcount(11 * H + 40 * MIN + 40, INT1, 3))
    s += walk(12 * H + 30 * MIN, ["S6", "O5", "O6"], INT1, WAIT["S6"])
    s += walk(12 * H + 30 * MIN, ["O5", "O6"], WAIT["S6"], "duty")
    s.append(headcount(12 * H + 30 * MIN, INT1, 0))

    # 13: S4 in interrogation-2 with O3+O4 (12:00-13:00); O3 out 2 min at 12:20
    s += walk(12 * H, ["O3", "O4"], "duty", WAIT["S4"])
    s += walk(12 * H, ["S4", "O3", "O4"], WAIT["S4"], INT2)
    s += walk(12 * H + 20 * MIN, ["O3"], INT2, "corridor")
    s += walk(12 * H + 22 * MIN, ["O3"], "corridor", INT2)
    s += walk(13 * H, ["S4", "O3", "O4"], INT2, "corridor")
    s += walk(13 * H, ["O4"], "corridor", "duty")
    # 14: S4 walks off to the exit, the door opens; O3 fetches him 50 s later
    s += walk(13 * H + 1 * MIN, ["S4"], "corridor", "exit")
    s.append((13 * H + 1 * MIN + 5, "door.opened", {"door": "exit-door", "room": "exit"}))
    s.append((13 * H + 1 * MIN + 15, "door.closed", {"door": "exit-door", "room": "exit"}))
    s += walk(13 * H + 1 * MIN + 50, ["O3"], "corridor", "exit")
    s += walk(13 * H + 2 * MIN + 10, ["S4", "O3"], "exit", WAIT["S4"])
    s += walk(13 * H + 2 * MIN + 10, ["O3"], WAIT["S4"], "duty")

    # 4: S5 in interrogation-1 13:00-17:30 with O7+O8; a 40 s toilet visit at 15:00
    s += walk(13 * H, ["O7", "O8"], "duty", WAIT["S5"])
    s += walk(13 * H, ["S5", "O7", "O8"], WAIT["S5"], INT1)
    s.append(headcount(13 * H, INT1, 3))
    s += walk(15 * H, ["S5", "O7"], INT1, "toilet-1")
    s.append(headcount(15 * H, INT1, 1))
    s += walk(15 * H + 40, ["S5", "O7"], "toilet-1", INT1)
    s.append(headcount(15 * H + 40, INT1, 3))
    s += walk(17 * H + 30 * MIN, ["S5", "O7", "O8"], INT1, WAIT["S5"])
    s.append(headcount(17 * H + 30 * MIN, INT1, 0))
    s += walk(17 * H + 30 * MIN, ["O7", "O8"], WAIT["S5"], "duty")

    # 6: minor S9 in interrogation-2 14:00-15:00 with O5+O6; the guardian 2 min late
    s += walk(14 * H, ["O5", "O6"], "duty", WAIT["S9"])
    s += walk(14 * H, ["S9", "O5", "O6"], WAIT["S9"], INT2)
    s += walk(14 * H + 2 * MIN, ["G1"], "duty", INT2)
    s += walk(15 * H, ["S9", "O5", "O6"], INT2, WAIT["S9"])
    s += walk(15 * H, ["G1"], INT2, "duty")
    s += walk(15 * H, ["O5", "O6"], WAIT["S9"], "duty")

    # 8 + 17: S10's wristband; 18: O2 presses SOS in the duty room
    s.append(status(12 * H, "S10", heart_rate=140))
    s.append(status(12 * H + 1 * MIN, "S10", heart_rate=90))
    s.append(status(12 * H + 10 * MIN, "S10", tamper=True, heart_rate=90))
    s.append(status(12 * H + 10 * MIN + 30, "S10", tamper=False, heart_rate=90))
    s.append(status(12 * H + 15 * MIN, "O2", sos=True))
    s.append(status(12 * H + 15 * MIN + 5, "O2", sos=False))

    # 12 + 16: the waiting-1 camera offline 10 min; S6 asleep at 14:00
    s.append((13 * H + 30 * MIN, "device.offline", {"device": "cam-wait1", "error": "no frames"}))
    s.append((13 * H + 40 * MIN, "device.online", {"device": "cam-wait1", "error": None}))
    # 23: a second peer claims the interrogation-1 station; resolved 5 min later
    zs = "zone-stations/861694034205896"
    s.append((13 * H + 50 * MIN, "device.error", {
        "device": zs, "station": "861694034205896", "impostor": True, "kind": "second_peer",
        "error": "claimed by 10.30.1.99:40000 while 10.30.1.40:51000 is alive",
        "peers": ["10.30.1.40:51000", "10.30.1.99:40000"]}))
    s.append((13 * H + 55 * MIN, "device.online", {"device": zs, "error": None, "station": "861694034205896"}))
    s.append((14 * H, "camera.still", {"camera": "cam-wait1", "room": "waiting-1", "seconds": 300}))
    s.append((14 * H + 20 * MIN, "camera.still", {"camera": "cam-wait1", "room": "waiting-1", "seconds": 0}))

    # 11: evidence; 20: a forced compartment
    ev = {"locker": "locker-ev1", "compartment": 1}
    s.append((9 * H + 50 * MIN, "locker.unlock_requested", dict(ev, by="O1", order="D1")))
    s.append((9 * H + 50 * MIN + 5, "locker.opened", ev))
    s.append((9 * H + 50 * MIN + 10, "evidence.added", dict(ev, item="E0001")))
    s.append((9 * H + 50 * MIN + 12, "evidence.added", dict(ev, item="E0002")))
    s.append((9 * H + 50 * MIN + 20, "locker.closed", ev))
    s.append((16 * H, "custody.ordered", {"order": "W1", "item": "E0001", "action": "withdraw",   # 25
                                         "case_id": "C1", "by": "O1", "expires": None,
                                         "due": "2026-11-27T00:20:00"}))     # Asia/Shanghai = 16:20Z
    s.append((16 * H + 1 * MIN, "locker.unlock_requested", dict(ev, by="O1", order="W1")))
    s.append((16 * H + 1 * MIN + 5, "locker.opened", ev))
    s.append((16 * H + 1 * MIN + 10, "evidence.removed", dict(ev, item="E0001")))
    s.append((16 * H + 1 * MIN + 12, "evidence.removed", dict(ev, item="E0002")))
    s.append((16 * H + 1 * MIN + 30, "locker.closed", ev))
    s.append((16 * H + 30 * MIN, "locker.unlock_requested", dict(ev, by="O1", order=None)))
    s.append((16 * H + 30 * MIN + 5, "locker.opened", ev))
    s.append((16 * H + 30 * MIN + 10, "evidence.added", dict(ev, item="E0002")))
    s.append((16 * H + 30 * MIN + 12, "evidence.added", dict(ev, item="E0001")))
    s.append((16 * H + 30 * MIN + 20, "locker.closed", ev))
    s.append((20 * H, "locker.opened", {"locker": "locker-ev1", "compartment": 2}))
    s.append((20 * H + 2 * MIN, "locker.closed", {"locker": "locker-ev1", "compartment": 2}))

    # releases: C2 (administrative, 8 h) by 15:47 except S7 (7); C1 (criminal, 12 h) by 19:02
    s += release(15 * H + 30 * MIN, "S6", ["O5"])
    s += release(15 * H + 35 * MIN, "S8", ["O6"], forget=True)        # 10
    s.append((16 * H, "evidence.removed", {"locker": "locker-b1", "compartment": 8, "item": "B0008"}))
    s += release(15 * H + 40 * MIN, "S9", ["O5"])
    s += release(15 * H + 45 * MIN, "S10", ["O6"])
    s += release(17 * H + 30 * MIN, "S7", ["O6"])                     # 7: registered 09:00
    s.append((17 * H + 40 * MIN, "door.opened", {"door": "exit-door", "room": "exit"}))   # 9
    s.append((17 * H + 43 * MIN, "door.closed", {"door": "exit-door", "room": "exit"}))
    s += release(18 * H, "S2", ["O1"])
    s += release(18 * H + 10 * MIN, "S3", ["O2"])
    s += release(18 * H + 20 * MIN, "S1", ["O1"])
    s += release(18 * H + 30 * MIN, "S4", ["O2"])
    s += release(19 * H, "S5", ["O3"])
    s.sort(key=lambda x: x[0])        # stable: same-time steps keep their script order
    return s
