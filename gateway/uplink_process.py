"""The uplink in its own process (``[mqtt] uplink_process = true``, the default).

paho-mqtt is pure Python: building every PUBLISH and decoding every PUBACK
(paho makes a ReasonCode and a Properties object per ack) costs as much CPU as
journaling the event. In one process both share one GIL, and the MQTT network
thread was 30-40 % of the writer's GIL time under py-spy. So the
:class:`~gateway.uplink.Uplink` runs in a child (``child_main`` below, under drivers/common/child.py):

* after each commit the parent hands it the events' wire form (topic, payload);
  it publishes from memory and reads the journal (its own read-only WAL
  connection; the core stays the only writer) only for the backlog after a
  start, an outage or a stall;
* the child sends delivered seqs back (batched); the core marks them;
* MQTT requests arriving at the child go to the parent (the router and the core
  live there); responses and retained state go back down.

If the child dies it is restarted with backoff. What it had not got PUBACKs
for is still undelivered in the journal and is sent again (at-least-once,
as after any reconnect). Spawning, restarts, stopping, exit reasons and the
log relay are drivers/common/child.py's (shared with the camera process);
this module adds the queue that never blocks the journal writer, the hung-
child watchdog and the typed messages below.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from drivers.common.child import ChildSupervisor, ParentLink, Stop, SupervisedChildView
from rules.model import Event, topic_for
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


# ---- the messages (pickled by class: this module is imported on both sides) ---------
# parent -> child
@dataclass
class Committed:
    """Events up to ``last_seq`` are journaled; ``wire`` = [(seq, topic, payload, is_alarm)],
    or None when the child must read them from the journal (merged past WIRE_MAX)."""
    last_seq: int
    wire: list | None


@dataclass
class Resend:
    from_seq: int
    to_seq: int


@dataclass
class GatewayError:
    error: str | None


@dataclass
class GatewayClock:
    synchronised: bool | None


@dataclass
class Retained:
    suffix: str
    payload: dict


@dataclass
class Respond:
    topic: str
    payload: dict
    correlation: bytes | None


@dataclass
class Republish:
    """state/republish: publish every retained message again."""


# child -> parent
@dataclass
class Acked:
    seqs: list[int]


@dataclass
class Status:
    status: dict


@dataclass
class MqttRequest:
    """A request that arrived at the child's MQTT client, for the parent's router."""
    topic: str
    payload: bytes
    props: dict | None


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


class UplinkProcess(SupervisedChildView):
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
        self.dropped = 0
        self._stopping = threading.Event()
        self._child = ChildSupervisor(
            "gateway.uplink_process:child_main",
            lambda: (self.config, self.journal_path, self.version, self.started),
            process_name="uplink process", device_name="uplink", on_message=self._on_message, log=log,
            log_level=lambda: logging.getLogger("casegate").getEffectiveLevel(),
            on_started=self._on_started, on_ended=self._on_ended, on_crash=self._on_crash,
            on_spawn_failed=self._on_spawn_failed, stop_event=self._stopping, thread_name="uplink-ipc",
            healthy_run_s=HEALTHY_RUN_S, linger_s=2.0)
        self._retained: dict[str, dict] = {}       # replayed to a restarted child
        self._gateway_error: str | None = None
        self._clock_synchronised: bool | None | str = "unset"
        self._status: dict[str, Any] = {"connected": False, "broker": f"{self.mq.host}:{self.mq.port}",
                                        "backlog": 0, "inflight": 0, "published": 0, "delivered": 0,
                                        "connects": 0, "last_error": None}
        self.last_committed = 0
        self._acked_since_status = 0

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
        proc = self._child.process
        st["process"] = {"pid": proc.pid if proc else None, "restarts": self.restarts}
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
        self._child.start()

    def on_committed(self, events: list[Event]) -> None:
        """Core listener (writer thread): queue the commit's wire form for the child."""
        if not events:
            return
        self.last_committed = events[-1].seq
        # The wire form goes along: the child then publishes from memory and
        # never reads the journal while it keeps up (its CPU is the scarcer).
        prefix = self.prefix
        wire = [(ev.seq, topic_for(prefix, ev), ev.to_json(), ev.type.startswith("alarm.")) for ev in events]
        self._send(Committed(events[-1].seq, wire))

    def resend(self, from_seq: int, to_seq: int) -> int:
        n = max(0, min(to_seq, self.last_committed) - from_seq + 1)
        self._send(Resend(from_seq, to_seq))
        return min(n, RESEND_MAX)

    def set_gateway_error(self, error: str | None) -> None:
        if error != self._gateway_error:
            self._gateway_error = error
            self._send(GatewayError(error))

    def set_clock_synchronised(self, synchronised: bool | None) -> None:
        if synchronised != self._clock_synchronised:
            self._clock_synchronised = synchronised
            self._send(GatewayClock(synchronised))

    def publish_retained(self, suffix: str, payload: dict) -> None:
        self._retained[suffix] = payload
        self._send(Retained(suffix, payload))

    def republish_retained(self) -> int:
        """state/republish, done by the child (it holds the connection)."""
        self._send(Republish())
        return len(self._retained) + 1

    def respond(self, topic: str, payload: dict, props=None) -> None:
        corr = getattr(props, "CorrelationData", None) if props is not None else None
        self._send(Respond(topic, payload, corr))

    def stop(self, drain_s: float = 3.0) -> None:
        self._stopping.set()
        if self._child.process is not None:
            # Stop goes through the queue, after the commits still to be published
            self._send(Stop(drain_s))
            self._child.stop(exit_within=drain_s + 3.0, term_within=2.0, kill_within=2.0,
                             join_within=2.0)      # the supervisor has passed on the last acks
        with self._out_cv:
            self._closed = True
            self._outq.clear()
            self._out_cv.notify()

    # ---- the child's lifecycle (drivers/common/child.py runs it) ---------------------
    def _on_started(self) -> None:
        # A restarted child starts from the journal; give it what it cannot read there.
        if self._gateway_error:
            self._send(GatewayError(self._gateway_error))
        if self._clock_synchronised != "unset":
            self._send(GatewayClock(self._clock_synchronised))
        for suffix, payload in self._retained.items():
            self._send(Retained(suffix, payload))

    def _on_ended(self, reason: str) -> None:
        self._status = dict(self._status, connected=False)

    def _on_crash(self, reason: str, delay: float) -> None:
        log.error("%s; restarting in %.1f s, undelivered events stay in the journal", reason, delay)
        self._status = dict(self._status, last_error=reason)

    def _on_spawn_failed(self, e: BaseException) -> None:
        log.error("cannot start the uplink process: %s; undelivered events stay in the journal", e)
        self._status = dict(self._status, last_error=f"cannot start the uplink process: {e}")

    def _send(self, msg: Any) -> None:
        """Queue a message for the child; never blocks the caller (the caller is
        often the journal writer, and a hung child must not stall it).

        Consecutive ``Committed`` notes merge into one (the last seq is what
        counts); past OUT_MAX queued messages the oldest are dropped, counted
        and logged: events stay in the journal either way."""
        with self._out_cv:
            q = self._outq
            if type(msg) is Committed and q and type(q[-1]) is Committed:
                # Not sent yet: merge. Past WIRE_MAX events the wire form is dropped
                # (the child then reads the journal), so a stuck child costs no RAM.
                last = q[-1]
                if last.wire is not None and len(last.wire) + len(msg.wire) <= WIRE_MAX:
                    last.wire.extend(msg.wire)   # in place: still ours while queued (no O(n^2) copies)
                else:
                    last.wire = None
                last.last_seq = msg.last_seq
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
            # False when no child runs: the restarted one reads the journal
            self._child.send(msg)

    def _watchdog(self) -> None:
        # Its own thread: the writer may be the one stuck in send() to a hung child.
        while not self._closed:
            time.sleep(1.0)
            self._check_hung()

    def _check_hung(self) -> None:
        proc = self._child.process
        # a new child gets CHILD_START_S more for its imports before its first status
        limit = HUNG_S + (0.0 if self._child.heard_since_start else CHILD_START_S)
        if (proc is None or self._stopping.is_set() or not proc.is_alive()
                or self._child.silent_for() < limit):
            return
        log.error("uplink process %d silent for %.0f s; killing it", proc.pid, HUNG_S)
        self._child.kill()        # the supervisor sees the channel close and restarts it

    def _on_message(self, msg: Any) -> None:
        cls = type(msg)
        if cls is Acked:
            self._acked_since_status += len(msg.seqs)
            self.on_delivered(msg.seqs)
        elif cls is Status:
            self._status = msg.status
            self._acked_since_status = 0
        elif cls is MqttRequest:
            if self.on_request is not None:
                try:
                    self.on_request(RequestMessage(msg.topic, msg.payload,
                                                   _Props(msg.props) if msg.props else None))
                except Exception:
                    log.exception("request handler failed for %s", msg.topic)
        else:
            log.warning("unexpected message from the uplink process: %s", cls.__name__)


# ---- the child ----------------------------------------------------------------------
def child_main(link: ParentLink, config, journal_path: str, version: str, started: str) -> None:
    """The uplink process (drivers/common/child.py has set up the channel and the log relay)."""
    import signal
    # The parent decides when we stop (its SIGTERM drain sends Stop); a Ctrl-C
    # or a systemd stop signals the whole group, so ignore both here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from gateway.uplink import Outgoing, Uplink

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
        link.send(MqttRequest(msg.topic, bytes(msg.payload), props))

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
            if batch and not link.send(Acked(batch)):
                return                        # the parent is gone
            now = time.monotonic()
            st = up.status()
            key = (st["connected"], st["last_error"])
            counts = (st["backlog"], st["delivered"], st["published"])
            if (key != last_status or now - last_time >= STATUS_EVERY_S
                    or (counts != last_counts and now - last_time >= STATUS_MIN_S)):
                if not link.send(Status(st)):
                    return
                last_status, last_counts, last_time = key, counts, now
            if done.is_set():
                return

    up.start()
    t = threading.Thread(target=pusher, name="uplink-push", daemon=True)
    t.start()
    try:
        while True:
            try:
                msg = link.recv()
            except (EOFError, OSError):
                break                         # the parent is gone
            cls = type(msg)
            if cls is Committed:
                up.note_committed(msg.last_seq, None if msg.wire is None else
                                  [Outgoing(seq, topic, payload, alarm) for seq, topic, payload, alarm in msg.wire])
            elif cls is Resend:
                up.resend(msg.from_seq, msg.to_seq)
            elif cls is GatewayError:
                up.set_gateway_error(msg.error)
            elif cls is GatewayClock:
                up.set_clock_synchronised(msg.synchronised)
            elif cls is Retained:
                up.publish_retained(msg.suffix, msg.payload)
            elif cls is Respond:
                props = None
                if msg.correlation is not None:
                    from paho.mqtt.packettypes import PacketTypes
                    from paho.mqtt.properties import Properties
                    props = Properties(PacketTypes.PUBLISH)
                    props.CorrelationData = msg.correlation
                up.respond(msg.topic, msg.payload, props)
            elif cls is Republish:
                up.republish_retained()
            elif cls is Stop:
                up.stop(drain_s=msg.timeout)
                break
    finally:
        done.set()
        with acks_cv:
            acks_cv.notify()
        t.join(2.0)
        link.close()
