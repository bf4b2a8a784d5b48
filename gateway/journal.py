"""The journal: one SQLite file (WAL), one writer, hash-chained events.

Only the core's writer thread holds a :class:`Journal`. Readers (uplink
backlog, CLI, replay) open their own read-only connections with
:func:`open_reader`, which WAL allows concurrently.

Rows are never updated except ``delivered`` (set when the broker PUBACKed)
and ``shed`` (telemetry whose payload was dropped under the disk cap: the row
keeps seq, prev and hash so the chain still links; its data becomes NULL).
"""
from __future__ import annotations

import functools
import json
import os
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from rules.model import (GENESIS, TELEMETRY_TYPES, Event, canonical, chain_hash, dump_data, format_ts,
                            parse_ts)

# 1: first release. 2: table ``pruned`` (holes left by archiving, with their
# chain anchors), no index on ts; a v1 journal is migrated in place when the
# writer opens it (its freed index pages are reused, or returned by incremental vacuum).
SCHEMA_VERSION = 2


class JournalError(Exception):
    pass


def _connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        if not path.exists():
            raise JournalError(f"{path}: no journal here")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False,
                               timeout=10)
    else:
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=10,
                               isolation_level=None)
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def open_reader(path: str | os.PathLike) -> sqlite3.Connection:
    return _connect(Path(path), readonly=True)


def row_to_event(row) -> Event:
    seq, id_, ts, center, type_, source, data, prev, h = row[:9]
    return Event(id_, seq, ts, center, type_, source, json.loads(data) if data is not None else None,
                 prev, h, parse_ts(ts), data)


# ``prev`` is stored only where it is not the previous row's hash (the first event, the
# event after a pruned hole, rows written by release 1): everywhere else it is NULL and
# read back from that row (one primary-key lookup), 65 of 373 bytes per event saved.
# Verify still recomputes every hash from the prev it reads, so a changed row breaks
# the chain exactly as before. Read rows through EVENT_COLUMNS, never ``prev`` directly.
EVENT_COLUMNS = ("seq, id, ts, center, type, source, data, "
                 "COALESCE(prev, (SELECT p.hash FROM events AS p WHERE p.seq = events.seq - 1)) AS prev, hash")


def _ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s in sorted(set(seqs)):
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


class Journal:
    """The single writer. Not thread-safe by design: one thread owns it."""

    def __init__(self, path: str | os.PathLike, synchronous: str = "full"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        new = not self.path.exists()
        old_umask = os.umask(0o077)  # journal and its -wal/-shm files: 0600
        try:
            self.conn = _connect(self.path)
            if new:
                # Must precede the first table for incremental vacuum to work.
                self.conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
            self._create()
        finally:
            os.umask(old_umask)
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.path) + suffix)
            if p.exists():
                os.chmod(p, 0o600)
        # A release-1 table declares prev NOT NULL (SQLite cannot drop that in place): such a
        # journal keeps storing every prev; journals created since store only the needed ones.
        self._prev_elided = not any(r[1] == "prev" and r[3] for r in self.conn.execute("PRAGMA table_info(events)"))
        last = self.conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        self.last_seq, self.last_hash = (last[0], last[1]) if last else (0, GENESIS)

    @functools.cached_property
    def db(self):
        """sqlite-utils over the writer's connection, imported only when a table is created:
        at its import it tries numpy and pandas, only to map their types, which a journal
        never stores: 0.37 s of every start and CLI call (measured with -X importtime), and
        still 0.1 s of a new journal's first start, numpy alone. Hidden from that import
        (an entry of None makes ``import`` fail); whoever imports them later gets them."""
        hidden = [m for m in ("numpy", "pandas") if m not in sys.modules]
        for m in hidden:
            sys.modules[m] = None
        try:
            import sqlite_utils
        finally:
            for m in hidden:
                if sys.modules.get(m, 0) is None:
                    del sys.modules[m]
        return sqlite_utils.Database(self.conn)

    def _create(self) -> None:
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "events" not in tables:
            self.db["events"].create({
                "seq": int, "id": str, "ts": str, "center": str, "type": str, "source": str,
                "data": str, "prev": str, "hash": str, "delivered": int, "shed": int,
            }, pk="seq", not_null={"id", "ts", "center", "type", "source", "hash"},
                defaults={"delivered": 0, "shed": 0})
            self.conn.execute("CREATE INDEX idx_events_undelivered ON events(seq) WHERE delivered = 0")
            self.conn.execute("CREATE INDEX idx_events_type ON events(type)")
            # No index on ts (release 1 had one: 38 of its 411 bytes per event): ts grows
            # with seq, so a time bound is found by binary search on seq (seq_at_ts).
        if "requests" not in tables:
            self.db["requests"].create({"request_id": str, "command": str, "response": str, "ts": str},
                                       pk="request_id")
        if "meta" not in tables:
            self.db["meta"].create({"key": str, "value": str}, pk="key")
            self.db["meta"].insert({"key": "schema", "value": str(SCHEMA_VERSION)})
        self._migrate()

    def _migrate(self) -> None:
        """Bring a journal of an earlier release up to SCHEMA_VERSION (idempotent)."""
        c = self.conn
        c.execute("CREATE TABLE IF NOT EXISTS pruned (from_seq INTEGER PRIMARY KEY, to_seq INTEGER NOT NULL, "
                  "prev TEXT, hash TEXT NOT NULL)")
        # Idempotency is keyed by what was asked (issue 28 item 2): who asked, the command and
        # the payload's hash. Rows of an earlier release have none (NULL: command alone decides).
        if not any(r[1] == "asked" for r in c.execute("PRAGMA table_info(requests)")):
            c.execute("ALTER TABLE requests ADD COLUMN asked TEXT")
        version = int(self.get_meta("schema") or "1")
        if version >= SCHEMA_VERSION:
            return
        c.execute("BEGIN IMMEDIATE")
        try:
            c.execute("DROP INDEX IF EXISTS idx_events_ts")      # see _create: seq_at_ts replaces it
            # Release 1 pruned a prefix without archiving it: record it as a hole whose
            # far anchor is unknown (prev NULL) so verify can still link across it.
            through, anchor = self.get_meta("pruned_through"), self.get_meta("anchor")
            if through and int(through) > 0 and anchor:
                c.execute("INSERT OR IGNORE INTO pruned (from_seq, to_seq, prev, hash) VALUES (1, ?, NULL, ?)",
                          (int(through), anchor))
            self.set_meta("schema", str(SCHEMA_VERSION))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    # ---- writing -------------------------------------------------------
    def append(self, events: list[Event], requests: Iterable[tuple] = (),
               delivered: Iterable[int] = ()) -> None:
        """One transaction: the events, the request responses, the delivered marks.

        Raises sqlite3.Error (e.g. disk full); then nothing of it was stored
        and the caller retries the same batch.
        """
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            if events:
                rows = []
                before_seq, before_hash = self.last_seq, self.last_hash
                for e in events:
                    linked = self._prev_elided and e.seq > 1 and e.seq == before_seq + 1 \
                        and e.prev == before_hash
                    rows.append((e.seq, e.id, e.ts, e.center, e.type, e.source,
                                 e.data_json if e.data_json is not None else dump_data(e.data),
                                 None if linked else e.prev, e.hash))
                    before_seq, before_hash = e.seq, e.hash
                c.executemany(
                    "INSERT INTO events (seq, id, ts, center, type, source, data, prev, hash) "
                    "VALUES (?,?,?,?,?,?,?,?,?)", rows)
            reqs = [r if len(r) == 5 else (*r, None) for r in requests]
            if reqs:
                c.executemany("INSERT OR REPLACE INTO requests (request_id, command, response, ts, asked) "
                              "VALUES (?,?,?,?,?)", reqs)
            marks = _ranges(delivered)
            if marks:
                # PUBACKs arrive almost in seq order: one range update per run.
                c.executemany("UPDATE events SET delivered = 1 WHERE seq BETWEEN ? AND ? AND delivered = 0",
                              marks)
            c.execute("COMMIT")
        except BaseException:
            try:
                c.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
        if events:
            self.last_seq = events[-1].seq
            self.last_hash = events[-1].hash

    def size_bytes(self) -> int:
        page_count = self.conn.execute("PRAGMA page_count").fetchone()[0]
        freelist = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
        page_size = self.conn.execute("PRAGMA page_size").fetchone()[0]
        wal = Path(str(self.path) + "-wal")
        wal_size = wal.stat().st_size if wal.exists() else 0
        return (page_count - freelist) * page_size + wal_size

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def load_requests(self, limit: int = 100_000) -> dict[str, str]:
        """The newest ``limit`` stored answers, oldest first (a bounded memory keeps the newest)."""
        rows = self.conn.execute("SELECT request_id, response FROM requests ORDER BY rowid DESC LIMIT ?",
                                 (limit,)).fetchall()
        return dict(reversed(rows))

    def load_request_keys(self, limit: int = 100_000) -> dict[str, tuple[str, str | None]]:
        """request_id -> (command, asked key or None) of the stored answers (see
        gateway/commands/ asked_key): a restart keeps idempotency keyed by what was asked."""
        rows = self.conn.execute("SELECT request_id, command, asked FROM requests ORDER BY rowid DESC LIMIT ?",
                                 (limit,)).fetchall()
        return {rid: (cmd, asked) for rid, cmd, asked in reversed(rows)}

    def find_request(self, request_id: str) -> str | None:
        row = self.find_request_row(request_id)
        return row[0] if row else None

    def find_request_row(self, request_id: str) -> tuple[str, str, str | None] | None:
        """(response, command, asked) of one stored answer, however old."""
        return self.conn.execute("SELECT response, command, asked FROM requests WHERE request_id = ?",
                                 (request_id,)).fetchone()

    def prune_bound(self, before_epoch: float, keep_from_seq: int) -> int:
        """The first seq pruning must not touch: the first event at or after the
        cutoff, the first undelivered one, ``keep_from_seq`` (the newest checkpoint
        covers only what is below it), and the newest row (the chain's tip)."""
        from rules.model import format_ts
        cutoff = format_ts(before_epoch)
        bound = min(keep_from_seq, self.last_seq)
        undelivered = self.conn.execute("SELECT MIN(seq) FROM events WHERE delivered = 0").fetchone()[0]
        if undelivered is not None:
            bound = min(bound, undelivered)
        start = seq_at_ts(self.conn, format_ts(before_epoch - TS_DISORDER_S))
        if start is not None:     # the first event at/after the cutoff, from a little before it
            recent = self.conn.execute("SELECT MIN(seq) FROM events WHERE seq >= ? AND ts >= ?",
                                       (start, cutoff)).fetchone()[0]
            if recent is not None:
                bound = min(bound, recent)
        return bound

    def prune(self, before_epoch: float, keep_from_seq: int, archive_to: str | os.PathLike,
              keep=lambda ev: False, batch: int = 20_000, max_events: int | None = None) -> "PruneResult":
        """Archive, then delete, delivered events older than ``before_epoch`` below
        ``keep_from_seq`` for which ``keep(event)`` is False (gateway.archive.Keeper:
        what open matters need). ``keep`` sees every candidate in seq order.

        The archive file is durable before any row is deleted; a crash in between
        leaves the rows in both places (harmless: the same hashes). Kept rows keep
        their seq/prev/hash; each hole is recorded in ``pruned`` with its anchors.
        """
        from gateway.archive import runs_of, write_archive
        from rules.model import format_ts
        bound = self.prune_bound(before_epoch, keep_from_seq)
        gone: list[tuple] = []
        kept = 0
        last = 0
        while max_events is None or len(gone) < max_events:
            # candidates streamed in batches; only the ones to archive are held. A pass
            # stops after max_events (the writer thread is busy meanwhile); the next goes on.
            rows = self.conn.execute(
                f"SELECT {EVENT_COLUMNS}, shed FROM events WHERE seq > ? AND seq < ? ORDER BY seq LIMIT ?",
                (last, bound, batch)).fetchall()
            if not rows:
                break
            for r in rows:
                if keep(row_to_event(r)):
                    kept += 1
                else:
                    gone.append(r)
            last = rows[-1][0]
        if not gone:
            return PruneResult(0, kept, None)
        path = write_archive(Path(archive_to), gone[-1][3], gone, format_ts(time.time()))
        runs = runs_of((r[0], r[7], r[8]) for r in gone)
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            # The row after each hole can no longer read its prev from the row before: store it.
            c.executemany("UPDATE events SET prev = ? WHERE seq = ? AND prev IS NULL",
                          [(h, b + 1) for _, b, _, h in runs])
            c.executemany("DELETE FROM events WHERE seq BETWEEN ? AND ?", [(a, b) for a, b, _, _ in runs])
            c.executemany("INSERT OR REPLACE INTO pruned (from_seq, to_seq, prev, hash) VALUES (?,?,?,?)", runs)
            self._merge_pruned_runs()
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("PRAGMA incremental_vacuum")
        return PruneResult(len(gone), kept, path)

    def _merge_pruned_runs(self) -> None:
        """Adjacent holes (a row kept by an earlier pass, archived now) become one."""
        runs = self.conn.execute("SELECT from_seq, to_seq, prev, hash FROM pruned ORDER BY from_seq").fetchall()
        merged: list[list] = []
        for a, b, prev, h in runs:
            if merged and merged[-1][1] + 1 == a and merged[-1][3] == prev:
                merged[-1][1], merged[-1][3] = b, h
            else:
                merged.append([a, b, prev, h])
        if len(merged) != len(runs):
            self.conn.execute("DELETE FROM pruned")
            self.conn.executemany("INSERT INTO pruned (from_seq, to_seq, prev, hash) VALUES (?,?,?,?)", merged)

    def shed_telemetry(self, max_rows: int) -> tuple[int, int, int]:
        """Drop the payload of the oldest delivered telemetry rows.

        Returns (count, from_seq, to_seq); count 0 when nothing can be shed.
        """
        types = tuple(TELEMETRY_TYPES)
        marks = ",".join("?" * len(types))
        rows = self.conn.execute(
            f"SELECT seq FROM events WHERE shed = 0 AND delivered = 1 AND type IN ({marks}) "
            f"ORDER BY seq LIMIT ?", (*types, max_rows)).fetchall()
        if not rows:
            return 0, 0, 0
        seqs = [r[0] for r in rows]
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany("UPDATE events SET data = NULL, shed = 1 WHERE seq = ?",
                                  [(s,) for s in seqs])
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("PRAGMA incremental_vacuum")
        return len(seqs), seqs[0], seqs[-1]

    def checkpoint(self) -> None:
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        try:
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass
        self.conn.close()


# ---- reading (any thread, own connection) -------------------------------

# How far an event's ts may run behind an earlier seq's (a driver stamps when a thing
# happened; the writer seals in arrival order): time bounds search this much earlier.
TS_DISORDER_S = 600.0


def seq_at_ts(conn: sqlite3.Connection, ts: str) -> int | None:
    """The first seq whose ts is >= ``ts`` (RFC 3339 UTC), by binary search over seq:
    ts grows with seq (give or take TS_DISORDER_S), so no index on ts is needed.
    None when every event is older (or the journal is empty)."""
    lo, hi = conn.execute("SELECT MIN(seq), MAX(seq) FROM events").fetchone()
    if lo is None:
        return None
    end = hi + 1
    while lo < end:
        mid = (lo + end) // 2
        seq, row_ts = conn.execute("SELECT seq, ts FROM events WHERE seq >= ? ORDER BY seq LIMIT 1",
                                   (mid,)).fetchone()
        if row_ts >= ts:
            end = mid
        else:
            lo = seq + 1
    if lo > hi:
        return None
    return conn.execute("SELECT MIN(seq) FROM events WHERE seq >= ?", (lo,)).fetchone()[0]


def iter_events(conn: sqlite3.Connection, since_seq: int = 0, until_seq: int | None = None,
                types: Iterable[str] | None = None, since_ts: str | None = None,
                until_ts: str | None = None, batch: int = 5000) -> Iterator[Event]:
    """Events in seq order, streamed in batches (memory stays flat)."""
    where = ["seq > ?", "shed = 0"]
    args: list = [since_seq - 1 if since_seq > 0 else 0]
    if until_seq is not None:
        where.append("seq <= ?")
        args.append(until_seq)
    tl = list(types or [])
    if tl:
        where.append(f"type IN ({','.join('?' * len(tl))})")
        args += tl
    if since_ts:
        where.append("ts >= ?")
        args.append(since_ts)
        try:
            lower = format_ts(parse_ts(since_ts) - TS_DISORDER_S)
        except (ValueError, TypeError, OverflowError):
            lower = None      # not RFC 3339: the filter alone decides (a full scan)
        if lower is not None:
            start = seq_at_ts(conn, lower)
            if start is None:
                return        # every event is older
            args[0] = max(args[0], start - 1)
    if until_ts:
        where.append("ts <= ?")
        args.append(until_ts)
    last = args[0]
    while True:
        args[0] = last
        rows = conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY seq LIMIT {batch}",
            args).fetchall()
        if not rows:
            return
        for r in rows:
            yield row_to_event(r)
        last = rows[-1][0]


@dataclass
class PruneResult:
    archived: int                 # events written to the archive and deleted from the journal
    kept: int                     # old events kept because an open matter needs them
    file: Path | None             # the archive file written, None when nothing was pruned


@dataclass
class VerifyResult:
    ok: bool
    checked: int
    first_seq: int | None
    last_seq: int | None
    bad_seq: int | None = None
    reason: str = ""
    shed: int = 0
    pruned: int = 0               # seqs not in the journal: archived (holes with anchors)
    holes: int = 0


def verify(path: str | os.PathLike) -> VerifyResult:
    """Recompute the hash chain and check seq continuity.

    A pruned journal has holes; each must be recorded in ``pruned`` with its
    anchors: the hole's ``prev`` must be the hash of the event before it and its
    ``hash`` the prev of the event after it, so every contiguous run is verified
    and linked to the next (the archive itself: ``verify_with_archive``)."""
    conn = open_reader(path)
    try:
        holes = []
        has_pruned = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'pruned'").fetchone()
        if has_pruned:
            holes = conn.execute("SELECT from_seq, to_seq, prev, hash FROM pruned ORDER BY from_seq").fetchall()
        else:   # a release-1 journal not yet opened by the writer (read-only: no migration)
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if int(meta.get("pruned_through", "0")) > 0:
                holes = [(1, int(meta["pruned_through"]), None, meta.get("anchor", GENESIS))]
        holes.reverse()            # popped from the end, lowest first
        expected_prev = GENESIS
        expected_seq = 1
        checked = shed = pruned = n_holes = 0
        first = last = None
        cur = conn.execute(f"SELECT {EVENT_COLUMNS}, shed FROM events ORDER BY seq")

        def cross_holes(upto: int):
            """Step over the recorded holes below ``upto``; None if they link, else the failure."""
            nonlocal expected_seq, expected_prev, pruned, n_holes
            while holes and holes[-1][0] < upto:
                a, b, hprev, hhash = holes.pop()
                if a != expected_seq:
                    return VerifyResult(False, checked, first, last, expected_seq,
                                        f"seq {expected_seq} is missing (pruned range {a}..{b} does not start there)")
                if hprev is not None and hprev != expected_prev:
                    return VerifyResult(False, checked, first, last, a,
                                        f"pruned range {a}..{b}: its anchor does not match the hash before it")
                expected_seq, expected_prev = b + 1, hhash
                pruned += b - a + 1
                n_holes += 1
            return None

        while True:
            rows = cur.fetchmany(5000)
            if not rows:
                break
            for seq, id_, ts, center, type_, source, data, prev, h, is_shed in rows:
                before_holes = expected_seq
                bad = cross_holes(seq)
                if bad:
                    return bad
                if first is None:
                    first = seq
                if seq != expected_seq:
                    return VerifyResult(False, checked, first, last, expected_seq,
                                        f"seq {expected_seq} is missing (next present is {seq})")
                if prev != expected_prev:
                    return VerifyResult(False, checked, first, last, seq,
                                        "prev does not match the previous event's hash"
                                        + (" (the anchor of the pruned range before it)"
                                           if expected_seq != before_holes else ""))
                if is_shed:
                    shed += 1  # payload shed under the disk cap: only the link can be checked
                else:
                    try:
                        body = {"id": id_, "seq": seq, "ts": ts, "center": center, "type": type_,
                                "source": source, "data": json.loads(data)}
                    except (TypeError, ValueError):
                        return VerifyResult(False, checked, first, last, seq, "data is not valid JSON")
                    if chain_hash(prev, canonical(body)) != h:
                        return VerifyResult(False, checked, first, last, seq,
                                            "hash does not match content")
                expected_prev = h
                expected_seq = seq + 1
                last = seq
                checked += 1
        if holes:
            a, b = holes[-1][0], holes[0][1]
            return VerifyResult(False, checked, first, last, a,
                                f"pruned range {a}..{b} recorded after the last event {last}")
        return VerifyResult(True, checked, first, last, shed=shed, pruned=pruned, holes=n_holes)
    finally:
        conn.close()


def journal_stats(path: str | os.PathLike) -> dict:
    conn = open_reader(path)
    try:
        n, lo, hi = conn.execute("SELECT COUNT(*), MIN(seq), MAX(seq) FROM events").fetchone()
        undelivered = conn.execute("SELECT COUNT(*) FROM events WHERE delivered = 0").fetchone()[0]
    finally:
        conn.close()
    size = sum(os.path.getsize(str(path) + s) for s in ("", "-wal") if os.path.exists(str(path) + s))
    return {"events": n, "first_seq": lo, "last_seq": hi, "backlog": undelivered, "bytes": size}
