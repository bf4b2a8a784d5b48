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

from gateway.events import GENESIS
from gateway.ingest.schema import statements


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

    def __bool__(self) -> bool:
        return bool(self.events or self.not_ok or self.alarms or self.state or self.chains or self.rejected)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Store:
    dialect = ""
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
        self.conn.commit()

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
                          "last_received_at, lag_s, duplicates, resend_requests FROM chains")
        return {r[0]: ChainRow(*r) for r in rows}

    def load_pending(self, center: str, above: int) -> list[tuple[int, str, str, str]]:
        """(seq, id, prev, hash) of the events stored above the contiguous position."""
        return self._rows("SELECT seq, id, prev, hash FROM events WHERE center = ? AND seq > ? ORDER BY seq",
                          (center, above))

    def ids(self, center: str, seqs: list[int]) -> dict[int, str]:
        if not seqs:
            return {}
        rows = self._rows("SELECT seq, id FROM events WHERE center = ? AND seq >= ? AND seq <= ?",
                          (center, min(seqs), max(seqs)))
        want = set(seqs)
        return {s: i for s, i in rows if s in want}

    def status(self) -> list[dict]:
        out = []
        for c in sorted(self.load_chains().values(), key=lambda c: c.center):
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
                "rejected": rejected})
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
                    f"last_received_at, lag_s, duplicates, resend_requests) VALUES ({p},{p},{p},{p},{p},{p},{p},{p},{p},{p},{p}) "
                    "ON CONFLICT (center) DO UPDATE SET contiguous_seq = excluded.contiguous_seq, "
                    "head_hash = excluded.head_hash, max_seq = excluded.max_seq, broken_at = excluded.broken_at, "
                    "broken_reason = excluded.broken_reason, last_ts = excluded.last_ts, "
                    "last_received_at = excluded.last_received_at, lag_s = excluded.lag_s, "
                    "duplicates = excluded.duplicates, resend_requests = excluded.resend_requests "
                    # a share-group member that is behind never moves the verified position back
                    "WHERE excluded.contiguous_seq >= chains.contiguous_seq",
                    [(c.center, c.contiguous_seq, c.head_hash, c.max_seq, c.broken_at, c.broken_reason, c.last_ts,
                      self._at(c.last_received_at) if c.last_received_at else None, c.lag_s, c.duplicates,
                      c.resend_requests) for c in b.chains.values()])
            if b.rejected:
                cur.executemany(
                    f"INSERT INTO rejected (center, seq, topic, reason, payload, received_at) VALUES ({p},{p},{p},{p},{p},{p})",
                    [(c, s, t, r, pl, self._at(at)) for c, s, t, r, pl, at in b.rejected])
            self.conn.commit()
        except Exception:
            try:
                self.conn.rollback()
            except Exception:
                pass
            raise


class SqliteStore(Store):
    dialect = "sqlite"
    p = "?"
    _false = "0"
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


class PgStore(Store):
    dialect = "postgresql"
    p = "%s"
    _false = "false"
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

    def reconnect(self) -> None:
        import psycopg
        if not self.conn.closed and not self.conn.broken:
            return
        try:
            self.conn.close()
        except Exception:
            pass
        self.conn = psycopg.connect(self.url, connect_timeout=10)
