"""casegate ingest's bookkeeping on real envelopes (sealed exactly as the gateway
seals them) into a real SQLite database: order, duplicates, gaps, broken chains,
restart from the database. The MQTT side is in test_ingest_e2e.py."""
from __future__ import annotations

import json
import sqlite3

import pytest

from rules.model import GENESIS, Draft, seal, topic_for
from gateway.ingest.consumer import Ingest, IngestOptions


def chain(center: str, n: int, start_ts: float = 1_790_000_000.0) -> list[dict]:
    out, prev = [], GENESIS
    for i in range(1, n + 1):
        kind = ("alarm.raised", {"alarm_id": f"sos:{i:016x}", "code": "sos", "severity": "critical",
                                 "room": "r1", "persons": [], "since": "2026-11-28T01:00:00.000Z",
                                 "message": {"zh": "求救", "en": "SOS"}, "details": {}, "legal_basis": [],
                                 "snapshot": None}) if i % 7 == 0 else \
            ("card.swiped", {"card": f"{i:010X}", "reader": "r", "room": "x", "person": None})
        ev = seal(Draft(kind[0], kind[1], "card-1"), i, center, prev, start_ts + i)
        prev = ev.hash
        out.append(ev)
    return out


def msg(ev, payload: str | None = None) -> tuple:
    return (topic_for(f"casegate/{ev.center}", ev), (payload or ev.to_json()).encode(), 0, 0, False)


def make(db) -> Ingest:
    return Ingest(IngestOptions(db=f"sqlite:///{db}", reorder_wait_s=0.0, tail_probe_s=0))


def feed(ing: Ingest, msgs: list[tuple]) -> None:
    ing.store.write(ing.process(msgs))


def rows(db, sql, *args):
    c = sqlite3.connect(db)
    try:
        return c.execute(sql, args).fetchall()
    finally:
        c.close()


def test_out_of_order_and_duplicates_store_each_event_once(tmp_path):
    db = tmp_path / "c.db"
    evs = chain("c-a", 50)
    ing = make(db)
    order = evs[20:] + evs[:20] + evs[10:30]        # alarms first, a late range, then re-sends
    for i in range(0, len(order), 7):
        feed(ing, [msg(e) for e in order[i:i + 7]])
    assert rows(db, "SELECT COUNT(*), COUNT(DISTINCT seq), MIN(seq), MAX(seq) FROM events") == [(50, 50, 1, 50)]
    assert rows(db, "SELECT COUNT(*) FROM events WHERE NOT chain_ok") == [(0,)]
    st = ing.store.status()[0]
    assert st["chain"] == "ok" and st["contiguous_seq"] == 50 and st["gaps_open"] == 0
    assert st["duplicates"] == 20
    # Alarms: one row per alarm id, from the alarm events.
    assert rows(db, "SELECT COUNT(*) FROM alarms") == [(7,)]


def test_gaps_are_reported_and_requested(tmp_path, monkeypatch):
    db = tmp_path / "c.db"
    evs = chain("c-a", 30)
    ing = make(db)
    asked = []
    monkeypatch.setattr(ing, "request_resend", lambda c, lo, hi: asked.append((c, lo, hi)))
    feed(ing, [msg(e) for e in evs[:5] + evs[9:20] + evs[24:]])
    st = ing.store.status()[0]
    assert (st["contiguous_seq"], st["gaps_open"], st["missing"], st["last_seq"]) == (5, 2, 8, 30)
    ing.repair_tick(1000.0)
    assert asked == [("c-a", 6, 9), ("c-a", 21, 24)]
    ing.repair_tick(1000.5)          # backoff: not again at once
    assert len(asked) == 2
    feed(ing, [msg(e) for e in evs[5:9] + evs[20:24]])
    assert ing.store.status()[0]["contiguous_seq"] == 30


def test_a_tampered_event_is_stored_and_the_chain_reported_broken(tmp_path):
    db = tmp_path / "c.db"
    evs = chain("c-a", 10)
    env = json.loads(evs[5].to_json())
    env["data"]["card"] = "FFFFFFFFFF"                 # changed after sealing
    ing = make(db)
    feed(ing, [msg(e) for e in evs[:5]] + [msg(evs[5], json.dumps(env))] + [msg(e) for e in evs[6:]])
    assert rows(db, "SELECT seq FROM events WHERE NOT chain_ok") == [(6,)]
    assert rows(db, "SELECT data FROM events WHERE seq = 6")[0][0].count("FFFFFFFFFF") == 1
    st = ing.store.status()[0]
    assert st["chain"] == "broken at 6" and "hash" in st["broken_reason"]
    # The technician's view says so too, and the exit code makes monitoring notice.
    from helpers.daemon import cli
    r = cli("ingest", "--db", f"sqlite:///{db}", "--status")
    assert r.returncode == 1 and "broken at 6" in r.stdout and "c-a" in r.stdout, r.stdout + r.stderr


def test_a_missing_link_is_found_even_when_the_events_came_in_reverse(tmp_path):
    db = tmp_path / "c.db"
    a = chain("c-a", 10)
    b = chain("c-a", 10, start_ts=1_800_000_000.0)      # another chain: seq 6 does not link to 5
    ing = make(db)
    mixed = a[:5] + b[5:]
    feed(ing, [msg(e) for e in reversed(mixed)])
    st = ing.store.status()[0]
    assert st["chain"] == "broken at 6" and "prev of seq 6" in st["broken_reason"]
    assert rows(db, "SELECT seq FROM events WHERE NOT chain_ok") == [(6,)]


def test_same_seq_with_another_id_is_rejected_not_stored(tmp_path):
    """The stored seq 3 links into the verified chain (seq 4's prev is its hash); the
    newcomer does not: it is rejected, counted as a conflict, and the chain stays ok."""
    db = tmp_path / "c.db"
    a = chain("c-a", 5)
    b = chain("c-a", 5, start_ts=1_800_000_000.0)
    ing = make(db)
    feed(ing, [msg(e) for e in a])
    feed(ing, [msg(b[2])])
    assert rows(db, "SELECT id FROM events WHERE seq = 3") == [(a[2].id,)]
    seq, reason = rows(db, "SELECT seq, reason FROM rejected")[0]
    assert seq == 3 and "does not link" in reason
    st = ing.store.status()[0]
    assert st["chain"] == "ok" and st["conflicts"] == 1 and st["rejected"] == 1


def test_bad_payloads_are_counted_drops(tmp_path):
    db = tmp_path / "c.db"
    ev = chain("c-a", 1)[0]
    ing = make(db)
    other = json.loads(ev.to_json())
    other["center"] = "c-b"
    feed(ing, [("casegate/c-a/events/card/swiped", b"\xff{not json", 0, 0, False),
               ("casegate/c-a/events/card/swiped", b'{"seq": "1"}', 0, 0, False),
               ("casegate/c-a/events/card/swiped", json.dumps(other).encode(), 0, 0, False)])
    assert [r[0] for r in rows(db, "SELECT reason FROM rejected ORDER BY rowid")] == [
        "payload is not UTF-8 (byte 0)", "id: missing or not a str", "envelope center 'c-b' is not the topic's center 'c-a'"]
    assert rows(db, "SELECT COUNT(*) FROM events") == [(0,)]
    # The raw bytes as they came: base64 when they are not UTF-8 text.
    assert rows(db, "SELECT payload, payload_encoding, payload_bytes FROM rejected ORDER BY rowid")[0] == (
        "/3tub3QganNvbg==", "base64", 10)


def test_restart_resumes_from_the_database(tmp_path):
    db = tmp_path / "c.db"
    evs = chain("c-a", 40)
    ing = make(db)
    feed(ing, [msg(e) for e in evs[:10] + evs[15:20]])
    ing.store.close()
    ing2 = make(db)                                   # a new process: only the database remembers
    ch = ing2.chains["c-a"]
    assert ch.row.contiguous_seq == 10 and sorted(ch.pending) == list(range(16, 21))
    feed(ing2, [msg(e) for e in evs])                  # everything again, e.g. a long re-send
    st = ing2.store.status()[0]
    assert st["chain"] == "ok" and st["contiguous_seq"] == 40 and st["events"] == 40
    assert st["duplicates"] == 15


def test_state_topics_are_kept_latest_per_center(tmp_path):
    db = tmp_path / "c.db"
    ing = make(db)
    feed(ing, [("casegate/c-a/state/gateway", b'{"state":"online"}', 0, 0, True),
               ("casegate/c-a/state/devices/cam-1", b'{"state":"offline"}', 0, 0, True),
               ("casegate/c-a/state/gateway", b'{"state":"offline"}', 0, 0, False)])
    assert sorted(rows(db, "SELECT topic, payload FROM state")) == [
        ("devices/cam-1", '{"state":"offline"}'), ("gateway", '{"state":"offline"}')]


@pytest.mark.parametrize("url", ["mysql://x/y", "sqlite://"])
def test_bad_db_urls_say_what_to_use(url):
    from gateway.ingest.store import Store, StoreError
    with pytest.raises(StoreError, match="sqlite:///"):
        Store.open(url)


def test_share_group_members_fill_each_others_gaps_from_the_database(tmp_path, monkeypatch):
    """--share: two instances get alternate messages of one center; neither asks the
    gateway for what the other stored, and the verified position reaches the end."""
    db = tmp_path / "c.db"
    evs = chain("c-a", 40)
    a, b = (Ingest(IngestOptions(db=f"sqlite:///{db}", share="g", reorder_wait_s=0.0, tail_probe_s=0))
            for _ in range(2))
    asked = []
    for ing in (a, b):
        monkeypatch.setattr(ing, "request_resend", lambda c, lo, hi: asked.append((c, lo, hi)))
    feed(a, [msg(e) for e in evs[0::2]])
    feed(b, [msg(e) for e in evs[1::2]])
    for ing in (a, b):
        ing.repair_tick(1000.0)
        feed(ing, [])                         # the chain row it moved
    assert asked == []
    assert a.chains["c-a"].row.contiguous_seq == 40 and b.chains["c-a"].row.contiguous_seq == 40
    st = a.store.status()[0]
    assert st["chain"] == "ok" and st["contiguous_seq"] == 40 and st["events"] == 40


def test_postgresql_restart_mid_stream_loses_nothing(tmp_path, postgres):
    """The database goes away between two batches: ingest waits, reconnects and writes the
    batch it holds (memory already counted it), then goes on; nothing lost, nothing twice."""
    import threading
    import psycopg
    evs = chain("c-pg", 60)
    ing = Ingest(IngestOptions(db=postgres.url, reorder_wait_s=0.0, tail_probe_s=0))
    ing.store.write(ing.process([msg(e) for e in evs[:20]]))
    postgres.stop_only()
    done = threading.Event()

    def writer():
        batch = ing.process([msg(e) for e in evs[20:40]])
        ing._with_db(lambda: ing.store.write(batch), "write")
        ing._with_db(lambda: ing.store.write(ing.process([msg(e) for e in evs[30:]])), "write")
        done.set()
    t = threading.Thread(target=writer, daemon=True)
    t.start()
    assert not done.wait(2.0), "wrote into a stopped database?"
    postgres.start()
    assert done.wait(60), "ingest did not resume after the database came back"
    with psycopg.connect(postgres.url) as conn:
        n, distinct, ok = conn.execute("SELECT COUNT(*), COUNT(DISTINCT seq), bool_and(chain_ok) FROM events "
                                       "WHERE center = 'c-pg'").fetchone()
        data = conn.execute("SELECT data->>'card' FROM events WHERE center = 'c-pg' AND seq = 1").fetchone()[0]
    assert (n, distinct, ok) == (60, 60, True)
    assert data == evs[0].data["card"]                       # jsonb, queryable
    st = ing.store.status()[0]
    assert st["chain"] == "ok" and st["contiguous_seq"] == 60 and st["duplicates"] == 10
