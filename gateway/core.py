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

import logging
import queue
import sqlite3
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

from gateway.events import Draft, Event, format_ts, seal
from gateway.journal import Journal, iter_events, open_reader

log = logging.getLogger("casegate.core")

MAX_BATCH = 2000
SHED_CHUNK = 5000
MAINTENANCE_EVERY_S = 30.0


class RequestError(Exception):
    """A command refused; ``code`` is one of SPEC §3's error codes."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _Submit:
    draft: Draft
    future: Future


@dataclass
class _Call:
    fn: Callable[["Core"], tuple[Any, list[Draft]]]
    future: Future
    request: tuple[str, str] | None = None  # (request_id, command) for idempotency


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
        self._q: "queue.Queue[Any]" = queue.Queue(maxsize=queue_size)
        self._listeners: list[Callable[[list[Event]], None]] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pending_delivered: list[int] = []
        self._delivered_lock = threading.Lock()
        self.requests_done: dict[str, str] = {}   # request_id -> response JSON
        self.error: str | None = None              # last storage error, None when healthy
        self.started_at = clock()
        self.committed_events = 0
        self._last_maintenance = 0.0
        self._derived: list[Callable[["Core", Event], list[Draft]]] = []

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

    # ---- start-up ----------------------------------------------------------
    def rebuild(self) -> int:
        """Replay the journal into the engine (restart = replay).

        Journaled rule output is skipped and regenerated, exactly as
        ``casegate replay`` does (its times serve as timer ticks); then alarms
        whose state differs (config changed, deadlines passed while we were
        down) are reconciled with new events.
        """
        from rules.replay import rebuild, reconcile
        counted = _Counted()
        conn = open_reader(self.journal.path)
        try:
            journaled_active = rebuild(self.engine, counted.wrap(iter_events(conn)), self.center)
        finally:
            conn.close()
        self.requests_done = self.journal.load_requests()
        drafts = list(reconcile(self.engine, journaled_active))
        drafts += self.engine.advance(self.clock())
        for d in drafts:
            self.submit(d)
        log.info("rebuilt state from %d journaled events (last seq %d)", counted.n, self.journal.last_seq)
        return counted.n

    # ---- producers -----------------------------------------------------------
    def submit(self, draft: Draft, block: bool = True, timeout: float | None = 10.0) -> Future:
        """Queue one event; the future resolves to the sealed Event after COMMIT."""
        f: Future = Future()
        try:
            self._q.put(_Submit(draft, f), block=block, timeout=timeout)
        except queue.Full:
            f.set_exception(RequestError("busy", "journal queue full"))
        return f

    def emit(self, type: str, data: dict, source: str = "gateway", ts: float | None = None) -> Future:
        return self.submit(Draft(type, data, source, ts))

    def call(self, fn: Callable[["Core"], tuple[Any, list[Draft]]],
             request: tuple[str, str] | None = None) -> Future:
        """Run ``fn(core)`` in the writer thread; it returns (value, drafts) or
        raises RequestError. The future resolves to CommitResult after COMMIT."""
        f: Future = Future()
        self._q.put(_Call(fn, f, request))
        return f

    def mark_delivered(self, seqs: list[int]) -> None:
        with self._delivered_lock:
            self._pending_delivered.extend(seqs)

    # ---- the writer thread ---------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="core-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Commit what is queued, then stop."""
        self._stop.set()
        self._q.put(None)
        if self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            deadline = self.engine.next_deadline()
            wait = 1.0
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - self.clock()))
            items = []
            try:
                first = self._q.get(timeout=wait)
                items.append(first)
                while len(items) < MAX_BATCH:
                    items.append(self._q.get_nowait())
            except queue.Empty:
                pass
            stopping = any(i is None for i in items) or self._stop.is_set()
            items = [i for i in items if i is not None]
            try:
                self._process(items)
            except Exception:  # a bug must not kill the only writer
                log.exception("core: batch failed")
            if stopping and self._q.empty():
                self._flush_delivered()
                return

    def _process(self, items: list) -> None:
        batch: list[Event] = []
        req_rows: list[tuple[str, str, str, str]] = []
        done: list[tuple[Future, Any, int, int]] = []   # future, value, batch index range
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
                    rid, cmd = item.request
                    self.requests_done[rid] = value
                    req_rows.append((rid, cmd, value, format_ts(self.clock())))
                done.append((item.future, CommitResult(value), start, len(batch)))
        with self._delivered_lock:
            delivered, self._pending_delivered = self._pending_delivered, []
        if not batch and not req_rows and not delivered:
            for f, value, _, _ in done:
                _resolve(f, value, [])
            self._maintenance()
            return
        self._commit(batch, req_rows, delivered)
        self.committed_events += len(batch)
        for f, value, a, b in done:
            _resolve(f, value, batch[a:b])
        if batch:
            for fn in self._listeners:
                try:
                    fn(batch)
                except Exception:
                    log.exception("listener failed")
        self._maintenance()

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
        if now - self._last_maintenance < MAINTENANCE_EVERY_S:
            return
        self._last_maintenance = now
        self.maintain(now)

    def maintain(self, now: float | None = None) -> None:
        """Retention and the disk cap (SPEC §1a storage)."""
        now = self.clock() if now is None else now
        st = self.config.storage
        try:
            pruned = self.journal.prune(now - st.retain_days * 86400)
            if pruned:
                log.info("pruned %d delivered events older than %d days", pruned, st.retain_days)
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


def _resolve(f: Future, value: Any, events: list[Event]) -> None:
    if f.done():
        return
    if isinstance(value, Exception):
        f.set_exception(value)
    elif isinstance(value, CommitResult):
        value.events = events
        f.set_result(value)
    else:
        f.set_result(events[0] if events else None)


class _Counted:
    def __init__(self):
        self.n = 0

    def wrap(self, it):
        for x in it:
            self.n += 1
            yield x
