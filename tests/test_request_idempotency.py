"""Idempotency keyed by what was asked (issue 28 item 2): a stored answer goes back only to
the same client with the same command and payload; the same request_id from another client,
or with another command or payload, is ``conflict`` and journaled as ``request.refused``.
Real daemon, real mosquitto; clients named by the topic level a broker ACL ties to their
account (P/client/<account>/request/...)."""
from __future__ import annotations

import json
import sqlite3
import threading
import time

import paho.mqtt.client as mqtt

from helpers.daemon import DaemonProcess, cli, write_config

P = "casegate/t-center"
ROOMS = """
[[rooms]]
id = "interrogation-1"
type = "interrogation"
"""


class Clients:
    """One MQTT connection that publishes as several accounts and keeps every answer."""

    def __init__(self, port: int):
        self.answers: dict[str, list[dict]] = {}
        self.cv = threading.Condition()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        ready = threading.Event()              # set on the SUBACK: no answer can be missed after it
        self.c.on_connect = lambda c, u, f, rc, p=None: c.subscribe(f"{P}/response/#", 1)
        self.c.on_subscribe = lambda c, u, mid, *rest: ready.set()
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert ready.wait(10), "no SUBACK from the broker"

    def _on_message(self, c, u, msg):
        body = json.loads(msg.payload)
        with self.cv:
            self.answers.setdefault(body.get("request_id"), []).append(body)
            self.cv.notify_all()

    def ask(self, client: str | None, command: str, rid: str, **args) -> dict:
        with self.cv:
            before = len(self.answers.get(rid, []))
        topic = f"{P}/request/{command}" if client is None else f"{P}/client/{client}/request/{command}"
        self.c.publish(topic, json.dumps({"request_id": rid, **args}), qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 15
        with self.cv:
            while len(self.answers.get(rid, [])) <= before:
                left = deadline - time.monotonic()
                assert left > 0, f"no answer to {command} {rid}"
                self.cv.wait(left)
            return self.answers[rid][before]

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def journal(d: DaemonProcess, type_: str) -> list[tuple[str, dict]]:
    conn = sqlite3.connect(d.state_dir / "journal.db")
    try:
        return [(src, json.loads(data)) for src, data in
                conn.execute("SELECT source, data FROM events WHERE type = ? ORDER BY seq", (type_,))]
    finally:
        conn.close()


def test_a_request_id_cannot_be_poisoned_in_either_order_and_restart_keeps_it(tmp_path, mosquitto):
    cfg = write_config(tmp_path, mosquitto.port, ROOMS)
    d = DaemonProcess(cfg).start()
    c = None
    try:
        d.wait_status(lambda s: s["uplink"]["connected"])
        c = Clients(mosquitto.port)
        assert c.ask("platform-a", "person/register", "reg-o1", person="o1", role="officer")["ok"]

        # Order 1: A's request is stored; B re-uses A's request_id for the same question.
        order = dict(order="ord-1", item="E2000017221101441890ABCD", action="deposit", case_id="c-1", by="o1")
        first = c.ask("platform-a", "custody/order", "X-1", **order)
        assert first["ok"], first
        again = c.ask("platform-a", "custody/order", "X-1", **order)     # A's own retry: the stored answer
        assert again == first
        stolen = c.ask("platform-b", "custody/order", "X-1", **order)
        assert not stolen["ok"] and stolen["error"]["code"] == "conflict", stolen
        assert "new request_id" in stolen["error"]["message"]
        # the same client, another payload under the same id: conflict too
        changed = c.ask("platform-a", "custody/order", "X-1", **dict(order, action="withdraw"))
        assert changed["error"]["code"] == "conflict", changed

        # Order 2: B sends something harmless with id Y first; A's custody order with Y must be
        # refused (not answered with B's stored "ok") and must not be mistaken for done.
        harmless = c.ask("platform-b", "recording/state", "Y-1", room="interrogation-1", recording=True,
                         source="operator", by="o1")       # a report by hand: attributable (DOMAIN v3)
        assert harmless["ok"], harmless
        order2 = dict(order, order="ord-2")
        swallowed = c.ask("platform-a", "custody/order", "Y-1", **order2)
        assert not swallowed["ok"] and swallowed["error"]["code"] == "conflict", swallowed
        assert [x["order"] for _, x in journal(d, "custody.ordered")] == ["ord-1"]
        # with a fresh id it is carried out
        assert c.ask("platform-a", "custody/order", "Y-2", **order2)["ok"]
        assert [x["order"] for _, x in journal(d, "custody.ordered")] == ["ord-1", "ord-2"]

        refused = journal(d, "request.refused")
        assert [(s, x["command"], x["code"], x.get("by"), x["request_id"]) for s, x in refused] == [
            ("mqtt:platform-b", "custody/order", "conflict", "o1", "X-1"),
            ("mqtt:platform-a", "custody/order", "conflict", "o1", "X-1"),
            ("mqtt:platform-a", "custody/order", "conflict", "o1", "Y-1"),
        ]

        # Restart: the key survives with the stored answer.
        assert d.terminate() == 0
        d.start()
        d.wait_status(lambda s: s["uplink"]["connected"])
        assert c.ask("platform-a", "custody/order", "X-1", **order) == first
        after = c.ask("platform-b", "custody/order", "X-1", **order)
        assert after["error"]["code"] == "conflict", after
        assert len(journal(d, "request.refused")) == 4
        assert cli("journal", "verify", config=cfg).returncode == 0
    finally:
        if c:
            c.close()
        d.stop()
