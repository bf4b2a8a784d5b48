"""End to end: device simulators -> the real daemon -> mosquitto."""
from __future__ import annotations

import json
import time

from conftest import free_port
from daemon_util import DaemonProcess, cli, write_config
from drivers.card_reader.simulator import CardReaderSimulator
from drivers.zone_reader.simulator import ZoneSite
from test_daemon import Central, P

ROOMS = """
[[rooms]]
id = "waiting-1"
type = "waiting"
[[rooms]]
id = "interrogation-1"
type = "interrogation"
adjacent = ["waiting-1"]
"""


def test_zone_stations_and_card_reader_to_mqtt(tmp_path, mosquitto, subscriber_factory):
    zport = free_port()
    card = CardReaderSimulator(repeat_interval_s=0.05).start()
    extra = ROOMS + f"""
[[devices]]
id = "zone"
driver = "zone_reader"
listen = "127.0.0.1:{zport}"
stations = {{ "ST-WAIT" = "waiting-1", "ST-INT1" = "interrogation-1" }}
presence_timeout_s = 3
heartbeat_s = 5

[[devices]]
id = "card-int1"
driver = "card_reader"
port = "{card.port}"
room = "interrogation-1"
"""
    cfg = write_config(tmp_path, mosquitto.port, extra)
    sub = subscriber_factory(mosquitto.port, [f"{P}/events/#", f"{P}/state/devices/#"])
    d = DaemonProcess(cfg).start()
    site = ZoneSite("127.0.0.1", zport, ["ST-WAIT", "ST-INT1"], heartbeat_s=5, report_s=0.5)
    c = None
    try:
        d.wait_status(lambda s: s["uplink"]["connected"])
        c = Central(mosquitto.port)
        assert c.request("person/register", person="s1", role="suspect", case_id="c1")["ok"]
        assert c.request("wristband/bind", tag="E3AF2232", person="s1")["ok"]
        assert c.request("person/register", person="o1", role="officer")["ok"]
        assert c.request("wristband/bind", tag="14008EC793", person="o1")["ok"]
        site.start()
        assert site.wait_logged_in(10)
        site.move(0xE3AF2232, "ST-WAIT")
        m = sub.wait_for(lambda m: m.topic == f"{P}/events/presence/entered", 15)
        ev = json.loads(m.payload)
        assert ev["data"] == {"person": "s1", "tag": "E3AF2232", "room": "waiting-1"}
        assert ev["source"] == "zone"
        site.move(0xE3AF2232, "ST-INT1")

        def moved():
            left = [e["data"]["room"] for e in sub.payloads(f"{P}/events/presence/left")]
            entered = [e["data"]["room"] for e in sub.payloads(f"{P}/events/presence/entered")]
            return "waiting-1" in left and "interrogation-1" in entered
        deadline = time.monotonic() + 15
        while not moved() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert moved()
        card.swipe("14008EC793", repeats=5)     # held on the reader: one swipe
        m = sub.wait_for(lambda m: m.topic == f"{P}/events/card/swiped", 15)
        assert json.loads(m.payload)["data"] == {"card": "14008EC793", "reader": "card-int1",
                                                 "room": "interrogation-1", "person": "o1"}
        time.sleep(1.5)
        assert len(sub.payloads(f"{P}/events/card/swiped")) == 1
        # trajectory from the journal
        tr = json.loads(cli("trace", "s1", "--json", config=cfg).stdout)
        assert [r["room"] for r in tr] == ["waiting-1", "interrogation-1"]
        devs = {x["id"]: x for x in d.status()["devices"]}
        assert devs["zone"]["frames_ok"] > 0 and devs["card-int1"]["state"] == "online"
        # unplug the reader: device goes offline, retained state says so
        card.unplug()
        sub.wait_for(lambda m: m.topic == f"{P}/state/devices/card-int1"
                     and json.loads(m.payload)["state"] == "offline", 15)
    finally:
        if c:
            c.close()
        site.stop()
        card.stop()
        card.close()
        d.stop()


def test_restart_takes_over_presence(tmp_path, mosquitto, subscriber_factory):
    """A restarted daemon neither re-announces a tag still in its room nor
    forgets one that left while it was down."""
    zport = free_port()
    extra = ROOMS + f"""
[[devices]]
id = "zone"
driver = "zone_reader"
listen = "127.0.0.1:{zport}"
stations = {{ "ST-WAIT" = "waiting-1", "ST-INT1" = "interrogation-1" }}
presence_timeout_s = 2
heartbeat_s = 5
"""
    cfg = write_config(tmp_path, mosquitto.port, extra)
    d = DaemonProcess(cfg).start()
    site = ZoneSite("127.0.0.1", zport, ["ST-WAIT", "ST-INT1"], heartbeat_s=5, report_s=0.3,
                    reconnect_s=0.3)
    try:
        site.start()
        assert site.wait_logged_in(10)
        site.move(0x11111111, "ST-WAIT")
        site.move(0x22222222, "ST-INT1")
        d.wait_status(lambda s: s["journal"]["last_seq"] >= 3)
        assert d.terminate() == 0
        site.move(0x22222222, None)          # leaves while the daemon is down
        d.start()
        time.sleep(5)                        # > presence_timeout_s, stations reconnected
        evs = [json.loads(l) for l in cli("events", "--json", "--type", "presence.entered", "--type",
                                          "presence.left", config=cfg).stdout.splitlines()]
        entered = [(e["data"]["tag"], e["data"]["room"]) for e in evs if e["type"] == "presence.entered"]
        left = [(e["data"]["tag"], e["data"]["room"]) for e in evs if e["type"] == "presence.left"]
        assert entered.count(("11111111", "waiting-1")) == 1, entered
        assert ("22222222", "interrogation-1") in left, left
    finally:
        site.stop()
        d.stop()
