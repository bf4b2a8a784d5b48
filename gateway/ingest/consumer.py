"""``casegate ingest`` (SPEC §6): the central-side reference consumer.

MQTT (persistent session: a fixed client id, clean_start false, a session
expiry; or ``$share/<group>/`` subscriptions) -> one writer thread -> the
database. Messages are acknowledged (manual PUBACK) only after the batch that
holds them is committed, so a killed consumer loses nothing the broker gave it.
What the broker lost anyway (mosquitto drops for slow subscribers, a wiped
session, a bridge restart) shows up as a ``seq`` gap and is re-requested from
the gateway with ``events/resend`` after a short reorder wait, retried with
backoff. Duplicates (at-least-once delivery, overlapping re-sends) are
dropped by (center, seq) and counted; a seq that arrives with another ``id``
is rejected and breaks the chain report.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlparse, unquote

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.events import dump_data, parse_ts
from gateway.ingest.chain import CenterChain, envelope_problem
from gateway.ingest.store import Batch, ChainRow, Store, utcnow

log = logging.getLogger("casegate.ingest")

RESEND_MAX = 100_000          # SPEC §3: at most this many seqs per events/resend
BATCH_MAX = 2_000             # messages per transaction
BATCH_WAIT_S = 0.05           # ... or this long after the first one


@dataclass
class IngestOptions:
    broker: str = "mqtt://127.0.0.1:1883"
    db: str = "sqlite:///central.db"
    centers: tuple[str, ...] = ()          # empty: every center (+)
    topic_prefix: str = "casegate"
    client_id: str = "casegate-ingest"
    share: str | None = None               # $share group; None: a plain persistent subscription
    session_expiry_s: int = 7 * 86400      # how long the broker keeps our queue while we are away
    reorder_wait_s: float = 2.0            # a gap younger than this may still fill by itself
    resend_backoff_s: float = 2.0          # first retry of an unfilled gap; doubles to resend_backoff_max_s
    resend_backoff_max_s: float = 60.0
    tail_probe_s: float = 30.0             # a quiet center is asked for anything after its last seq
    receive_maximum: int = 1000            # unacknowledged messages the broker may send us
    username: str = ""
    password_file: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""


class Ingest:
    def __init__(self, opts: IngestOptions, store: Store | None = None):
        self.o = opts
        self.store = store or Store.open(opts.db)
        self.store.migrate()
        self.chains: dict[str, CenterChain] = {}
        for center, row in self.store.load_chains().items():
            self.chains[center] = CenterChain(row, self.store.load_pending(center, row.contiguous_seq))
        self.q: "queue.Queue[tuple]" = queue.Queue()
        self.stop_event = threading.Event()
        self.fatal = False
        self.connected = threading.Event()
        self.counts = {"stored": 0, "duplicates": 0, "rejected": 0, "resend_requests": 0, "state": 0}
        self.reply_topic = f"{opts.client_id}/replies"
        # With a shared subscription another instance stores part of each center's
        # stream: before asking for a "gap", look in the database (own connection:
        # the repairer must not use the writer's).
        self.peer_store = Store.open(opts.db) if opts.share else None
        self._dirty: set[str] = set()
        # The writer (process) and the repairer (repair_tick) share the chains.
        self._lock = threading.Lock()
        self.client = self._client()

    # ---- MQTT ---------------------------------------------------------------------
    def _client(self) -> mqtt.Client:
        u = urlparse(self.o.broker)
        if u.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(f"--broker {self.o.broker}: use mqtt://host:port or mqtts://host:port")
        self.host = u.hostname or "127.0.0.1"
        tls = u.scheme in ("mqtts", "ssl")
        self.port = u.port or (8883 if tls else 1883)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.o.client_id, protocol=mqtt.MQTTv5,
                        manual_ack=True)
        user = unquote(u.username) if u.username else self.o.username
        password = unquote(u.password) if u.password else None
        if self.o.password_file:
            with open(self.o.password_file, encoding="utf-8") as f:
                password = f.read().strip()
        if user:
            c.username_pw_set(user, password)
        if tls:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.o.ca_file or None)
            if self.o.cert_file:
                ctx.load_cert_chain(self.o.cert_file, self.o.key_file or None)
            c.tls_set_context(ctx)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.reconnect_delay_set(1, 30)
        return c

    def topics(self) -> list[str]:
        centers = self.o.centers or ("+",)
        out = []
        for c in centers:
            for kind in ("events/#", "alarms/#", "state/#"):
                t = f"{self.o.topic_prefix}/{c}/{kind}"
                out.append(f"$share/{self.o.share}/{t}" if self.o.share else t)
        return out

    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            log.error("broker %s:%d refused the connection: %s", self.host, self.port, reason_code)
            return
        resumed = bool(getattr(flags, "session_present", False))
        log.info("connected to %s:%d (session %s)", self.host, self.port, "resumed" if resumed else "new")
        client.subscribe([(t, 1) for t in self.topics()] + [(f"{self.reply_topic}/#", 1)])
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        self.connected.clear()
        if not self.stop_event.is_set():
            log.warning("broker connection lost (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, msg):
        self.q.put((msg.topic, bytes(msg.payload), msg.mid, msg.qos, bool(msg.retain)))

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.o.session_expiry_s
        props.ReceiveMaximum = self.o.receive_maximum
        self.client.connect_async(self.host, self.port, keepalive=30, clean_start=False, properties=props)
        self.client.loop_start()
        self._writer = threading.Thread(target=self._write_loop, name="ingest-writer", daemon=True)
        self._writer.start()
        self._repairer = threading.Thread(target=self._repair_loop, name="ingest-repair", daemon=True)
        self._repairer.start()

    def stop(self) -> None:
        self.stop_event.set()
        self._writer.join(10)
        self._repairer.join(5)
        self.client.disconnect()
        self.client.loop_stop()
        self.store.close()
        if self.peer_store is not None:
            self.peer_store.close()

    # ---- the writer ---------------------------------------------------------------------
    def _with_db(self, fn, what: str):
        """fn() until the database takes it (reconnecting, with backoff): the rows are
        already in memory's chains, so they must be written, not dropped. False when
        ingest stops meanwhile."""
        backoff = 0.5
        while True:
            try:
                return fn() if what != "write" else (fn(), True)[1]
            except Exception as e:
                if self.stop_event.is_set():
                    log.error("database %s failed while stopping (%s); unacknowledged messages will "
                              "come again", what, e)
                    return False
                log.error("database %s failed (%s); retrying in %.1f s", what, str(e).strip(), backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                try:
                    self.store.reconnect()
                except Exception as e2:
                    log.error("database reconnect failed: %s", str(e2).strip())

    def _write_loop(self) -> None:
        while not self.stop_event.is_set() or not self.q.empty():
            try:
                first = self.q.get(timeout=0.2)
            except queue.Empty:
                self._flush_chains()
                continue
            msgs = [first]
            deadline = time.monotonic() + BATCH_WAIT_S
            while len(msgs) < BATCH_MAX:
                left = deadline - time.monotonic()
                try:
                    msgs.append(self.q.get(timeout=max(0.0, left)) if left > 0 else self.q.get_nowait())
                except queue.Empty:
                    break
            try:
                batch = self.process(msgs)
            except Exception:
                # A bug, not bad input (that is a counted drop): stop so that systemd restarts
                # us; the batch's messages were not acknowledged and come again.
                log.exception("ingest failed on a batch; exiting")
                self.fatal = True
                return
            if batch and not self._with_db(lambda: self.store.write(batch), "write"):
                return           # stopping: unacknowledged messages come again to the next run
            for _, _, mid, qos, _ in msgs:
                if qos > 0:
                    self.client.ack(mid, qos)

    def _flush_chains(self) -> None:
        with self._lock:
            if not self._dirty:
                return
            b = Batch(chains={c: self.chains[c].row for c in self._dirty})
            self._dirty.clear()
        try:
            self.store.write(b)
        except Exception as e:
            log.error("database write failed (%s)", e)

    def chain(self, center: str) -> CenterChain:
        ch = self.chains.get(center)
        if ch is None:
            ch = self.chains[center] = CenterChain(ChainRow(center))
        return ch

    def process(self, msgs: list[tuple]) -> Batch:
        """Messages -> one Batch; updates the in-memory chains."""
        with self._lock:
            return self._process(msgs)

    def _process(self, msgs: list[tuple]) -> Batch:
        b = Batch()
        in_batch: dict[tuple[str, int], str] = {}   # stored by this batch, not committed yet
        now = utcnow()
        dup_check: dict[str, list[tuple[int, str, str, bytes]]] = {}
        for topic, payload, _, _, retain in msgs:
            if topic.startswith(self.reply_topic + "/"):
                self._reply(topic, payload)
                continue
            parts = topic.split("/")
            plen = len(self.o.topic_prefix.split("/"))
            if len(parts) < plen + 2:
                continue
            center, kind = parts[plen], parts[plen + 1]
            if kind == "state":
                try:
                    value = json.loads(payload) if payload else None
                except ValueError:
                    self._reject(b, center, None, topic, "state payload is not JSON", payload, now)
                    continue
                if value is not None:
                    b.state[(center, "/".join(parts[plen + 2:]))] = (center, "/".join(parts[plen + 2:]), value, now)
                    self.counts["state"] += 1
                continue
            try:
                env = json.loads(payload)
            except (ValueError, UnicodeDecodeError):
                self._reject(b, center, None, topic, "payload is not JSON", payload, now)
                continue
            why = envelope_problem(env)
            if why is None and env["center"] != center:
                why = f"envelope center {env['center']!r} is not the topic's center {center!r}"
            if why is not None:
                self._reject(b, center, env.get("seq") if isinstance(env, dict) else None, topic, why, payload, now)
                continue
            ch = self.chain(center)
            seq = env["seq"]
            known = ch.known(seq)
            if known == "":
                known = in_batch.get((center, seq), "")
            if known is not None:
                if known == "":
                    dup_check.setdefault(center, []).append((seq, env["id"], topic, payload))
                elif known == env["id"]:
                    self._dup(ch)
                else:
                    self._conflict(b, ch, env, topic, payload, now)
                continue
            data_json = dump_data(env["data"])      # once: for the hash and for the row
            ok, later_bad = ch.add(env, data_json)
            in_batch[(center, seq)] = env["id"]
            b.not_ok.extend((center, s) for s in later_bad)
            b.events.append((center, seq, env["id"], env["ts"], env["type"], env["source"], data_json,
                             env["prev"], env["hash"], ok, now))
            ch.last_event_mono = time.monotonic()
            try:
                ch.row.lag_s = round((now.timestamp() - parse_ts(env["ts"])), 3)
            except ValueError:
                pass
            ch.row.last_received_at = now
            if env["type"].startswith("alarm.") and isinstance(env["data"].get("alarm_id"), str):
                d = env["data"]
                key = (center, d["alarm_id"])
                old = b.alarms.get(key)
                if old is None or old[7] < seq:
                    b.alarms[key] = (center, d["alarm_id"], str(d.get("code", "")), d.get("severity"), d.get("room"),
                                     env["type"].split(".", 1)[1], d.get("since"), seq, env["ts"], d)
            if not ok:
                log.error("center %s: chain broken at seq %d: %s", center, ch.row.broken_at, ch.row.broken_reason)
            self._dirty.add(center)
            self.counts["stored"] += 1
        for center, items in dup_check.items():
            ids = self._with_db(lambda: self.store.ids(center, [s for s, _, _, _ in items]), "read")
            ch = self.chains[center]
            for seq, eid, topic, payload in items:
                if ids is False or ids.get(seq) == eid:      # False: stopping; stored already anyway
                    self._dup(ch)
                else:
                    self._conflict(b, ch, json.loads(payload), topic, payload, now)
        for center in self._dirty:
            b.chains[center] = self.chains[center].row
        self._dirty.clear()
        return b

    def _dup(self, ch: CenterChain) -> None:
        ch.row.duplicates += 1
        self.counts["duplicates"] += 1
        self._dirty.add(ch.row.center)

    def _conflict(self, b: Batch, ch: CenterChain, env: dict, topic: str, payload: bytes, now) -> None:
        why = f"seq {env['seq']} arrived again with another id {env['id']}"
        ch._broken(env["seq"], why)
        log.error("center %s: %s; kept the first, the second is in table rejected", ch.row.center, why)
        self._reject(b, ch.row.center, env["seq"], topic, why, payload, now)
        self._dirty.add(ch.row.center)

    def _reject(self, b: Batch, center, seq, topic, why, payload: bytes, now) -> None:
        self.counts["rejected"] += 1
        if self.counts["rejected"] <= 10 or self.counts["rejected"] % 1000 == 0:
            log.warning("rejected a message on %s: %s (%d so far)", topic, why, self.counts["rejected"])
        b.rejected.append((center, seq if isinstance(seq, int) else None, topic, why,
                           payload[:65536].decode("utf-8", "replace"), now))

    # ---- gap repair ---------------------------------------------------------------------
    def _reply(self, topic: str, payload: bytes) -> None:
        try:
            r = json.loads(payload)
        except ValueError:
            return
        if not r.get("ok"):
            err = r.get("error") or {}
            level = logging.DEBUG if err.get("code") == "not_found" else logging.WARNING
            log.log(level, "%s: events/resend answered %s: %s", topic.rsplit("/", 1)[-1], err.get("code"),
                    err.get("message"))
        else:
            log.info("%s: re-sending seq %s..%s (%s events)", topic.rsplit("/", 1)[-1],
                     r["data"].get("from_seq"), r["data"].get("to_seq"), r["data"].get("count"))

    def request_resend(self, center: str, lo: int, hi: int) -> None:
        hi = min(hi, lo + RESEND_MAX - 1)
        rid = f"ingest-{uuid.uuid4().hex[:16]}"
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = f"{self.reply_topic}/{center}"
        props.CorrelationData = rid.encode()
        self.client.publish(f"{self.o.topic_prefix}/{center}/request/events/resend",
                            json.dumps({"request_id": rid, "from_seq": lo, "to_seq": hi}), qos=1, properties=props)
        self.counts["resend_requests"] += 1
        ch = self.chains.get(center)
        if ch is not None:
            ch.row.resend_requests += 1
            self._dirty.add(center)

    def _repair_loop(self) -> None:
        while not self.stop_event.wait(0.25):
            if not self.connected.is_set():
                continue
            try:
                self.repair_tick(time.monotonic())
            except Exception:
                log.exception("gap repair failed")

    def repair_tick(self, now: float) -> None:
        with self._lock:
            self._repair_tick(now)

    def _repair_tick(self, now: float) -> None:
        for center, ch in list(self.chains.items()):
            gaps = ch.gaps(limit=50)
            if not gaps:
                ch.repair_backoff = 0.0
                quiet = now - max(ch.last_event_mono, ch.last_probe)
                if self.o.tail_probe_s and quiet >= self.o.tail_probe_s and ch.row.max_seq:
                    # Nothing missing below the last seq seen; is there anything after it?
                    ch.last_probe = now
                    self.request_resend(center, ch.row.contiguous_seq + 1, ch.row.contiguous_seq + RESEND_MAX)
                continue
            for lo, _ in gaps:
                ch.gap_seen.setdefault(lo, now)
            ripe = [(lo, hi) for lo, hi in gaps if now - ch.gap_seen[lo] >= self.o.reorder_wait_s]
            if ripe and self.peer_store is not None:
                self._merge_peer_rows(ch)
                gaps = ch.gaps(limit=50)
                ripe = [(lo, hi) for lo, hi in gaps if now - ch.gap_seen.get(lo, now) >= self.o.reorder_wait_s]
            if not ripe or now < ch.repair_at:
                continue
            budget = RESEND_MAX
            for lo, hi in ripe:
                n = min(hi - lo + 1, budget)
                self.request_resend(center, lo, lo + n - 1)
                budget -= n
                if budget <= 0:
                    break
            log.info("center %s: %d gap(s) from seq %d; asked for them (events/resend)", center, len(ripe),
                     ripe[0][0])
            ch.repair_backoff = min(max(self.o.resend_backoff_s, ch.repair_backoff * 2), self.o.resend_backoff_max_s)
            ch.repair_at = now + ch.repair_backoff
            ch.last_probe = now


    def _merge_peer_rows(self, ch: CenterChain) -> None:
        """Events another member of the share group stored: they fill our gaps. Their
        own hashes were checked by that member; the links are checked here as they
        join the contiguous chain."""
        for seq, eid, prev, h in self.peer_store.load_pending(ch.row.center, ch.row.contiguous_seq):
            if seq not in ch.pending:
                nxt = ch.pending.get(seq + 1)
                if nxt is not None and nxt[1] != h:
                    ch._broken(seq + 1, f"prev of seq {seq + 1} is not the hash of seq {seq}")
                ch.pending[seq] = (eid, prev, h)
                ch.row.max_seq = max(ch.row.max_seq, seq)
        before = ch.row.contiguous_seq
        nxt = ch.pending.get(before + 1)
        if nxt is not None and nxt[1] != ch.row.head_hash:
            ch._broken(before + 1, f"prev of seq {before + 1} is not the hash of seq {before}")
        ch._advance()
        if ch.row.contiguous_seq != before:
            self._dirty.add(ch.row.center)


def run(opts: IngestOptions) -> int:
    import signal
    ing = Ingest(opts)
    log.info("ingest: %s -> %s (%d centers known)", opts.broker, _safe_url(opts.db), len(ing.chains))
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ing.start()
    notify = os.environ.get("NOTIFY_SOCKET")
    if notify:
        from gateway.daemon import sd_notify
        sd_notify("READY=1")
    last = 0.0
    while not stop.wait(1.0):
        if ing.fatal:
            ing.stop()
            return 1
        if time.monotonic() - last > 60:
            last = time.monotonic()
            log.info("stored %(stored)d, duplicates %(duplicates)d, rejected %(rejected)d, "
                     "resend requests %(resend_requests)d", ing.counts)
    ing.stop()
    return 0


def _safe_url(url: str) -> str:
    u = urlparse(url)
    if u.password:
        return url.replace(f":{u.password}@", ":***@")
    return url


def status(db: str) -> list[dict]:
    store = Store.open(db)
    try:
        store.migrate()
        return store.status()
    finally:
        store.close()


def now_utc() -> datetime:
    return datetime.now(timezone.utc)
