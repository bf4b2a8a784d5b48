"""door_held_open and evidence_unauthorized_removal name who opened the door / unlocked the
compartment when the journal knows it (issue 18 item 5): in persons, details.by and both
messages; nobody is named when no badge or unlock explains it. Same result through replay."""
from __future__ import annotations

from helpers.rule_cases import EV, LO, arrive
from helpers.scenario import Scenario, make_config

from rules.replay import replay

DOOR = {"door": "exit-door", "room": "exit"}


def swipe(t, pid, room="exit"):
    return (t, "card.swiped", {"card": "0A1B2C3D4E", "reader": "card-exit", "room": room, "person": pid})


def run(steps, until):
    s = Scenario(make_config())
    s.run(steps)
    s.until(until)
    return s


def test_door_held_open_names_the_last_badge():
    s = run([arrive(0, "O1", "officer"), swipe(95, "O1"), (100, "door.opened", DOOR)], 400)
    [a] = s.raised("door_held_open")
    assert a["persons"] == ["O1"] and a["details"]["by"] == "O1"
    assert "O1" in a["message"]["zh"] and "last badge: O1" in a["message"]["en"]
    again = replay(s.journal, s.config)
    assert [e.data for e in again if e.type == "alarm.raised" and e.data["code"] == a["code"]] == [a]


def test_door_held_open_badge_long_before_names_nobody():
    s = run([arrive(0, "O1", "officer"), swipe(10, "O1"), (100, "door.opened", DOOR)], 400)
    [a] = s.raised("door_held_open")
    assert a["persons"] == [] and a["details"]["by"] is None and "badge" not in a["message"]["en"]


def test_door_held_open_badge_in_another_room_names_nobody():
    s = run([arrive(0, "O1", "officer"), swipe(95, "O1", room="waiting-1"), (100, "door.opened", DOOR)], 400)
    assert s.raised("door_held_open")[0]["persons"] == []


def test_evidence_removal_names_who_unlocked():
    s = run([(10, "evidence.added", EV), (60, "locker.unlock_requested", dict(LO, by="O1", order=None)),
             (100, "evidence.removed", EV)], 300)
    [a] = s.raised("evidence_unauthorized_removal")
    assert a["persons"] == ["O1"] and a["details"]["by"] == "O1"
    assert a["details"]["unlocked_at"] is not None
    assert "O1" in a["message"]["zh"] and "last unlocked by O1" in a["message"]["en"]
    again = replay(s.journal, s.config)
    assert [e.data for e in again if e.type == "alarm.raised" and e.data["code"] == a["code"]] == [a]


def test_evidence_removal_without_an_unlock_names_nobody():
    s = run([(10, "evidence.added", EV), (100, "evidence.removed", EV)], 300)
    [a] = s.raised("evidence_unauthorized_removal")
    assert a["persons"] == [] and a["details"]["by"] is None
