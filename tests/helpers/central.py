"""A central system on the broker (MQTT v5): sends requests to the gateway, collects the responses."""
from __future__ import annotations

import json
import threading
import time
import uuid

import paho.mqtt.client as mqtt


P = "casegate/t-center"


class Central:
    """A central system: sends requests, collects responses by request_id."""

    def __init__(self, port, protocol=mqtt.MQTTv5):
        self.responses: dict[str, dict] = {}
        self.by_corr: dict[bytes, tuple[str, dict]] = {}
        self.cv = threading.Condition()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=protocol)
        self.c.on_message = self._on_message
        ready = threading.Event()              # both SUBACKs in: no response can be missed
        pending: set[int] = set()

        def on_connect(c, u, f, rc, p=None):
            pending.update({c.subscribe(f"{P}/response/#", 1)[1], c.subscribe("central/replies/#", 1)[1]})

        def on_subscribe(c, u, mid, *rest):
            pending.discard(mid)
            if not pending:
                ready.set()
        self.c.on_connect = on_connect
        self.c.on_subscribe = on_subscribe
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert ready.wait(10), "no SUBACK from the broker"

    def _on_message(self, c, u, msg):
        body = json.loads(msg.payload)
        with self.cv:
            corr = getattr(msg.properties, "CorrelationData", None) if msg.properties else None
            if msg.topic.startswith("central/replies"):
                self.by_corr[corr] = (msg.topic, body)
            elif body.get("request_id"):
                self.responses.setdefault(body["request_id"], body)
            else:
                self.responses.setdefault(f"anon-{len(self.responses)}", body)
            self.cv.notify_all()

    def send(self, command, payload, raw: bytes | None = None, props=None):
        data = raw if raw is not None else json.dumps(payload).encode()
        self.c.publish(f"{P}/request/{command}", data, qos=1, properties=props).wait_for_publish(5)

    def request(self, command, timeout=10, **args):
        rid = args.pop("request_id", None) or uuid.uuid4().hex[:16]
        self.send(command, {"request_id": rid, **args})
        return self.wait(rid, timeout)

    def wait(self, rid, timeout=10):
        deadline = time.monotonic() + timeout
        with self.cv:
            while rid not in self.responses:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no response to {rid}")
                self.cv.wait(left)
            return self.responses[rid]

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()
