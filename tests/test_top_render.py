"""`casegate top`'s screen as a pure function of the daemon's data (the live terminal test is in
test_duty_room.py): alarm order, local times, states, a daemon that is gone."""
from __future__ import annotations

from rich.console import Console

from rules.model import parse_ts
from gateway.top import render, sort_alarms

NOW = parse_ts("2026-11-28T03:30:00Z")       # 11:30 in Asia/Shanghai


def text(data, error=None) -> list[str]:
    c = Console(width=160, record=True, file=open("/dev/null", "w"))
    c.print(render(data, error, now=NOW))
    return c.export_text().splitlines()


ALARMS = [
    {"code": "door_held_open", "severity": "warning", "since": "2026-11-28T01:00:00Z"},
    {"code": "lone_interrogation", "severity": "critical", "since": "2026-11-28T03:00:00Z",
     "acknowledged": {"by": "o1"}},
    {"code": "collusion_risk", "severity": "critical", "since": "2026-11-28T03:10:00Z", "room": "waiting-1"},
    {"code": "procedure_skipped", "severity": "major", "since": "2026-11-28T02:00:00Z", "active": False},
]


def test_unacknowledged_first_then_critical_first_then_oldest():
    order = [a["code"] for a in sort_alarms(ALARMS)]
    assert order == ["collusion_risk", "procedure_skipped", "door_held_open", "lone_interrogation"]


def test_screen_shows_local_times_states_and_people():
    data = {"center": "c1", "center_name": "中心", "timezone": "Asia/Shanghai", "active": ALARMS,
            "rooms": {"waiting-1": [{"person": "s1", "role": "suspect", "name": "王五",
                                     "since": "2026-11-28T03:05:00Z"}]},
            "room_names": {"waiting-1": "候问室1"}, "room_types": {"waiting-1": "waiting"},
            "devices": [{"id": "zone", "driver": "zone_reader", "state": "offline", "error": "no stations"}],
            "uplink": {"connected": False, "broker": "b:8883", "backlog": 42, "last_error": "TLS"}}
    lines = text(data)
    assert "2026-11-28 11:30:00 +08:00 (Asia/Shanghai)" in lines[0]
    assert "uplink DISCONNECTED b:8883 · backlog 42" in " ".join(lines[:2])
    collusion = next(x for x in lines if "collusion_risk" in x)
    assert "UNACKED" in collusion and "11:10:00" in collusion and "20 min" in collusion
    assert "UNACKED, cleared" in next(x for x in lines if "procedure_skipped" in x)
    assert "acked o1" in next(x for x in lines if "lone_interrogation" in x)
    person = next(x for x in lines if " s1 " in x)
    assert "候问室1" in person and "王五" in person and "11:05:00" in person and "25 min" in person
    assert "offline" in next(x for x in lines if x.lstrip().startswith("zone"))


def test_no_daemon_is_said_and_retried():
    lines = text(None, "no daemon on /var/lib/casegate/casegate.sock")
    assert any("no daemon: no daemon on" in x for x in lines) and any("retrying" in x for x in lines)


def test_header_says_when_the_clock_is_not_synchronised():
    base = {"center": "c1", "timezone": "Asia/Shanghai", "active": [], "rooms": {}, "devices": [],
            "uplink": {"disabled": True}}
    assert not any("NOT synchronised" in x for x in text(dict(base, clock={"synchronised": True})))
    assert any("clock NOT synchronised" in x for x in text(dict(base, clock={"synchronised": False})))
    assert any("clock sync unknown" in x for x in text(dict(base, clock={"synchronised": None})))


def _narrow_text(data, width=80) -> list[str]:
    c = Console(width=width, record=True, file=open("/dev/null", "w"))
    c.print(render(data, None, now=NOW, width=width))
    return c.export_text().splitlines()


def test_80_columns_show_long_ids_codes_and_names_whole():
    """issue 27: at 80×24 both officers read `off-10…` and codes `lone_interrogati…`; ids, codes and
    device names are what the duty officer acts on, so they are never cut."""
    data = {"center": "c1", "timezone": "Asia/Shanghai",
            "active": [{"code": "female_minor_without_female_staff", "severity": "major",
                        "since": "2026-11-28T03:00:00Z", "room": "interrogation-1",
                        "persons": ["suspect-2026-000118"]},
                       {"code": "lone_interrogation", "severity": "critical", "since": "2026-11-28T03:10:00Z",
                        "room": "interrogation-1", "persons": ["suspect-2026-000118", "off-1001-zhang"]}],
            "rooms": {"interrogation-1": [{"person": "off-1001-zhang", "role": "officer", "name": "张三丰",
                                           "since": "2026-11-28T03:05:00Z"},
                                          {"person": "off-1002-li", "role": "officer", "name": "李四",
                                           "since": "2026-11-28T03:05:00Z"}]},
            "devices": [{"id": "zone-stations-building-a", "driver": "zone_reader", "state": "online"}],
            "uplink": {"connected": True, "broker": "b:8883", "backlog": 0}}
    screen = "\n".join(_narrow_text(data))
    assert all(len(x) <= 80 for x in screen.splitlines())
    for whole in ("female_minor_without_female_staff", "lone_interrogation", "off-1001-zhang", "off-1002-li",
                  "zone-stations-building-a", "张三丰", "CRIT"):
        assert whole in screen, whole
    assert "…" not in "".join(x for x in screen.splitlines() if "off-10" in x and "officer" in x)
    lines = screen.splitlines()
    lone = next(x for x in lines if "lone_interrogation" in x)
    assert "CRIT" in lone and "UNACK" in lone and "11:10:00" in lone and "interrogation-1" in lone
    # each person of an alarm on its own line, whole, below the room
    assert sum(1 for x in lines if x.split() == ["suspect-2026-000118"]) == 2
    assert any(x.split() == ["off-1001-zhang"] for x in lines)


def test_empty_occupancy_with_readers_down_is_not_nobody():
    """issue 27: with the stations down, top said "nobody in any room" while the alarms placed three
    people in interrogation-1."""
    data = {"center": "c1", "timezone": "Asia/Shanghai",
            "active": [{"code": "lone_interrogation", "severity": "critical", "since": "2026-11-28T03:10:00Z",
                        "room": "interrogation-1", "persons": ["s1", "o1"]}],
            "rooms": {}, "devices": [{"id": "zone-stations", "driver": "zone_reader", "state": "offline"}],
            "uplink": {"connected": True}}
    screen = "\n".join(_narrow_text(data, width=100))
    assert "nobody in any room" not in screen
    assert "zone-stations down" in screen and "unknown" in screen
    data["devices"][0]["state"] = "online"
    assert "nobody in any room" in "\n".join(_narrow_text(data, width=100))
