"""End to end: device simulators -> the real daemon -> mosquitto."""
from __future__ import annotations

import json
import time

from helpers.brokers import free_port
from helpers.daemon import DaemonProcess, cli, write_config
from drivers.card_reader.simulator import CardReaderSimulator
from drivers.zone_reader.simulator import ZoneSite
from helpers.central import Central, P
from helpers.e2e import ROOMS, zone_device
from helpers.polling import wait_for

def test_zone_stations_and_card_reader_to_mqtt(tmp_path, mosquitto, subscriber_factory):
    zport = free_port()
    card = CardReaderSimulator(repeat_interval_s=0.05).start()
    extra = ROOMS + zone_device(zport, presence_timeout_s=3) + f"""
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
        assert c.request("person/register", person="s1", role="suspect", gender="male", case_id="c1", case_type="criminal")["ok"]
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
    extra = ROOMS + zone_device(zport, presence_timeout_s=2)
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

        def presence(type_):
            evs = [json.loads(l) for l in cli("events", "--json", "--type", type_, config=cfg).stdout.splitlines()]
            return [(e["data"]["tag"], e["data"]["room"]) for e in evs]
        # Waited for, not slept for: the stations are back and have reported the band still in
        # waiting-1 many times (a re-announce would be journaled by now: 0.3 s reports, two
        # stations), and the band that left while the daemon was down timed out (2 s).
        d.wait_status(lambda s: any(x["id"] == "zone" and x.get("frames_ok", 0) >= 20 for x in s["devices"]),
                      timeout=30)
        left = wait_for(lambda: ("22222222", "interrogation-1") in (got := presence("presence.left")) and got,
                        30, "the band that left while the daemon was down to time out", interval=0.5)
        entered = presence("presence.entered")
        assert entered.count(("11111111", "waiting-1")) == 1, entered
        assert ("22222222", "interrogation-1") in left, left
    finally:
        site.stop()
        d.stop()


def test_doors_lockers_and_custody_end_to_end(tmp_path, mosquitto, subscriber_factory):
    """Modbus door module, lock board and UHF reader simulators -> daemon -> mosquitto,
    with locker/open and custody/order requests and the evidence alarm."""
    from drivers.locker.simulator import LockBoardSimulator, UhfReaderSimulator
    from drivers.modbus_doors.simulator import ModbusDiSimulator

    board = LockBoardSimulator(board=0, compartments=4)
    board.start()
    uhf = UhfReaderSimulator()
    uhf.start()
    uhf.add_tag("E20000172211014418900001", antenna=1)
    uhf.add_tag("E20000172211014418900002", antenna=1)
    di = ModbusDiSimulator("tcp", units=(1,), inputs=8)
    di.start()
    di.set_input(0, 1)                                  # door closed
    extra = f"""
[[rooms]]
id = "evidence"
type = "evidence_store"
[[rooms]]
id = "exit"
type = "exit"

[[devices]]
id = "doors"
driver = "modbus_doors"
url = "{di.url}"
poll_ms = 100
doors = [ {{ input = 0, door = "exit-door", room = "exit", closed_when = 1 }} ]

[[devices]]
id = "locker-ev1"
driver = "locker"
purpose = "evidence"
port = "{board.port}"
compartments = 4
poll_ms = 100
inventory = {{ port = "{uhf.port}", poll_ms = 200, missing_after = 2, antennas = {{ "1" = [1] }} }}
"""
    cfg = write_config(tmp_path, mosquitto.port, extra)
    sub = subscriber_factory(mosquitto.port, [f"{P}/events/#", f"{P}/alarms/#"])
    d = DaemonProcess(cfg).start()
    c = None
    try:
        d.wait_status(lambda s: s["uplink"]["connected"])
        c = Central(mosquitto.port)
        assert c.request("person/register", person="o1", role="officer")["ok"]
        # the door opens and closes: debounced events upstream
        di.set_input(0, 0)
        sub.wait_for(lambda m: m.topic == f"{P}/events/door/opened", 10)
        di.set_input(0, 1)
        sub.wait_for(lambda m: m.topic == f"{P}/events/door/closed", 10)
        # an authorised withdrawal: order, unlock confirmed by the board, item leaves
        assert c.request("custody/order", order="ord-1", item="E20000172211014418900001",
                         action="withdraw", case_id="c1", by="o1")["ok"]
        r = c.request("locker/open", locker="locker-ev1", compartment=1, by="o1", order="ord-1", timeout=15)
        assert r["ok"] and r["data"]["opened"] is True, r
        sub.wait_for(lambda m: m.topic == f"{P}/events/locker/unlock_requested", 10)
        uhf.remove_tag("E20000172211014418900001")
        sub.wait_for(lambda m: m.topic == f"{P}/events/evidence/removed"
                     and json.loads(m.payload)["data"]["item"] == "E20000172211014418900001", 15)
        # a refused unlock answers device_refused
        board.refuse_unlocks = True
        r = c.request("locker/open", locker="locker-ev1", compartment=2, by="o1", timeout=15)
        assert r["ok"] is False and r["error"]["code"] == "device_refused"
        # an item taken with no order raises the alarm
        uhf.remove_tag("E20000172211014418900002")
        m = sub.wait_for(lambda m: m.topic == f"{P}/alarms/evidence_unauthorized_removal", 15)
        alarm = json.loads(m.payload)
        assert alarm["type"] == "alarm.raised"
        assert "E20000172211014418900002" in json.dumps(alarm["data"])
        alarms = [json.loads(x.payload) for x in sub.all if "/alarms/evidence_unauthorized_removal" in x.topic]
        assert not any("E20000172211014418900001" in json.dumps(a["data"]) for a in alarms)
        # chain of custody from the journal
        ev = [json.loads(l) for l in cli("events", "--json", config=cfg).stdout.splitlines()]
        item1 = [e["type"] for e in ev if "E20000172211014418900001" in json.dumps(e["data"])]
        assert item1[:1] == ["evidence.added"] and "custody.ordered" in item1 and "evidence.removed" in item1
        chain = json.loads(cli("custody", "E20000172211014418900001", "--json", config=cfg).stdout)
        kinds = [r["event"] for r in chain]
        assert kinds.index("evidence.added") < kinds.index("custody.ordered") \
            < kinds.index("locker.unlock_requested") < kinds.index("evidence.removed")
        unlock = chain[kinds.index("locker.unlock_requested")]
        assert unlock["by"] == "o1" and unlock["order"] == "ord-1" and unlock["compartment"] == 1
        assert "locker.opened" in kinds
        chain2 = json.loads(cli("custody", "E20000172211014418900002", "--json", config=cfg).stdout)
        assert [r["event"] for r in chain2][-2:] == ["evidence.removed", "alarm.raised"]
    finally:
        if c:
            c.close()
        d.stop()
        board.stop()
        uhf.stop()
        di.stop()
