"""Many centers into one database (issue 17 item 4): real gateways (`casegate run`)
-> real mosquitto -> `casegate ingest` (a real process) -> a real PostgreSQL.

The consumer is SIGKILLed mid-stream and restarted; later the broker restarts
without persistence while the consumer is away, wiping its session and every
message queued for it (lost on purpose: the gateways already have their
PUBACKs). At the end the database must hold every journaled event of every
center exactly once, with chains that verify from the stored columns alone."""
from __future__ import annotations

import json
import time

from contract_util import problems
from daemon_util import DaemonProcess, cli, write_config
from ingest_util import IngestProcess, RequestLoad, db_rows, journal_ids, verify_rows, wait_until

CENTERS = ["c-north", "c-east", "c-south"]


def start_centers(tmp_path, port, centers=CENTERS) -> dict[str, DaemonProcess]:
    out = {}
    for c in centers:
        d = tmp_path / c
        d.mkdir()
        out[c] = DaemonProcess(write_config(d, port, center=c)).start(wait=False)
    for d in out.values():
        d.wait_ready(60)
    return out


def topic_of(env: dict) -> str:
    if env["type"].startswith("alarm."):
        return f"casegate/{env['center']}/alarms/{env['data'].get('code')}"
    return f"casegate/{env['center']}/events/{env['type'].replace('.', '/')}"


def ingest_status(db: str) -> dict[str, dict]:
    r = cli("ingest", "--db", db, "--status", "--json")
    assert r.returncode in (0, 1), r.stderr
    return {row["center"]: row for row in json.loads(r.stdout)}


def everything_stored(db: str, gateways: dict[str, DaemonProcess]):
    st = ingest_status(db)
    want = {c: max(journal_ids(g.state_dir)) for c, g in gateways.items()}
    have = {c: st.get(c, {}).get("contiguous_seq") for c in gateways}
    return True if have == want else f"journals {want}, database contiguous {have}"


def check_database(db: str, gateways: dict[str, DaemonProcess]) -> dict[str, int]:
    counts = {}
    for c, g in gateways.items():
        rows = db_rows(db, c)
        verify_rows(rows)
        # ... and every one of them, as published, matches the generated contract
        bad = [p for r in rows for p in problems(topic_of(r), {k: v for k, v in r.items() if k[0] != "_"})]
        assert bad == [], bad[:5]
        journal = journal_ids(g.state_dir)
        assert {r["seq"]: r["id"] for r in rows} == journal, f"{c}: database differs from the journal"
        counts[c] = len(rows)
    st = ingest_status(db)
    assert all(st[c]["chain"] == "ok" and st[c]["gaps_open"] == 0 for c in gateways), st
    return counts


def test_three_centers_into_postgresql_through_consumer_kill_and_session_wipe(tmp_path, mosquitto, postgres):
    gateways = start_centers(tmp_path, mosquitto.port)
    ing = IngestProcess(tmp_path, mosquitto.port, postgres.url).start()
    load = RequestLoad(mosquitto.port, CENTERS, rate=15).start()
    try:
        wait_until(lambda: all(v["events"] > 20 for v in ingest_status(postgres.url).values())
                   and len(ingest_status(postgres.url)) == 3 or "not yet", 60, "first events stored")
        ing.kill9()                                   # mid-stream: the broker queues for its session
        time.sleep(2)
        ing.start()
        time.sleep(3)
        ing.stop()
        # While the consumer is away: a broker restart without persistence wipes its
        # session and queue. The gateways reconnect and go on; what was queued is gone.
        time.sleep(1.5)
        mosquitto.stop()
        mosquitto.start()
        time.sleep(2)
        ing.start()
        time.sleep(4)
        load.stop()
        wait_until(lambda: everything_stored(postgres.url, gateways), 120, "every event of every center")
        for g in gateways.values():
            g.stop()                                  # gateway.stopped is the last event of each
        wait_until(lambda: everything_stored(postgres.url, gateways), 60, "the gateway.stopped events")
    finally:
        load.stop()
        ing.stop()
        for g in gateways.values():
            g.stop()
    counts = check_database(postgres.url, gateways)
    assert all(n > 50 for n in counts.values()), counts
    logs = ing.logs()
    assert "events/resend" in logs, "no gap was repaired: the test lost nothing on purpose"
    assert "session resumed" in logs or "session new" in logs
