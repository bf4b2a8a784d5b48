"""Many centers into one database (issue 17 item 4): real gateways (`casegate run`)
-> real mosquitto -> `casegate ingest` (a real process) -> a real PostgreSQL.

The consumer is SIGKILLed mid-stream and restarted; later the broker restarts
without persistence while the consumer is away, wiping its session and every
message queued for it (lost on purpose: the gateways already have their
PUBACKs). At the end the database must hold every journaled event of every
center exactly once, with chains that verify from the stored columns alone."""
from __future__ import annotations

import time

from helpers.daemon import DaemonProcess
from helpers.ingest import IngestProcess, RequestLoad, journal_ids, wait_until
from helpers.ingest import CENTERS, check_database, db_status, ingest_status, last_seqs, start_centers, stop_all
from helpers.ingest import wait_journaled, wait_stored_up_to


def everything_stored(db: str, gateways: dict[str, DaemonProcess]):
    st = db_status(db)
    want = {c: max(journal_ids(g.state_dir)) for c, g in gateways.items()}
    have = {c: st.get(c, {}).get("contiguous_seq") for c in gateways}
    return True if have == want else f"journals {want}, database contiguous {have}"


def test_three_centers_into_postgresql_through_consumer_kill_and_session_wipe(tmp_path, mosquitto, postgres):
    gateways = start_centers(tmp_path, mosquitto.port)
    ing = IngestProcess(tmp_path, mosquitto.port, postgres.url).start()
    load = RequestLoad(mosquitto.port, CENTERS, rate=15).start()
    try:
        wait_until(lambda: all(v["events"] > 20 for v in db_status(postgres.url).values())
                   and len(db_status(postgres.url)) == 3 or "not yet", 60, "first events stored")
        ing.kill9()                                   # mid-stream: the broker queues for its session
        wait_journaled(gateways, 20, "events journaled while the consumer is dead")
        ing.start()
        wait_stored_up_to(postgres.url, last_seqs(gateways), "the restarted consumer got its session's queue")
        ing.stop()
        # While the consumer is away: a broker restart without persistence wipes its
        # session and queue. The gateways reconnect and go on; what was queued is gone.
        wait_journaled(gateways, 15, "events queued for the consumer's session")
        connects = {c: g.status()["uplink"]["connects"] for c, g in gateways.items()}
        mosquitto.stop()
        mosquitto.start()
        wait_until(lambda: all((u := g.status()["uplink"])["connected"] and u["connects"] > connects[c]
                               for c, g in gateways.items()) or "not yet", 60, "the gateways reconnected")
        wait_journaled(gateways, 15, "events journaled after the broker restart, before the consumer is back")
        ing.start()
        wait_stored_up_to(postgres.url, last_seqs(gateways), "live events reach the consumer again")
        load.stop()
        wait_until(lambda: everything_stored(postgres.url, gateways), 120, "every event of every center")
        stop_all(gateways)                            # gateway.stopped is the last event of each
        wait_until(lambda: everything_stored(postgres.url, gateways), 60, "the gateway.stopped events")
    finally:
        load.stop()
        ing.stop()
        stop_all(gateways)
    counts = check_database(postgres.url, gateways)
    assert all(n > 50 for n in counts.values()), counts
    logs = ing.logs()
    assert "events/resend" in logs, "no gap was repaired: the test lost nothing on purpose"
    assert "session resumed" in logs or "session new" in logs


def bridge_conf(central_port: int) -> str:
    """A center broker bridged to the central broker, as deployed (mosquitto 2.0, MQTT 3.1.1 bridge)."""
    return (f"connection central\naddress 127.0.0.1:{central_port}\ncleansession false\n"
            "clientid bridge-c-west\nrestart_timeout 1\n"
            "topic casegate/+/events/# out 1\ntopic casegate/+/alarms/# out 1\n"
            "topic casegate/+/state/# out 1\ntopic casegate/+/response/# out 1\n"
            "topic casegate-ingest/# out 1\n"
            "topic casegate/+/request/# in 1\n")


def test_bridge_restarts_under_load_gaps_repaired_nothing_duplicated(tmp_path):
    from helpers.brokers import Mosquitto, free_port
    (tmp_path / "central").mkdir()
    (tmp_path / "center").mkdir()
    central = Mosquitto(tmp_path / "central").start()
    center = Mosquitto(tmp_path / "center", port=free_port(), extra_conf=bridge_conf(central.port)).start()
    db = f"sqlite:///{tmp_path / 'central.db'}"
    # the quiet-tail probe held back (30 s): the lost events are to be found as a gap, by the
    # events after them, not asked for by a probe before those arrive (seen in CI under load)
    ing = IngestProcess(tmp_path, central.port, db, "--tail-probe-s", "30").start()
    time.sleep(2.0)                                   # subscribed before the first event
    gateways = start_centers(tmp_path, center.port, ["c-west"])
    load = RequestLoad(center.port, ["c-west"], rate=40).start()
    try:
        wait_until(lambda: ingest_status(db).get("c-west", {}).get("events", 0) > 30 or "not yet", 60,
                   "events across the bridge")
        for broker in (center, central):              # each end of the bridge restarts under load
            broker.stop()
            time.sleep(1.0)
            broker.start()
            time.sleep(3.0)
        # What a mosquitto bridge loses: the central end is away, the center broker
        # PUBACKs the gateway and queues for the bridge in memory, then restarts.
        central.stop()
        # lost for sure: events the center broker PUBACKed (and so queued for the bridge)
        # after the central end went away; a fixed 2 s saw none under a loaded CI machine
        acked = {c: g.status()["uplink"]["delivered"] for c, g in gateways.items()}
        wait_until(lambda: all(g.status()["uplink"]["delivered"] >= acked[c] + 20 for c, g in gateways.items())
                   or {c: g.status()["uplink"]["delivered"] for c, g in gateways.items()}, 60,
                   "events PUBACKed by the center broker while the central one is down")
        center.stop()
        center.start()
        central.start()
        acked = {c: g.status()["uplink"]["delivered"] for c, g in gateways.items()}
        wait_until(lambda: all(g.status()["uplink"]["delivered"] >= acked[c] + 20 for c, g in gateways.items())
                   or "not yet", 60, "events after the lost ones, through the restarted center broker")
        load.stop()
        wait_until(lambda: everything_stored(db, gateways), 120, "every event across the bridge")
        for g in gateways.values():
            g.stop()
        wait_until(lambda: everything_stored(db, gateways), 60, "gateway.stopped")
    finally:
        load.stop()
        ing.stop()
        for g in gateways.values():
            g.stop()
        center.stop()
        central.stop()
    counts = check_database(db, gateways)
    import sqlite3
    conn = sqlite3.connect(tmp_path / "central.db")
    total, ids = conn.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM events").fetchone()
    assert total == ids == counts["c-west"] > 100
    st = ingest_status(db)["c-west"]
    gaps = [ln for ln in ing.logs().splitlines() if "gap(s) from seq" in ln]
    assert gaps, f"the bridge lost nothing: the test did not exercise gap repair ({st})"
