"""Store-and-forward to the central broker (SPEC §3).

An event is *delivered* only when its PUBACK arrives (paho's ``on_publish``
for QoS 1), never when paho merely queued it. Delivered seqs go back to the
core, which marks them in the journal in its next group commit.

Order: one stream in ``seq`` order (the journal backlog, then live events
straight from the core's commit), with at most ``max_inflight`` unacked
messages. Alarms jump the queue: a committed ``alarm.*`` event is published
at once even while a day of backlog drains behind it; when the stream later
reaches its seq it is skipped (already acked) or re-sent (at-least-once).
"""
from __future__ import annotations

import collections
import json
from typing import NamedTuple
import logging
import socket
import ssl
import sys
import threading
import time
from typing import Any, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from rules.model import Event, is_suppressed_alarm, topic_for
from gateway.journal import open_reader, EVENT_COLUMNS
from gateway.uplink_takeover import TakeoverDetector

log = logging.getLogger("casegate.uplink")

TAIL_MAX = 20_000        # live events kept in memory for the caught-up fast path
READ_BATCH = 2_000       # backlog rows read per query
EARLY_ACK_TTL_S = 30.0
RESEND_MAX = 100_000


def _nodelay(client, userdata, sock) -> None:
    """paho leaves Nagle on: with a bounded window of small QoS 1 packets,
    Nagle plus the broker's delayed ACK stalls every window for ~40 ms
    (measured: 560 events/s instead of thousands)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass


def build_client(mq, client_id: str, will_topic: str | None = None) -> mqtt.Client:
    """A paho client configured from ``[mqtt]`` (protocol, TLS, credentials, LWT)."""
    proto = mqtt.MQTTv5 if mq.protocol == 5 else mqtt.MQTTv311
    kwargs: dict[str, Any] = {"client_id": client_id, "protocol": proto}
    if proto == mqtt.MQTTv311:
        kwargs["clean_session"] = True
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
    if mq.username:
        c.username_pw_set(mq.username, mq.read_password())
    if mq.tls:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=mq.ca_file or None)
        if mq.cert_file:
            ctx.load_cert_chain(mq.cert_file, mq.key_file or None)
        c.tls_set_context(ctx)
    if will_topic:
        c.will_set(will_topic, json.dumps({"state": "offline"}), qos=1, retain=True)
    c.on_socket_open = _nodelay
    c.max_inflight_messages_set(0)   # the Uplink enforces max_inflight itself
    c.max_queued_messages_set(0)
    c.reconnect_delay_set(min_delay=1, max_delay=30)
    return c


class Outgoing(NamedTuple):
    seq: int
    topic: str
    payload: str
    alarm: bool




class Uplink:
    def __init__(self, config, journal_path, on_delivered: Callable[[list[int]], None],
                 on_request: Callable[[mqtt.MQTTMessage], None] | None = None,
                 version: str = "0", started: str = ""):
        self.config = config
        self.mq = config.mqtt
        self.prefix = config.prefix
        self.journal_path = journal_path
        self.on_delivered = on_delivered
        self.on_request = on_request
        self.version = version
        self.started = started
        # Our window, not paho's: paho's own inflight queue rescans its message
        # dict on every PUBACK, so we keep it unlimited and never give it more
        # than max_inflight unacked messages.
        self.window = self.mq.max_inflight
        self._cv = threading.Condition()
        self._stop = False
        self._connected = False
        self._tail: collections.deque[Event] = collections.deque(maxlen=TAIL_MAX)
        self._buffer: collections.deque[Outgoing] = collections.deque()   # backlog read from disk
        self._priority: collections.deque[Outgoing | Event] = collections.deque()
        self._resend: collections.deque[tuple[int, int]] = collections.deque()
        self._resend_buf: collections.deque[Outgoing] = collections.deque()
        self._buffer_lo = 0
        self._gen = 0             # bumped when the stream rewinds: stale disk reads are dropped
        self._inflight: dict[int, tuple[int, float]] = {}   # mid -> (seq, sent at); seq -1 = resend
        self._inflight_seqs: set[int] = set()
        self._early_acks: dict[int, float] = {}
        self._acked: set[int] = set()
        self._retained: dict[str, str] = {}
        self._gateway_error: str | None = None
        self._clock_synchronised: bool | None | str = "unset"   # SPEC §7 v3, in state/gateway
        self._refill_asked = False    # an ack already woke the sender for this refill
        self._draining = False        # stop() is waiting for in-flight messages
        self._pub_lock = threading.Lock()   # held from _take to the last publish of that batch
        self._got_connack = False
        self.next_seq = 1
        self.last_committed = 0
        self.backlog = 0
        self.published = 0
        self.delivered = 0
        self.connects = 0
        self.last_error: str | None = None
        self._thread: threading.Thread | None = None
        self._reader = None
        client_id = self.mq.client_id or f"casegate-{config.center.id}"
        self.takeover = TakeoverDetector(client_id, self.mq.protocol)
        self._connack_ok = False
        self.client = build_client(self.mq, client_id, f"{self.prefix}/state/gateway")
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.max_inflight_messages_set(0)

    # ---- lifecycle -----------------------------------------------------------
    def start(self) -> None:
        self._reader = open_reader(self.journal_path)
        row = self._reader.execute(
            "SELECT MIN(seq), COUNT(*) FROM events WHERE delivered = 0").fetchone()
        last = self._reader.execute("SELECT MAX(seq) FROM events").fetchone()[0] or 0
        self.last_committed = last
        self.next_seq = row[0] if row[0] is not None else last + 1
        self.backlog = row[1]
        self._thread = threading.Thread(target=self._run, name="uplink", daemon=True)
        self._thread.start()
        # connect_async + loop_start: paho reconnects with backoff forever. In this order: a
        # loop started before connect_async finds nothing to connect and first sleeps its
        # reconnect delay, so every start reached the broker 1.0 s late (measured: connected
        # 1.01-1.21 s after READY; 0.01-0.2 s in this order).
        props = None
        if self.mq.protocol == 5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0
        self.client.connect_async(self.mq.host, self.mq.port, keepalive=self.mq.keepalive_s,
                                  clean_start=True if self.mq.protocol == 5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                                  properties=props)
        self.client.loop_start()

    def stop(self, drain_s: float = 3.0) -> None:
        """Publish what we can within ``drain_s``, say offline, disconnect."""
        deadline = time.monotonic() + drain_s
        with self._cv:
            self._draining = True
            while self._connected and (self._inflight or self._has_work()) and time.monotonic() < deadline:
                self._cv.wait(0.05)
            self._stop = True
            self._cv.notify_all()
        if self._connected:
            try:
                info = self.client.publish(f"{self.prefix}/state/gateway", json.dumps({"state": "offline"}),
                                           qos=1, retain=True)
                info.wait_for_publish(max(0.2, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
        if self._thread:
            self._thread.join(2)
        if self._reader:
            self._reader.close()

    @property
    def connected(self) -> bool:
        return self._connected

    # ---- inputs from the core ------------------------------------------------
    def on_committed(self, events: list[Event]) -> None:
        """Core listener: runs in the writer thread after each commit. Events
        are turned into payloads by the sender, not here."""
        if events:
            self.note_committed(events[-1].seq, events)

    def note_committed(self, last_seq: int, items: list[Event] | list[Outgoing] | None) -> None:
        """Events up to ``last_seq`` are committed; ``items`` are they, in seq
        order: Events (in-process) or their wire form (the uplink process), kept
        in memory to publish without a disk read. None when the uplink
        process's parent had to drop them (it was not reading): they are then
        read from the journal. The backlog follows the seqs, so a commit seen
        both here and by start()'s journal read counts once."""
        with self._cv:
            if items:
                tail = self._tail
                for o in items:
                    if tail and o.seq != tail[-1].seq + 1:
                        tail.clear()
                    tail.append(o)
                    if (o.alarm if isinstance(o, Outgoing) else o.domain == "alarm"):
                        self._priority.append(o)
            if last_seq > self.last_committed:
                self.backlog += last_seq - self.last_committed
                self.last_committed = last_seq
            self._cv.notify_all()

    def resend(self, from_seq: int, to_seq: int) -> int:
        n = max(0, min(to_seq, self.last_committed) - from_seq + 1)
        with self._cv:
            self._resend.append((from_seq, min(to_seq, from_seq + RESEND_MAX - 1)))
            self._cv.notify_all()
        return min(n, RESEND_MAX)

    def set_gateway_error(self, error: str | None) -> None:
        if error == self._gateway_error:
            return
        self._gateway_error = error
        self._publish_gateway_state()

    def set_clock_synchronised(self, synchronised: bool | None) -> None:
        """The system clock's sync state, shown in state/gateway (SPEC §7 v3)."""
        if synchronised == self._clock_synchronised:
            return
        self._clock_synchronised = synchronised
        self._publish_gateway_state()

    def publish_retained(self, suffix: str, payload: dict) -> None:
        """State topics (retained, not journaled); re-published on reconnect."""
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        topic = f"{self.prefix}/{suffix}"
        if self._retained.get(topic) == text:
            return
        self._retained[topic] = text
        if self._connected:
            self.client.publish(topic, text, qos=1, retain=True)

    def republish_retained(self) -> int:
        """state/republish: publish every retained state topic again (the broker may
        have lost them, or a consumer wants a fresh copy). Returns how many."""
        gateway = f"{self.prefix}/state/gateway"
        items = [(t, text) for t, text in list(self._retained.items()) if t != gateway]
        if self._connected:
            self._publish_gateway_state(force=True)
            for topic, text in items:
                self.client.publish(topic, text, qos=1, retain=True)
        return len(items) + 1

    def respond(self, topic: str, payload: dict, props: Properties | None = None) -> None:
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        self.client.publish(topic, text, qos=1, properties=props)

    # ---- paho callbacks (network thread) -------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        self._got_connack = True
        if reason_code.is_failure:
            self.last_error = f"connect refused: {reason_code}"
            log.error("broker %s:%d refused connection: %s", self.mq.host, self.mq.port, reason_code)
            return
        self.connects += 1
        self._connack_ok = True
        self.takeover.connected()
        # During a client-id takeover this would repeat every second: said once already.
        log.log(logging.DEBUG if self.takeover.cause else logging.INFO,
                "connected to %s:%d (MQTT %s)", self.mq.host, self.mq.port,
                 "5" if self.mq.protocol == 5 else "3.1.1")
        client.subscribe(f"{self.prefix}/request/#", qos=1)
        # requests under the publisher's account name (the broker's ACL proves it: docs/security.md §3a)
        client.subscribe(f"{self.prefix}/client/+/request/#", qos=1)
        self._publish_gateway_state(force=True)
        for topic, text in list(self._retained.items()):
            client.publish(topic, text, qos=1, retain=True)
        with self._cv:
            # Whatever was in flight on the old connection is not delivered: send again.
            for mid, (seq, _) in self._inflight.items():
                if seq > 0:
                    self.next_seq = min(self.next_seq, seq)
            self._inflight.clear()
            self._inflight_seqs.clear()
            self._buffer.clear()
            self._gen += 1
            self._early_acks.clear()
            self._connected = True
            self._cv.notify_all()

    def _on_connect_fail(self, client, userdata):
        # paho calls this inside its `except OSError:` around reconnect(), so the
        # exception (ssl.SSLCertVerificationError, ConnectionRefusedError, ...) is current.
        err = sys.exc_info()[1]
        if isinstance(err, ssl.SSLCertVerificationError):
            why = (f"TLS certificate verify failed: {err.verify_message or err.reason} "
                   f"(check [mqtt] ca_file, and that host names the broker's certificate)")
        elif isinstance(err, ssl.SSLError):
            why = f"TLS: {err.reason or err}"
        else:
            why = str(err) if err else "unknown error"
        self.takeover.connect_failed()
        self._connect_error(f"cannot connect to {self.mq.host}:{self.mq.port}: {why}")

    def _connect_error(self, msg: str) -> None:
        if msg != self.last_error:       # once per distinct cause, not on every retry
            log.error("%s", msg)
        self.last_error = msg

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        got_connack, self._got_connack = self._got_connack, False
        accepted, self._connack_ok = self._connack_ok, False
        taken = None
        if accepted and not self._stop:
            taken = self.takeover.disconnected(
                reason_code, bool(getattr(flags, "is_disconnect_packet_from_server", False)))
            if taken:
                log.error("%s; %s", taken, self.takeover.FIX)
        if not got_connack and not self._stop:
            # Dropped before any CONNACK: e.g. the broker requires a client certificate,
            # which TLS 1.3 reports only after the handshake.
            self._connect_error(f"cannot connect to {self.mq.host}:{self.mq.port}: connection closed "
                                f"before CONNACK ({reason_code}); with TLS check [mqtt] cert_file/key_file")
        with self._cv:
            was = self._connected
            self._connected = False
            self._cv.notify_all()
        if was and not self._stop:
            if self.takeover.cause:
                self.last_error = self.takeover.cause
                if not taken:       # said once, with the cause, when the episode began
                    log.debug("broker connection lost again (%s): client id taken over", reason_code)
            else:
                self.last_error = f"disconnected: {reason_code}"
                log.warning("broker connection lost (%s); buffering in the journal", reason_code)

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None):
        with self._cv:
            entry = self._inflight.pop(mid, None)
            if entry is None:
                self._early_acks[mid] = time.monotonic()
                return
            self._ack(entry[0], reason_code)
            if self._refill_asked or not self._has_work() or (
                    len(self._inflight) > self.window - max(1, self.window // 4) and not self._priority):
                # Refill in batches, not per PUBACK; nothing to send: on_committed
                # wakes the sender; already asked: the sender is on it.
                return
        # Never block on _pub_lock here: the sender may hold it while waiting
        # in client.publish for paho's lock, which this thread holds now.
        if self._pub_lock.acquire(blocking=False):
            try:
                with self._cv:
                    batch = self._refill_inline()
                for item, seq in batch:
                    o = item if isinstance(item, Outgoing) else self._from_event(item)
                    self._publish(o, seq)
            finally:
                self._pub_lock.release()
            if batch:
                return
        with self._cv:
            if not self._refill_asked and self._has_work():
                self._refill_asked = True
                self._cv.notify_all()

    def _refill_inline(self) -> list:
        """Refill the window right here in paho's network thread when what is
        next is already in memory: waking the sender thread for every refill
        cost a thread switch and a GIL hand-over per few messages (py-spy: the
        notify alone was 20 % of the uplink process). Disk reads, resends and
        everything else stay with the sender. Called with the lock held."""
        room = self.window - len(self._inflight)
        if (room < 1 or not self._connected or self._stop or self._resend or self._resend_buf
                or self._refill_asked):
            return []
        seq = self.next_seq
        tail = self._tail
        in_memory = (tail and tail[0].seq <= seq <= tail[-1].seq) or (self._buffer and self._buffer[0].seq <= seq)
        if not in_memory and not self._priority:
            return []
        batch, need = self._take(room)
        if need is not None:
            self._refill_asked = True
            self._cv.notify_all()       # the rest needs the disk: the sender's job
        return batch

    def _on_message(self, client, userdata, msg):
        if self.on_request is not None:
            try:
                self.on_request(msg)
            except Exception:
                log.exception("request handler failed for %s", msg.topic)

    # ---- the sender thread ---------------------------------------------------
    def _ack(self, seq: int, reason_code) -> None:
        """Called with the lock held."""
        if seq <= 0:
            return
        self._inflight_seqs.discard(seq)
        if reason_code is not None and getattr(reason_code, "is_failure", False):
            # The broker refused it (e.g. not authorised): it is not delivered.
            self.last_error = f"publish of seq {seq} refused: {reason_code}"
            log.error("broker refused seq %d: %s", seq, reason_code)
            return
        if seq in self._acked:
            return
        self._acked.add(seq)
        self.delivered += 1
        self.backlog = max(0, self.backlog - 1)
        self.on_delivered([seq])
        if len(self._acked) > 4 * TAIL_MAX:
            floor = self.next_seq - TAIL_MAX
            self._acked = {s for s in self._acked if s >= floor}
        if not self._inflight and self._draining:
            self._cv.notify_all()   # stop() waits for the last ack

    def _has_work(self) -> bool:
        return bool(self._priority or self._resend or self._resend_buf
                    or self.next_seq <= self.last_committed)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._stop and not (self._connected and len(self._inflight) < self.window
                                              and self._has_work()):
                    self._cv.wait(0.5)
                if self._stop:
                    return
            # _pub_lock spans take -> publish so that this thread and the inline
            # refill in paho's thread (_on_publish) never interleave: the wire
            # order is the seq order.
            with self._pub_lock:
                with self._cv:
                    self._refill_asked = False
                    batch, need = self._take(self.window - len(self._inflight))
                    gen = self._gen
                if need is not None:
                    # Disk reads happen outside _cv: paho's network thread takes
                    # it on every PUBACK and must never wait for SQLite.
                    kind, lo, hi = need
                    rows = self._read(lo, hi, undelivered_only=(kind == "stream"))
                    with self._cv:
                        if gen == self._gen:
                            if kind == "resend":
                                self._resend_buf.extend(rows)
                                if len(rows) == READ_BATCH and rows[-1].seq < hi:
                                    self._resend.appendleft((rows[-1].seq + 1, hi))   # the rest of the range
                            elif rows:
                                self._buffer.extend(rows)
                                self._buffer_lo = lo
                            else:
                                self.next_seq = max(self.next_seq, hi + 1)  # all delivered already
                for item, seq in batch:
                    o = item if isinstance(item, Outgoing) else self._from_event(item)
                    if self._connected:
                        self._publish(o, seq)
                    else:
                        self._not_sent(o, seq)
            if not batch and need is None:
                with self._cv:   # nothing publishable now (all acked); don't spin
                    self._cv.wait(0.05)

    def _take(self, room: int):
        """Pick up to ``room`` messages: alarms first, then resends, then the stream.

        Returns (batch, need): batch items are (Event | Outgoing, seq to
        account on PUBACK; -1 for a resend, which is no new delivery); need is
        a disk read the caller must do first (outside the lock), or None."""
        out: list = []
        while room > 0 and self._priority:
            o = self._priority.popleft()
            if o.seq in self._acked or o.seq in self._inflight_seqs:
                continue
            out.append((o, o.seq))
            self._inflight_seqs.add(o.seq)
            room -= 1
        while room > 0 and (self._resend_buf or self._resend):
            if not self._resend_buf:
                lo, hi = self._resend.popleft()
                return out, ("resend", lo, hi)
            out.append((self._resend_buf.popleft(), -1))
            room -= 1
        while room > 0 and self.next_seq <= self.last_committed:
            seq = self.next_seq
            tail = self._tail
            if tail and tail[0].seq <= seq <= tail[-1].seq:
                item = tail[seq - tail[0].seq]
            else:
                if self._buffer and seq < self._buffer_lo:
                    self._buffer.clear()     # rewound below what we read: read again
                while self._buffer and self._buffer[0].seq < seq:
                    self._buffer.popleft()
                if not self._buffer:
                    hi = tail[0].seq - 1 if tail and tail[0].seq > seq else self.last_committed
                    return out, ("stream", seq, min(hi, seq + 50 * READ_BATCH))
                item = self._buffer.popleft()
            self.next_seq = item.seq + 1
            if item.seq in self._acked or item.seq in self._inflight_seqs:
                continue
            out.append((item, item.seq))
            self._inflight_seqs.add(item.seq)
            room -= 1
        return out, None

    def _from_event(self, ev: Event) -> Outgoing:
        return Outgoing(ev.seq, topic_for(self.prefix, ev), ev.to_json(), ev.domain == "alarm")

    def _from_row(self, row) -> Outgoing:
        """Build the wire payload straight from the stored columns: the data
        column already holds the JSON text, so nothing is parsed and re-encoded."""
        seq, id_, ts, center, type_, source, data, prev, h = row
        domain, _, action = type_.partition(".")
        parsed = json.loads(data) if domain == "alarm" else None
        if domain == "alarm" and not is_suppressed_alarm(parsed):
            topic = f"{self.prefix}/alarms/{parsed.get('code', 'unknown')}"
        else:
            topic = f"{self.prefix}/events/{domain}/{action}"
        # id, ts, prev, hash are hex/ASCII by construction; center, type and
        # source are validated identifiers: only data needs JSON escaping, and
        # it is stored as JSON already.
        payload = (f'{{"id":"{id_}","seq":{seq},"ts":"{ts}","center":"{center}",'
                   f'"type":"{type_}","source":{json.dumps(source, ensure_ascii=False)},"data":{data},'
                   f'"prev":"{prev}","hash":"{h}"}}')
        return Outgoing(seq, topic, payload, domain == "alarm")

    def _read(self, lo: int, hi: int, undelivered_only: bool) -> list[Outgoing]:
        cond = "AND delivered = 0" if undelivered_only else ""
        rows = self._reader.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE seq BETWEEN ? AND ? AND shed = 0 {cond} "
            f"ORDER BY seq LIMIT ?", (lo, hi, READ_BATCH)).fetchall()
        return [self._from_row(r) for r in rows]

    def _publish(self, o: Outgoing, seq: int) -> None:
        try:
            info = self.client.publish(o.topic, o.payload, qos=1)
        except (ValueError, RuntimeError) as e:
            log.error("publish seq %d failed: %s", o.seq, e)
            return
        with self._cv:
            self.published += 1
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                self._not_sent(o, seq)
                return
            if info.mid in self._early_acks:
                del self._early_acks[info.mid]
                self._ack(seq, None)
            else:
                self._inflight[info.mid] = (seq, time.monotonic())
            if len(self._early_acks) > 1000:
                cutoff = time.monotonic() - EARLY_ACK_TTL_S
                self._early_acks = {m: t for m, t in self._early_acks.items() if t > cutoff}

    def _not_sent(self, o: Outgoing, seq: int) -> None:
        """The connection dropped before this went out: it stays undelivered."""
        with self._cv:
            if seq <= 0:
                return
            self._inflight_seqs.discard(seq)
            if o.alarm:
                self._priority.appendleft(o)
            else:
                self.next_seq = min(self.next_seq, seq)
                self._gen += 1

    def _publish_gateway_state(self, force: bool = False) -> None:
        payload: dict[str, Any] = {"state": "error" if self._gateway_error else "online",
                                   "version": self.version, "started": self.started}
        if self._gateway_error:
            payload["error"] = self._gateway_error
        if self._clock_synchronised != "unset":
            payload["clock_synchronised"] = self._clock_synchronised
        text = json.dumps(payload, separators=(",", ":"))
        topic = f"{self.prefix}/state/gateway"
        self._retained[topic] = text
        if self._connected or force:
            try:
                self.client.publish(topic, text, qos=1, retain=True)
            except (ValueError, RuntimeError):
                pass

    def status(self) -> dict:
        if self.takeover.still_up():
            log.info("client id %r: connection stable again, no longer taken over", self.takeover.client_id)
        with self._cv:
            return {"connected": self._connected, "broker": f"{self.mq.host}:{self.mq.port}",
                    "backlog": self.backlog, "inflight": len(self._inflight),
                    "published": self.published, "delivered": self.delivered,
                    "connects": self.connects, "last_error": self.last_error,
                    "next_seq": self.next_seq, "last_seq": self.last_committed,
                    "client_id_taken": self.takeover.cause}
