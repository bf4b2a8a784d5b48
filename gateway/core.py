"""The core: the one thread that owns the journal and the center's state.

Everything that changes the record passes through :meth:`Core.submit`
(a driver's event) or :meth:`Core.call` (a command evaluated against the
state). The writer thread takes what is queued, seals each event into the
hash chain, folds it into the state and runs the rules (whose alarms are
sealed right behind it), then commits the whole batch in ONE transaction —
group commit, so ``synchronous=full`` costs one fsync per batch, not per
event. Only after COMMIT are producers told "stored", responses sent and
events handed to the uplink.

If the commit fails (disk full, I/O error) the batch stays in memory and is
retried with backoff; nobody is told "stored" until it is. Producers that
keep submitting are back-pressured by the bounded queue.
"""
from __future__ import annotations

import collections
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from rules.model import Draft, Event, check_strict, format_ts, parse_ts, seal
from gateway.journal import Journal, iter_events, open_reader
from gateway.heap import keep_big_buffers_out_of_the_heap, release_free_memory

log = logging.getLogger("casegate.core")

# Stored request answers kept in memory (issue 24 item 4: every answer stayed until the
# next restart, ~0.3-2 kB each); older ones are looked up in the journal's requests table.
REQUESTS_KEPT = 10_000


class RecentAnswers(collections.OrderedDict):
    """A map that keeps its ``cap`` newest entries (insertion order, oldest dropped)."""

    def __init__(self, items=(), cap: int | None = None):
        self.cap = REQUESTS_KEPT if cap is None else cap
        super().__init__(items)

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        if len(self) > self.cap:
            self.popitem(last=False)

MAX_BATCH = 2000
SHED_CHUNK = 5000
MAINTENANCE_EVERY_S = 30.0
PRUNE_EVERY_S = 3600.0      # a pruning pass scans the old part of the journal: hourly is plenty
PRUNE_MAX_EVENTS = 50_000   # per pass: the writer waits meanwhile (~1 s per 20,000 events archived)


_NO_SYNC = object()     # a clock without a sync state (a plain function in tests)


class RequestError(Exception):
    """A command refused; ``code`` is one of SPEC §3's error codes."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Receipt:
    """What :meth:`Core.submit` and :meth:`Core.call` return: ``result()`` gives
    the sealed Event (or CommitResult) once it is COMMITted, or raises.

    Like ``concurrent.futures.Future`` for ``result/exception/done``, but all
    receipts of a core share one Condition and the writer notifies once per
    batch: a Future builds a Condition and an RLock per event, which was ~10 %
    of the GIL time at 6,000 events/s (bench/pipeline.py under py-spy)."""

    __slots__ = ("_cv", "_done", "_value", "_error")

    def __init__(self, cv: threading.Condition):
        self._cv = cv
        self._done = False
        self._value: Any = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        return self._done

    def result(self, timeout: float | None = None) -> Any:
        if not self._done:
            self._wait(timeout)
        if self._error is not None:
            raise self._error
        return self._value

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if not self._done:
            self._wait(timeout)
        return self._error

    def _wait(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while not self._done:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError("not committed yet")
                self._cv.wait(left)

    # writer side: set, then Core notifies the shared Condition once per batch
    def _set(self, value: Any = None, error: BaseException | None = None) -> None:
        self._value = value
        self._error = error
        self._done = True


class QueueFull(Exception):
    pass


class _Inbox:
    """The writer's bounded FIFO: a deque (append/popleft are atomic under the
    GIL) plus Conditions used only when the writer sleeps or the queue is full,
    so a producer in the steady state takes no lock (queue.Queue takes two and
    notifies on every put)."""

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self._dq: collections.deque = collections.deque()
        self._wake = threading.Condition()
        self._space = threading.Condition()
        self._idle = False          # the writer is (about to be) waiting in take()
        self._blocked = 0           # producers waiting for space

    def __len__(self) -> int:
        return len(self._dq)

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if len(self._dq) >= self.maxsize:
            if not block:
                raise QueueFull
            deadline = None if timeout is None else time.monotonic() + timeout
            with self._space:
                self._blocked += 1
                try:
                    while len(self._dq) >= self.maxsize:
                        left = None if deadline is None else deadline - time.monotonic()
                        if left is not None and left <= 0:
                            raise QueueFull
                        self._space.wait(left)
                finally:
                    self._blocked -= 1
        self._dq.append(item)
        if self._idle:
            with self._wake:
                self._wake.notify()

    def put_urgent(self, item: Any) -> None:
        """Never blocks (stop markers; the writer's own submissions)."""
        self._dq.append(item)
        if self._idle:
            with self._wake:
                self._wake.notify()

    def take(self, limit: int, wait: float) -> list:
        dq = self._dq
        if not dq:
            with self._wake:
                self._idle = True
                try:
                    if not dq:      # re-checked under the lock: a put in between notifies
                        self._wake.wait(wait)
                finally:
                    self._idle = False
        items = []
        while dq and len(items) < limit:
            items.append(dq.popleft())
        if self._blocked:
            with self._space:
                self._space.notify_all()
        return items


@dataclass
class _Submit:
    draft: Draft
    future: Receipt


@dataclass
class _Call:
    fn: Callable[["Core"], tuple[Any, list[Draft]]]
    future: Receipt
    # (request_id, command) or (request_id, command, asked key) for idempotency
    request: tuple | None = None


@dataclass
class CommitResult:
    """What a :meth:`Core.call` resolves to once its events are durable."""
    value: Any
    events: list[Event] = field(default_factory=list)


class Core:
    def __init__(self, config, journal: Journal, engine, clock: Callable[[], float] = time.time,
                 queue_size: int = 20_000):
        # queue_size bounds memory when producers outrun the disk: past it,
        # submit() blocks (back-pressure) instead of buffering in RAM.
        self.config = config
        self.journal = journal
        self.engine = engine
        self.clock = clock
        self.center = config.center.id
        self._q = _Inbox(queue_size)
        self._done_cv = threading.Condition()     # shared by every Receipt of this core
        self._listeners: list[Callable[[list[Event]], None]] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pending_delivered: list[int] = []
        self._delivered_lock = threading.Lock()
        # request_id -> response JSON, and -> (command, asked key): who asked what
        # (gateway/commands/ asked_key). The newest REQUESTS_KEPT only; recall_request
        # finds older ones in the journal, so a request id is never acted on twice.
        self.requests_done: RecentAnswers = RecentAnswers()
        self.requests_asked: RecentAnswers = RecentAnswers()
        self.error: str | None = None              # last storage error, None when healthy
        self.started_at = clock()
        self.committed_events = 0
        self._last_maintenance = 0.0
        self._derived: list[Callable[["Core", Event], list[Draft]]] = []
        # Checkpoints (gateway/checkpoint.py); enabled by the daemon with enable_checkpoints().
        self.checkpoints = None
        self._ckpt_events = 0                   # committed_events at the last checkpoint
        self._ckpt_mono = time.monotonic()
        self._ckpt_due = False
        self.checkpoint_pauses_ms: collections.deque = collections.deque(maxlen=100)
        # Replay progress, called every ~1 s during a long start: (done, total, elapsed_s).
        self.on_replay_progress: Callable[[int, int, float], None] | None = None
        # Each phase of a start (checkpoint, replay, catch-up): the daemon extends systemd's
        # start timeout at each, so no long phase is killed (EXTEND_TIMEOUT_USEC).
        self.on_start_phase: Callable[[str], None] | None = None
        self.replay_info: dict[str, Any] = {}

    # ---- wiring ----------------------------------------------------------
    def add_listener(self, fn: Callable[[list[Event]], None]) -> None:
        """Called in the writer thread after each commit; must not block."""
        self._listeners.append(fn)

    def add_derivation(self, fn: Callable[["Core", Event], list[Draft]]) -> None:
        """A non-alarm fact derived from an event (e.g. person.left)."""
        self._derived.append(fn)

    @property
    def state(self):
        return self.engine.state

    # ---- signed chain heads (SPEC §8, gateway/signing.py) -----------------------------
    signer = None                 # a gateway.signing.Signer once enable_signing() ran
    sign_every_s = 60.0
    _signed_seq = 0               # seq of the newest chain.signed: the journal "advanced" past it?
    _sign_mono = float("-inf")

    def enable_signing(self, signer, every_s: float) -> None:
        """Journal ``chain.signed`` every ``every_s`` while the journal advanced, at each
        checkpoint and at stop. Call before start()."""
        self.signer = signer
        self.sign_every_s = every_s
        self._sign_mono = time.monotonic()
        row = self.journal.conn.execute(
            "SELECT seq FROM events WHERE type = 'chain.signed' ORDER BY seq DESC LIMIT 1").fetchone()
        self._signed_seq = row[0] if row else 0

    def sign_head(self) -> Event | None:
        """Journal one ``chain.signed`` over the journal's head, unless nothing came after
        the last one (a signature does not count as the journal advancing, else an idle
        gateway would sign its own signatures forever). The caller is the writer (or the
        writer has stopped). The event is sealed directly, never folded: rules and
        replay ignore it (rules/replay.py)."""
        signer = self.signer
        seq, h = self.journal.last_seq, self.journal.last_hash
        if signer is None or seq == 0 or seq == self._signed_seq:
            return None
        ev = seal(Draft("chain.signed", signer.sign_head(seq, h), "gateway"), seq + 1, self.center, h,
                  self.clock())
        self._commit([ev], (), [])
        self.committed_events += 1
        self._signed_seq = ev.seq
        self._sign_mono = time.monotonic()
        for fn in self._listeners:
            try:
                fn([ev])
            except Exception:
                log.exception("listener failed")
        return ev

    def _maybe_sign(self) -> None:
        if self.signer is not None and time.monotonic() - self._sign_mono >= self.sign_every_s:
            self._sign_mono = time.monotonic()
            self.sign_head()

    # ---- start-up ----------------------------------------------------------
    def enable_checkpoints(self, store) -> None:
        """Checkpoint the folded state periodically and at stop (gateway/checkpoint.py)."""
        self.checkpoints = store
        # Retention prunes only below a checkpoint this process wrote: one written by
        # this code is the one a restart will load (an older release's may be refused,
        # its state's shape being another, and a full replay would then lack the
        # pruned events).
        self.checkpoint_seq = lambda: (store.last or {}).get("seq")

    def _journal_hash(self, seq: int) -> str | None:
        row = self.journal.conn.execute("SELECT hash FROM events WHERE seq = ?", (seq,)).fetchone()
        if row is not None:
            return row[0]
        # pruned exactly up to it: the anchor is its hash
        if self.journal.get_meta("pruned_through") == str(seq):
            return self.journal.get_meta("anchor")
        return None

    def rebuild(self) -> int:
        """Rebuild the state: the newest usable checkpoint + the journal after it,
        or the whole journal (restart = replay).

        Journaled rule output is skipped and regenerated, exactly as
        ``casegate replay`` does (its times serve as timer ticks); then alarms
        whose state differs (config changed, deadlines passed while we were
        down) are reconciled with new events.
        """
        from rules.replay import rebuild, reconcile
        t0 = time.monotonic()
        start_seq = 0
        journaled = None
        reload_to = None
        self._phase("loading the newest checkpoint")
        if self.checkpoints is not None:
            from gateway.checkpoint import restore_engine
            loaded = self.checkpoints.load_newest(self._journal_hash)
            if loaded is not None:
                if loaded.config_changed:
                    # the tail was journaled under the config the checkpoint was written under
                    self.engine.configure(loaded.config)
                    reload_to = self.config
                restore_engine(self.engine, loaded.state)
                start_seq = loaded.seq
                # Live, every alarm the engine holds was journaled: the journal's
                # active set at the checkpoint is the engine's own.
                journaled = dict(self.engine.active())
                tail = (f"replaying seq {loaded.seq + 1}..{self.journal.last_seq}"
                        if self.journal.last_seq > loaded.seq else "nothing journaled after it to replay")
                log.info("loaded checkpoint %s (seq %d, written %s); %s",
                         loaded.path.name, loaded.seq, loaded.created, tail)
        self._phase(f"replaying the journal after seq {start_seq}")
        counted = _Counted(max(0, self.journal.last_seq - start_seq), self.on_replay_progress)
        conn = open_reader(self.journal.path)
        try:
            journaled_active = rebuild(self.engine, counted.wrap(iter_events(conn, since_seq=start_seq + 1)),
                                       self.center, journaled)
        finally:
            conn.close()
        took = time.monotonic() - t0
        self.replay_info = {"from_checkpoint": start_seq or None, "replayed": counted.n,
                            "seconds": round(took, 3)}
        # A long replay is not repeated by the next start, even after a kill -9.
        if self.checkpoints is not None and counted.n >= 1000:
            self._ckpt_due = True
        self._phase("catching up on timers due while the gateway was down")
        self.requests_done = RecentAnswers(self.journal.load_requests(REQUESTS_KEPT))
        self.requests_asked = RecentAnswers(self.journal.load_request_keys(REQUESTS_KEPT))
        drafts: list[Draft] = []
        floor = getattr(self.clock, "floor", None)
        if floor is not None:
            row = self.journal.conn.execute("SELECT ts FROM events ORDER BY seq DESC LIMIT 1").fetchone()
            # the lead journal time had on the wall clock is kept: the downtime counts
            step = floor(parse_ts(row[0]), getattr(self.engine, "journal_ahead", 0.0)) if row else None
            if step:
                log.warning("wall clock is %.3f s behind the journal's last event: journal time goes on "
                            "from there (clock.stepped, %s)", -step["delta_s"], step.get("kind"))
                drafts.append(Draft("clock.stepped", step, "gateway"))
        drafts += reconcile(self.engine, journaled_active)
        if reload_to is not None:
            # then the new config, exactly as a live reload applies it (gateway/checkpoint.py)
            drafts += self.engine.reconfigure(reload_to)
        drafts += self.engine.advance(self.clock())
        # Past the inbox's bound on purpose: the writer is not running yet, so a bounded put
        # would wait for nobody (issue 28 item 3: 33,487 catch-up drafts, 20,000 queued, the
        # rest each blocked 10 s and dropped). What catch-up produces is bounded by the rules
        # (one escalation per standing alarm, one reconcile event per alarm that changed), and
        # the writer drains it in MAX_BATCH batches as soon as it starts.
        for d in drafts:
            self._q.put_urgent(_Submit(d, Receipt(self._done_cv)))
        self.replay_info["catch_up_events"] = len(drafts)
        log.info("rebuilt state from %s%d journaled events in %.2f s (last seq %d)",
                 f"checkpoint seq {start_seq} + " if start_seq else "", counted.n, took, self.journal.last_seq)
        return counted.n

    def _phase(self, what: str) -> None:
        if self.on_start_phase is not None:
            try:
                self.on_start_phase(what)
            except Exception:
                log.exception("start phase report failed")

    # ---- producers -----------------------------------------------------------
    def submit(self, draft: Draft, block: bool = True, timeout: float | None = None) -> Receipt:
        """Queue one event; the receipt resolves to the sealed Event after COMMIT.

        A full inbox blocks the producer until the writer has room (back-pressure): an event
        is never dropped for want of queue space (issue 28 item 3; a 10 s timeout used to
        turn a slow disk into lost events). ``block=False`` or a timeout: the caller
        accepts ``busy`` instead."""
        f = Receipt(self._done_cv)
        if threading.current_thread() is self._thread:
            # The writer itself (maintenance): it must never wait for its own queue.
            self._q.put_urgent(_Submit(draft, f))
            return f
        try:
            self._q.put(_Submit(draft, f), block=block, timeout=timeout)
        except QueueFull:
            f._set(error=RequestError("busy", "journal queue full"))
        return f

    def emit(self, type: str, data: dict, source: str = "gateway", ts: float | None = None) -> Receipt:
        return self.submit(Draft(type, data, source, ts))

    def call(self, fn: Callable[["Core"], tuple[Any, list[Draft]]],
             request: tuple | None = None) -> Receipt:
        """Run ``fn(core)`` in the writer thread; it returns (value, drafts) or
        raises RequestError. The receipt resolves to CommitResult after COMMIT."""
        f = Receipt(self._done_cv)
        self._q.put(_Call(fn, f, request), timeout=None)
        return f

    def mark_delivered(self, seqs: list[int]) -> None:
        with self._delivered_lock:
            self._pending_delivered.extend(seqs)

    # ---- the writer thread ---------------------------------------------------
    def start(self) -> None:
        keep_big_buffers_out_of_the_heap()      # a daemon runs for months (gateway/heap.py)
        self._thread = threading.Thread(target=self._run, name="core-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 8.0) -> None:
        """Commit what is queued, checkpoint the state, then stop (within systemd's
        TimeoutStopSec=15 together with the drivers' and the uplink's stops)."""
        self._stop.set()
        self._q.put_urgent(None)
        if self._thread:
            self._thread.join(timeout)
            if self._thread.is_alive():
                # still writing: no consistent state to checkpoint; the next start replays
                # the tail after the last periodic checkpoint (slower, nothing lost)
                log.warning("core: the writer did not finish within %.0f s; no checkpoint at stop", timeout)
                return
        if self.signer is not None:
            try:
                self.sign_head()       # the head at stop (SPEC §8)
            except Exception:
                log.exception("core: could not sign the head at stop")
        if self.checkpoints is not None:
            self.checkpoints.wait()
            self.checkpoint_now()

    # ---- checkpoints ---------------------------------------------------------------
    def checkpoint_now(self, background: bool = False) -> bool:
        """Snapshot the engine (the caller must be the writer, or the writer stopped).
        The pickling is the writer's pause; compressing and fsyncing can run elsewhere."""
        from gateway.checkpoint import snapshot
        store = self.checkpoints
        seq, h = self.journal.last_seq, self.journal.last_hash
        if store is None or seq == 0:
            return False
        if self.signer is not None and self.sign_head() is not None:   # SPEC §8: at each checkpoint
            seq, h = self.journal.last_seq, self.journal.last_hash
        t0 = time.perf_counter()
        try:
            blob = snapshot(self.engine)
        except Exception as e:     # e.g. a rule kept something unpicklable in its memo
            store.failed += 1
            log.error("checkpoint at seq %d impossible, the state is not plain data: %r", seq, e)
            return False
        pause = (time.perf_counter() - t0) * 1000
        self.checkpoint_pauses_ms.append(pause)
        self._ckpt_events = self.committed_events
        self._ckpt_mono = time.monotonic()
        self._ckpt_due = False
        if background:
            return store.write_async(blob, seq, h, pause)
        return store.write(blob, seq, h, pause) is not None

    def _maybe_checkpoint(self) -> None:
        st = self.config.storage
        if (self._ckpt_due or self.committed_events - self._ckpt_events >= st.checkpoint_every_events
                or time.monotonic() - self._ckpt_mono >= st.checkpoint_every_s):
            if self.journal.last_seq and self.committed_events + self._ckpt_due > self._ckpt_events:
                self.checkpoint_now(background=True)

    def _run(self) -> None:
        while True:
            deadline = self.engine.next_deadline()
            wait = 1.0
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - self.clock()))
            items = self._q.take(MAX_BATCH, wait)
            stopping = any(i is None for i in items) or self._stop.is_set()
            items = [i for i in items if i is not None]
            try:
                self._process(items)
                self._maybe_sign()
            except Exception:  # a bug must not kill the only writer
                log.exception("core: batch failed")
            if stopping and not len(self._q):
                self._flush_delivered()
                return

    def _process(self, items: list) -> None:
        batch: list[Event] = []
        req_rows: list[tuple] = []
        done: list[tuple[Receipt, Any, int, int]] = []   # receipt, value, batch index range
        self._check_clock(batch)
        ticks = self.engine.advance(self.clock())
        for d in ticks:
            self._seal_apply(d, batch)
        for item in items:
            start = len(batch)
            if isinstance(item, _Submit):
                self._seal_apply(item.draft, batch)
                done.append((item.future, None, start, len(batch)))
            elif isinstance(item, _Call):
                try:
                    value, drafts = item.fn(self)
                    for d in drafts:        # the test suite's strict mode (rules/model/checks.py)
                        check_strict(d.type, d.data)
                except RequestError as e:
                    done.append((item.future, e, start, start))
                    continue
                except Exception as e:  # a bug in a handler answers, never kills the writer
                    log.exception("command failed")
                    done.append((item.future, RequestError("internal", str(e)), start, start))
                    continue
                for d in drafts:
                    self._seal_apply(d, batch)
                if item.request is not None and isinstance(value, str):
                    # value is the response JSON; stored in the same transaction
                    # as the events, so a re-sent request_id never acts twice.
                    rid, cmd = item.request[:2]
                    asked = item.request[2] if len(item.request) > 2 else None
                    self.requests_done[rid] = value
                    self.requests_asked[rid] = (cmd, asked)
                    req_rows.append((rid, cmd, value, format_ts(self.clock()), asked))
                done.append((item.future, CommitResult(value), start, len(batch)))
        with self._delivered_lock:
            delivered, self._pending_delivered = self._pending_delivered, []
        if not batch and not req_rows and not delivered:
            for f, value, _, _ in done:
                _resolve(f, value, [])
            self._notify_done(done)
            self._maintenance()
            if self.checkpoints is not None:
                self._maybe_checkpoint()
            return
        self._commit(batch, req_rows, delivered)
        self.committed_events += len(batch)
        for f, value, a, b in done:
            _resolve(f, value, batch[a:b])
        self._notify_done(done)
        if batch:
            for fn in self._listeners:
                try:
                    fn(batch)
                except Exception:
                    log.exception("listener failed")
        self._maintenance()
        if self.checkpoints is not None:
            self._maybe_checkpoint()

    def _check_clock(self, batch: list[Event]) -> None:
        """A wall-clock step (gateway/timebase.py) is journaled first in the batch,
        so every later event's time and every rule timer is on the new footing."""
        check = getattr(self.clock, "check_step", None)
        if check is None:
            return
        step = check()
        if step:
            log.warning("wall clock stepped by %+.3f s (%s -> %s, %s); journal time %s",
                        step["delta_s"], step["from"], step["to"],
                        "a correction: the clock was unsynchronised and is synchronised now"
                        if step.get("kind") == "correction" else "an error: the clock was synchronised",
                        f"jumps {step['journal_jump_s']:+.3f} s" if step["journal_jump_s"]
                        else f"keeps running, {step['journal_ahead_s']:.3f} s ahead of the wall clock")
            # What fell due before the step fires first, stamped at its deadline (before
            # the clock.stepped event, so journal ts stays in order).
            for d in self.engine.advance(self.clock() - step["journal_jump_s"]):
                self._seal_apply(d, batch)
            self._seal_apply(Draft("clock.stepped", step, "gateway"), batch)
        # v3: the sync state is a fact (where an unsynchronised window begins and
        # ends, for corrections and clock_unsynchronised); journaled when it changes.
        # A journal without clock.sync was kept on a synchronised clock (v2): nothing to say then.
        synced = getattr(self.clock, "synchronised", _NO_SYNC)
        known = getattr(self.engine, "clock_synced", synced)
        if synced is not _NO_SYNC and synced != known and not (known is None and synced is True):
            self._seal_apply(Draft("clock.sync", {"synchronised": synced, "source": self.clock.sync_source()},
                                   "gateway"), batch)

    def _notify_done(self, done: list) -> None:
        if done:
            with self._done_cv:
                self._done_cv.notify_all()

    def _seal_apply(self, draft: Draft, batch: list[Event]) -> None:
        """Seal a draft, fold it, and seal whatever rules/derivations it triggers."""
        pending = [draft]
        while pending:
            d = pending.pop(0)
            if batch:
                seq, prev = batch[-1].seq + 1, batch[-1].hash
            else:
                seq, prev = self.journal.last_seq + 1, self.journal.last_hash
            ev = seal(d, seq, self.center, prev, self.clock())
            batch.append(ev)
            pending.extend(self.engine.apply(ev))
            for fn in self._derived:
                pending.extend(fn(self, ev))

    def _commit(self, batch, req_rows, delivered) -> None:
        delay = 0.2
        while True:
            try:
                self.journal.append(batch, req_rows, delivered)
                if self.error:
                    log.warning("journal writable again")
                    self.error = None
                return
            except sqlite3.Error as e:
                if self.error != str(e):
                    log.error("journal commit failed, retrying (%d events held): %s", len(batch), e)
                self.error = f"journal: {e}"
                for fn in self._listeners:   # let the uplink report state=error
                    try:
                        fn([])
                    except Exception:
                        pass
                # Make room if we can: telemetry shedding frees pages.
                try:
                    self.journal.shed_telemetry(SHED_CHUNK)
                except sqlite3.Error:
                    pass
                time.sleep(delay)
                delay = min(5.0, delay * 2)

    def _flush_delivered(self) -> None:
        with self._delivered_lock:
            delivered, self._pending_delivered = self._pending_delivered, []
        if delivered:
            try:
                self.journal.append([], (), delivered)
            except sqlite3.Error as e:
                log.warning("could not record %d deliveries: %s", len(delivered), e)

    def _maintenance(self) -> None:
        now = self.clock()
        if now - self._last_maintenance < MAINTENANCE_EVERY_S and not (
                self._said_no_checkpoint and self.checkpoint_seq is not None and self.checkpoint_seq() is not None):
            # (pruning waited for the first checkpoint: it is there now, no need to wait 30 s)
            return
        self._last_maintenance = now
        self.maintain(now)

    # Retention (SPEC §7). The seq the newest checkpoint covers bounds pruning;
    # the daemon (or a test) may replace this with its own source of that seq.
    checkpoint_seq: Callable[[], int | None] | None = None
    _last_prune = float("-inf")
    _said_no_checkpoint = False
    _said_next_prune = False

    def prune_retained(self, now: float, force: bool = False) -> int:
        """Archive and remove what ``retain_days`` allows and no open matter needs.

        Only events below the newest checkpoint's seq: without a checkpoint the
        folded state lives only in the full journal, so nothing is pruned."""
        from gateway.archive import Keeper, OpenMatters, archive_dir, latest_checkpoint_seq
        if self._last_prune == float("-inf"):
            # the hourly cadence goes on across restarts (issue 30 item 8): a daemon restarted
            # more often than hourly used to spend its slot before any checkpoint, and never prune
            last = self.journal.get_meta("last_prune")
            if last is not None and float(last) <= now + PRUNE_EVERY_S:
                self._last_prune = float(last)
        if not force and now - self._last_prune < PRUNE_EVERY_S:
            if not self._said_next_prune:
                self._said_next_prune = True
                log.info("retention: the last pruning pass was %.0f s ago; the next in %.0f s (hourly, "
                         "across restarts)", now - self._last_prune, PRUNE_EVERY_S - (now - self._last_prune))
            return 0
        st = self.config.storage
        fn = self.checkpoint_seq or (lambda: latest_checkpoint_seq(st.dir))
        keep_from = fn()
        if keep_from is None:    # waits for the first checkpoint, without using up the slot
            if not self._said_no_checkpoint:
                self._said_no_checkpoint = True
                log.info("retention: no checkpoint of the folded state yet, so nothing is pruned "
                         "(a restart replays the whole journal and needs every event)")
            return 0
        self._said_no_checkpoint = False
        self._last_prune = now
        self._said_next_prune = True          # said only at a start that finds its slot used
        self.journal.set_meta("last_prune", repr(now))
        acked = {e.data.get("alarm_id") for e in
                 iter_events(self.journal.conn, types=["alarm.acknowledged"]) if e.data}
        keeper = Keeper(OpenMatters.from_state(self.engine.state), acked)
        res = self.journal.prune(now - st.retain_days * 86400, keep_from + 1, archive_dir(st.dir), keeper,
                                 max_events=PRUNE_MAX_EVENTS)
        if res.archived:
            log.info("retention: archived %d events older than %d days to %s (%d old events kept for "
                     "open matters: persons inside, items in custody, unacknowledged alarms)",
                     res.archived, st.retain_days, res.file, res.kept)
        return res.archived

    def maintain(self, now: float | None = None) -> None:
        """Retention and the disk cap (SPEC §1a storage)."""
        now = self.clock() if now is None else now
        st = self.config.storage
        try:
            archived = 0
            try:
                archived = self.prune_retained(now)
            except sqlite3.Error:
                raise
            except Exception:      # retention must never take the writer down; the next pass retries
                log.exception("retention: pruning pass failed")
            self._release_heap_after_big_jobs(archived)
            cap = st.max_mb * 1024 * 1024
            rounds = 0
            while self.journal.size_bytes() > cap and rounds < 20:
                rounds += 1
                count, lo, hi = self.journal.shed_telemetry(SHED_CHUNK)
                if not count:
                    if self.error is None:
                        log.warning("journal above max_mb and no telemetry left to shed")
                    break
                log.warning("journal above %.0f MB: shed %d telemetry events (seq %d..%d)",
                            st.max_mb, count, lo, hi)
                self.submit(Draft("journal.shed", {"count": count, "from_seq": lo, "to_seq": hi}),
                            block=False)
        except sqlite3.Error as e:
            log.error("journal maintenance failed: %s", e)

    def recall_request(self, rid: str) -> str | None:
        """The stored answer to request ``rid`` (writer thread): from memory, or from the
        journal when it is older than the REQUESTS_KEPT newest (then remembered again)."""
        text = self.requests_done.get(rid)
        if text is None:
            row = self.journal.find_request_row(rid)
            if row is not None:
                text = row[0]
                self.requests_done[rid] = text
                self.requests_asked[rid] = (row[1], row[2])
        return text

    _trimmed_after_checkpoints = 0

    def _release_heap_after_big_jobs(self, archived: int) -> None:
        """After a checkpoint was written or a retention pass archived events: their
        megabytes were freed into glibc's arenas and stay resident (gateway/heap.py)."""
        written = getattr(self.checkpoints, "written", 0)
        if archived or written != self._trimmed_after_checkpoints:
            self._trimmed_after_checkpoints = written
            release_free_memory()


def _resolve(f: Receipt, value: Any, events: list[Event]) -> None:
    if f.done():
        return
    if isinstance(value, Exception):
        f._set(error=value)
    elif isinstance(value, CommitResult):
        value.events = events
        f._set(value)
    else:
        f._set(events[0] if events else None)


class _Counted:
    """Counts a replay's events; reports progress about once a second to ``progress``."""

    def __init__(self, total: int = 0, progress: Callable[[int, int, float], None] | None = None):
        self.n = 0
        self.total = total
        self.progress = progress

    def wrap(self, it):
        if self.progress is None:
            for x in it:
                self.n += 1
                yield x
            return
        t0 = last = time.monotonic()
        for x in it:
            self.n += 1
            if not self.n & 1023:
                now = time.monotonic()
                if now - last >= 1.0:
                    last = now
                    try:
                        self.progress(self.n, self.total, now - t0)
                    except Exception:
                        log.exception("replay progress report failed")
            yield x
