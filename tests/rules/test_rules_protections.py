"""Issue 14 beyond the per-code cases of rule_cases.py: a raid's collusion
alarms (one per case and room group), identification sessions, recording
staleness against replay, custody order times in the center's timezone."""
from __future__ import annotations

from rules.replay import alarm_rows, replay
from rules.state import State
from rules.model import GENESIS, Draft, parse_ts, seal
from helpers.scenario import ROOMS, Scenario, arrive, enter, make_config, move

RAID_ROOMS = ["waiting-1", "waiting-2", "waiting-3", "interrogation-1", "interrogation-2",
              "identification-1", "medical-1", "toilet-1", "corridor", "info-1"]


def rows(events):
    return list(alarm_rows(events))


def room_groups(rooms_with_people: set[str]) -> list[set[str]]:
    """Connected groups of the given rooms by ``adjacent`` (both directions):
    an implementation independent of the rule's, from the config itself."""
    adj: dict[str, set[str]] = {r["id"]: set() for r in ROOMS}
    for r in ROOMS:
        for a in r.get("adjacent", []):
            adj[r["id"]].add(a)
            adj[a].add(r["id"])
    left, out = set(rooms_with_people), []
    while left:
        todo, comp = [left.pop()], set()
        while todo:
            r = todo.pop()
            comp.add(r)
            for a in adj[r] & left:
                left.discard(a)
                todo.append(a)
        out.append(comp)
    return out


def expected_groups(where: dict[str, str], case_of: dict[str, str]) -> set[tuple[str, tuple[str, ...]]]:
    """(case, persons) for every case and room group holding ≥ 2 of its suspects."""
    out = set()
    for case in set(case_of.values()):
        rooms = {where[p] for p in where if case_of[p] == case}
        for g in room_groups(rooms):
            who = tuple(sorted(p for p in where if case_of[p] == case and where[p] in g))
            if len(who) >= 2:
                out.add((case, who))
    return out


def active_groups(s: Scenario) -> list[tuple[str, tuple[str, ...]]]:
    return sorted((a["details"]["case_id"], tuple(a["persons"])) for a in s.active("collusion_risk"))


def _adjacency() -> dict[str, set[str]]:
    adj: dict[str, set[str]] = {r["id"]: set() for r in ROOMS}
    for r in ROOMS:
        for a in r.get("adjacent", []):
            adj[r["id"]].add(a)
            adj[a].add(r["id"])
    return adj


def assert_one_alarm_per_case_and_group(s: Scenario) -> int:
    """Walk the alarm events: at no point do two active collusion alarms of one
    case hold the same or adjacent rooms. Returns the most active at once."""
    adj = _adjacency()
    active: dict[str, tuple[str, set[str]]] = {}
    most = 0
    for e in s.conditions():
        d = e.data
        if d["code"] != "collusion_risk":
            continue
        if e.type == "alarm.cleared":
            active.pop(d["alarm_id"], None)
            continue
        active[d["alarm_id"]] = (d["details"]["case_id"], set(d["details"]["rooms"].values()))
        most = max(most, len(active))
        items = list(active.items())
        for i, (aid, (case, rooms)) in enumerate(items):
            near = rooms | {x for r in rooms for x in adj[r]}
            for other, (case2, rooms2) in items[i + 1:]:
                assert case != case2 or not (near & rooms2), (aid, other, rooms, rooms2)
    return most


def test_raid_of_60_suspects_one_alarm_per_case_and_room_group():
    import random
    rnd = random.Random(14)
    steps: list = []
    where: dict[str, str] = {}
    case_of: dict[str, str] = {}
    for i in range(60):
        pid, case = f"R{i:02d}", f"K{i % 6}"
        steps += arrive(0, pid, "suspect", case_id=case, case_type="criminal")
        case_of[pid] = case
    for i in range(60):                        # they are brought in over a minute
        pid = f"R{i:02d}"
        room = rnd.choice(RAID_ROOMS)
        steps.append(enter(100 + i, pid, room))
        where[pid] = room
    s = Scenario().run(steps)
    s.until(200)
    want = expected_groups(where, case_of)
    assert active_groups(s) == sorted(want)
    pairs = sum(len(w) * (len(w) - 1) // 2 for _, w in want)
    assert len(want) <= 6 * len(room_groups(set(RAID_ROOMS))) and pairs > len(want)   # the old rule: one alarm per pair
    # people are moved about: groups grow, shrink, split and merge
    t = 300
    for i in range(0, 60, 2):
        pid = f"R{i:02d}"
        new = rnd.choice(RAID_ROOMS)
        if new != where[pid]:
            s.run(move(t, pid, where[pid], new))
            where[pid] = new
        t += 3
    s.until(t + 100)
    want = expected_groups(where, case_of)
    assert active_groups(s) == sorted(want)
    assert assert_one_alarm_per_case_and_group(s) <= 6 * len(room_groups(set(RAID_ROOMS)))
    assert rows(replay(s.journal, s.config)) == rows(s.alarm_events)


def test_collusion_alarm_keeps_its_id_while_people_come_and_go():
    steps = arrive(0, "S1", "suspect", case_id="C1") + arrive(0, "S2", "suspect", case_id="C1") + \
        arrive(0, "S3", "suspect", case_id="C1")
    steps += [enter(10, "S1", "waiting-1"), enter(10, "S2", "waiting-1"), enter(100, "S3", "waiting-2")]
    steps += move(200, "S1", "waiting-1", "medical-1")
    s = Scenario().run(steps)
    s.until(300)
    raised = [e.data for e in s.conditions() if e.data["code"] == "collusion_risk"]
    assert len({a["alarm_id"] for a in raised}) == 1
    assert [a["persons"] for a in raised] == [["S1", "S2"], ["S1", "S2", "S3"], ["S2", "S3"]]
    assert raised[-1]["details"]["rooms"] == {"S2": "waiting-1", "S3": "waiting-2"}


def test_identification_session_only_exempts_its_room_and_case():
    ids = {"room": "identification-1", "case_id": "C1", "by": "O1"}
    steps = arrive(0, "S1", "suspect", case_id="C1") + arrive(0, "S2", "suspect", case_id="C1") + \
        arrive(0, "S3", "suspect", case_id="C1")
    steps += [(50, "identification.started", ids), enter(100, "S1", "identification-1"),
              enter(100, "S2", "identification-1")]
    # a third co-suspect waiting next door (waiting-3 is adjacent): the session room does not count
    steps += [enter(200, "S3", "waiting-3")]
    s = Scenario().run(steps)
    s.until(400)
    assert s.raised("collusion_risk") == []
    s.step(500, "identification.ended", ids)
    s.until(600)
    (a,) = s.active("collusion_risk")
    assert a["persons"] == ["S1", "S2", "S3"] and s.rel(a["since"]) == 505
    assert rows(replay(s.journal, s.config)) == rows(s.alarm_events)


def test_recorder_staleness_and_replay_with_another_lag():
    steps = arrive(0, "S1", "suspect", case_id="C1", case_type="administrative") + arrive(0, "O1", "officer")
    steps += [(50, "recording.started", {"room": "interrogation-1", "source": "rec"}),
              enter(60, "S1", "interrogation-1"), enter(60, "O1", "interrogation-1")]
    rules = {"lone_interrogation": {"relaxed_case_types": ["administrative"]},
             "interrogation_not_recorded": {"stale_s": 100}}
    a = Scenario(make_config(rules), lag=0.1).run(steps).until(1000)
    b = Scenario(make_config(rules), lag=0.9).run(steps).until(1000)
    codes = [(t, c, x) for t, c, x in a.events() if c in ("lone_interrogation", "interrogation_not_recorded")]
    # stale at 150: one officer no longer enough (grace 30), and not recorded (grace 60)
    assert codes == [("alarm.raised", "lone_interrogation", 180.0),
                     ("alarm.raised", "interrogation_not_recorded", 210.0)]
    assert rows(a.alarm_events) == rows(b.alarm_events)
    assert rows(replay(a.journal, a.config)) == rows(a.alarm_events)


def _fold_order(expires: str, tz: str) -> float | None:
    st = State()
    st.timezone = tz
    ev = seal(Draft("custody.ordered", {"order": "O1", "item": "E1", "action": "withdraw", "case_id": "C1",
                                        "by": "P1", "expires": expires, "due": expires}, "test",
                    parse_ts("2026-11-28T00:00:00Z")), 1, "c", GENESIS, parse_ts("2026-11-28T00:00:00Z"))
    st.fold(ev)
    o = st.orders["O1"]
    assert o.due == o.expires
    return o.expires


def test_order_times_without_offset_are_in_the_center_timezone():
    assert _fold_order("2026-11-28T18:00:00", "Asia/Shanghai") == parse_ts("2026-11-28T10:00:00Z")
    assert _fold_order("2026-11-28T18:00:00+08:00", "UTC") == parse_ts("2026-11-28T10:00:00Z")
    assert _fold_order("2026-11-28T18:00:00Z", "Asia/Shanghai") == parse_ts("2026-11-28T18:00:00Z")
    assert _fold_order("not a time", "Asia/Shanghai") is None


def test_expiry_in_local_time_decides_an_evidence_removal():
    """An order valid until 18:00 Beijing time (10:00Z) no longer lets the item out at 11:00Z."""
    from helpers.scenario import T0
    lo = {"locker": "locker-ev1", "compartment": 5, "item": "E0001"}
    order = {"order": "W1", "item": "E0001", "action": "withdraw", "case_id": "C1", "by": "O1",
             "expires": "2026-11-26T18:00:00"}
    s = Scenario().run([(10, "evidence.added", lo), (50, "custody.ordered", order),
                        (11 * 3600, "evidence.removed", lo)])
    assert [e.data["code"] for e in s.conditions()] == ["evidence_unauthorized_removal"]
    ok = Scenario().run([(10, "evidence.added", lo), (50, "custody.ordered", order),
                         (9 * 3600, "evidence.removed", lo)])
    assert ok.alarm_events == []
    assert T0 == parse_ts("2026-11-26T00:00:00Z")
