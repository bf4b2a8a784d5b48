"""Base-station port under a connection flood (a script, not a test): prints figures.

    uv run python bench/station_flood.py [--connections 5000] [--rate 0] [--same-ip]

A flood process opens ``--connections`` TCP connections to a ZoneReaderDriver in this
process, each sending half a register frame and going silent (slowloris; ``--rate`` per
second, 0 = as fast as it can); half-way through, a real station simulator (a second
process) logs in and reports a tag. Prints: connections/s the flood achieved, the driver
process's CPU per connection and in total, the peak number of connections the driver
held, how long the station took to log in, and the flood counters.
"""
from __future__ import annotations

import argparse
import logging
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from drivers.base import PrintContext  # noqa: E402
from drivers.zone_reader.driver import ZoneReaderDriver  # noqa: E402
from gateway.config import ZoneReaderConfig  # noqa: E402

ST = "861694034205896"

FLOOD = r"""
import socket, sys, time
sys.path.insert(0, {root!r})
from drivers.zone_reader import protocol as P
port, n, rate, src = {port}, {n}, {rate}, {src!r}
half = P.encode_frame(P.CMD_REGISTER, 1, {st!r}, P.register_content(1, 0))[:15]
socks, failed = [], 0
t0 = time.monotonic()
for i in range(n):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2, source_address=(src, 0))
        s.sendall(half)
        socks.append(s)
    except OSError:
        failed += 1
    if len(socks) > 2000:
        socks.pop(0).close()
    if i == n // 2:                      # the station starts in the middle of the flood
        print("half", flush=True)
    if rate:
        time.sleep(1 / rate)
print(f"{{n / (time.monotonic() - t0):.0f}} {{failed}}", flush=True)
sys.stdin.read()                         # hold the connections until told
"""

# The genuine station, in its own process (its own interpreter lock).
STATION = r"""
import sys, time
sys.path.insert(0, {root!r})
from drivers.zone_reader.simulator import StationSimulator
sim = StationSimulator("127.0.0.1", {port}, {st!r}, report_s=0.5, reply_timeout_s=1.0)
sim.add_tag("E3AF2232")
t0 = time.monotonic()
sim.start()
ok = sim.logged_in.wait(20)
dt = time.monotonic() - t0
time.sleep(2.0)
print(f"{{int(ok)}} {{dt:.3f}} {{sim.stats['unanswered']}} {{sim.stats['reconnects']}} {{sim.stats['reports']}}", flush=True)
sim.stop()
"""


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=5000)
    ap.add_argument("--rate", type=float, default=0.0)
    ap.add_argument("--same-ip", action="store_true", help="flood from the station's own address")
    a = ap.parse_args()
    cfg = ZoneReaderConfig(id="zone", driver="zone_reader", listen="127.0.0.1:0",
                           stations={ST: "interrogation-1"}, heartbeat_s=30)
    logging.getLogger("casegate").setLevel(logging.ERROR)
    ctx = PrintContext("zone")
    drv = ZoneReaderDriver(cfg, ctx)
    drv.start()
    assert drv.listening.wait(5)
    port = drv.address[1]
    src = "127.0.0.1" if a.same_ip else "127.0.0.9"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    c0, t0 = cpu(), time.monotonic()
    flood = subprocess.Popen([sys.executable, "-c", FLOOD.format(root=root, port=port, n=a.connections,
                                                                  rate=a.rate, src=src, st=ST)],
                             stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
    assert flood.stdout.readline().strip() == "half"
    station = subprocess.Popen([sys.executable, "-c", STATION.format(root=root, port=port, st=ST)],
                               stdout=subprocess.PIPE, text=True)
    peak = 0
    while station.poll() is None:
        peak = max(peak, drv.snapshot()["connections"])
        time.sleep(0.05)
    rate, failed = flood.stdout.readline().split()
    c1, t1 = cpu(), time.monotonic()
    flood.stdin.close()
    flood.wait(10)
    ok, login_s, unanswered, reconnects, reports = station.stdout.read().split()
    entered = [d for t, d in ctx.events if t == "presence.entered"]
    drv.stop()
    h = drv.health.counters
    used = c1 - c0
    floods = [d for t, d in ctx.events if t == "device.error" and d.get("flood")]
    print(f"flood from {src} ({'the station’s own address' if a.same_ip else 'another address'}): "
          f"{a.connections} connections at {rate}/s ({failed} failed)")
    print(f"driver CPU {used:.2f} s over {t1 - t0:.1f} s = {1e6 * used / a.connections:.0f} µs per connection; "
          f"peak connections held {peak} (pending cap {cfg.max_pending}, per address {cfg.max_pending_per_ip})")
    print(f"station: logged in {'yes' if ok == '1' else 'NO'} {float(login_s) * 1000:.0f} ms after it started, "
          f"{unanswered} requests unanswered, {reconnects} reconnects, {reports} reports; "
          f"presence.entered: {len(entered)}")
    print(f"counters: evicted {h.get('connection_evicted', 0)}, refused {h.get('connection_refused', 0)}, "
          f"login timeouts {h.get('login_timeout', 0)}; flood records journaled: {len(floods)}")
    return 0 if ok == "1" else 1


if __name__ == "__main__":
    raise SystemExit(main())
