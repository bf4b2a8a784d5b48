"""Suppressed (shelved / maintenance) alarms go to P/events/alarm/<action>, not to the
annunciation topic P/alarms/<code> - live and when the backlog is read from disk."""
from __future__ import annotations

from gateway.config import parse_config
from gateway.core import Core
from rules.model import Draft
from gateway.journal import Journal
from gateway.uplink import Uplink
from rules.engine import Engine
from helpers.uplink import PREFIX, wait


def alarm(aid, **flags):
    return {"alarm_id": aid, "code": "door_held_open", "severity": "warning", "room": "exit", **flags}


def test_suppressed_alarm_topics_from_the_backlog_and_live(tmp_path, mosquitto, subscriber_factory):
    sub = subscriber_factory(mosquitto.port, [f"{PREFIX}/alarms/#", f"{PREFIX}/events/alarm/#"])
    cfg = parse_config({"center": {"id": "t-center"}, "storage": {"dir": str(tmp_path / "state")},
                        "mqtt": {"port": mosquitto.port, "keepalive_s": 5, "client_id": "gw-test"}})
    core = Core(cfg, Journal(cfg.journal_path, "full"), Engine(cfg))
    core.start()
    up = Uplink(cfg, cfg.journal_path, core.mark_delivered)
    try:
        # journaled while the uplink is not running: published later from the journal's rows
        core.submit(Draft("alarm.raised", alarm("door_held_open:1", shelved=True, suppressed_by="shelved"),
                          "rules")).result(5)
        core.submit(Draft("alarm.raised", alarm("door_held_open:2"), "rules")).result(5)
        core.add_listener(up.on_committed)
        up.start()
        # live, from memory
        core.submit(Draft("alarm.cleared", alarm("door_held_open:1", shelved=True, suppressed_by="maintenance"),
                          "rules")).result(5)
        core.submit(Draft("alarm.cleared", alarm("door_held_open:2"), "rules")).result(5)
        wait(lambda: len(sub.all) >= 4, what="4 alarm messages")
    finally:
        up.stop()
        core.stop()
    got = sorted((m.topic, m.payload) for m in sub.all)
    by_id = {}
    import json
    for topic, p in got:
        e = json.loads(p)
        by_id.setdefault(e["data"]["alarm_id"], []).append((e["type"], topic))
    assert sorted(by_id["door_held_open:1"]) == [("alarm.cleared", f"{PREFIX}/events/alarm/cleared"),
                                                 ("alarm.raised", f"{PREFIX}/events/alarm/raised")]
    assert sorted(by_id["door_held_open:2"]) == [("alarm.cleared", f"{PREFIX}/alarms/door_held_open"),
                                                 ("alarm.raised", f"{PREFIX}/alarms/door_held_open")]
