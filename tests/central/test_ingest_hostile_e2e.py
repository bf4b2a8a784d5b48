"""Issue 29 item 4 and issue 25 item 2 end to end: a real mosquitto, `casegate
ingest` as a real process, SQLite and a real PostgreSQL.

* A hostile center publishes every payload of issue 29 between two good
  centers' streams: every good event is stored within 10 s, each bad one is in
  ``rejected`` with its reason, the consumer is alive and still storing, and
  ``--status`` counts the rejects; a center whose chain is broken on every
  second event gets one log line, not hundreds.
* Ingest started after three real gateways published (and again after a
  broker that lost its session) stores every event within 60 s without
  waiting for traffic: a center seen on any topic is asked for what follows.
"""
from __future__ import annotations

import base64
import json

import paho.mqtt.client as mqtt
import pytest

from helpers.daemon import cli
from helpers.hostile import good_chain, hostile, message
from helpers.ingest import IngestProcess, RequestLoad, journal_ids, wait_until
from helpers.ingest import CENTERS, check_database, start_centers, stop_all


def status(db: str) -> dict[str, dict]:
    """What `casegate ingest --status --json` prints, read in this process (polled often)."""
    from gateway.ingest.consumer import status as ingest_status
    return {row["center"]: row for row in ingest_status(db)}


def stored_all(db: str, gateways) -> bool | str:
    st = status(db)
    want = {c: max(journal_ids(g.state_dir)) for c, g in gateways.items()}
    have = {c: st.get(c, {}).get("contiguous_seq") for c in gateways}
    return True if have == want else f"journals {want}, database contiguous {have}"


def rejected_rows(db: str) -> list[tuple[str, str, bytes]]:
    sql = "SELECT topic, reason, payload, payload_encoding FROM rejected"
    if db.startswith("sqlite:///"):
        import sqlite3
        c = sqlite3.connect(db[len("sqlite:///"):])
        rows = c.execute(sql).fetchall()
        c.close()
    else:
        import psycopg
        with psycopg.connect(db) as c:
            rows = c.execute(sql).fetchall()
    return [(t, why, p.encode() if enc == "utf-8" else base64.b64decode(p)) for t, why, p, enc in rows]


class Publisher:
    def __init__(self, port: int):
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hostile-test", protocol=mqtt.MQTTv5)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def send(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'central.db'}"
    return request.getfixturevalue("postgres").url


def test_a_hostile_center_between_two_good_ones(tmp_path, mosquitto, db_url):
    ing = IngestProcess(tmp_path, mosquitto.port, db_url).start()
    pub = Publisher(mosquitto.port)
    try:
        # Subscribed when a retained state is stored (no sleeping on a guess).
        pub.send("casegate/c-good-a/state/gateway", b'{"state":"online"}', retain=True)
        wait_until(lambda: "c-good-a" in status(db_url) or "not yet", 20, "ingest subscribed")
        a, b = good_chain("c-good-a", 80), good_chain("c-good-b", 80)
        bad = hostile()
        # c-broken: every second event from another chain (each one a broken link)
        other = good_chain("c-broken", 200, t0=1_800_000_000.0)
        broken = [e if e.seq % 2 else other[e.seq - 1] for e in good_chain("c-broken", 200)]
        for i in range(60):
            pub.send(*message(a[i]))
            if i < len(bad):
                pub.send(bad[i][1], bad[i][2])
            pub.send(*message(b[i]))
        for e in broken:
            pub.send(*message(e))
        for e in a[60:] + b[60:]:                    # after all of it: still storing
            pub.send(*message(e))
        wait_until(lambda: all(status(db_url).get(c, {}).get("contiguous_seq") == 80 for c in ("c-good-a", "c-good-b"))
                   or status(db_url), 10, "every good event stored within 10 s")
        assert ing.proc.poll() is None, "the consumer exited:\n" + ing.logs()
        pg = not db_url.startswith("sqlite")
        want = [x for x in bad if x[4] == "both" or pg]
        wait_until(lambda: len(rejected_rows(db_url)) >= len(want) or len(rejected_rows(db_url)), 10,
                   "the rejections")
        kept = rejected_rows(db_url)
        for label, topic, payload, reason, _ in want:
            hits = [why for t, why, p in kept if t == topic and p == payload]
            assert hits and reason in hits[0], f"{label}: {hits}"
        st = status(db_url)
        assert st["c-bad"]["rejected"] == sum(1 for x in want if x[1].startswith("casegate/c-bad/"))
        assert st["c-good-a"]["chain"] == st["c-good-b"]["chain"] == "ok"
        assert st["c-broken"]["chain"].startswith("broken at")
        r = cli("ingest", "--db", db_url, "--status")
        assert r.returncode == 1 and "c-bad" in r.stdout and "rejected" in r.stdout
    finally:
        pub.close()
        ing.stop()
    logs = ing.logs()
    assert sum("center c-broken: chain broken" in ln for ln in logs.splitlines()) == 1, logs[-3000:]
    assert "Traceback" not in logs and "exiting" not in logs


def test_ingest_started_after_the_gateways_converges_without_traffic(tmp_path, mosquitto):
    """Three real gateways publish before ingest exists; ingest (tail probe off: 600 s)
    stores everything within 60 s because a center seen on any topic is asked for what
    follows its stored position. Then the broker loses ingest's session while ingest is
    away and more events are journaled: again everything within 60 s."""
    db = f"sqlite:///{tmp_path / 'central.db'}"
    gateways = start_centers(tmp_path, mosquitto.port)
    load = RequestLoad(mosquitto.port, CENTERS, rate=20).start()
    ing = IngestProcess(tmp_path, mosquitto.port, db, "--tail-probe-s", "600")
    try:
        wait_until(lambda: all(len(journal_ids(g.state_dir)) > 40 for g in gateways.values()) or "not yet", 60,
                   "the gateways journaled events")
        load.stop()
        ing.start()
        wait_until(lambda: stored_all(db, gateways), 60, "every event, ingest started last")
        ing.stop()
        load = RequestLoad(mosquitto.port, CENTERS, rate=20).start()
        wait_until(lambda: all(len(journal_ids(g.state_dir)) > 80 for g in gateways.values()) or "not yet", 60,
                   "more events while ingest is away")
        load.stop()
        connects = {c: g.status()["uplink"]["connects"] for c, g in gateways.items()}
        mosquitto.stop()                           # no persistence: ingest's session and queue are gone
        mosquitto.start()
        # Ingest starts once the gateways are back on the new broker (subscribed to their
        # requests): its start-up probe is answered, not lost to a broker nobody is on yet
        # (then only a gateway's next event, up to a minute later, would show the gap).
        wait_until(lambda: all((u := g.status()["uplink"])["connected"] and u["connects"] > connects[c]
                               for c, g in gateways.items()) or "not yet", 60, "the gateways reconnected")
        ing.start()
        wait_until(lambda: stored_all(db, gateways), 60, "every event after the session was lost")
        stop_all(gateways)                         # gateway.stopped: the last event of each journal
        wait_until(lambda: stored_all(db, gateways), 30, "the gateway.stopped events")
    finally:
        load.stop()
        ing.stop()
        stop_all(gateways)
    check_database(db, gateways)
    # The convergence came from the first-sight probe, not from new traffic or the tail probe.
    assert "re-sending seq 1.." in ing.logs()


def test_forged_events_that_pre_empt_seqs_give_way_to_the_gateways(tmp_path, mosquitto):
    """Issue 30 item 7 end to end: a real gateway journals events slowly; a hostile client
    (a child process) answers each of its first five events with a forged, well-hashed
    event at the next seq, ahead of the gateway's own. Ingest keeps what links into the
    chain and asks the gateway to arbitrate: at the end the database is the journal,
    every forged event is in rejected, and the chain is ok."""
    import subprocess
    import sys
    from helpers.daemon import ROOT
    db = f"sqlite:///{tmp_path / 'central.db'}"
    gateways = start_centers(tmp_path, mosquitto.port, ["c-forged"])
    ing = IngestProcess(tmp_path, mosquitto.port, db).start()
    forger = load = None
    try:
        # Ingest subscribed (it stored the retained state) before the first forgery.
        wait_until(lambda: "c-forged" in status(db) or "not yet", 30, "ingest has seen the center")
        forger = subprocess.Popen([sys.executable, str(ROOT / "tests" / "helpers" / "hostile_forger.py"),
                                   str(mosquitto.port), "c-forged", "5"], stdout=subprocess.PIPE, text=True)
        assert forger.stdout.readline().strip() == "ready"
        load = RequestLoad(mosquitto.port, ["c-forged"], rate=2).start()
        forged = [forger.stdout.readline().split() for _ in range(5)]
        assert all(f and f[0] == "forged" for f in forged), forged
        last = max(int(f[1]) for f in forged)
        forged_ids = [f[2] for f in forged]
        # The gateway's own events past the last forged seq settle every conflict.
        wait_until(lambda: max(journal_ids(gateways["c-forged"].state_dir)) >= last + 2 or "not yet", 30,
                   "the gateway went on past the forged seqs")
        load.stop()
        gateways["c-forged"].stop()
        wait_until(lambda: stored_all(db, gateways), 60, "the journal in the database")
    finally:
        if load:
            load.stop()
        if forger:
            forger.kill()
            forger.wait(10)
        ing.stop()
        for g in gateways.values():
            g.stop()
    check_database(db, gateways)                     # every seq: the journal's id, hashes, links
    rejected_ids = {json.loads(p)["id"] for t, why, p in rejected_rows(db)}
    assert set(forged_ids) <= rejected_ids, (forged_ids, rejected_ids)
    st = status(db)["c-forged"]
    assert st["chain"] == "ok" and st["conflicts"] >= 5, st
