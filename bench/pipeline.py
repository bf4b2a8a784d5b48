"""Pipeline benchmark: casegate's journal+uplink against raw paho, same broker, same run.

    uv run python bench/pipeline.py [--n 20000] [--backlog 1000000] [--latency-s 10]

Prints:
  (a) raw paho QoS1 publish rate (inflight 20, 300-byte payloads, until every PUBACK)
  (b) casegate end-to-end rate: produced -> journaled (synchronous=full) -> PUBACKed
      -> received by a subscriber; and the ratio b/a
  (c) p50/p99 latency (produce -> subscriber) at 1,000 events/s
  (d) drain rate of a backlog journaled while the broker was down
  (e) peak RSS of this process
Every loop is bounded in count and time. Figures, not assertions.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import paho.mqtt.client as mqtt  # noqa: E402

from helpers.brokers import Mosquitto  # noqa: E402
from gateway.config import parse_config  # noqa: E402
from gateway.core import Core  # noqa: E402
from rules.model import Draft  # noqa: E402
from gateway.journal import Journal  # noqa: E402
from gateway.uplink import Uplink  # noqa: E402
from gateway.uplink_process import UplinkProcess  # noqa: E402
from rules.engine import Engine  # noqa: E402

PAYLOAD = "x" * 300
INFLIGHT = 20


class Subscriber:
    """The receiving end, in its own process so it does not share our GIL.

    mosquitto_sub (C) when installed: the subscriber is harness, not gateway, and
    on 2 cores a Python subscriber takes CPU the gateway then lacks (it would
    not run on the gateway's machine in the field). Else bench/subscriber.py."""

    def __init__(self, tmp: Path, port: int, topic: str, n: int, timeout: float = 600):
        self.out = tmp / f"sub-{time.time_ns()}"
        self.n = n
        self.c_client = shutil.which("mosquitto_sub") is not None and not os.environ.get("BENCH_PY_SUB")
        if self.c_client:
            # A retained probe on a second topic arrives as soon as the subscription
            # exists: its line in the output says "ready". -C counts it, hence n + 1.
            probe = f"bench-probe/{time.time_ns()}"
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", probe, "-r",
                            "-q", "1", "-m", "probe"], check=True, timeout=10)
            self.fh = open(self.out, "wb")
            self.proc = subprocess.Popen(
                ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "--nodelay", "-t", topic, "-t", probe,
                 "-C", str(n + 1), "-W", str(int(timeout)), "-F", "%U %p"], stdout=self.fh)
            deadline = time.monotonic() + 10
            while self.out.stat().st_size == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            # The probe stays retained on its own topic: clearing it would be
            # one more message to this subscriber. The bench broker is temporary.
        else:
            self.proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "subscriber.py"), str(port),
                                          topic, str(n), str(self.out), str(timeout)],
                                         stdout=subprocess.PIPE, text=True)
            assert self.proc.stdout.readline().strip() == "ready"

    def result(self, timeout: float = 600) -> dict:
        self.proc.wait(timeout)
        if not self.c_client:
            return json.loads(self.out.read_text())
        self.fh.close()
        seen = {"n": 0, "lat_ms": [], "first": None, "last": None}
        with open(self.out, "rb") as f:
            next(f, None)                                   # the probe
            for line in f:
                ts, _, payload = line.partition(b" ")
                now = float(ts)
                seen["n"] += 1
                seen["first"] = seen["first"] or now
                seen["last"] = now
                if b'"t0"' in payload:
                    seen["lat_ms"].append((now - json.loads(payload)["data"]["t0"]) * 1000)
        return seen


def raw_paho(port: int, n: int) -> float:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    c.max_inflight_messages_set(INFLIGHT)
    c.max_queued_messages_set(0)
    acked = [0]
    done = threading.Event()

    def on_pub(c, u, mid, rc=None, p=None):
        acked[0] += 1
        if acked[0] >= n:
            done.set()
    c.on_publish = on_pub
    c.connect("127.0.0.1", port)
    c.loop_start()
    time.sleep(0.2)
    t0 = time.perf_counter()
    for i in range(n):
        c.publish("bench/raw", PAYLOAD, qos=1)
    done.wait(300)
    dt = time.perf_counter() - t0
    c.loop_stop()
    c.disconnect()
    return acked[0] / dt


def gateway(tmp: Path, port: int, inflight: int = INFLIGHT):
    cfg = parse_config({"center": {"id": "bench"}, "storage": {"dir": str(tmp), "synchronous": "full"},
                        "mqtt": {"port": port, "max_inflight": inflight, "client_id": f"bench-{time.time_ns()}"}})
    j = Journal(cfg.journal_path, "full")
    core = Core(cfg, j, Engine(cfg))
    # The class the daemon uses: the uplink process unless [mqtt] uplink_process = false.
    cls = UplinkProcess if cfg.mqtt.uplink_process and not os.environ.get("BENCH_UPLINK_THREAD") else Uplink
    up = cls(cfg, cfg.journal_path, core.mark_delivered)
    core.add_listener(up.on_committed)
    core.start()
    return cfg, core, up


def wait(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not pred():
        time.sleep(0.01)
    return pred()


def casegate_rate(tmp: Path, port: int, n: int, inflight: int = INFLIGHT) -> float:
    sub = Subscriber(tmp, port, "casegate/bench/events/#", n)
    cfg, core, up = gateway(tmp / f"rate{inflight}", port, inflight)
    up.start()
    wait(lambda: up.connected, 10)
    t0 = time.time()
    for i in range(n):
        core.submit(Draft("tag.status", {"tag": f"{i % 500:08X}", "pad": PAYLOAD[:200]}, "bench"))
    r = sub.result()
    up.stop(0.5)
    core.stop()
    return r["n"] / (r["last"] - t0)


def latency(tmp: Path, port: int, seconds: float, rate: int = 1000) -> tuple[float, float, int]:
    n = int(seconds * rate)
    sub = Subscriber(tmp, port, "casegate/bench/events/#", n, timeout=seconds + 60)
    cfg, core, up = gateway(tmp / "lat", port)
    up.start()
    wait(lambda: up.connected, 10)
    t0 = time.perf_counter()
    for i in range(n):
        core.submit(Draft("tag.status", {"tag": f"{i % 500:08X}", "t0": time.time()}, "bench"))
        delay = t0 + (i + 1) / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    lat = sorted(sub.result()["lat_ms"])
    up.stop(0.5)
    core.stop()
    if not lat:
        return float("nan"), float("nan"), 0
    return lat[len(lat) // 2], lat[max(0, int(len(lat) * 0.99) - 1)], len(lat)


def drain(tmp: Path, broker: Mosquitto, n: int) -> tuple[float, float]:
    broker.stop()
    cfg, core, up = gateway(tmp / "drain", broker.port, inflight=100)
    t0 = time.perf_counter()
    futs = []
    for i in range(n):
        f = core.submit(Draft("tag.status", {"tag": f"{i % 500:08X}", "battery": 50}, "bench"))
        if i % 10000 == 9999:
            futs.append(f)
    for f in futs:
        f.result(600)
    core.submit(Draft("gateway.stopped", {"reason": "fill"})).result(600)
    fill = n / (time.perf_counter() - t0)
    broker.start()
    sub = Subscriber(tmp, broker.port, "casegate/bench/events/#", n + 1, timeout=1800)
    t1 = time.time()
    up.start()
    r = sub.result(1800)
    up.stop(0.5)
    core.stop()
    return fill, r["n"] / (r["last"] - t1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--latency-s", type=float, default=10)
    ap.add_argument("--backlog", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="casegate-bench-"))
    broker = Mosquitto(tmp).start()   # set_tcp_nodelay true, max_queued_messages 0 (see conftest)
    probe = Subscriber(tmp, broker.port, "bench/none", 0, timeout=5)
    print(f"subscriber: {'mosquitto_sub (C)' if probe.c_client else 'bench/subscriber.py (Python paho)'}")
    probe.proc.kill()
    try:
        # Interleaved rounds, medians: on a shared 2-core machine a single run of
        # either side swings by 2x; alternating them exposes both to the same weather.
        raws, e2es, cgs, cg100s = [], [], [], []
        for rnd in range(a.rounds):
            raws.append(raw_paho(broker.port, a.n))
            sub = Subscriber(tmp, broker.port, "bench/raw", a.n)
            t0 = time.time()
            raw_paho(broker.port, a.n)
            r = sub.result()
            e2es.append(r["n"] / (r["last"] - t0))
            cgs.append(casegate_rate(tmp, broker.port, a.n))
            cg100s.append(casegate_rate(tmp, broker.port, a.n, inflight=100))
            print(f"    round {rnd + 1}: raw {raws[-1]:.0f} msg/s, raw to the subscriber {e2es[-1]:.0f} msg/s, "
                  f"casegate {cgs[-1]:.0f} events/s (in-flight 100: {cg100s[-1]:.0f}); ratio {cgs[-1] / raws[-1]:.2f}",
                  flush=True)
        raw, raw_e2e, cg, cg100 = (statistics.median(x) for x in (raws, e2es, cgs, cg100s))
        print(f"(a) raw paho QoS1 publish, inflight {INFLIGHT}, 300 B:   {raw:10.0f} msg/s (median of {a.rounds})")
        print(f"    raw paho with this subscriber receiving: {raw_e2e:.0f} msg/s received (context)")
        print(f"(b) casegate end-to-end (journal full-sync -> PUBACK -> subscriber): {cg:10.0f} events/s")
        print(f"    ratio b/a = {cg / raw:.2f}  (target >= 0.5, goal 0.8); median of per-round ratios "
              f"{statistics.median(c / r for c, r in zip(cgs, raws)):.2f}; against raw paho to the same "
              f"subscriber {cg / raw_e2e:.2f}")
        print(f"    casegate at its default max_inflight 100: {cg100:10.0f} events/s, ratio {cg100 / raw:.2f}")
        # Flush what the earlier phases left dirty: with ext4's ordered data mode an
        # fsync waits for every file's dirty pages, so the latency phase would be
        # charged seconds for the rate phases' journals (measured: p99 1.2 s unflushed).
        os.sync()
        p50, p99, k = latency(tmp, broker.port, a.latency_s)
        print(f"(c) latency at 1,000 events/s over {k} events: p50 {p50:.1f} ms, p99 {p99:.1f} ms (target p99 < 50)")
        if a.backlog:
            fill, rate = drain(tmp, broker, a.backlog)
            print(f"(d) backlog of {a.backlog} events: journaled at {fill:.0f} events/s while offline; "
                  f"drained at {rate:.0f} events/s (target >= 10,000)")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"(e) peak RSS {rss:.0f} MB (journal, core, rules, producer); largest child process "
              f"{kids:.0f} MB (the uplink process, or mosquitto)")
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
