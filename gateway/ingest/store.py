"""Storage of ``casegate ingest``: PostgreSQL (psycopg 3) or SQLite, same tables
(gateway/ingest/schema.py). One writer; every batch is one transaction, and
the MQTT messages of a batch are acknowledged only after its COMMIT."""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rules.model import GENESIS
from gateway.ingest.schema import COLUMNS_ADDED, statements


class StoreError(Exception):
    """The database URL or the database itself is unusable; the message says how to fix it."""


@dataclass
class ChainRow:
    center: str
    contiguous_seq: int = 0
    head_hash: str = GENESIS
    max_seq: int = 0
    broken_at: int | None = None
    broken_reason: str | None = None
    last_ts: str | None = None
    last_received_at: Any = None
    lag_s: float | None = None
    duplicates: int = 0
    resend_requests: int = 0
    conflicts: int = 0
    signature: str | None = None       # ok | bad at <seq> | unknown key | key changed
    signed_seq: int | None = None


@dataclass
class Batch:
    """Everything one transaction writes."""
    # (center, seq, id, ts, type, source, data as JSON text, prev, hash, ok, at)
    events: list[tuple] = field(default_factory=list)
    not_ok: list[tuple[str, int]] = field(default_factory=list)   # (center, seq) found broken after insert
    alarms: dict[tuple[str, str], tuple] = field(default_factory=dict)
    state: dict[tuple[str, str], tuple] = field(default_factory=dict)
    chains: dict[str, ChainRow] = field(default_factory=dict)
    rejected: list[tuple] = field(default_factory=list)
    # (center, key_id, public_key base64, state, source, at): ON CONFLICT nothing
    keys: list[tuple] = field(default_factory=list)
    # events that take the place of the row stored at their (center, seq): a seq conflict
    # the other candidate won (same tuple shape as events)
    replace: list[tuple] = field(default_factory=list)
    ok_again: list[tuple[str, int]] = field(default_factory=list)  # (center, seq) whose link now verifies

    def __bool__(self) -> bool:
        return bool(self.events or self.not_ok or self.alarms or self.state or self.chains or self.rejected
                    or self.keys or self.replace or self.ok_again)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Store:
    dialect = ""
    nul_ok = True
    p = "?"          # the driver's placeholder

    # ---- set-up ---------------------------------------------------------------
    @staticmethod
    def open(url: str) -> "Store":
        u = urlparse(url)
        if u.scheme in ("postgresql", "postgres"):
            return PgStore(url)
        if u.scheme == "sqlite":
            # sqlite:///relative.db, sqlite:////abs/path.db (SQLAlchemy style)
            path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else u.path
            if not path:
                raise StoreError(f"--db {url}: no file path (use sqlite:///path/to/central.db)")
            return SqliteStore(path)
        raise StoreError(f"--db {url}: unknown database (use postgresql://user@host/db or sqlite:///path.db)")

    def migrate(self) -> None:
        cur = self.conn.cursor()
        for stmt in statements(self.dialect):
            cur.execute(stmt)
        for table, column, decl in COLUMNS_ADDED:
            if column not in self._columns(table):
                cur.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
        self.conn.commit()

    def _columns(self, table: str) -> set[str]:
        raise NotImplementedError

    def is_outage(self, exc: BaseException) -> bool:
        """True when ``exc`` is the database failing (connection lost, disk full, locked),
        to be retried; False when the statement's data was refused (a message's fault),
        to be isolated and rejected."""
        raise NotImplementedError

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:
            pass

    def reconnect(self) -> None:
        """After a failed statement: a new connection if the old one is gone."""

    # ---- reads ------------------------------------------------------------------
    def _rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        cur = self.conn.cursor()
        cur.execute(sql.replace("?", self.p), args)
        rows = cur.fetchall()
        self.conn.commit()        # end the read transaction (PostgreSQL would hold a snapshot)
        return rows

    def load_chains(self) -> dict[str, ChainRow]:
        rows = self._rows("SELECT center, contiguous_seq, head_hash, max_seq, broken_at, broken_reason, last_ts, "
                          "last_received_at, lag_s, duplicates, resend_requests, conflicts, signature, signed_seq "
                          "FROM chains")
        return {r[0]: ChainRow(*r) for r in rows}

    def load_pending(self, center: str, above: int) -> list[tuple[int, str, str, str]]:
        """(seq, id, prev, hash) of the events stored above the contiguous position."""
        return self._rows("SELECT seq, id, prev, hash FROM events WHERE center = ? AND seq > ? ORDER BY seq",
                          (center, above))

    def links(self, center: str, lo: int, hi: int) -> dict[int, tuple[str, str, str]]:
        """seq -> (id, prev, hash) of the stored events lo..hi."""
        rows = self._rows("SELECT seq, id, prev, hash FROM events WHERE center = ? AND seq >= ? AND seq <= ?",
                          (center, lo, hi))
        return {s: (i, p, h) for s, i, p, h in rows}

    def envelope(self, center: str, seq: int) -> dict | None:
        rows = self._rows("SELECT id, seq, ts, center, type, source, data, prev, hash FROM events "
                          "WHERE center = ? AND seq = ?", (center, seq))
        if not rows:
            return None
        i, s, ts, c, t, src, d, pr, h = rows[0]
        return {"id": i, "seq": s, "ts": ts, "center": c, "type": t, "source": src,
                "data": json.loads(d) if isinstance(d, str) else d, "prev": pr, "hash": h}

    def first_not_ok(self, center: str) -> int | None:
        return self._rows("SELECT MIN(seq) FROM events WHERE center = ? AND NOT chain_ok", (center,))[0][0]

    def pin_only(self, center: str, key_id: str) -> None:
        cur = self.conn.cursor()
        cur.execute(f"UPDATE center_keys SET state = 'pinned' WHERE center = {self.p} AND key_id = {self.p}",
                    (center, key_id))
        cur.execute(f"UPDATE center_keys SET state = 'changed' WHERE center = {self.p} AND key_id <> {self.p}",
                    (center, key_id))
        self.conn.commit()

    def load_keys(self) -> list[tuple[str, str, str, str, str]]:
        """(center, key_id, public_key, state, source) of every key seen."""
        return self._rows("SELECT center, key_id, public_key, state, source FROM center_keys ORDER BY first_seen")

    def ids(self, center: str, seqs: list[int]) -> dict[int, str]:
        if not seqs:
            return {}
        rows = self._rows("SELECT seq, id FROM events WHERE center = ? AND seq >= ? AND seq <= ?",
                          (center, min(seqs), max(seqs)))
        want = set(seqs)
        return {s: i for s, i in rows if s in want}

    def status(self) -> list[dict]:
        out = []
        chains = self.load_chains()
        # A center that only ever sent what was rejected is listed too.
        for (center,) in self._rows("SELECT DISTINCT center FROM rejected WHERE center IS NOT NULL"):
            chains.setdefault(center, ChainRow(center))
        for c in sorted(chains.values(), key=lambda c: c.center):
            stored_above = self._rows("SELECT COUNT(*) FROM events WHERE center = ? AND seq > ?",
                                      (c.center, c.contiguous_seq))[0][0]
            gaps = self._rows(
                "SELECT COUNT(*) FROM (SELECT seq, LAG(seq) OVER (ORDER BY seq) AS before FROM events "
                "WHERE center = ? AND seq > ?) AS s WHERE seq - COALESCE(before, ?) > 1",
                (c.center, c.contiguous_seq, c.contiguous_seq))[0][0]
            rejected = self._rows("SELECT COUNT(*) FROM rejected WHERE center = ?", (c.center,))[0][0]
            events = self._rows("SELECT COUNT(*) FROM events WHERE center = ?", (c.center,))[0][0]
            at = c.last_received_at
            out.append({
                "center": c.center, "last_seq": c.max_seq, "contiguous_seq": c.contiguous_seq,
                "events": events, "gaps_open": gaps, "missing": c.max_seq - c.contiguous_seq - stored_above,
                "chain": "ok" if c.broken_at is None else f"broken at {c.broken_at}",
                "broken_reason": c.broken_reason, "last_ts": c.last_ts,
                "last_received_at": at.isoformat() if isinstance(at, datetime) else at,
                "lag_s": c.lag_s, "duplicates": c.duplicates, "resend_requests": c.resend_requests,
                "rejected": rejected, "conflicts": c.conflicts, "signature": c.signature,
                "signed_seq": c.signed_seq})
        return out

    # ---- the writer ---------------------------------------------------------------
    def _at(self, value: datetime):
        return value

    def _json(self, value: Any):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    def write(self, b: Batch) -> None:
        cur = self.conn.cursor()
        p = self.p
        try:
            if b.events:
                cur.executemany(
                    f"INSERT INTO events (center, seq, id, ts, type, source, data, prev, hash, chain_ok, received_at) "
                    f"VALUES ({p},{p},{p},{p},{p},{p},{p}{self._json_cast},{p},{p},{p},{p}) "
                    "ON CONFLICT (center, seq) DO NOTHING",
                    [(c, s, i, ts, t, src, d, pr, h, ok, self._at(at))
                     for c, s, i, ts, t, src, d, pr, h, ok, at in b.events])
            for c, s, i, ts, t, src, d, pr, h, ok, at in b.replace:
                cur.execute(f"UPDATE events SET id = {p}, ts = {p}, type = {p}, source = {p}, data = {p}{self._json_cast}, "
                            f"prev = {p}, hash = {p}, chain_ok = {p}, received_at = {p} WHERE center = {p} AND seq = {p}",
                            (i, ts, t, src, d, pr, h, ok, self._at(at), c, s))
            if b.ok_again:
                cur.executemany(f"UPDATE events SET chain_ok = {self._true} WHERE center = {p} AND seq = {p}",
                                b.ok_again)
            if b.not_ok:
                cur.executemany(f"UPDATE events SET chain_ok = {self._false} WHERE center = {p} AND seq = {p}",
                                b.not_ok)
            if b.alarms:
                cur.executemany(
                    f"INSERT INTO alarms (center, alarm_id, code, severity, room, state, since, last_seq, last_ts, data) "
                    f"VALUES ({p},{p},{p},{p},{p},{p},{p},{p},{p},{p}) ON CONFLICT (center, alarm_id) DO UPDATE SET "
                    "code = excluded.code, severity = excluded.severity, room = excluded.room, state = excluded.state, "
                    "since = excluded.since, last_seq = excluded.last_seq, last_ts = excluded.last_ts, data = excluded.data "
                    "WHERE excluded.last_seq > alarms.last_seq",
                    [row[:9] + (self._json(row[9]),) for row in b.alarms.values()])
            if b.state:
                cur.executemany(
                    f"INSERT INTO state (center, topic, payload, received_at) VALUES ({p},{p},{p},{p}) "
                    "ON CONFLICT (center, topic) DO UPDATE SET payload = excluded.payload, "
                    "received_at = excluded.received_at",
                    [(c, t, self._json(v), self._at(at)) for c, t, v, at in b.state.values()])
            if b.chains:
                cur.executemany(
                    f"INSERT INTO chains (center, contiguous_seq, head_hash, max_seq, broken_at, broken_reason, last_ts, "
                    f"last_received_at, lag_s, duplicates, resend_requests, conflicts, signature, signed_seq) "
                    f"VALUES ({p},{p},{p},{p},{p},{p},{p},{p},{p},{p},{p},{p},{p},{p}) "
                    "ON CONFLICT (center) DO UPDATE SET contiguous_seq = excluded.contiguous_seq, "
                    "head_hash = excluded.head_hash, max_seq = excluded.max_seq, broken_at = excluded.broken_at, "
                    "broken_reason = excluded.broken_reason, last_ts = excluded.last_ts, "
                    "last_received_at = excluded.last_received_at, lag_s = excluded.lag_s, "
                    "duplicates = excluded.duplicates, resend_requests = excluded.resend_requests, "
                    "conflicts = excluded.conflicts, signature = excluded.signature, signed_seq = excluded.signed_seq "
                    # a share-group member that is behind never moves the verified position back
                    "WHERE excluded.contiguous_seq >= chains.contiguous_seq",
                    [(c.center, c.contiguous_seq, c.head_hash, c.max_seq, c.broken_at, c.broken_reason, c.last_ts,
                      self._at(c.last_received_at) if c.last_received_at else None, c.lag_s, c.duplicates,
                      c.resend_requests, c.conflicts, c.signature, c.signed_seq) for c in b.chains.values()])
            if b.rejected:
                cur.executemany(
                    f"INSERT INTO rejected (center, seq, topic, reason, payload, payload_encoding, payload_bytes, "
                    f"received_at) VALUES ({p},{p},{p},{p},{p},{p},{p},{p})",
                    [(c, s, t, r, pl, enc, n, self._at(at)) for c, s, t, r, pl, enc, n, at in b.rejected])
            if b.keys:
                cur.executemany(
                    f"INSERT INTO center_keys (center, key_id, public_key, state, source, first_seen) "
                    f"VALUES ({p},{p},{p},{p},{p},{p}) ON CONFLICT (center, key_id) DO NOTHING",
                    [(c, k, pk, st, src, self._at(at)) for c, k, pk, st, src, at in b.keys])
            self.conn.commit()
        except Exception:
            try:
                self.conn.rollback()
            except Exception:
                pass
            raise


class SqliteStore(Store):
    dialect = "sqlite"
    nul_ok = True             # SQLite TEXT holds U+0000
    p = "?"
    _false = "0"
    _true = "1"
    _json_cast = ""

    def __init__(self, path: str):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open SQLite database {self.path}: {e}") from e

    def _at(self, value):
        return value.isoformat(timespec="milliseconds") if isinstance(value, datetime) else value

    def _columns(self, table: str) -> set[str]:
        return {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}

    def is_outage(self, exc: BaseException) -> bool:
        # OperationalError: disk I/O error, database or disk is full, unable to open,
        # database is locked. Binding and constraint errors are the data's.
        return isinstance(exc, sqlite3.OperationalError)


class PgStore(Store):
    dialect = "postgresql"
    nul_ok = False            # text and jsonb refuse U+0000
    p = "%s"
    _false = "false"
    _true = "true"
    _json_cast = "::jsonb"      # the event's data arrives as JSON text: no second serialisation

    def __init__(self, url: str):
        import psycopg
        self.url = url
        try:
            self.conn = psycopg.connect(url, connect_timeout=10)
        except psycopg.Error as e:
            safe = urlparse(url)._replace(netloc=urlparse(url).hostname or "").geturl()
            raise StoreError(f"cannot connect to PostgreSQL {safe}: {str(e).strip()}") from e

    def _json(self, value):
        from psycopg.types.json import Jsonb
        return Jsonb(value)

    # One key for every casegate schema change: PostgreSQL's CREATE TABLE IF NOT EXISTS is not
    # safe against a concurrent one (two sessions both pass the check and the second fails on
    # pg_type's unique index), and `casegate ingest --status` migrates too, so a status asked
    # while the consumer creates the schema failed ("duplicate key ... pg_type_typname_nsp_index").
    MIGRATE_LOCK = 0x63617365676174   # "casegat"

    def migrate(self) -> None:
        self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (self.MIGRATE_LOCK,))
        super().migrate()            # its commit ends the transaction and releases the lock

    def _columns(self, table: str) -> set[str]:
        cur = self.conn.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                                "AND table_schema = current_schema()", (table,))
        return {r[0] for r in cur.fetchall()}

    # SQLSTATE classes that are the server failing, not the statement's data: connection
    # exception, insufficient resources (disk full, out of memory, too many connections),
    # operator intervention (shutdown), system error (I/O). Class 54 (program limit
    # exceeded, e.g. an index row too large) is an OperationalError in psycopg but the
    # data's fault: retrying it would hold every center forever.
    OUTAGE_CLASSES = ("08", "53", "57", "58")

    def is_outage(self, exc: BaseException) -> bool:
        import psycopg
        if self.conn.closed or self.conn.broken:
            return True
        state = getattr(exc, "sqlstate", None)
        if state:
            return state[:2] in self.OUTAGE_CLASSES
        # no SQLSTATE: raised by the driver itself (a lost connection is OperationalError)
        return isinstance(exc, psycopg.OperationalError)

    def reconnect(self) -> None:
        import psycopg
        if not self.conn.closed and not self.conn.broken:
            return
        try:
            self.conn.close()
        except Exception:
            pass
        self.conn = psycopg.connect(self.url, connect_timeout=10)
