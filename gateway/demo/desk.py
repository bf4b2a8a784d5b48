"""The demo's central system / registration desk: its requests go through the command
table (gateway/commands/), over the local broker or in-process."""
from __future__ import annotations

import json
import os
import threading
import time
import uuid

from gateway.daemon import Daemon
from gateway.demo.center import DESK
from gateway.demo.runtime import DemoError


class Desk:
    """The demo's central system / registration desk: requests over the local broker
    when the gateway is connected to it, else in-process (``via``)."""

    def __init__(self, daemon: Daemon, broker_port: int | None):
        self.daemon = daemon
        self.prefix = daemon.config.prefix
        self.client = None
        self.responses: dict[str, dict] = {}
        self.alarm_messages = 0
        self.messages = 0
        self._cv = threading.Condition()
        if broker_port is not None:
            self._connect(broker_port)

    @property
    def via(self) -> str:
        return "mqtt" if self.client is not None else "in-process"

    def _connect(self, port: int) -> None:
        import paho.mqtt.client as mqtt
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{DESK}-{os.getpid()}",
                        protocol=mqtt.MQTTv5)
        subscribed = threading.Event()

        def on_connect(client, userdata, flags, rc, props=None):
            client.subscribe([(f"{self.prefix}/response/#", 1), (f"{self.prefix}/alarms/#", 1),
                              (f"{self.prefix}/events/#", 1)])

        def on_subscribe(client, userdata, mid, rcs, props=None):
            subscribed.set()

        def on_message(client, userdata, msg):
            with self._cv:
                self.messages += 1
                if msg.topic.startswith(f"{self.prefix}/alarms/"):
                    self.alarm_messages += 1
                elif msg.topic.startswith(f"{self.prefix}/response/"):
                    try:
                        body = json.loads(msg.payload)
                    except ValueError:
                        return
                    if isinstance(body, dict) and body.get("request_id"):
                        self.responses[body["request_id"]] = body
                        self._cv.notify_all()

        c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
        c.connect("127.0.0.1", port, keepalive=10)
        c.loop_start()
        self.client = c
        if not subscribed.wait(10):
            self.close()
            raise DemoError("the demo desk could not subscribe on the local broker")

    def close(self) -> None:
        c, self.client = self.client, None
        if c is not None:
            try:
                c.disconnect()
                c.loop_stop()
            except Exception:
                pass

    def __call__(self, command: str, *, account: str = DESK, **args) -> dict:
        """Send one request; its data, or DemoError with the SPEC §3 error code.

        ``account``: whose request it is — the desk, or a room's recorder system (审讯主机), which
        the demo also plays: it reports under its own account (P/client/<recorder>/request/...)."""
        rid = f"demo-{uuid.uuid4().hex[:12]}"
        if self.client is not None:
            body = self._mqtt(command, rid, args, account)
        else:
            body = self._direct(command, rid, args, account)
        if not body.get("ok"):
            err = body.get("error") or {}
            raise DemoError(f"{command}: {err.get('code')}: {err.get('message')}")
        return body.get("data") or {}

    def _mqtt(self, command: str, rid: str, args: dict, account: str) -> dict:
        # under the account's name (P/client/<account>/request/...): where a broker ACL proves who
        # published; a self-declared user property is no identity (docs/security.md §3a)
        self.client.publish(f"{self.prefix}/client/{account}/request/{command}",
                            json.dumps({"request_id": rid, **args}), qos=1)
        deadline = time.monotonic() + 15.0
        with self._cv:
            while rid not in self.responses:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DemoError(f"{command}: no response within 15 s")
                self._cv.wait(left)
            return self.responses.pop(rid)

    def _direct(self, command: str, rid: str, args: dict, account: str) -> dict:
        # No broker: the same command table and router as P/request/<command>, in-process;
        # the journal's source is the one an MQTT request of that account would have.
        return self.daemon.router.call(command, {"request_id": rid, **args}, path="demo",
                                       source=f"mqtt:{account}", timeout=15.0)
