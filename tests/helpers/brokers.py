"""Real-broker helpers shared by tests and benches: a mosquitto on a free
loopback port, and a recording subscriber. (Not in conftest.py, so that
``from brokers import ...`` is unambiguous next to other conftest files.)"""
from __future__ import annotations

import getpass
import json
import queue
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


class Mosquitto:
    """A real broker. ``stop()``/``start()`` simulate an outage on the same port."""

    def __init__(self, workdir: Path, port: int | None = None, extra_conf: str = "",
                 persistence: bool = False):
        self.exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.port = port or free_port()
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            # run as ourselves: as root mosquitto would drop to user "mosquitto"
            # and then fail to write its persistence file into our tmp dir.
            f"user {getpass.getuser()}\n"
            "max_queued_messages 0\n"
            "set_tcp_nodelay true\n"
            "max_inflight_messages 0\n"
            + (f"persistence true\npersistence_location {workdir}/\nautosave_interval 1\n"
               if persistence else "persistence false\n")
            + extra_conf)
        self.proc: subprocess.Popen | None = None
        self.log = workdir / "mosquitto.log"

    def start(self) -> "Mosquitto":
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)],
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Subscriber:
    """A paho client that records every message on the given topic filters."""

    def __init__(self, port: int, topics=("#",), protocol=mqtt.MQTTv311, client_id: str | None = None,
                 persistent: bool = False):
        self.messages: "queue.Queue[mqtt.MQTTMessage]" = queue.Queue()
        self.all: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        # persistent: a fixed client id and a kept session, so the broker queues
        # for us while we (or it) are away - the consumer contract of SPEC §3.
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or "",
                                  protocol=protocol, clean_session=not persistent)
        self.client.reconnect_delay_set(0.1, 1)
        self.connected = threading.Event()
        self.subscribed = threading.Event()      # every topic's SUBACK is in: nothing published after is missed
        self.topics = topics
        pending: set[int] = set()

        def on_connect(c, u, f, rc, p=None):
            for t in self.topics:
                pending.add(c.subscribe(t, qos=1)[1])
            self.connected.set()

        def on_subscribe(c, u, mid, *rest):
            pending.discard(mid)
            if not pending:
                self.subscribed.set()

        def on_message(c, u, msg):
            with self._lock:
                self.all.append(msg)
            self.messages.put(msg)

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise TimeoutError("subscriber could not connect")
        if self.topics and not self.subscribed.wait(10):
            raise TimeoutError(f"no SUBACK for {list(self.topics)}")

    def wait_for(self, pred, timeout: float = 10.0):
        """Return the first new message for which pred(msg) is true."""
        return first_message(self.messages, pred, timeout)

    def payloads(self, prefix: str = "") -> list[dict]:
        with self._lock:
            msgs = list(self.all)
        out = []
        for m in msgs:
            if m.topic.startswith(prefix):
                try:
                    out.append(json.loads(m.payload))
                except ValueError:
                    pass
        return out

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def first_message(messages: "queue.Queue", pred, timeout: float):
    """The first message taken from ``messages`` for which pred(msg) is true (the ones before it
    are consumed); TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no matching MQTT message")
        try:
            msg = messages.get(timeout=left)
        except queue.Empty:
            continue
        if pred(msg):
            return msg
