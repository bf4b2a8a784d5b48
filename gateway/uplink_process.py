"""The uplink in its own process (``[mqtt] uplink_process = true``, the default).

paho-mqtt is pure Python: building every PUBLISH and decoding every PUBACK
(paho makes a ReasonCode and a Properties object per ack) costs as much CPU as
journaling the event. In one process both share one GIL, and the MQTT network
thread was 30-40 % of the writer's GIL time under py-spy. So the
:class:`~gateway.uplink.Uplink` runs in a child (``python -m gateway.uplink_process``):

* after each commit the parent hands it the events' wire form (topic, payload);
  it publishes from memory and reads the journal (its own read-only WAL
  connection; the core stays the only writer) only for the backlog after a
  start, an outage or a stall;
* the child sends delivered seqs back (batched); the core marks them;
* MQTT requests arriving at the child go to the parent (the router and the core
  live there); responses and retained state go back down.

If the child dies it is restarted with backoff. What it had not got PUBACKs
for is still undelivered in the journal and is sent again (at-least-once,
as after any reconnect).
"""
from __future__ import annotations

import collections
import logging
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Callable

from drivers.base import Backoff, child_python_env
from gateway.events import Event, topic_for
from gateway.uplink import RESEND_MAX

log = logging.getLogger("casegate.uplink")

ACK_BATCH_S = 0.005       # the child gathers PUBACKed seqs this long before sending them up
STATUS_EVERY_S = 0.5      # the child's status (backlog, counters) at least this often ...
STATUS_MIN_S = 0.05       # ... and at most this often while its counters change
HUNG_S = 15.0             # a child silent this long (no status) is killed and restarted
CHILD_START_S = 15.0      # extra time for a new child's imports before HUNG_S counts
OUT_MAX = 10_000          # messages queued for the child before the oldest are dropped
HEALTHY_RUN_S = 60.0      # a child that lived this long resets the restart backoff
WIRE_MAX = 20_000         # events carried by merged commit notes before the child must read the journal


@dataclass
class RequestMessage:
    """What the request router reads of a paho MQTTMessage."""
    topic: str
    payload: bytes
    properties: Any = None


class _Props:
    """The MQTT 5 properties of a request, as plain attributes."""

    def __init__(self, d: dict):
        self.ResponseTopic = d.get("ResponseTopic")
        self.CorrelationData = d.get("CorrelationData")
        self.UserProperty = d.get("UserProperty")


class UplinkProcess:
    """Same interface as :class:`gateway.uplink.Uplink`, the work done in a child."""

    def __init__(self, config, journal_path, on_delivered: Callable[[list[int]], None],
                 on_request: Callable[[Any], None] | None = None, version: str = "0", started: str = ""):
        self.config = config
        self.prefix = config.prefix
        self.mq = config.mqtt
        self.journal_path = str(journal_path)
        self.on_delivered = on_delivered
        self.on_request = on_request
        self.version = version
        self.started = started
        self._outq: collections.deque = collections.deque()   # to the child, sent by _writer
        self._out_cv = threading.Condition()
        self._closed = False
        self._last_report = time.monotonic()     # anything heard from the child
        self.dropped = 0
        self._conn = None
        self._proc = None
        self._reader: threading.Thread | None = None
        self._stopping = threading.Event()
        self._restart_backoff = Backoff(self._stopping, first=0.5, cap=30.0)
        self._spawned_at = 0.0
        self._stopped = threading.Event()
        self._retained: dict[str, dict] = {}       # replayed to a restarted child
        self._gateway_error: str | None = None
        self._status: dict[str, Any] = {"connected": False, "broker": f"{self.mq.host}:{self.mq.port}",
                                        "backlog": 0, "inflight": 0, "published": 0, "delivered": 0,
                                        "connects": 0, "last_error": None}
        self.last_committed = 0
        self._acked_since_status = 0
        self.restarts = 0

    # ---- the Uplink interface ---------------------------------------------------
    @property
    def connected(self) -> bool:
        return bool(self._status.get("connected"))

    @property
    def backlog(self) -> int:
        """The child's last report, brought up to date with the commits and acks
        the parent has seen since (acks and status come in order on one channel)."""
        st = self._status
        return max(0, int(st.get("backlog") or 0) + max(0, self.last_committed - int(st.get("last_seq") or 0))
                   - self._acked_since_status)

    @property
    def delivered(self) -> int:
        return int(self._status.get("delivered") or 0)

    @property
    def last_error(self) -> str | None:
        return self._status.get("last_error")

    def status(self) -> dict:
        st = dict(self._status)
        st["backlog"] = self.backlog
        st["process"] = {"pid": self._proc.pid if self._proc else None, "restarts": self.restarts}
        return st

    def start(self) -> None:
        # Until the child reports, the journal says what waits (status right after start).
        from gateway.journal import open_reader
        conn = open_reader(self.journal_path)
        try:
            backlog = conn.execute("SELECT COUNT(*) FROM events WHERE delivered = 0").fetchone()[0]
            last = conn.execute("SELECT MAX(seq) FROM events").fetchone()[0] or 0
        finally:
            conn.close()
        self.last_committed = max(self.last_committed, last)
        self._status = dict(self._status, backlog=backlog, last_seq=last)
        threading.Thread(target=self._writer, name="uplink-ipc-out", daemon=True).start()
        threading.Thread(target=self._watchdog, name="uplink-watchdog", daemon=True).start()
        self._spawn()

    def on_committed(self, events: list[Event]) -> None:
        """Core listener (writer thread): queue the commit's wire form for the child."""
        if not events:
            return
        self.last_committed = events[-1].seq
        # The wire form goes along: the child then publishes from memory and
        # never reads the journal while it keeps up (its CPU is the scarcer).
        prefix = self.prefix
        wire = [(ev.seq, topic_for(prefix, ev), ev.to_json(), ev.type.startswith("alarm.")) for ev in events]
        self._send(("committed", events[-1].seq, wire))

    def resend(self, from_seq: int, to_seq: int) -> int:
        n = max(0, min(to_seq, self.last_committed) - from_seq + 1)
        self._send(("resend", from_seq, to_seq))
        return min(n, RESEND_MAX)

    def set_gateway_error(self, error: str | None) -> None:
        if error != self._gateway_error:
            self._gateway_error = error
            self._send(("gateway_error", error))

    def publish_retained(self, suffix: str, payload: dict) -> None:
        self._retained[suffix] = payload
        self._send(("retained", suffix, payload))

    def republish_retained(self) -> int:
        """state/republish, done by the child (it holds the connection)."""
        self._send(("republish",))
        return len(self._retained) + 1

    def respond(self, topic: str, payload: dict, props=None) -> None:
        corr = getattr(props, "CorrelationData", None) if props is not None else None
        self._send(("respond", topic, payload, corr))

    def stop(self, drain_s: float = 3.0) -> None:
        self._stopping.set()
        proc = self._proc
        if proc is None:
            return
        self._send(("stop", drain_s))
        try:
            proc.wait(drain_s + 3.0)
        except subprocess.TimeoutExpired:
            log.warning("uplink process did not stop in time; terminating it")
            proc.terminate()
            try:
                proc.wait(2.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(2.0)
        self._stopped.wait(2.0)           # the reader has passed on the last acks
        with self._out_cv:
            self._closed = True
            self._outq.clear()
            self._out_cv.notify()
        if self._conn is not None:
            self._conn.close()

    # ---- the child's lifecycle --------------------------------------------------
    def _spawn(self) -> None:
        # A fresh interpreter (python -m), not multiprocessing's spawn: that
        # re-imports the parent's __main__, which breaks under any script that
        # lacks a __main__ guard. The channel is one end of a socketpair.
        a, b = socket.socketpair()
        env = child_python_env()
        proc = subprocess.Popen([sys.executable, "-m", "gateway.uplink_process", str(b.fileno())],
                                pass_fds=(b.fileno(),), env=env, close_fds=True)
        b.close()
        parent = Connection(a.detach())
        level = logging.getLogger("casegate").getEffectiveLevel()
        parent.send((self.config, self.journal_path, self.version, self.started, level))
        self._last_report = time.monotonic() + CHILD_START_S
        self._conn, self._proc = parent, proc
        self._spawned_at = time.monotonic()
        # A restarted child starts from the journal; give it what it cannot read there.
        if self._gateway_error:
            self._send(("gateway_error", self._gateway_error))
        for suffix, payload in self._retained.items():
            self._send(("retained", suffix, payload))
        self._stopped.clear()
        self._reader = threading.Thread(target=self._read, args=(parent, proc), name="uplink-ipc",
                                        daemon=True)
        self._reader.start()

    def _send(self, msg: tuple) -> None:
        """Queue a message for the child; never blocks the caller (the caller is
        often the journal writer, and a hung child must not stall it).

        Consecutive ``committed`` notes merge into one (the last seq is what
        counts); past OUT_MAX queued messages the oldest are dropped, counted
        and logged: events stay in the journal either way."""
        with self._out_cv:
            q = self._outq
            if msg[0] == "committed" and q and q[-1][0] == "committed":
                # Not sent yet: merge. Past WIRE_MAX events the wire form is dropped
                # (the child then reads the journal), so a stuck child costs no RAM.
                _, _, wire = q[-1]
                if wire is not None and len(wire) + len(msg[2]) <= WIRE_MAX:
                    wire.extend(msg[2])      # in place: still ours while queued (no O(n^2) copies)
                else:
                    wire = None
                q[-1] = ("committed", msg[1], wire)
            else:
                q.append(msg)
                if len(q) > OUT_MAX:
                    q.popleft()
                    self.dropped += 1
                    if self.dropped == 1 or self.dropped % 1000 == 0:
                        log.error("uplink process is not reading; %d messages to it dropped (events stay "
                                  "in the journal)", self.dropped)
            self._out_cv.notify()

    def _writer(self) -> None:
        """Sends queued messages to the current child; kills a child that stopped
        reporting (hung: its status comes at least every STATUS_EVERY_S)."""
        while True:
            with self._out_cv:
                while not self._outq and not self._closed:
                    self._out_cv.wait(1.0)
                if self._closed and not self._outq:
                    return
                msg = self._outq.popleft()
            conn = self._conn
            if conn is None:
                continue
            try:
                conn.send(msg)
            except (OSError, ValueError, EOFError):
                pass      # the child is gone; the reader restarts it and it reads the journal

    def _watchdog(self) -> None:
        # Its own thread: the writer may be the one stuck in send() to a hung child.
        while not self._closed:
            time.sleep(1.0)
            self._check_hung()

    def _check_hung(self) -> None:
        proc = self._proc
        if (proc is None or self._stopping.is_set() or proc.poll() is not None
                or time.monotonic() - self._last_report < HUNG_S):
            return
        log.error("uplink process %d silent for %.0f s; killing it", proc.pid, HUNG_S)
        self._last_report = time.monotonic()
        proc.kill()        # the reader sees the channel close and restarts it

    def _read(self, conn, proc) -> None:
        try:
            while True:
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    break
                self._last_report = time.monotonic()
                kind = msg[0]
                if kind == "acked":
                    self._acked_since_status += len(msg[1])
                    self.on_delivered(msg[1])
                elif kind == "status":
                    self._status = msg[1]
                    self._acked_since_status = 0
                elif kind == "request":
                    if self.on_request is not None:
                        _, topic, payload, props = msg
                        try:
                            self.on_request(RequestMessage(topic, payload, _Props(props) if props else None))
                        except Exception:
                            log.exception("request handler failed for %s", topic)
                elif kind == "log":
                    _, level, name, text = msg
                    logging.getLogger(name).log(level, "%s", text)
        finally:
            self._stopped.set()
        try:
            proc.wait(2.0)
        except subprocess.TimeoutExpired:
            proc.kill()             # it closed the channel but lingers: make it a clean restart
            proc.wait(2.0)
        self._status = dict(self._status, connected=False)
        if self._stopping.is_set():
            return
        code = proc.returncode
        why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        self.restarts += 1
        if time.monotonic() - self._spawned_at >= HEALTHY_RUN_S:
            self._restart_backoff.reset()     # a crash after a good run is not a crash loop
        log.error("uplink process died (%s); restarting in %.1f s, undelivered events stay in the journal",
                  why, self._restart_backoff.delay)
        self._status = dict(self._status, last_error=f"uplink process died ({why})")
        if self._restart_backoff.wait():      # False: stop() came meanwhile
            self._spawn()


# ---- the child ----------------------------------------------------------------------
class _PipeLog(logging.Handler):
    def __init__(self, send):
        super().__init__()
        self.send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.send(("log", record.levelno, record.name, self.format(record)))
        except Exception:
            pass


def _child_main(fd: int) -> None:
    import signal
    # The parent decides when we stop (its SIGTERM drain sends "stop"); a Ctrl-C
    # or a systemd stop signals the whole group, so ignore both here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from gateway.uplink import Outgoing, Uplink

    conn = Connection(fd)
    config, journal_path, version, started, level = conn.recv()

    lock = threading.Lock()

    def send(msg) -> None:
        with lock:
            conn.send(msg)

    root = logging.getLogger()
    root.handlers[:] = [_PipeLog(send)]
    root.handlers[0].setFormatter(logging.Formatter("%(message)s"))
    root.setLevel(level)

    acks: list[int] = []
    acks_cv = threading.Condition()

    def on_delivered(seqs: list[int]) -> None:
        with acks_cv:
            acks.extend(seqs)
            if len(acks) == len(seqs):
                acks_cv.notify()

    def on_request(msg) -> None:
        props = None
        p = msg.properties
        if p is not None:
            props = {"ResponseTopic": getattr(p, "ResponseTopic", None),
                     "CorrelationData": getattr(p, "CorrelationData", None),
                     "UserProperty": getattr(p, "UserProperty", None)}
        send(("request", msg.topic, bytes(msg.payload), props))

    up = Uplink(config, journal_path, on_delivered, on_request=on_request, version=version, started=started)
    done = threading.Event()

    def pusher() -> None:
        """Acks in batches, status on change and every STATUS_EVERY_S."""
        last_status = last_counts = None
        last_time = 0.0
        while True:
            with acks_cv:
                if not acks and not done.is_set():
                    acks_cv.wait(0.05)
            time.sleep(ACK_BATCH_S)
            with acks_cv:
                batch = acks[:]
                acks.clear()
            try:
                if batch:
                    send(("acked", batch))
                now = time.monotonic()
                st = up.status()
                key = (st["connected"], st["last_error"])
                counts = (st["backlog"], st["delivered"], st["published"])
                if (key != last_status or now - last_time >= STATUS_EVERY_S
                        or (counts != last_counts and now - last_time >= STATUS_MIN_S)):
                    send(("status", st))
                    last_status, last_counts, last_time = key, counts, now
            except (OSError, ValueError):
                return
            if done.is_set():
                return

    up.start()
    t = threading.Thread(target=pusher, name="uplink-push", daemon=True)
    t.start()
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break                         # the parent is gone
            kind = msg[0]
            if kind == "committed":
                _, last, wire = msg
                up.note_committed(last, None if wire is None else
                                  [Outgoing(seq, topic, payload, alarm) for seq, topic, payload, alarm in wire])
            elif kind == "resend":
                up.resend(msg[1], msg[2])
            elif kind == "gateway_error":
                up.set_gateway_error(msg[1])
            elif kind == "retained":
                up.publish_retained(msg[1], msg[2])
            elif kind == "respond":
                _, topic, payload, corr = msg
                props = None
                if corr is not None:
                    from paho.mqtt.packettypes import PacketTypes
                    from paho.mqtt.properties import Properties
                    props = Properties(PacketTypes.PUBLISH)
                    props.CorrelationData = corr
                up.respond(topic, payload, props)
            elif kind == "republish":
                up.republish_retained()
            elif kind == "stop":
                up.stop(drain_s=msg[1])
                break
    finally:
        done.set()
        with acks_cv:
            acks_cv.notify()
        t.join(2.0)
        conn.close()


if __name__ == "__main__":
    _child_main(int(sys.argv[1]))
