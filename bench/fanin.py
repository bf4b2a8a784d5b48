"""Fan-in: N simulated centers -> mosquitto -> `casegate ingest` -> PostgreSQL.

    uv run python bench/fanin.py [--centers 100] [--rate 2] [--seconds 60] [--burst 300]
    uv run python bench/fanin.py --find-max [--seconds 30]      # doubles N until ingest falls behind

Each center is a light publisher of real envelopes (sealed with the gateway's own
code: valid chains, UUIDv7 ids, ~300-byte events: presence, tag status, card
swipes, door events) at ``--rate`` events/s, and every ``--burst-every`` s one
center sends a burst of ``--burst`` events at once (a shift change, a reconnect
after an outage). Publishers run in their own processes (so they do not share a
CPU budget with ingest's interpreter); ingest is the real `casegate ingest`
process; PostgreSQL is a real server (initdb in a temp dir).

Reported: events/s stored, lag p50/p99 (ingest's received_at - the event's ts,
from the database), the ingest process's CPU (utime+stime from /proc) per 1,000
events/s, and whether it kept up (everything stored within 10 s after the
publishers stopped, lag p99 under 5 s). Figures vary with the machine's load;
run it on an otherwise idle host for numbers to quote.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from helpers.brokers import Mosquitto  # noqa: E402
from helpers.pg import Postgres, missing_reason  # noqa: E402

KINDS = [
    ("presence.entered", lambda i: {"person": f"s-{i % 40}", "tag": f"{0xE3AF0000 + i % 40:08X}", "room": f"room-{i % 12}"}),
    ("presence.left", lambda i: {"person": f"s-{i % 40}", "tag": f"{0xE3AF0000 + i % 40:08X}", "room": f"room-{i % 12}",
                                 "seconds": 61.5}),
    ("tag.status", lambda i: {"tag": f"{0xE3AF0000 + i % 40:08X}", "person": f"s-{i % 40}", "battery": 80,
                              "tamper": False, "sos": False, "heart_rate": 70 + i % 20}),
    ("card.swiped", lambda i: {"card": f"{i:010X}", "reader": "card-int1", "room": "interrogation-1", "person": None}),
    ("door.opened", lambda i: {"door": "door-3", "room": "corridor"}),
]


def publisher(port: int, centers: list[str], rate: float, burst: int, burst_every: float, seconds: float,
              counter, seed: int) -> None:
    """One process publishing for a slice of the centers, each with its own chain."""
    import paho.mqtt.client as mqtt
    from rules.model import GENESIS, Draft, seal, topic_for
    rnd = random.Random(seed)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"fanin-pub-{seed}", protocol=mqtt.MQTTv311)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    acked = [0]
    c.on_publish = lambda *a: acked.__setitem__(0, acked[0] + 1)
    c.connect("127.0.0.1", port)
    c.loop_start()
    while not c.is_connected():      # paho drops what is published before the CONNACK
        time.sleep(0.01)
    state = {cid: [0, GENESIS] for cid in centers}

    def one(cid: str) -> None:
        st = state[cid]
        st[0] += 1
        kind, data = KINDS[rnd.randrange(len(KINDS))]
        ev = seal(Draft(kind, data(st[0]), "zone-stations"), st[0], cid, st[1], time.time())
        st[1] = ev.hash
        c.publish(topic_for(f"casegate/{cid}", ev), ev.to_json(), qos=1)

    t0 = time.monotonic()
    next_burst = t0 + rnd.uniform(0, burst_every)
    total_rate = rate * len(centers)
    sent = bursts = 0
    while time.monotonic() - t0 < seconds:
        due = int((time.monotonic() - t0) * total_rate)
        while sent < due:
            one(centers[sent % len(centers)])
            sent += 1
        if burst and time.monotonic() >= next_burst:
            cid = rnd.choice(centers)
            for _ in range(burst):
                one(cid)
            bursts += burst
            next_burst += burst_every
        time.sleep(0.01)
    with counter.get_lock():
        counter.value += sent + bursts
    deadline = time.monotonic() + 60
    while acked[0] < sent + bursts and time.monotonic() < deadline:   # every PUBACK, then leave
        time.sleep(0.05)
    c.loop_stop()
    c.disconnect()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def run(n: int, rate: float, seconds: float, burst: int, burst_every: float, publishers: int) -> dict:
    import psycopg
    work = Path(tempfile.mkdtemp(prefix="fanin-"))
    broker = Mosquitto(work).start()
    pg = Postgres(work).start()
    ingest = subprocess.Popen([sys.executable, "-m", "gateway.cli", "ingest", "--broker",
                               f"mqtt://127.0.0.1:{broker.port}", "--db", pg.url, "--tail-probe-s", "0"], cwd=ROOT, stdout=open(work / "ingest.log", "w"),
                              stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "connected to" not in (work / "ingest.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.1)        # a new session: what is published before SUBACK is not ours
        time.sleep(1.0)
        centers = [f"c{i:04d}" for i in range(n)]
        counter = mp.Value("q", 0)
        slices = [centers[i::publishers] for i in range(publishers)]
        procs = [mp.Process(target=publisher, args=(broker.port, s, rate, burst, burst_every, seconds, counter, i))
                 for i, s in enumerate(slices) if s]
        cpu0, t0 = cpu_seconds(ingest.pid), time.monotonic()
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        offered = counter.value
        t_pub = time.monotonic() - t0
        deadline = time.monotonic() + 10.0
        with psycopg.connect(pg.url, autocommit=True) as conn:
            stored = 0
            while time.monotonic() < deadline:
                stored = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
                if stored >= offered:
                    break
                time.sleep(0.25)
            t_all = time.monotonic() - t0
            cpu = cpu_seconds(ingest.pid) - cpu0
            p50, p99, first, last = conn.execute(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), percentile_cont(0.99) WITHIN GROUP "
                "(ORDER BY lag), min(received_at), max(received_at) FROM (SELECT EXTRACT(EPOCH FROM received_at - "
                "ts::timestamptz) AS lag, received_at FROM events) s").fetchone()
            broken = conn.execute("SELECT COUNT(*) FROM chains WHERE broken_at IS NOT NULL").fetchone()[0]
        span = max(0.001, (last - first).total_seconds()) if first and last else t_all
        eps = stored / span
        return {"centers": n, "rate_per_center": rate, "offered": offered, "stored": stored,
                "publish_s": round(t_pub, 1), "events_per_s": round(eps), "lag_p50_s": round(p50 or 0, 3),
                "lag_p99_s": round(p99 or 0, 3), "ingest_cpu_s": round(cpu, 1),
                "cpu_per_1000_eps": round(cpu / t_all / (eps / 1000), 3) if eps else None,
                "chains_broken": broken, "load_avg_1m": round(os.getloadavg()[0], 1),
                # What one core of ingest could store at this CPU cost, and as centers at this rate:
                "cpu_bound_eps_per_core": round(1000 / (cpu / t_all / (eps / 1000))) if eps and cpu else None,
                "kept_up": stored >= offered and (p99 or 0) < 5.0}
    finally:
        ingest.send_signal(signal.SIGTERM)
        try:
            ingest.wait(20)
        except subprocess.TimeoutExpired:
            ingest.kill()
        broker.stop()
        pg.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--centers", type=int, default=100)
    ap.add_argument("--rate", type=float, default=2.0, help="events/s per center (a busy center: 1-3)")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--burst", type=int, default=300)
    ap.add_argument("--burst-every", type=float, default=10.0, help="seconds between bursts, per publisher")
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument("--find-max", action="store_true", help="double N from --centers until it falls behind")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    why = missing_reason()
    if why:
        sys.exit(f"fanin: {why}")
    results = []
    n = a.centers
    while True:
        r = run(n, a.rate, a.seconds, a.burst, a.burst_every, a.publishers)
        results.append(r)
        print(json.dumps(r) if a.json else
              f"N={r['centers']:5d}  stored {r['stored']}/{r['offered']}  {r['events_per_s']:6d} ev/s  "
              f"lag p50 {r['lag_p50_s']:.3f} s p99 {r['lag_p99_s']:.3f} s  CPU {r['cpu_per_1000_eps']} s/s per "
              f"1000 ev/s (=> {r['cpu_bound_eps_per_core']} ev/s per core)  load {r['load_avg_1m']}  "
              f"{'kept up' if r['kept_up'] else 'FELL BEHIND'}", flush=True)
        if not a.find_max or not r["kept_up"] or n >= 20000:
            break
        n *= 2
    if a.find_max:
        ok = [r["centers"] for r in results if r["kept_up"]]
        print(f"largest N kept up with: {max(ok) if ok else 'none'} (at {a.rate} events/s per center)")


if __name__ == "__main__":
    main()
