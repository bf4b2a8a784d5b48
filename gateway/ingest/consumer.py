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
is decided by the chain: the candidate that links in keeps the seq.

One hostile or buggy center must not stop the others (issue 29): every message
is validated before the transaction (gateway/ingest/validate.py); a batch the
database refuses anyway is bisected down to the one message, which is rejected;
only a database outage is retried. Batches take from each center in turn.
"""
from __future__ import annotations

import base64
import copy
import dataclasses
import json
import logging
import os
import queue
import ssl
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlparse, unquote

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from rules.model import GENESIS, canonical_parts, chain_hash, dump_data, parse_ts
from gateway.ingest.chain import UNVERIFIED_MAX, CANDIDATES_MAX, CenterChain
from gateway.ingest.ratelog import RateLimitedLog
from gateway.ingest.signatures import check_chain_signed, identity_problem, key_id, load_keys_dir
from gateway.ingest.store import Batch, ChainRow, Store, utcnow
from gateway.ingest.validate import (SEQ_MAX, center_problem, data_problem, encode_payload, envelope_problem,
                                     parse_payload, safe_text, state_problem)

log = logging.getLogger("casegate.ingest")

RESEND_MAX = 100_000          # SPEC §3: at most this many seqs per events/resend
BATCH_MAX = 2_000             # messages per transaction
BATCH_WAIT_S = 0.05           # ... or this long after the first one
PER_CENTER_BATCH = 250        # at most this many of one center's messages per batch while others wait
# events/resend budgets (token buckets): per center, and for all centers together
RESEND_CENTER_PER_S, RESEND_CENTER_BURST = 0.2, 10
RESEND_ALL_PER_S, RESEND_ALL_BURST = 10.0, 50


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
    keys_dir: str = ""                     # <center>.pub files: pinned keys (SPEC §8)


class Ingest:
    def __init__(self, opts: IngestOptions, store: Store | None = None):
        self.o = opts
        self.store = store or Store.open(opts.db)
        self.store.migrate()
        for c in opts.centers:
            why = center_problem(c)
            if why:
                raise ValueError(f"--centers: {why}")
        self.chains: dict[str, CenterChain] = {}
        for center, row in self.store.load_chains().items():
            ch = self.chains[center] = CenterChain(row, self.store.load_pending(center, row.contiguous_seq))
            ch.probe_due = True
        self._plen = len(opts.topic_prefix.split("/"))
        self.q: "queue.Queue[tuple]" = queue.Queue()
        self.stop_event = threading.Event()
        self.fatal = False
        self.connected = threading.Event()
        self.counts = {"stored": 0, "duplicates": 0, "rejected": 0, "resend_requests": 0, "state": 0,
                       "bisections": 0, "resend_limited": 0}
        self.center_log = RateLimitedLog(log)
        self._all_tokens, self._all_refill = float(RESEND_ALL_BURST), 0.0
        self._repair_start = [0, 0]       # round-robin position of the gap pass and the probe pass
        # Pinned keys {center: {key_id: raw}} and keys seen after the pin (not accepted).
        self.keys: dict[str, dict[str, bytes]] = {}
        self.changed_keys: dict[str, set[str]] = {}
        for center, kid, b64, state, _ in self.store.load_keys():
            if state == "pinned":
                self.keys.setdefault(center, {})[kid] = base64.b64decode(b64)
            else:
                self.changed_keys.setdefault(center, set()).add(kid)
        self.reply_topic = f"{opts.client_id}/replies"
        # With a shared subscription another instance stores part of each center's
        # stream: before asking for a "gap", look in the database (own connection:
        # the repairer must not use the writer's).
        self.peer_store = Store.open(opts.db) if opts.share else None
        self._dirty: set[str] = set()
        # The writer (process) and the repairer (repair_tick) share the chains.
        self._lock = threading.Lock()
        if opts.keys_dir:
            self._pin_keys_dir(opts.keys_dir)
        self.client = self._client()

    def _pin_keys_dir(self, path: str) -> None:
        """--keys DIR: the operator's word pins a center's key (replacing one pinned
        from the network, which is then reported as changed if it is offered again)."""
        b = Batch()
        now = utcnow()
        for center, raw in load_keys_dir(path).items():
            why = center_problem(center)
            if why:
                raise ValueError(f"--keys {path}/{center}.pub: {why}")
            kid = key_id(raw)
            old = self.keys.get(center, {})
            if kid in old:
                continue
            for other in old:
                self.changed_keys.setdefault(center, set()).add(other)
            self.keys[center] = {kid: raw}
            b.keys.append((center, kid, base64.b64encode(raw).decode("ascii"), "pinned", "keys-dir", now))
        if b.keys:
            self.store.write(b)
            for center, kid, *_ in b.keys:
                # A key pinned before from the network and now overridden is no longer "pinned".
                self.store.pin_only(center, kid)

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
        # msg.topic decodes strictly: a broker that let invalid UTF-8 through must not
        # raise inside paho's network thread.
        raw = getattr(msg, "_topic", None)
        topic = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else msg.topic
        self.q.put((topic, bytes(msg.payload), msg.mid, msg.qos, bool(msg.retain)))

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.o.session_expiry_s
        props.ReceiveMaximum = self.o.receive_maximum
        self.client.connect_async(self.host, self.port, keepalive=30, clean_start=False, properties=props)
        self.client.loop_start()
        self._writer = threading.Thread(target=self._writer_main, name="ingest-writer", daemon=True)
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

    def _writer_main(self) -> None:
        try:
            self._write_loop()
        except Exception:
            # A bug outside any one message (those are isolated by _commit): exit so that
            # systemd restarts us; unacknowledged messages come again.
            log.exception("the ingest writer failed; exiting")
            self.fatal = True

    def _write_loop(self) -> None:
        """Per-center fairness (issue 29): messages wait in one queue per center and
        each batch takes at most PER_CENTER_BATCH from each, round robin, so a flood
        or a re-sent range from one center delays the others by one batch at most."""
        waiting: dict[str, deque] = {}
        turn: deque[str] = deque()
        last_flush = time.monotonic()
        while not self.stop_event.is_set() or not self.q.empty() or waiting:
            self._take_in(waiting, turn, block=not waiting)
            if time.monotonic() - last_flush >= 1.0:
                last_flush = time.monotonic()
                self.center_log.flush()
            if not waiting:
                self._flush_chains()
                continue
            msgs = self._fair_batch(waiting, turn)
            if not self._commit(msgs):
                return           # stopping: unacknowledged messages come again to the next run
            for _, _, mid, qos, _ in msgs:
                if qos > 0:
                    self.client.ack(mid, qos)

    def _take_in(self, waiting: dict, turn: deque, block: bool) -> None:
        try:
            first = self.q.get(timeout=0.2) if block else self.q.get_nowait()
        except queue.Empty:
            return
        n = 0
        deadline = time.monotonic() + BATCH_WAIT_S
        m = first
        while True:
            key = self._center_of(m[0])
            dq = waiting.get(key)
            if dq is None:
                dq = waiting[key] = deque()
                turn.append(key)
            dq.append(m)
            n += 1
            if n >= BATCH_MAX:
                return
            left = deadline - time.monotonic() if block else 0
            try:
                m = self.q.get(timeout=left) if left > 0 else self.q.get_nowait()
            except queue.Empty:
                return

    def _fair_batch(self, waiting: dict, turn: deque) -> list[tuple]:
        msgs: list[tuple] = []
        for _ in range(len(turn)):
            if len(msgs) >= BATCH_MAX:
                break
            key = turn.popleft()
            dq = waiting[key]
            for _ in range(min(len(dq), PER_CENTER_BATCH, BATCH_MAX - len(msgs))):
                msgs.append(dq.popleft())
            if dq:
                turn.append(key)
            else:
                del waiting[key]
        return msgs

    def _center_of(self, topic: str) -> str:
        parts = topic.split("/")
        if topic.startswith(self.reply_topic + "/"):
            return ""
        plen = self._plen
        return parts[plen] if len(parts) > plen else ""

    def _commit(self, msgs: list[tuple]) -> bool:
        """Process and write ``msgs`` as one transaction. A refusal that is the data's
        (not the database's) splits the batch in halves until the one message is
        isolated and rejected; a database outage is retried, for everyone alike.
        False only when stopping."""
        snap = self._snapshot(msgs)
        try:
            batch = self.process(msgs)
        except Exception as e:
            log.exception("processing a batch of %d failed; isolating the message", len(msgs))
            self._restore(snap)
            return self._split(msgs, e, "processing")
        backoff = 0.5
        while True:
            try:
                if batch:
                    self.store.write(batch)
                return True
            except Exception as e:
                if not self.store.is_outage(e):
                    self._restore(snap)
                    return self._split(msgs, e, "the database")
                if self.stop_event.is_set():
                    log.error("database write failed while stopping (%s); unacknowledged messages will "
                              "come again", str(e).strip())
                    return False
                log.error("database write failed (%s); retrying in %.1f s", str(e).strip(), backoff)
                if self.stop_event.wait(backoff):
                    return False
                backoff = min(backoff * 2, 30.0)
                try:
                    self.store.reconnect()
                except Exception as e2:
                    log.error("database reconnect failed: %s", str(e2).strip())

    def _split(self, msgs: list[tuple], e: Exception, where: str) -> bool:
        if len(msgs) > 1:
            self.counts["bisections"] += 1
            half = len(msgs) // 2
            return self._commit(msgs[:half]) and self._commit(msgs[half:])
        topic, payload, _, _, _ = msgs[0]
        b = Batch()
        center = self._center_of(topic)
        center = center if center and center_problem(center) is None else None
        with self._lock:
            self._reject(b, center, None, topic, f"{where} refused it: {type(e).__name__}: {str(e).strip()}",
                         payload, utcnow())
        try:
            self.store.write(b)
        except Exception as e2:
            if self.store.is_outage(e2):
                return bool(self._with_db(lambda: self.store.write(b), "write"))
            log.error("could not even store the rejection of a message on %s (%s); dropped it (counted)",
                      safe_text(topic, 200), e2)
        return True

    def _snapshot(self, msgs: list[tuple]) -> tuple:
        centers = {self._center_of(m[0]) for m in msgs}
        chains = {}
        for c in centers:
            ch = self.chains.get(c)
            if ch is None:
                chains[c] = None
                continue
            cp = copy.copy(ch)
            cp.row = dataclasses.replace(ch.row)
            cp.pending = dict(ch.pending)
            cp.gap_seen = dict(ch.gap_seen)
            cp.candidates = dict(ch.candidates)
            cp.arbitrate = set(ch.arbitrate)
            cp.unverified = list(ch.unverified)
            chains[c] = cp
        keys = {c: (dict(self.keys.get(c, {})), set(self.changed_keys.get(c, ()))) for c in centers}
        return chains, keys, dict(self.counts), set(self._dirty)

    def _restore(self, snap: tuple) -> None:
        chains, keys, counts, dirty = snap
        with self._lock:
            for c, ch in chains.items():
                if ch is None:
                    self.chains.pop(c, None)
                else:
                    self.chains[c] = ch
            for c, (k, changed) in keys.items():
                self.keys[c] = k
                self.changed_keys[c] = changed
            self.counts.update(counts)
            self._dirty = dirty

    def _flush_chains(self) -> None:
        with self._lock:
            if not self._dirty:
                return
            b = Batch(chains={c: self.chains[c].row for c in self._dirty if c in self.chains})
            self._dirty.clear()
        try:
            self.store.write(b)
        except Exception as e:
            log.error("database write failed (%s)", e)

    def chain(self, center: str) -> CenterChain:
        ch = self.chains.get(center)
        if ch is None:
            ch = self.chains[center] = CenterChain(ChainRow(center))
            self._dirty.add(center)
        return ch

    def process(self, msgs: list[tuple]) -> Batch:
        """Messages -> one Batch; updates the in-memory chains."""
        with self._lock:
            return self._process(msgs)

    def _process(self, msgs: list[tuple]) -> Batch:
        b = Batch()
        # stored by this batch, not committed yet: (center, seq) -> (id, prev, hash)
        in_batch: dict[tuple[str, int], tuple[str, str, str]] = {}
        now = utcnow()
        dup_check: dict[str, list[tuple[int, str, str, bytes]]] = {}
        plen = self._plen
        for topic, payload, _, _, retain in msgs:
            if topic.startswith(self.reply_topic + "/"):
                self._reply(topic, payload)
                continue
            parts = topic.split("/")
            if len(parts) < plen + 2:
                continue
            center, kind = parts[plen], parts[plen + 1]
            why = center_problem(center)
            if why is not None:
                self._reject(b, None, None, topic, why, payload, now)
            elif kind == "state":
                self._state(b, center, "/".join(parts[plen + 2:]), topic, payload, now)
            elif kind in ("events", "alarms"):
                self._event(b, center, topic, payload, now, in_batch, dup_check)
        self._check_duplicates(b, dup_check, now, in_batch)
        for center in self._dirty:
            if center in self.chains:
                b.chains[center] = self.chains[center].row
        self._dirty.clear()
        return b

    def _event(self, b: Batch, center: str, topic: str, payload: bytes, now, in_batch: dict,
               dup_check: dict) -> None:
        """One P/events/... or P/alarms/... message: rejected, a duplicate or conflict, or stored."""
        env, why = parse_payload(payload)
        if why is None:
            why = envelope_problem(env, center)
        if why is not None:
            seq = env.get("seq") if isinstance(env, dict) else None
            self._reject(b, center, seq if isinstance(seq, int) and 0 <= seq <= SEQ_MAX else None,
                         topic, why, payload, now)
            return
        data_json = dump_data(env["data"])      # once: for the hash and for the row
        why = data_problem(data_json, self.store.nul_ok)
        if why is not None:
            self._reject(b, center, env["seq"], topic, why, payload, now)
            return
        ch = self.chain(center)
        if ch.row.max_seq:
            ch.probe_due = False     # live events: gap repair finds what is missing below them
        seq = env["seq"]
        known = ch.known(seq)
        if known == "":
            hit = in_batch.get((center, seq))
            known = hit[0] if hit else ""
        if known is not None:
            if known == "":
                dup_check.setdefault(center, []).append((seq, env["id"], topic, payload))
            elif known == env["id"]:
                self._dup(ch)
            else:
                self._conflict(b, ch, env, data_json, topic, payload, now, in_batch)
            return
        # A later event that links to a conflict's losing candidate: that one was genuine.
        cand = ch.candidates.get(seq - 1)
        if cand is not None and cand[0]["hash"] == env["prev"] \
                and self._hash_of(ch, seq - 1, in_batch) != env["prev"]:
            self._take_candidate(b, ch, seq - 1, topic, now, in_batch)
        self._store(b, center, ch, env, data_json, now, in_batch)

    def _store(self, b: Batch, center: str, ch: CenterChain, env: dict, data_json: str, now,
               in_batch: dict) -> None:
        """A new event of the chain: its row, its alarm's latest state, its signature."""
        seq = env["seq"]
        ok, later_bad = ch.add(env, data_json)
        in_batch[(center, seq)] = (env["id"], env["prev"], env["hash"])
        b.not_ok.extend((center, s) for s in later_bad)
        b.events.append((center, seq, env["id"], env["ts"], env["type"], env["source"], data_json,
                         env["prev"], env["hash"], ok, now))
        ch.last_event_mono = time.monotonic()
        ch.row.lag_s = round((now.timestamp() - parse_ts(env["ts"])), 3)
        ch.row.last_received_at = now
        if env["type"].startswith("alarm.") and env["data"].get("alarm_id") is not None:
            d = env["data"]
            key = (center, d["alarm_id"])
            old = b.alarms.get(key)
            if old is None or old[7] < seq:
                b.alarms[key] = (center, d["alarm_id"], str(d.get("code") or ""), d.get("severity"),
                                 d.get("room"), env["type"].split(".", 1)[1], d.get("since"), seq, env["ts"], d)
        elif env["type"] == "chain.signed":
            self._signed(ch, env, ok)
        if not ok:
            self.center_log(logging.ERROR, center, "chain broken",
                            f"chain broken at seq {ch.row.broken_at}: {ch.row.broken_reason}")
        self._dirty.add(center)
        self.counts["stored"] += 1

    def _check_duplicates(self, b: Batch, dup_check: dict, now, in_batch: dict) -> None:
        """Seqs the chain has stored but not in memory: the database says whether each is the same event."""
        for center, items in dup_check.items():
            ids = self._with_db(lambda: self.store.ids(center, [s for s, _, _, _ in items]), "read")
            ch = self.chains[center]
            for seq, eid, topic, payload in items:
                if ids is False or ids.get(seq) == eid:      # False: stopping; stored already anyway
                    self._dup(ch)
                else:
                    env = json.loads(payload)
                    self._conflict(b, ch, env, dump_data(env["data"]), topic, payload, now, in_batch)

    def _state(self, b: Batch, center: str, suffix: str, topic: str, payload: bytes, now) -> None:
        ch = self.chain(center)          # seen: it will be asked for what follows (issue 25)
        if not payload:
            return                       # a retained topic cleared
        value, why = parse_payload(payload)
        if why is None:
            why = state_problem(value, self.store.nul_ok)
        if why is None and suffix == "identity":
            raw, why = identity_problem(value, center)
            if raw is not None:
                self._key_seen(b, ch, raw, "identity", now)
        if why is not None:
            self._reject(b, center, None, topic, f"state: {why}", payload, now)
            return
        suffix = safe_text(suffix, 300)
        b.state[(center, suffix)] = (center, suffix, value, now)
        self.counts["state"] += 1

    # ---- signatures (SPEC §8, issue 25) --------------------------------------------------
    def _key_seen(self, b: Batch, ch: CenterChain, raw: bytes, source: str, now) -> None:
        center = ch.row.center
        kid = key_id(raw)
        pinned = self.keys.setdefault(center, {})
        if kid in pinned:
            return
        b64 = base64.b64encode(raw).decode("ascii")
        if not pinned:
            pinned[kid] = raw
            b.keys.append((center, kid, b64, "pinned", source, now))
            log.info("center %s: pinned key %s (%s)", center, kid, source)
            still = ch.unverified
            ch.unverified = []
            for env in still:
                self._signed(ch, env, True)
            self._dirty.add(center)
            return
        if kid not in self.changed_keys.setdefault(center, set()):
            self.changed_keys[center].add(kid)
            b.keys.append((center, kid, b64, "changed", source, now))
        self._signature(ch, "key changed")
        self.center_log(logging.ERROR, center, "key changed",
                        f"offers key {kid}, not its pinned key {', '.join(pinned)}: stored, not accepted")

    def _signed(self, ch: CenterChain, env: dict, own_ok: bool) -> None:
        center = ch.row.center
        if not own_ok:
            verdict, why = "bad", "the chain.signed event itself does not verify"
        else:
            verdict, why = check_chain_signed(env, self.keys.get(center, {}))
        if verdict == "ok":
            ch.row.signed_seq = max(ch.row.signed_seq or 0, env["seq"])
            self._signature(ch, "ok")
        elif verdict == "unknown key":
            kid = env["data"].get("key_id")
            if kid in self.changed_keys.get(center, ()):
                self._signature(ch, "key changed")
            else:
                if len(ch.unverified) < UNVERIFIED_MAX:
                    ch.unverified.append(env)
                self._signature(ch, "unknown key")
        else:
            self._signature(ch, f"bad at {env['seq']}")
            self.center_log(logging.ERROR, center, "signature bad", f"chain.signed seq {env['seq']}: {why}")
        self._dirty.add(center)

    @staticmethod
    def _signature(ch: CenterChain, verdict: str) -> None:
        """Worst wins and stays: bad at <lowest seq> > key changed > unknown key > ok."""
        def rank(v):
            if v is None:
                return -1, 0
            if v.startswith("bad at "):
                return 3, -int(v[7:])
            return {"ok": 0, "unknown key": 1, "key changed": 2}.get(v, 0), 0
        cur = ch.row.signature
        if cur == "unknown key" and verdict == "ok":
            ch.row.signature = "ok"          # the key arrived and the waiting heads verified
        elif rank(verdict) > rank(cur):
            ch.row.signature = verdict

    # ---- conflicts (issue 30 item 7) ------------------------------------------------------
    def _hash_of(self, ch: CenterChain, seq: int, in_batch: dict) -> str | None:
        if seq == 0:
            return GENESIS
        hit = in_batch.get((ch.row.center, seq))
        if hit:
            return hit[2]
        h = ch.hash_at(seq)
        if h is None:
            got = self._with_db(lambda: self.store.links(ch.row.center, seq, seq), "read")
            h = got[seq][2] if got and seq in got else None
        return h

    def _prev_of(self, ch: CenterChain, seq: int, in_batch: dict) -> str | None:
        hit = in_batch.get((ch.row.center, seq))
        if hit:
            return hit[1]
        p = ch.pending.get(seq)
        if p:
            return p[1]
        if seq <= ch.row.contiguous_seq:
            got = self._with_db(lambda: self.store.links(ch.row.center, seq, seq), "read")
            return got[seq][1] if got and seq in got else None
        return None

    def _conflict(self, b: Batch, ch: CenterChain, env: dict, data_json: str, topic: str, payload: bytes, now,
                  in_batch: dict) -> None:
        """seq taken by another id. The candidate that links into the chain keeps the
        seq: its hash is the next event's prev, or (next unknown) its prev is the
        previous event's hash. Undecided: the stored one stays, the newcomer waits as a
        candidate and the gateway is asked to re-send the seq and its successor."""
        center, seq = ch.row.center, env["seq"]
        held = ch.candidates.get(seq)
        if held is not None and held[0]["id"] == env["id"]:
            self._dup(ch)                # the candidate again (a re-send): already held, already asked
            return
        ch.row.conflicts += 1
        self._dirty.add(center)
        text = canonical_parts(env["id"], seq, env["ts"], center, env["type"], env["source"], data_json)
        if chain_hash(env["prev"], text) != env["hash"]:
            self._reject(b, center, seq, topic, f"seq {seq} is taken; this other id {env['id']} does not even "
                         "hash to its own content", payload, now)
            return
        stored_hash = self._hash_of(ch, seq, in_batch)
        before, after = self._hash_of(ch, seq - 1, in_batch), self._prev_of(ch, seq + 1, in_batch)
        if after is not None:
            new_wins, stored_wins = env["hash"] == after, stored_hash == after
        elif before is not None:
            stored_prev = self._prev_of(ch, seq, in_batch)
            new_wins, stored_wins = env["prev"] == before, stored_prev == before
        else:
            new_wins = stored_wins = False
        if new_wins and not stored_wins:
            ch.candidates[seq] = (env, data_json)
            self._take_candidate(b, ch, seq, topic, now, in_batch)
            return
        if stored_wins and not new_wins:
            why = f"seq {seq} arrived again with another id {env['id']} that does not link into the chain"
        else:
            why = (f"seq {seq} arrived again with another id {env['id']}; neither links further yet: kept the "
                   "first, asked the gateway to re-send it")
            if len(ch.candidates) < CANDIDATES_MAX:      # bounded: a forger can send many
                ch.candidates[seq] = (env, data_json)
                ch.arbitrate.add(seq)
        self.center_log(logging.WARNING, center, "seq conflict", why)
        self._reject(b, center, seq, topic, why, payload, now)

    def _take_candidate(self, b: Batch, ch: CenterChain, seq: int, topic: str, now, in_batch: dict) -> None:
        """The candidate at seq links into the chain: it replaces the stored event, which
        goes to ``rejected``; the chain's break there, if it was that, heals."""
        env, data_json = ch.candidates.pop(seq)
        center = ch.row.center
        old = None
        for i, row in enumerate(b.events):
            if row[0] == center and row[1] == seq:
                old = b.events.pop(i)
                old = {"id": old[2], "seq": seq, "ts": old[3], "center": center, "type": old[4], "source": old[5],
                       "data": json.loads(old[6]), "prev": old[7], "hash": old[8]}
                break
        before = self._hash_of(ch, seq - 1, in_batch)
        ok = before is None or before == env["prev"]
        row = (center, seq, env["id"], env["ts"], env["type"], env["source"], data_json, env["prev"], env["hash"],
               ok, now)
        if old is not None:
            b.events.append(row)
        else:
            old = self._with_db(lambda: self.store.envelope(center, seq), "read") or None
            b.replace.append(row)
        ch.replace(seq, env)
        in_batch[(center, seq)] = (env["id"], env["prev"], env["hash"])
        ch.arbitrate.discard(seq)
        if old:
            why = f"seq {seq}: replaced by id {env['id']}, which links into the verified chain"
            self.center_log(logging.WARNING, center, "seq conflict", why)
            self._reject(b, center, seq, topic, why, dump_data(old).encode("utf-8"), now)
        if ok and ch.row.broken_at in (seq, seq + 1):
            after = self._prev_of(ch, seq + 1, in_batch)
            if after is None or after == env["hash"]:
                b.ok_again.extend([(center, seq), (center, seq + 1)] if after else [(center, seq)])
                ch.row.broken_at = ch.row.broken_reason = None
                rest = self._with_db(lambda: self.store.first_not_ok(center), "read")
                if isinstance(rest, int) and rest not in (seq, seq + 1):
                    ch._broken(rest, "see events.chain_ok = false")
        self._dirty.add(center)

    def _dup(self, ch: CenterChain) -> None:
        ch.row.duplicates += 1
        self.counts["duplicates"] += 1
        self._dirty.add(ch.row.center)

    def _reject(self, b: Batch, center, seq, topic, why, payload: bytes, now) -> None:
        self.counts["rejected"] += 1
        text, encoding, size = encode_payload(payload)
        why = safe_text(why)
        self.center_log(logging.WARNING, center or "(invalid id)", "rejected",
                        f"rejected a message on {safe_text(topic, 200)}: {why}")
        if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= SEQ_MAX:
            seq = None                       # what a BIGINT column takes, nothing else
        b.rejected.append((center, seq,
                           safe_text(topic, 1000), why, text, encoding, size, now))

    # ---- gap repair ---------------------------------------------------------------------
    def _reply(self, topic: str, payload: bytes) -> None:
        center = topic.rsplit("/", 1)[-1]
        r, why = parse_payload(payload)
        if why is not None or not isinstance(r, dict) or center_problem(center):
            self.center_log(logging.WARNING, safe_text(center, 64), "bad reply",
                            f"a reply on {safe_text(topic, 200)} is not a response object")
            return
        data = r.get("data") if isinstance(r.get("data"), dict) else {}
        if not r.get("ok"):
            err = r.get("error") if isinstance(r.get("error"), dict) else {}
            level = logging.DEBUG if err.get("code") == "not_found" else logging.WARNING
            self.center_log(level, center, "resend answer", f"events/resend answered {safe_text(str(err.get('code')))}: "
                            f"{safe_text(str(err.get('message')))}")
            return
        log.info("%s: re-sending seq %s..%s (%s events)", center, data.get("from_seq"), data.get("to_seq"),
                 data.get("count"))
        ch = self.chains.get(center)
        lo, hi, count = data.get("from_seq"), data.get("to_seq"), data.get("count")
        if ch is not None and isinstance(hi, int) and isinstance(lo, int) and isinstance(count, int) \
                and hi - lo + 1 >= RESEND_MAX and count >= RESEND_MAX:
            ch.probe_due = True          # a full range: there may be more after it

    def _resend_allowed(self, ch: CenterChain, now: float) -> bool:
        """Token buckets (issue 30 item 7): per center and overall, so a flood of fake
        centers or one center's gap storm cannot turn ingest into a request cannon."""
        ch.resend_tokens = min(RESEND_CENTER_BURST, ch.resend_tokens + (now - ch.resend_refill) * RESEND_CENTER_PER_S)
        ch.resend_refill = now
        self._refill(now)
        if ch.resend_tokens < 1 or self._all_tokens < 1:
            self.counts["resend_limited"] += 1
            return False
        ch.resend_tokens -= 1
        self._all_tokens -= 1
        return True

    def request_resend(self, center: str, lo: int, hi: int) -> None:
        hi = min(hi, lo + RESEND_MAX - 1, SEQ_MAX)
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
        # Gaps and conflicts of centers that sent events first, then the probes of centers
        # only seen (5,000 fake centers on state topics must not hold back a real gap).
        # Each pass is round robin from where the last tick's budget ran out.
        names = list(self.chains)
        for phase in (0, 1):
            if not names or self._all_tokens < 1 and not self._refill(now):
                return
            start = self._repair_start[phase] % len(names)
            order = names[start:] + names[:start]
            for i, center in enumerate(order):
                ch = self.chains[center]
                done = self._repair_center(center, ch, now) if phase == 0 else self._probe_center(center, ch, now)
                if not done:
                    self._repair_start[phase] = start + i
                    break
            else:
                self._repair_start[phase] = 0

    def _refill(self, now: float) -> bool:
        self._all_tokens = min(RESEND_ALL_BURST, self._all_tokens + (now - self._all_refill) * RESEND_ALL_PER_S)
        self._all_refill = now
        return self._all_tokens >= 1

    def _probe_center(self, center: str, ch: CenterChain, now: float) -> bool:
        """A center seen (any topic, retained state included) or quiet: is there anything
        after what is stored? Answered not_found when there is nothing. False when the
        overall budget is spent."""
        if ch.pending or ch.arbitrate:
            return True
        quiet = now - max(ch.last_event_mono, ch.last_probe)
        if not (ch.probe_due or (self.o.tail_probe_s and quiet >= self.o.tail_probe_s)):
            return True
        if not self._resend_allowed(ch, now):
            return self._all_tokens >= 1
        ch.probe_due = False
        ch.last_probe = now
        self.request_resend(center, ch.row.contiguous_seq + 1, ch.row.contiguous_seq + RESEND_MAX)
        return True

    def _repair_center(self, center: str, ch: CenterChain, now: float) -> bool:
        """Conflicts to arbitrate and gaps to fill. False when the overall budget is spent."""
        for seq in sorted(ch.arbitrate):
            if not self._resend_allowed(ch, now):
                return self._all_tokens >= 1
            ch.arbitrate.discard(seq)
            self.request_resend(center, seq, seq + 1)
            log.info("center %s: seq %d conflict; asked the gateway to re-send seq %d..%d", center, seq, seq,
                     seq + 1)
        gaps = ch.gaps(limit=50)
        if not gaps:
            ch.repair_backoff = 0.0
            return True
        for lo, _ in gaps:
            ch.gap_seen.setdefault(lo, now)
        ripe = [(lo, hi) for lo, hi in gaps if now - ch.gap_seen[lo] >= self.o.reorder_wait_s]
        if ripe and self.peer_store is not None:
            self._merge_peer_rows(ch)
            gaps = ch.gaps(limit=50)
            ripe = [(lo, hi) for lo, hi in gaps if now - ch.gap_seen.get(lo, now) >= self.o.reorder_wait_s]
        if not ripe or now < ch.repair_at:
            return True
        budget = RESEND_MAX
        asked = 0
        for lo, hi in ripe:
            if not self._resend_allowed(ch, now):
                break
            n = min(hi - lo + 1, budget)
            self.request_resend(center, lo, lo + n - 1)
            asked += 1
            budget -= n
            if budget <= 0:
                break
        if asked:
            self.center_log(logging.INFO, center, "gap repair",
                            f"{len(ripe)} gap(s) from seq {ripe[0][0]}; asked for {asked} (events/resend)")
        ch.repair_backoff = min(max(self.o.resend_backoff_s, ch.repair_backoff * 2), self.o.resend_backoff_max_s)
        ch.repair_at = now + ch.repair_backoff
        ch.last_probe = now
        return self._all_tokens >= 1

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
        from gateway.systemd import sd_notify
        sd_notify("READY=1")
    last = 0.0
    while not stop.wait(1.0):
        if ing.fatal:
            ing.stop()
            return 1
        if time.monotonic() - last > 60:
            last = time.monotonic()
            log.info("stored %(stored)d, duplicates %(duplicates)d, rejected %(rejected)d, "
                     "resend requests %(resend_requests)d (%(resend_limited)d held back by the budget), "
                     "batches split %(bisections)d", ing.counts)
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
