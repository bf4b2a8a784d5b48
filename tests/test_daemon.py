"""The real daemon as a subprocess against a real mosquitto: requests, kill -9, SIGTERM."""
from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from helpers.central import P, Central
from helpers.daemon import DaemonProcess, cli, write_config
from helpers.polling import poll, wait_for

def journal_count(d) -> int:
    r = cli("events", "--json", config=d.config)
    return len([l for l in r.stdout.splitlines() if l.strip()])


def test_requests_happy_path_and_idempotency(daemon, mosquitto, subscriber_factory):
    sub = subscriber_factory(mosquitto.port, [f"{P}/events/#", f"{P}/state/#"])
    c = Central(mosquitto.port)
    try:
        r = c.request("ping")
        assert r["ok"] and r["data"]["version"] and "backlog" in r["data"]
        r = c.request("person/register", request_id="reg-1", person="s1", role="suspect", name="张三",
                      gender="male", case_id="c1", case_type="criminal")
        assert r == {"request_id": "reg-1", "ok": True, "data": r["data"]} and r["data"]["person"] == "s1"
        c.request("person/register", person="o1", role="officer")
        r = c.request("wristband/bind", tag="e3af2232", person="s1")
        assert r["ok"] and r["data"]["tag"] == "E3AF2232"
        before = journal_count(daemon)
        # the same request again (same request_id, command and payload): same answer, no second
        # event (another payload under that id is conflict: tests/test_request_idempotency.py)
        c.responses.pop("reg-1")
        again = c.request("person/register", request_id="reg-1", person="s1", role="suspect", name="张三",
                          gender="male", case_id="c1", case_type="criminal")
        assert again["ok"] and again["data"] == r_data if (r_data := again["data"]) else False
        assert journal_count(daemon) == before
        r = c.request("person/checkout", person="s1", by="o1")
        assert r["ok"]
        r = c.request("wristband/unbind", tag="E3AF2232")
        assert r["ok"] and r["data"]["person"] == "s1"
        r = c.request("custody/order", order="o-1", item="e2000017221101441890abcd", action="withdraw",
                      case_id="c1", by="o1")
        assert r["ok"]
        sub.wait_for(lambda m: m.topic == f"{P}/events/person/left", 10)
        regs = [p for p in sub.payloads(f"{P}/events/person/registered") if p["data"]["person"] == "s1"]
        assert len(regs) == 1 and regs[0]["source"] == "mqtt:central"
        occ = sub.payloads(f"{P}/state/occupancy")
        assert occ and "rooms" in occ[-1]
    finally:
        c.close()


MALFORMED = [
    ("person/register", b"{not json", "bad_request"),
    ("person/register", b"[1,2,3]", "bad_request"),
    ("person/register", b"\xff\xfe", "bad_request"),
    ("no/such/command", json.dumps({"request_id": "x1"}).encode(), "unknown_command"),
    ("person/register", json.dumps({"request_id": "x2", "role": "suspect"}).encode(), "bad_request"),
    ("person/register", json.dumps({"request_id": "x3", "person": "p", "role": "king"}).encode(), "bad_request"),
    ("person/register", json.dumps({"request_id": "x4", "person": "p", "role": "suspect",
                                    "minor": "yes"}).encode(), "bad_request"),
    ("person/register", json.dumps({"request_id": "x5", "person": "a/b#", "role": "suspect"}).encode(),
     "bad_request"),
    ("person/register", json.dumps({"person": "p", "role": "suspect"}).encode(), "bad_request"),
    ("wristband/bind", json.dumps({"request_id": "x6", "tag": "E3AF2232", "person": "ghost"}).encode(),
     "not_found"),
    ("wristband/bind", json.dumps({"request_id": "x7", "tag": "XYZ", "person": "s1"}).encode(), "bad_request"),
    ("wristband/bind", json.dumps({"request_id": "x8", "tag": "11111111", "person": "s2"}).encode(), "conflict"),
    ("wristband/unbind", json.dumps({"request_id": "x9", "tag": "22222222"}).encode(), "not_found"),
    ("person/register", json.dumps({"request_id": "x10", "person": "s1", "role": "officer"}).encode(),
     "conflict"),
    ("person/checkout", json.dumps({"request_id": "x11", "person": "ghost", "by": "o1"}).encode(), "not_found"),
    ("alarm/ack", json.dumps({"request_id": "x12", "alarm_id": "nope", "by": "o1"}).encode(), "not_found"),
    ("events/resend", json.dumps({"request_id": "x13", "from_seq": 5, "to_seq": 2}).encode(), "bad_request"),
    ("events/resend", json.dumps({"request_id": "x14", "from_seq": "1", "to_seq": 2}).encode(), "bad_request"),
    ("locker/open", json.dumps({"request_id": "x15", "locker": "nope", "compartment": 1, "by": "o1"}).encode(),
     "not_found"),
    ("belongings/assign", json.dumps({"request_id": "x16", "person": "s1", "locker": "nope",
                                      "compartment": 1}).encode(), "not_found"),
    ("person/register", json.dumps({"request_id": "x17", "person": "p", "role": "suspect",
                                    "d": [[[[[[[[[[[[1]]]]]]]]]]]]}).encode(), "bad_request"),
    ("person/register", b"{\"request_id\":\"x18\",\"person\":\"" + b"a" * 70000 + b"\"}", "bad_request"),
]


def test_malformed_requests_answer_and_change_nothing(daemon, mosquitto):
    c = Central(mosquitto.port)
    try:
        assert c.request("person/register", person="s1", role="suspect", gender="male", case_type="criminal")["ok"]
        assert c.request("person/register", person="s2", role="suspect", gender="male", case_type="criminal")["ok"]
        assert c.request("person/register", person="o1", role="officer")["ok"]
        assert c.request("wristband/bind", tag="11111111", person="s1")["ok"]
        before = journal_count(daemon)
        for i, (cmd, raw, code) in enumerate(MALFORMED):
            n = len(c.responses)
            c.send(cmd, None, raw=raw)
            wait_for(lambda: len(c.responses) > n, 10, f"an answer to case {i} ({cmd})", interval=0.02)
            resp = list(c.responses.values())[-1]
            assert resp["ok"] is False, (i, resp)
            assert resp["error"]["code"] == code, (i, cmd, raw[:60], resp)
            assert resp["error"]["message"]
        assert journal_count(daemon) == before, "a malformed request changed the journal"
        assert c.request("ping")["ok"], "the daemon still answers"
    finally:
        c.close()


def test_mqtt5_response_topic_and_correlation(daemon, mosquitto):
    c = Central(mosquitto.port)
    try:
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = "central/replies/42"
        props.CorrelationData = b"corr-42"
        c.send("ping", {"request_id": "p-42"}, props=props)
        wait_for(lambda: b"corr-42" in c.by_corr, 10, "the reply on the response topic")
        topic, body = c.by_corr[b"corr-42"]
        assert topic == "central/replies/42" and body["request_id"] == "p-42" and body["ok"]
    finally:
        c.close()


def test_mqtt311(tmp_path, mosquitto):
    cfg = write_config(tmp_path, mosquitto.port, )
    cfg.write_text(cfg.read_text().replace("keepalive_s = 5", "keepalive_s = 5\nprotocol = 311"))
    d = DaemonProcess(cfg).start()
    d.wait_status(lambda s: s["uplink"]["connected"])
    c = Central(mosquitto.port, protocol=mqtt.MQTTv311)
    try:
        assert c.request("person/register", person="s9", role="suspect", gender="male", case_type="criminal")["ok"]
        st = d.wait_status(lambda s: s["uplink"]["connected"] and s["uplink"]["backlog"] == 0)
        assert st["journal"]["last_seq"] >= 2
    finally:
        c.close()
        d.stop()


def test_sigterm_drains_and_goes_offline(daemon, mosquitto, subscriber_factory):
    sub = subscriber_factory(mosquitto.port, [f"{P}/state/gateway", f"{P}/events/gateway/#"])
    c = Central(mosquitto.port)
    try:
        assert c.request("person/register", person="s1", role="suspect", gender="male", case_type="criminal")["ok"]
    finally:
        c.close()
    rc = daemon.terminate(timeout=10)           # not drained within 10 s: TimeoutExpired
    assert rc == 0
    sub.wait_for(lambda m: m.topic == f"{P}/events/gateway/stopped", 5)
    states = [json.loads(m.payload) for m in sub.all if m.topic == f"{P}/state/gateway"]
    assert states[-1] == {"state": "offline"}
    # the retained value is what a newcomer sees
    late = subscriber_factory(mosquitto.port, [f"{P}/state/gateway"])
    msg = late.wait_for(lambda m: True, 5)
    assert json.loads(msg.payload)["state"] == "offline" and msg.retain
    assert cli("journal", "verify", config=daemon.config).returncode == 0


def test_kill9_loses_no_acknowledged_request(tmp_path, persistent_mosquitto, subscriber_factory):
    m = persistent_mosquitto
    sub = subscriber_factory(m.port, [f"{P}/events/person/#"], client_id="central-k9", persistent=True)
    cfg = write_config(tmp_path, m.port)
    d = DaemonProcess(cfg).start()
    d.wait_status(lambda s: s["uplink"]["connected"])
    c = Central(m.port)
    acked: list[str] = []
    stop = threading.Event()

    def producer():
        i = 0
        while not stop.is_set() and i < 3000:
            rid = f"k{i}"
            c.send("person/register", {"request_id": rid, "person": f"p{i}", "role": "visitor"})
            i += 1
            time.sleep(0.002)           # paces the stream (a central sending steadily), not a wait

    t = threading.Thread(target=producer)
    t.start()
    try:
        poll(lambda: len(c.responses) >= 300, 20)
        d.kill9()                       # mid-stream
        stop.set()
        t.join(10)
        time.sleep(0.5)                 # answers already on their way still count as acknowledged
        acked = [rid for rid, r in c.responses.items() if r.get("ok")]
        assert len(acked) >= 300
        d.start()
        d.wait_status(lambda s: s["uplink"]["connected"] and s["uplink"]["backlog"] == 0, 60)
        want = {f"p{rid[1:]}" for rid in acked}

        def got():
            return {p["data"]["person"] for p in sub.payloads(f"{P}/events/person/registered")}
        poll(lambda: want <= got(), 30, interval=0.2)
        missing = want - got()
        assert not missing, f"{len(missing)} acknowledged requests never arrived upstream"
        assert cli("journal", "verify", config=cfg).returncode == 0
        regs = [json.loads(l) for l in cli("events", "--json", "--type", "person.registered",
                                           config=cfg).stdout.splitlines()]
        assert len({r["data"]["person"] for r in regs}) == len(regs), "a request acted twice"
    finally:
        stop.set()
        c.close()
        d.stop()


def test_request_size_cap_is_per_command():
    """Only face/enroll carries a photo; the cap for everything else stays small,
    and an oversized request is still answered under its request_id."""
    from gateway.commands import FACE_ENROLL_MAX_BYTES, parse_request
    photo = json.dumps({"request_id": "enr-1", "person": "s1", "image": "A" * 200_000}).encode()
    args, rid, err = parse_request("face/enroll", photo, 65536)
    assert err is None and rid == "enr-1" and args.person == "s1"
    args, rid, err = parse_request("person/register", photo, 65536)
    assert args is None and rid == "enr-1" and err.code == "bad_request" and "65536" in err.message
    huge = b'{"request_id":"enr-2","image":"' + b"A" * FACE_ENROLL_MAX_BYTES + b'"}'
    args, rid, err = parse_request("face/enroll", huge, 65536)
    assert args is None and rid == "enr-2" and err.code == "bad_request"
    # a request_id that is no valid id is not echoed
    args, rid, err = parse_request("ping", b'{"request_id":"../x y","p":"' + b"x" * 70000 + b'"}', 65536)
    assert rid is None and err.code == "bad_request"
