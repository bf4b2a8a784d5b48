"""Helpers for the central tests: `casegate ingest` as a real process, a request
load that makes real daemons journal events, and the end-state checks."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from helpers.contract import problems
from helpers.daemon import ROOT, DaemonProcess, cli, write_config

from rules.model import GENESIS, canonical, chain_hash


class IngestProcess:
    def __init__(self, workdir: Path, broker_port: int, db: str, *extra: str):
        self.workdir, self.port, self.db, self.extra = workdir, broker_port, db, extra
        self.proc: subprocess.Popen | None = None
        self.n = 0

    def start(self) -> "IngestProcess":
        self.n += 1
        self.log_path = self.workdir / f"ingest-{self.n}.log"
        e = dict(os.environ)
        e.pop("NOTIFY_SOCKET", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "ingest", "--broker", f"mqtt://127.0.0.1:{self.port}",
             "--db", self.db, "--reorder-wait-s", "0.5", "--tail-probe-s", "2", *self.extra],
            stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT, cwd=ROOT, env=e)
        return self

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def logs(self) -> str:
        return "\n".join((self.workdir / f"ingest-{i}.log").read_text() for i in range(1, self.n + 1)
                         if (self.workdir / f"ingest-{i}.log").exists())


class RequestLoad:
    """Registers persons at each center over MQTT (each one a journaled event) at
    ``rate`` requests/s per center, until stopped; reconnects across outages."""

    def __init__(self, port: int, centers: list[str], rate: float = 20.0):
        self.centers, self.rate = centers, rate
        self.stop_event = threading.Event()
        self.sent = 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"load-{os.getpid()}",
                                  protocol=mqtt.MQTTv5)
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "RequestLoad":
        self.thread.start()
        return self

    def _run(self) -> None:
        i = 0
        t0 = time.monotonic()
        while not self.stop_event.is_set():
            for c in self.centers:
                body = {"request_id": f"r-{c}-{i}", "person": f"p{i}", "role": "visitor", "name": f"访客{i}"}
                if self.client.is_connected():
                    self.client.publish(f"casegate/{c}/request/person/register", json.dumps(body), qos=1)
                    self.sent += 1
            i += 1
            delay = t0 + i / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(5)
        self.client.loop_stop()
        self.client.disconnect()


def journal_ids(state_dir: Path) -> dict[int, str]:
    c = sqlite3.connect(f"file:{state_dir / 'journal.db'}?mode=ro", uri=True)
    try:
        return dict(c.execute("SELECT seq, id FROM events"))
    finally:
        c.close()


def db_rows(db_url: str, center: str) -> list[dict]:
    """Every stored event of a center as an envelope, from the database alone."""
    sql = "SELECT seq, id, ts, center, type, source, data, prev, hash, chain_ok FROM events WHERE center = {p} ORDER BY seq"
    if db_url.startswith("sqlite:///"):
        conn = sqlite3.connect(db_url[len("sqlite:///"):])
        rows = conn.execute(sql.format(p="?"), (center,)).fetchall()
        conn.close()
    else:
        import psycopg
        with psycopg.connect(db_url) as conn:
            rows = conn.execute(sql.format(p="%s"), (center,)).fetchall()
    out = []
    for seq, id_, ts, ctr, typ, src, data, prev, h, ok in rows:
        out.append({"seq": seq, "id": id_, "ts": ts, "center": ctr, "type": typ, "source": src,
                    "data": json.loads(data) if isinstance(data, str) else data, "prev": prev, "hash": h,
                    "_ok": bool(ok)})
    return out


def verify_rows(rows: list[dict]) -> None:
    """Seq 1..n each once, every hash re-computed from the stored columns, every link."""
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1)), "seqs not contiguous from 1"
    prev = GENESIS
    for r in rows:
        env = {k: v for k, v in r.items() if not k.startswith("_")}
        assert env["prev"] == prev, f"seq {r['seq']}: link broken"
        assert chain_hash(prev, canonical(env)) == env["hash"], f"seq {r['seq']}: hash"
        assert r["_ok"], f"seq {r['seq']} stored as not verified"
        prev = env["hash"]


def wait_until(pred, timeout: float, what: str, every: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last is True:
            return
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}: {last}")


# ---- gateways feeding one ingest (tests/central end to end) -------------------------------------


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


def stop_all(gateways: dict[str, DaemonProcess]) -> None:
    """Stop every gateway at once (each one's SIGTERM drain runs in parallel)."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(len(gateways) or 1) as ex:
        list(ex.map(lambda g: g.stop(), gateways.values()))


def last_seqs(gateways: dict[str, DaemonProcess]) -> dict[str, int]:
    """Each gateway's last journaled seq."""
    return {c: max(journal_ids(g.state_dir), default=0) for c, g in gateways.items()}


def wait_journaled(gateways: dict[str, DaemonProcess], n: int, what: str, timeout: float = 60) -> None:
    """Until every gateway has journaled ``n`` more events than now (the request load goes on)."""
    base = last_seqs(gateways)
    wait_until(lambda: all(s >= base[c] + n for c, s in last_seqs(gateways).items()) or last_seqs(gateways),
               timeout, what)


def db_status(db: str) -> dict[str, dict]:
    """What `casegate ingest --status --json` prints, read in this process (cheap to poll)."""
    from gateway.ingest.consumer import status
    return {row["center"]: row for row in status(db)}


def wait_stored_up_to(db: str, seqs: dict[str, int], what: str, timeout: float = 60) -> None:
    """Until ingest has received (stored, gaps aside) each center's events up to ``seqs``."""
    wait_until(lambda: all((db_status(db).get(c) or {}).get("last_seq", 0) >= s for c, s in seqs.items())
               or db_status(db), timeout, what)


def topic_of(env: dict) -> str:
    if env["type"].startswith("alarm."):
        return f"casegate/{env['center']}/alarms/{env['data'].get('code')}"
    return f"casegate/{env['center']}/events/{env['type'].replace('.', '/')}"


def ingest_status(db: str) -> dict[str, dict]:
    r = cli("ingest", "--db", db, "--status", "--json")
    assert r.returncode in (0, 1), r.stderr
    assert r.stdout.strip(), (r.returncode, r.stderr)
    return {row["center"]: row for row in json.loads(r.stdout)}


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
