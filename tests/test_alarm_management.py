"""Alarm management through the real daemon and a real mosquitto (issue 15):
ack after clear (live and after a restart), ack by a non-officer refused,
shelving a legal alarm refused, shelving door_held_open hides it from
P/alarms and re-publishes it on expiry, maintenance suppresses device_offline
and ends by itself, and replay of the journal gives the same rule events."""
from __future__ import annotations

import json
import time

from helpers.daemon import DaemonProcess, cli, write_config
from helpers.central import Central, P


def payload(m) -> dict:
    return json.loads(m.payload)


def retained_alarms(sub) -> list[list[dict]]:
    """Every P/state/alarms payload received so far (newest last)."""
    return [json.loads(m.payload)["active"] for m in list(sub.all) if m.topic == f"{P}/state/alarms"]


def seen(sub, pred, timeout=10.0) -> dict:
    """The first message received so far (or within timeout) matching pred, as JSON. Unlike
    Subscriber.wait_for it looks at the whole record: alarms overtake other events on the
    wire (the uplink publishes them first), so arrival order is not seq order."""
    deadline = time.monotonic() + timeout
    while True:
        for m in list(sub.all):
            if pred(m):
                return payload(m)
        if time.monotonic() > deadline:
            raise AssertionError("no matching MQTT message")
        time.sleep(0.1)


def wait_state(sub, pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = retained_alarms(sub)
        if states and pred(states[-1]):
            return states[-1]
        time.sleep(0.1)
    raise AssertionError(f"P/state/alarms never matched; last: {retained_alarms(sub)[-1:]}")


def test_alarm_states_shelving_and_maintenance_live(tmp_path, mosquitto, subscriber_factory):
    from drivers.modbus_doors.simulator import ModbusDiSimulator
    di = ModbusDiSimulator("tcp", units=(1,), inputs=8)
    di.start()
    di.set_input(0, 1)                                  # door closed
    extra = f"""
[alarms]
max_shelve_h = 1

[[rooms]]
id = "exit"
type = "exit"

[[devices]]
id = "doors"
driver = "modbus_doors"
url = "{di.url}"
poll_ms = 100
timeout_ms = 200
doors = [ {{ input = 0, door = "exit-door", room = "exit", closed_when = 1 }} ]

[rules.door_held_open]
limit_s = 1
"""
    cfg = write_config(tmp_path, mosquitto.port, extra)
    sub = subscriber_factory(mosquitto.port, [f"{P}/alarms/#", f"{P}/events/alarm/#", f"{P}/state/alarms",
                                              f"{P}/events/device/#"])
    d = DaemonProcess(cfg).start()
    c = None
    try:
        d.wait_status(lambda s: s["uplink"]["connected"])
        c = Central(mosquitto.port)
        assert c.request("person/register", person="o1", role="officer")["ok"]
        assert c.request("person/register", person="v1", role="visitor", visitor_kind="lawyer")["ok"]

        # -- shelving is refused for legal alarms, for non-officers, beyond max_shelve_h
        r = c.request("alarm/shelve", code="lone_interrogation", for_s=60, reason="noisy", by="o1")
        assert r["ok"] is False and r["error"]["code"] == "forbidden" and "legal" in r["error"]["message"]
        r = c.request("alarm/shelve", code="door_held_open", for_s=60, reason="x", by="v1")
        assert r["error"]["code"] == "forbidden" and "officer" in r["error"]["message"]
        r = c.request("alarm/shelve", code="door_held_open", for_s=7200, reason="x", by="o1")
        assert r["error"]["code"] == "bad_request" and "max_shelve_h" in r["error"]["message"]

        # -- a door held open 1 s: raised and cleared before anyone looked
        di.set_input(0, 0)
        raised = payload(sub.wait_for(lambda m: m.topic == f"{P}/alarms/door_held_open"
                                      and payload(m)["type"] == "alarm.raised", 10))
        aid = raised["data"]["alarm_id"]
        di.set_input(0, 1)
        sub.wait_for(lambda m: m.topic == f"{P}/alarms/door_held_open" and payload(m)["type"] == "alarm.cleared", 10)
        st = wait_state(sub, lambda a: any(x["alarm_id"] == aid and not x["active"] for x in a))
        (x,) = [x for x in st if x["alarm_id"] == aid]
        assert (x["active"], x["acknowledged"], x["shelved"]) == (False, False, False)   # cleared-unacknowledged
        # ack after clear: a visitor may not, an officer may, once
        r = c.request("alarm/ack", alarm_id=aid, by="v1")
        assert r["error"]["code"] == "forbidden"
        r = c.request("alarm/ack", alarm_id=aid, by="o1", note="door checked")
        assert r["ok"] and r["data"]["active"] is False
        acked = payload(sub.wait_for(lambda m: m.topic == f"{P}/alarms/door_held_open"
                                     and payload(m)["type"] == "alarm.acknowledged", 10))
        assert acked["data"]["alarm_id"] == aid and acked["data"]["by"] == "o1" and acked["data"]["active"] is False
        r = c.request("alarm/ack", alarm_id=aid, by="o1")
        assert r["error"]["code"] == "conflict" and "o1" in r["error"]["message"]
        wait_state(sub, lambda a: all(x["alarm_id"] != aid for x in a))                # off the list

        # -- shelved for the exit room: journaled, flagged, not on P/alarms; expiry re-publishes
        r = c.request("alarm/shelve", code="door_held_open", scope="exit", for_s=4, reason="contact faulty", by="o1")
        assert r["ok"], r
        sh = payload(sub.wait_for(lambda m: m.topic == f"{P}/alarms/door_held_open"
                                  and payload(m)["type"] == "alarm.shelved", 10))
        assert sh["data"]["scope"] == "exit" and sh["data"]["by"] == "o1" and sh["data"]["until"] == r["data"]["until"]
        n_before = len(sub.all)
        di.set_input(0, 0)
        hidden = payload(sub.wait_for(lambda m: m.topic == f"{P}/events/alarm/raised", 10))
        aid2 = hidden["data"]["alarm_id"]
        assert hidden["data"]["shelved"] is True and hidden["data"]["suppressed_by"] == "shelved"
        wait_state(sub, lambda a: any(x["alarm_id"] == aid2 and x["shelved"] and x["active"] for x in a))
        un = payload(sub.wait_for(lambda m: m.topic == f"{P}/alarms/door_held_open"
                                  and payload(m)["type"] == "alarm.unshelved", 10))
        assert un["data"]["by"] is None and un["data"]["scope"] == "exit"
        again = payload(sub.wait_for(lambda m: m.topic == f"{P}/alarms/door_held_open"
                                     and payload(m)["type"] == "alarm.raised", 10))
        assert again["data"]["alarm_id"] == aid2 and "shelved" not in again["data"]
        assert again["seq"] > un["seq"] > hidden["seq"]
        on_alarms = [payload(m) for m in list(sub.all)[n_before:] if m.topic == f"{P}/alarms/door_held_open"]
        assert [(p["type"], p["seq"] < un["seq"]) for p in on_alarms][:1] == [("alarm.unshelved", False)], \
            "the shelved alarm reached P/alarms before its shelf expired"
        di.set_input(0, 1)
        sub.wait_for(lambda m: m.topic == f"{P}/alarms/door_held_open" and payload(m)["type"] == "alarm.cleared", 10)

        # -- restart: the cleared-unacknowledged alarm is still standing and can be acked (CLI)
        assert d.terminate() == 0
        d.start()
        d.wait_status(lambda s: s["uplink"]["connected"])
        standing = json.loads(cli("alarms", "--standing", "--json", config=cfg).stdout)
        assert [(a["alarm_id"], a["active"], a["acknowledged"]) for a in standing
                if a["code"] == "door_held_open"] == [(aid2, False, None)]
        r = cli("ack", aid2, "--by", "o1", config=cfg)
        assert r.returncode == 0, r.stderr + r.stdout
        r = cli("ack", aid2, "--by", "o1", "--json", config=cfg)
        assert r.returncode == 1 and json.loads(r.stdout)["error"]["code"] == "conflict"

        # -- maintenance: device_offline of the door module suppressed, published when it ends
        r = c.request("device/maintenance", device="doors", for_s=4, reason="rewiring", by="o1")
        assert r["ok"], r
        di.stop()
        off = seen(sub, lambda m: m.topic == f"{P}/events/alarm/raised"
                   and payload(m)["data"]["code"] == "device_offline", 15)
        assert off["data"]["suppressed_by"] == "maintenance"
        end = seen(sub, lambda m: m.topic == f"{P}/events/device/maintenance_ended", 10)
        assert end["data"] == {"device": "doors", "by": None, "reason": "expired"}
        pub = seen(sub, lambda m: m.topic == f"{P}/alarms/device_offline", 10)
        assert pub["type"] == "alarm.raised" and pub["data"]["alarm_id"] == off["data"]["alarm_id"]
        assert "shelved" not in pub["data"] and pub["seq"] > end["seq"]     # published only when it ended
        # -- ended early with for_s = 0; a device not in maintenance or unknown: not_found
        assert c.request("device/maintenance", device="doors", for_s=600, reason="parts", by="o1")["ok"]
        r = cli("status", "--json", config=cfg)                   # offline, but in maintenance: healthy
        st = json.loads(r.stdout)
        (doors,) = [x for x in st["devices"] if x["id"] == "doors"]
        assert doors["state"] == "offline" and doors["maintenance"]["reason"] == "parts"
        assert r.returncode == 0 and st["healthy"] is True and st["alarm_states"]["maintenance"] == 1
        r = c.request("device/maintenance", device="doors", for_s=0, reason="done", by="o1")
        assert r["ok"] and r["data"]["ended"] is True
        early = seen(sub, lambda m: m.topic == f"{P}/events/device/maintenance_ended"
                     and payload(m)["data"]["by"] == "o1", 10)
        assert early["data"] == {"device": "doors", "by": "o1", "reason": "done"}
        assert c.request("device/maintenance", device="doors", for_s=0, by="o1")["error"]["code"] == "not_found"
        assert c.request("device/maintenance", device="nope", for_s=60, by="o1")["error"]["code"] == "not_found"
        assert c.request("device/maintenance", device="doors", for_s=60, by="v1")["error"]["code"] == "forbidden"
        # -- replay of the journal gives the same rule events (escalation/expiry included)
        journal = [json.loads(x) for x in cli("events", "--json", config=cfg).stdout.splitlines()]
        live = [(e["type"], e["data"].get("alarm_id") or e["data"].get("device") or e["data"].get("scope"))
                for e in journal if e["source"] == "rules"]
        rep = [(e["type"], e["data"].get("alarm_id") or e["data"].get("device") or e["data"].get("scope"))
               for e in json.loads(cli("replay", "--json", config=cfg).stdout)]
        assert rep == live
        assert ("device.maintenance_ended", "doors") in live and ("alarm.unshelved", "exit") in live
    finally:
        if c:
            c.close()
        d.stop()
        di.stop()
