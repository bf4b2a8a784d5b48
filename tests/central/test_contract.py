"""docs/asyncapi.yaml is generated from the code and current, and real messages match it:
every message a real daemon puts on (or takes from) a real mosquitto while central systems
talk to it. (Every event of a scripted demo day is checked against it in tests/test_demo.py,
which shares one demo run among the tests that read it.)"""
from __future__ import annotations

import json


from helpers.brokers import Subscriber
from helpers.contract import DOC, problems
from helpers.daemon import DaemonProcess, write_config

from gateway.contract import build, dump
from rules.model import EVENT_DATA
from gateway.commands import COMMANDS


def test_asyncapi_yaml_is_generated_from_the_code_and_current():
    assert DOC.read_text() == dump(), "docs/asyncapi.yaml is stale: python -m gateway.contract > docs/asyncapi.yaml"


def test_contract_covers_every_event_type_and_command():
    doc = build()
    assert doc["asyncapi"] == "3.0.0"
    schemas = doc["components"]["schemas"]
    for t in EVENT_DATA:
        assert f"Event.{t}" in schemas
    for command in COMMANDS:
        addr = f"casegate/{{center}}/request/{command}"
        assert any(ch["address"] == addr for ch in doc["channels"].values()), command
    # request_id is optional in the contract (MQTT 5 Correlation Data may stand in for it)
    assert "request_id" not in schemas["Register"].get("required", [])
    assert {"person", "role"} <= set(schemas["Register"]["required"])


def test_the_schemas_can_fail():
    good = {"id": "x", "seq": 1, "ts": "2026-11-28T01:02:03.004Z", "center": "c-a", "type": "presence.entered",
            "source": "zone", "data": {"person": None, "tag": "E3AF2232", "room": "r1"}, "prev": "0" * 64,
            "hash": "a" * 64}
    topic = "casegate/c-a/events/presence/entered"
    assert problems(topic, good) == []
    assert problems(topic, dict(good, data={"tag": "E3AF2232"}))               # room and person missing
    assert problems(topic, dict(good, ts="2026-11-28 01:02:03"))               # not RFC 3339 UTC ms
    assert problems(topic, dict(good, extra=1))                                # the envelope is closed
    assert problems("casegate/c-a/response/ping", {"request_id": "r", "ok": "yes"})
    assert problems("casegate/c-a/state/gateway", {"state": "sleeping"})


def test_every_message_through_a_real_broker_matches_the_contract(tmp_path, mosquitto):
    sub = Subscriber(mosquitto.port, ["casegate/#"])
    d = DaemonProcess(write_config(tmp_path, mosquitto.port, center="c-contract")).start()
    try:
        d.wait_status(lambda st: st["uplink"]["connected"])
        p = "casegate/c-contract/request/"
        reqs = [("person/register", {"request_id": "r1", "person": "o1", "role": "officer", "name": "李"}),
                ("person/register", {"request_id": "r2", "person": "s1", "role": "suspect", "gender": "male",
                                     "case_id": "A-1", "case_type": "criminal"}),
                ("wristband/bind", {"request_id": "r3", "tag": "e3af2232", "person": "s1"}),
                ("custody/order", {"request_id": "r4", "order": "o-1", "item": "e2000017", "action": "deposit",
                                   "case_id": "A-1", "by": "o1"}),
                ("person/checkout", {"request_id": "r5", "person": "s1", "by": "o1"}),
                ("wristband/unbind", {"request_id": "r6", "tag": "E3AF2232"}),
                ("ping", {"request_id": "r7"}), ("events/resend", {"request_id": "r8", "from_seq": 1, "to_seq": 3}),
                ("state/republish", {"request_id": "r9"}), ("alarm/ack", {"request_id": "r10", "alarm_id": "x:1",
                                                                           "by": "o1"}),
                ("person/register", {"request_id": "r11", "person": "bad id!", "role": "nobody"}),
                ("no/such", {"request_id": "r12"})]
        for cmd, body in reqs:
            sub.client.publish(p + cmd, json.dumps(body), qos=1)
            sub.wait_for(lambda m, c=cmd: m.topic.endswith(f"/response/{c}")
                         and json.loads(m.payload).get("request_id") == body["request_id"], 15)
        d.wait_status(lambda st: st["uplink"]["backlog"] == 0)     # every journaled event delivered
    finally:
        d.stop()
        try:    # its last word (after everything it published before): the retained offline state
            sub.wait_for(lambda m: m.topic == "casegate/c-contract/state/gateway"
                         and json.loads(m.payload or b"{}").get("state") == "offline", 15)
        finally:
            sub.close()
    bad, topics = [], set()
    for m in sub.all:
        if not m.payload:
            continue
        payload = json.loads(m.payload)
        topics.add(m.topic.split("/")[2])
        if "/request/" in m.topic and payload.get("request_id") in ("r11", "r12"):
            # sent malformed on purpose: the contract must refuse them as the gateway did
            assert problems(m.topic, payload), m.topic
            continue
        bad += problems(m.topic, payload)
    assert {"events", "state", "request", "response"} <= topics
    assert any(m.topic.endswith("/events/person/left") for m in sub.all)
    assert bad == [], "\n".join(bad[:20])
