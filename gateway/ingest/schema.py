"""The central database of ``casegate ingest`` (SPEC §6): one DDL for PostgreSQL
and SQLite. ``python -m gateway.ingest.schema`` prints the PostgreSQL form,
which is ``docs/central-schema.sql`` (a test keeps the two equal).

Why these columns:
* ``events.ts`` is the exact RFC 3339 string the gateway hashed: the chain can be
  re-verified from the database alone (``ts::timestamptz`` for date queries).
* ``events.chain_ok`` is false for an event whose own hash or link to its
  predecessor did not verify: a broken chain is stored and shown, never hidden.
* ``chains`` holds each center's verified position: every seq up to
  ``contiguous_seq`` is stored and linked, ``head_hash`` is its hash. A
  restarted consumer resumes from here.
"""
from __future__ import annotations

_TABLES = """\
CREATE TABLE IF NOT EXISTS events (
    center      TEXT    NOT NULL,
    seq         BIGINT  NOT NULL,
    id          TEXT    NOT NULL,
    ts          TEXT    NOT NULL,              -- RFC 3339 UTC as hashed, e.g. 2026-11-26T20:30:03.123Z
    type        TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    data        {json}  NOT NULL,
    prev        TEXT    NOT NULL,
    hash        TEXT    NOT NULL,
    chain_ok    BOOLEAN NOT NULL,              -- own hash and link to seq-1 verified
    received_at {time}  NOT NULL,
    PRIMARY KEY (center, seq)
);
CREATE INDEX IF NOT EXISTS events_id ON events (id);
CREATE INDEX IF NOT EXISTS events_type_ts ON events (center, type, ts);

-- one row per alarm: its latest alarm.* event (raised, cleared, acknowledged, ...)
CREATE TABLE IF NOT EXISTS alarms (
    center      TEXT    NOT NULL,
    alarm_id    TEXT    NOT NULL,
    code        TEXT    NOT NULL,
    severity    TEXT,
    room        TEXT,
    state       TEXT    NOT NULL,              -- the action of the latest event: raised | cleared | acknowledged | ...
    since       TEXT,
    last_seq    BIGINT  NOT NULL,
    last_ts     TEXT    NOT NULL,
    data        {json}  NOT NULL,
    PRIMARY KEY (center, alarm_id)
);

-- the retained state topics as last received (P/state/<suffix>)
CREATE TABLE IF NOT EXISTS state (
    center      TEXT    NOT NULL,
    topic       TEXT    NOT NULL,              -- gateway | occupancy | alarms | devices/<id>
    payload     {json}  NOT NULL,
    received_at {time}  NOT NULL,
    PRIMARY KEY (center, topic)
);

-- each center's chain: verified up to contiguous_seq; first break, if any
CREATE TABLE IF NOT EXISTS chains (
    center          TEXT   PRIMARY KEY,
    contiguous_seq  BIGINT NOT NULL,           -- seqs 1..contiguous_seq are stored
    head_hash       TEXT   NOT NULL,           -- hash of contiguous_seq (64 zeros for 0)
    max_seq         BIGINT NOT NULL,           -- highest seq stored
    broken_at       BIGINT,                    -- first seq that did not verify, NULL = ok
    broken_reason   TEXT,
    last_ts         TEXT,                      -- ts of max_seq
    last_received_at {time},
    lag_s           DOUBLE PRECISION,          -- received_at - ts of the newest event
    duplicates      BIGINT NOT NULL DEFAULT 0,
    resend_requests BIGINT NOT NULL DEFAULT 0,
    conflicts       BIGINT NOT NULL DEFAULT 0, -- a seq that came with two ids (the one that links is kept)
    signature       TEXT,                      -- ok | bad at <seq> | unknown key | key changed; NULL: none seen
    signed_seq      BIGINT                     -- seq of the newest chain.signed that verified
);

-- messages that could not be stored as events (not an envelope, wrong or invalid center,
-- what the database cannot hold, a seq already taken by another id): kept for the
-- investigation, counted per center in --status, never retried
CREATE TABLE IF NOT EXISTS rejected (
    center      TEXT,                          -- NULL when the topic's center id is not [a-z0-9-]{{1,64}}
    seq         BIGINT,
    topic       TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    payload     TEXT    NOT NULL,              -- the bytes as they came: text, or base64 (payload_encoding)
    received_at {time}  NOT NULL,
    payload_encoding TEXT NOT NULL DEFAULT 'utf-8',   -- utf-8 | base64 (not UTF-8, or holds NUL)
    payload_bytes    BIGINT                    -- size as received (kept: the first 1 MiB)
);
CREATE INDEX IF NOT EXISTS rejected_center ON rejected (center);

-- each center's Ed25519 public keys (SPEC §8): the pinned one, and any other one seen,
-- which is stored and reported (chains.signature = key changed), never accepted
CREATE TABLE IF NOT EXISTS center_keys (
    center      TEXT    NOT NULL,
    key_id      TEXT    NOT NULL,              -- first 16 hex of sha256(raw key)
    public_key  TEXT    NOT NULL,              -- base64 raw 32 bytes
    state       TEXT    NOT NULL,              -- pinned | changed (seen after another was pinned)
    source      TEXT    NOT NULL,              -- identity (P/state/identity) | keys-dir (--keys)
    first_seen  {time}  NOT NULL,
    PRIMARY KEY (center, key_id)
);
"""

DIALECTS = {
    "postgresql": {"json": "JSONB", "time": "TIMESTAMPTZ"},
    "sqlite": {"json": "TEXT", "time": "TEXT"},
}


# Columns added after the first release: a central database created by an older
# ingest gets them on open (CREATE TABLE IF NOT EXISTS does not add columns).
COLUMNS_ADDED = [
    ("chains", "conflicts", "BIGINT NOT NULL DEFAULT 0"),
    ("chains", "signature", "TEXT"),
    ("chains", "signed_seq", "BIGINT"),
    ("rejected", "payload_encoding", "TEXT NOT NULL DEFAULT 'utf-8'"),
    ("rejected", "payload_bytes", "BIGINT"),
]


def ddl(dialect: str) -> str:
    return _TABLES.format(**DIALECTS[dialect])


def statements(dialect: str) -> list[str]:
    """The DDL as single statements (comments stripped), for drivers that run one at a time."""
    lines = [ln.split("--", 1)[0].rstrip() for ln in ddl(dialect).splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


HEADER = ("-- casegate ingest: the central database (PostgreSQL). Generated by\n"
          "--   python -m gateway.ingest.schema > docs/central-schema.sql\n"
          "-- SQLite uses the same tables with TEXT for JSONB and TIMESTAMPTZ.\n\n")

if __name__ == "__main__":
    print(HEADER + ddl("postgresql"), end="")
