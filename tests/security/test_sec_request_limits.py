"""Requests that make the gateway publish or work a lot are rate-limited per client
(issue 19 item 4): a central client cannot make the gateway re-publish millions of
events on demand. Real daemon, real mosquitto; a client is named by the topic level the
broker's ACL ties to its account (P/client/<account>/request/..., issue 30 item 6)."""
from __future__ import annotations

import time
import uuid

import json

from helpers.daemon import DaemonProcess, write_config
from helpers.central import Central, P

LIMITS = """
[rules.lone_interrogation]
grace_s = 30
"""


def ask(c: Central, command: str, client: str | None = None, **args) -> dict:
    rid = uuid.uuid4().hex[:16]
    if client is None:
        c.send(command, {"request_id": rid, **args})
    else:
        c.c.publish(f"{P}/client/{client}/request/{command}", json.dumps({"request_id": rid, **args}),
                    qos=1).wait_for_publish(5)
    return c.wait(rid, 15)


def test_resend_and_heavy_requests_are_rate_limited_per_client(tmp_path, mosquitto, subscriber_factory):
    cfg = write_config(tmp_path, mosquitto.port, LIMITS)
    text = cfg.read_text().replace("keepalive_s = 5\n", "keepalive_s = 5\nresend_events_per_min = 30\n"
                                                        "heavy_requests_per_min = 2\n")
    cfg.write_text(text)
    d = DaemonProcess(cfg).start()
    c = None
    try:
        d.wait_status(lambda s: s["uplink"]["connected"])
        c = Central(mosquitto.port)
        for i in range(10):
            assert ask(c, "person/register", person=f"p{i}", role="officer")["ok"]
        sub = subscriber_factory(mosquitto.port, [f"{P}/events/#"])
        time.sleep(1.0)
        base = len(sub.payloads(f"{P}/events/"))
        for _ in range(3):                              # 3 x 10 events = the minute's share
            r = ask(c, "events/resend", from_seq=1, to_seq=10)
            assert r["ok"] and r["data"]["count"] == 10, r
        r = ask(c, "events/resend", from_seq=1, to_seq=10)
        assert not r["ok"] and r["error"]["code"] == "busy", r
        msg = r["error"]["message"]
        assert "retry in" in msg and "mqtt:central's own limit" in msg and "30 events" in msg, msg
        # another client has its own share ...
        r = ask(c, "events/resend", client="other-platform", from_seq=1, to_seq=10)
        assert r["ok"], r
        # ... but all clients together get twice one share (renaming does not help)
        for name in ("x1", "x2"):
            ask(c, "events/resend", client=name, from_seq=1, to_seq=10)
        r = ask(c, "events/resend", client="x3", from_seq=1, to_seq=10)
        assert not r["ok"] and r["error"]["code"] == "busy", r
        # ... and the refusal says whose budget is spent: the shared one, not x3's own
        msg = r["error"]["message"]
        assert "shared limit of 60" in msg and "not mqtt:x3's own limit" in msg and "30 of it left" in msg, msg
        # busy published nothing: exactly the six granted ranges were re-published
        time.sleep(1.5)
        republished = len(sub.payloads(f"{P}/events/")) - base
        assert republished == 6 * 10, republished
        # heavy requests: two a minute per client, the third is busy before any work
        for _ in range(2):
            r = ask(c, "camera/snapshot", camera="no-such-camera")
            assert r["error"]["code"] != "busy", r
        r = ask(c, "camera/snapshot", camera="no-such-camera")
        assert not r["ok"] and r["error"]["code"] == "busy" and "retry in" in r["error"]["message"], r
        # cheap commands are not limited
        assert ask(c, "ping")["ok"]
    finally:
        if c:
            c.close()
        d.stop()
