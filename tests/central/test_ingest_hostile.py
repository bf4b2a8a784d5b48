"""Issue 29 / 30.7 / 25.1 in the consumer itself, with SQLite and a real
PostgreSQL: what a hostile center sends is rejected before the transaction (the
reason and the raw bytes in ``rejected``), a message the database refuses anyway
is isolated by splitting the batch, seq conflicts are decided by the chain, and
signed chain heads are verified. The MQTT path is in test_ingest_hostile_e2e.py."""
from __future__ import annotations

import base64
import json
import logging
import sqlite3

import pytest

from rules.model import Draft, seal
from gateway.ingest.consumer import RESEND_ALL_BURST, RESEND_ALL_PER_S, Ingest, IngestOptions
from helpers.hostile import good_chain, hostile, message
from helpers.signing import CenterKey


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'central.db'}"
    return request.getfixturevalue("postgres").url


def query(url: str, sql: str, *args) -> list[tuple]:
    if url.startswith("sqlite:///"):
        c = sqlite3.connect(url[len("sqlite:///"):])
        try:
            return c.execute(sql, args).fetchall()
        finally:
            c.close()
    import psycopg
    with psycopg.connect(url) as c:
        return c.execute(sql.replace("?", "%s"), args).fetchall()


def make(url: str, **kw) -> Ingest:
    return Ingest(IngestOptions(db=url, reorder_wait_s=0.0, tail_probe_s=0, **kw))


def m(topic: str, payload: bytes, retain: bool = False) -> tuple:
    return (topic, payload, 0, 0, retain)


def test_each_hostile_payload_is_rejected_with_its_reason_between_two_good_streams(db_url):
    a, b = good_chain("c-good-a", 40), good_chain("c-good-b", 40)
    bad = hostile()
    msgs = []
    for i in range(40):
        msgs.append(m(*message(a[i])))
        if i < len(bad):
            msgs.append(m(bad[i][1], bad[i][2]))
        msgs.append(m(*message(b[i])))
    ing = make(db_url)
    assert ing._commit(msgs) is True                 # the writer's own path: one transaction
    for c in ("c-good-a", "c-good-b"):
        assert query(db_url, "SELECT COUNT(*), MIN(seq), MAX(seq) FROM events WHERE center = ?", c) == [(40, 1, 40)]
    rejected = query(db_url, "SELECT topic, reason, payload, payload_encoding FROM rejected")
    pg = not db_url.startswith("sqlite")
    want = [x for x in bad if x[4] == "both" or pg]
    kept = [(t, why, p.encode() if enc == "utf-8" else base64.b64decode(p)) for t, why, p, enc in rejected]
    for label, topic, payload, reason, _ in want:
        # the bytes as they came identify the message; its reason must be the right one
        hits = [why for t, why, p in kept if t == topic and p == payload]
        assert hits, f"{label}: its payload is not in rejected as it came"
        assert reason in hits[0], f"{label}: {hits[0]!r} does not say {reason!r}"
    assert len(rejected) == len(want)
    st = {r["center"]: r for r in ing.store.status()}
    assert st["c-good-a"]["chain"] == st["c-good-b"]["chain"] == "ok"
    assert st["c-bad"]["rejected"] == len([x for x in want if x[1].startswith("casegate/c-bad/")])
    assert ing.counts["bisections"] == 0, "validation should have caught every one before the database"
    # The invalid center id is stored without a center and named in the reason.
    assert query(db_url, "SELECT center FROM rejected WHERE topic LIKE ?", "casegate/Bad_Center/%") == [(None,)]


def test_a_message_the_database_refuses_is_isolated_and_the_rest_stored(db_url):
    """Validation cannot foresee everything a database refuses: here a constraint the
    operator added. The batch is split until the one message is rejected."""
    ing = make(db_url)
    if db_url.startswith("sqlite"):
        ing.store.conn.execute("CREATE TRIGGER no_poison BEFORE INSERT ON events WHEN NEW.source = 'poison' "
                               "BEGIN SELECT RAISE(ABORT, 'poison refused'); END")
    else:
        ing.store.conn.execute("ALTER TABLE events ADD CONSTRAINT no_poison CHECK (source <> 'poison')")
    ing.store.conn.commit()
    a, b = good_chain("c-good-a", 100), good_chain("c-good-b", 100)
    poison = seal(Draft("card.swiped", {"card": "X"}, "poison"), 1, "c-bad", "0" * 64, 1_790_000_000.0)
    msgs = [m(*message(e)) for pair in zip(a, b) for e in pair]
    msgs.insert(117, m(*message(poison)))
    assert ing._commit(msgs) is True
    for c in ("c-good-a", "c-good-b"):
        assert query(db_url, "SELECT COUNT(*) FROM events WHERE center = ?", c) == [(100,)]
    (reason,) = query(db_url, "SELECT reason FROM rejected WHERE center = 'c-bad'")[0]
    assert "the database refused it" in reason
    assert query(db_url, "SELECT COUNT(*) FROM events WHERE center = 'c-bad'") == [(0,)]
    st = {r["center"]: r for r in ing.store.status()}
    assert st["c-good-a"]["contiguous_seq"] == 100 and st["c-good-a"]["chain"] == "ok"
    assert st["c-bad"]["rejected"] == 1 and ing.counts["bisections"] >= 7      # log2(201) splits at least


def test_a_forged_event_that_pre_empts_a_seq_gives_way_to_the_one_that_links(tmp_path):
    """A forger publishes seq 6 first (well hashed, linked to seq 5). The genuine seq 6
    then arrives: nobody can tell yet, so the gateway is asked to re-send 6..7; seq 7
    links to the genuine one, which takes the seq; the forged one is in rejected."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    ing = make(url)
    asked = []
    ing.request_resend = lambda c, lo, hi: asked.append((c, lo, hi))
    genuine = good_chain("c-a", 8)
    forged = seal(Draft("card.swiped", {"card": "FORGED", "reader": "r", "room": "x", "person": None}, "card-1"),
                  6, "c-a", genuine[4].hash, 1_790_000_006.0)
    ing._commit([m(*message(e)) for e in genuine[:5]] + [m(*message(forged))])
    ing._commit([m(*message(genuine[5]))])
    assert query(url, "SELECT id FROM events WHERE seq = 6") == [(forged.id,)]
    ing.repair_tick(1000.0)
    assert ("c-a", 6, 7) in asked
    ing._commit([m(*message(genuine[6])), m(*message(genuine[7]))])
    assert query(url, "SELECT id FROM events WHERE seq = 6") == [(genuine[5].id,)]
    assert query(url, "SELECT COUNT(*) FROM events WHERE NOT chain_ok") == [(0,)]
    reasons = [r[0] for r in query(url, "SELECT reason FROM rejected WHERE seq = 6 ORDER BY rowid")]
    assert len(reasons) == 2 and "replaced by id" in reasons[1]
    assert json.loads(query(url, "SELECT payload FROM rejected WHERE reason LIKE '%replaced%'")[0][0])["id"] == forged.id
    st = ing.store.status()[0]
    assert st["chain"] == "ok" and st["contiguous_seq"] == 8 and st["conflicts"] == 1


def test_repair_requests_are_budgeted_per_center_and_overall(tmp_path):
    """5,000 fake centers seen on state topics and one center with 200 gaps: ingest asks
    within its budgets, not 25,000 times a minute."""
    ing = make(f"sqlite:///{tmp_path / 'c.db'}")
    asked = []
    ing.request_resend = lambda c, lo, hi: asked.append((c, lo, hi))
    ing._commit([m(f"casegate/fake-{i}/state/gateway", b'{"state":"online"}', True) for i in range(5000)])
    gappy = good_chain("c-gappy", 400)
    ing._commit([m(*message(e)) for e in gappy[::2]])
    now = 1000.0
    for _ in range(240):                         # one simulated minute of 0.25 s ticks
        ing.repair_tick(now)
        now += 0.25
    assert len(asked) <= RESEND_ALL_BURST + 60 * RESEND_ALL_PER_S + 1
    per_center = [a for a in asked if a[0] == "c-gappy"]
    assert 1 <= len(per_center) <= 10 + 60 * 0.2 + 1
    # Everyone gets a turn: the budget is spent round robin, not on the first centers only.
    assert len({a[0] for a in asked}) == len(asked) - len(per_center) + 1


def test_logs_about_one_center_are_rate_limited(tmp_path, caplog):
    ing = make(f"sqlite:///{tmp_path / 'c.db'}")
    evs = good_chain("c-a", 300)
    other = good_chain("c-a", 300, t0=1_800_000_000.0)
    with caplog.at_level(logging.INFO, logger="casegate.ingest"):
        # every second event from another chain: every link broken; then 500 payloads not JSON
        ing._commit([m(*message(e if e.seq % 2 else other[e.seq - 1])) for e in evs])
        ing._commit([m("casegate/c-a/events/card/swiped", b"{bad") for _ in range(500)])
    lines = [r.getMessage() for r in caplog.records if "c-a" in r.getMessage()]
    assert sum("chain broken" in ln for ln in lines) == 1, lines[:5]
    assert sum("rejected a message" in ln for ln in lines) == 1
    ing.center_log.clock = lambda: 1e12                # a minute later: one summary each
    with caplog.at_level(logging.INFO, logger="casegate.ingest"):
        ing.center_log.flush()
    summaries = [r.getMessage() for r in caplog.records if "more rejected" in r.getMessage()]
    assert summaries and "499 more rejected" in summaries[0]


def test_fair_batches_take_from_every_center(tmp_path):
    ing = make(f"sqlite:///{tmp_path / 'c.db'}")
    flood = good_chain("c-flood", 1900)
    quiet = good_chain("c-quiet", 10)
    for e in flood:
        ing.q.put(m(*message(e)))
    for e in quiet:
        ing.q.put(m(*message(e)))
    waiting, turn = {}, __import__("collections").deque()
    ing._take_in(waiting, turn, block=False)
    batch = ing._fair_batch(waiting, turn)
    assert sum(t.startswith("casegate/c-quiet/") for t, *_ in batch) == 10
    assert sum(t.startswith("casegate/c-flood/") for t, *_ in batch) <= 250


def test_signed_heads_pinned_key_bad_signature_and_key_change(db_url, tmp_path):
    key = CenterKey("c-a")
    evs = good_chain("c-a", 5)
    signed = key.chain_signed(evs[-1], 1_790_000_010.0)
    ing = make(db_url)
    # chain.signed before the identity: unknown key until the key is pinned
    ing._commit([m(*message(e)) for e in evs] + [m(*message(signed))])
    assert ing.store.status()[0]["signature"] == "unknown key"
    ing._commit([m("casegate/c-a/state/identity", key.identity(), True)])
    st = ing.store.status()[0]
    assert st["signature"] == "ok" and st["signed_seq"] == 6
    more = good_chain("c-a", 3, start=7, prev=signed.hash)
    forged = key.chain_signed(more[-1], 1_790_000_020.0, sig=key.sign(9, "f" * 64))    # signs another head
    ing._commit([m(*message(e)) for e in more] + [m(*message(forged))])
    assert ing.store.status()[0]["signature"] == "bad at 10"
    # Another key offered for the center: stored, reported, not accepted.
    other = CenterKey("c-a")
    ing._commit([m("casegate/c-a/state/identity", other.identity(), True)])
    assert query(db_url, "SELECT key_id, state FROM center_keys ORDER BY state DESC") == [
        (key.key_id, "pinned"), (other.key_id, "changed")]
    assert ing.store.status()[0]["signature"] == "bad at 10"          # the worst stays
    # A restarted ingest keeps the pin.
    ing.store.close()
    assert make(db_url).keys == {"c-a": {key.key_id: key.raw}}


def test_keys_dir_pins_and_a_changed_key_is_reported(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    key, rogue = CenterKey("c-a"), CenterKey("c-a")
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "c-a.pub").write_text(key.b64 + "\n")
    ing = make(url, keys_dir=str(keys))
    evs = good_chain("c-a", 3)
    ing._commit([m("casegate/c-a/state/identity", rogue.identity(), True)] + [m(*message(e)) for e in evs]
                + [m(*message(rogue.chain_signed(evs[-1], 1_790_000_010.0)))])
    st = ing.store.status()[0]
    assert st["signature"] == "key changed"
    from helpers.daemon import cli
    r = cli("ingest", "--db", url, "--status")
    assert r.returncode == 1 and "key changed" in r.stdout, r.stdout + r.stderr
    (keys / "c-b.pub").write_text("not base64!")
    r = cli("ingest", "--db", url, "--keys", str(keys), "--broker", "mqtt://127.0.0.1:1")
    assert r.returncode == 2 and "c-b.pub" in r.stderr and "base64" in r.stderr


OLD_CHAINS_AND_REJECTED = """
CREATE TABLE chains (center TEXT PRIMARY KEY, contiguous_seq BIGINT NOT NULL, head_hash TEXT NOT NULL,
    max_seq BIGINT NOT NULL, broken_at BIGINT, broken_reason TEXT, last_ts TEXT, last_received_at TEXT,
    lag_s DOUBLE PRECISION, duplicates BIGINT NOT NULL DEFAULT 0, resend_requests BIGINT NOT NULL DEFAULT 0);
CREATE TABLE rejected (center TEXT, seq BIGINT, topic TEXT NOT NULL, reason TEXT NOT NULL, payload TEXT NOT NULL,
    received_at TEXT NOT NULL);
INSERT INTO chains (center, contiguous_seq, head_hash, max_seq) VALUES ('c-old', 0, '{genesis}', 0);
INSERT INTO rejected VALUES ('c-old', NULL, 'casegate/c-old/events/x/y', 'payload is not JSON', '{{x', '2026-01-01');
"""


def test_a_database_of_the_previous_release_gets_the_new_columns_on_open(tmp_path):
    db = tmp_path / "old.db"
    c = sqlite3.connect(db)
    c.executescript(OLD_CHAINS_AND_REJECTED.format(genesis="0" * 64))
    c.close()
    ing = make(f"sqlite:///{db}")
    ing._commit([m("casegate/c-old/events/x/y", b"\xff")] + [m(*message(e)) for e in good_chain("c-old", 2)])
    st = ing.store.status()[0]
    assert (st["center"], st["rejected"], st["contiguous_seq"], st["conflicts"]) == ("c-old", 2, 2, 0)
    assert query(f"sqlite:///{db}", "SELECT payload_encoding FROM rejected ORDER BY rowid") == [("utf-8",), ("base64",)]


def test_docs_central_schema_sql_is_the_generated_ddl():
    from pathlib import Path
    from gateway.ingest.schema import HEADER, ddl
    doc = Path(__file__).resolve().parents[2] / "docs" / "central-schema.sql"
    assert doc.read_text() == HEADER + ddl("postgresql"), \
        "stale: python -m gateway.ingest.schema > docs/central-schema.sql"


def test_a_database_outage_is_retried_not_mistaken_for_a_bad_message(tmp_path, postgres):
    """PostgreSQL stops under the writer: the batch is retried until it is back, for
    everyone alike; nothing is split off as a bad message, nothing lost."""
    import secrets
    import threading
    ing = make(postgres.url)
    # And the reverse: a limit error that psycopg files under OperationalError (an index
    # row too large, SQLSTATE 54000) is the data's, to be isolated, not an outage.
    err = None
    try:
        ing.store.conn.execute("INSERT INTO alarms (center, alarm_id, code, state, last_seq, last_ts, data) "
                               "VALUES ('c', %s, 'x', 'raised', 1, 't', '{}')", (secrets.token_hex(5000),))
    except Exception as e:
        err = e
    ing.store.conn.rollback()
    assert err is not None and err.sqlstate.startswith("54") and not ing.store.is_outage(err), err
    a, b = good_chain("c-good-a", 60), good_chain("c-good-b", 60)
    ing._commit([m(*message(e)) for e in a[:20] + b[:20]])
    postgres.stop_only()
    done = threading.Event()
    t = threading.Thread(target=lambda: (ing._commit([m(*message(e)) for e in a[20:] + b[20:]]), done.set()),
                         daemon=True)
    t.start()
    assert not done.wait(2.0), "wrote into a stopped database?"
    postgres.start()
    assert done.wait(60), "the writer did not resume after the database came back"
    for c in ("c-good-a", "c-good-b"):
        assert query(postgres.url, "SELECT COUNT(*) FROM events WHERE center = ?", c) == [(60,)]
    assert query(postgres.url, "SELECT COUNT(*) FROM rejected") == [(0,)]
    assert ing.counts["bisections"] == 0


def test_genuine_events_at_the_edges_of_validation_are_stored(tmp_path):
    """What validation must not refuse: an alarm event without alarm_id (alarm.shelved), a
    long MQTT client id as source, control characters and U+0000 in data (SQLite)."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    ing = make(url)
    drafts = [Draft("alarm.shelved", {"code": "door_open", "scope": "door-1", "until": "2026-12-06T12:00:00.000Z",
                                      "reason": "维修", "by": "o-1"}, "mqtt:duty"),
              Draft("person.registered", {"person": "v-1", "role": "visitor", "name": "访客\t\u0001"},
                    "mqtt:" + "client-" * 100),
              Draft("card.swiped", {"card": "AB\x00CD", "reader": "r", "room": "x", "person": None}, "card-1")]
    prev, evs = "0" * 64, []
    for i, d in enumerate(drafts, 1):
        ev = seal(d, i, "c-a", prev, 1_790_000_000.0 + i)
        prev = ev.hash
        evs.append(ev)
    ing._commit([m(*message(e)) for e in evs])
    assert query(url, "SELECT COUNT(*) FROM rejected") == [(0,)]
    st = ing.store.status()[0]
    assert st["contiguous_seq"] == 3 and st["chain"] == "ok"
