"""Memory during a long broker outage, then the drain.

    uv run python bench/outage_memory.py [--minutes 10] [--rate 1000]

The gateway journals a steady stream of events while its broker is down for
``--minutes``; RSS is sampled every 10 s. Then the broker comes back and the
backlog drains. Memory must stay flat: the backlog lives in the journal, not in
RAM. Figures, not assertions; every loop is bounded in count and time.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from helpers.brokers import Mosquitto  # noqa: E402
from rules.model import Draft  # noqa: E402
from pipeline import gateway, wait  # noqa: E402


def rss_mb(pid: int | str = "self") -> float:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def uplink_rss(up) -> float:
    """The uplink process's RSS (0 when the uplink is a thread of this process)."""
    proc = getattr(up, "process", None)
    return rss_mb(proc.pid) if proc is not None else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--rate", type=int, default=1000)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="casegate-outage-"))
    broker = Mosquitto(tmp)            # not started: the outage
    cfg, core, up = gateway(tmp / "gw", broker.port, inflight=100)
    up.start()
    n = int(a.minutes * 60 * a.rate)
    t0 = time.perf_counter()
    samples = []
    next_sample = 0.0
    for i in range(n):
        # 500 wristbands (a large center), each reporting changes: the state stays
        # the size of the center; only the journal grows.
        core.submit(Draft("tag.status", {"tag": f"{i % 500:08X}", "battery": 50 + i % 7, "tamper": False,
                                         "sos": False, "heart_rate": 60 + i % 40, "person": None}, "bench"))
        elapsed = time.perf_counter() - t0
        if elapsed >= next_sample:
            samples.append((elapsed, rss_mb(), up.backlog, uplink_rss(up)))
            print(f"t={elapsed:6.0f} s  events={i:8d}  backlog={up.backlog:8d}  RSS={samples[-1][1]:6.1f} MB"
                  f"  uplink process RSS={samples[-1][3]:6.1f} MB", flush=True)
            next_sample += 10
        delay = t0 + (i + 1) / a.rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    core.submit(Draft("gateway.stopped", {"reason": "bench"})).result(60)
    rss = [s[1] for s in samples]
    kid = [s[3] for s in samples]
    print(f"outage of {a.minutes} min at {a.rate}/s: {n} events journaled; RSS min {min(rss):.0f} MB, "
          f"max {max(rss):.0f} MB, last {rss[-1]:.0f} MB; uplink process min {min(kid):.0f} MB, "
          f"max {max(kid):.0f} MB")
    broker.start()
    t1 = time.perf_counter()
    wait(lambda: up.backlog == 0, 3600)
    dt = time.perf_counter() - t1
    print(f"broker back: backlog of {n + 1} drained in {dt:.0f} s ({(n + 1) / dt:.0f} events/s); "
          f"RSS {rss_mb():.0f} MB, uplink process {uplink_rss(up):.0f} MB")
    up.stop(0.5)
    core.stop()
    broker.stop()


if __name__ == "__main__":
    main()
