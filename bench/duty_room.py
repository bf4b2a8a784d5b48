"""What the duty-room tools cost a running daemon: commissioning requests over the control
socket (person/register + wristband/bind, the CLI's path), one `casegate top` refresh (the
`top` control verb) and one Prometheus scrape of `[metrics]`.

    uv run python bench/duty_room.py [--persons 200] [--rounds 50]

Starts a real daemon (MQTT disabled) in a temporary directory; prints medians and p95.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from helpers.brokers import free_port  # noqa: E402
from helpers.daemon import DaemonProcess, control, write_config  # noqa: E402


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def report(name: str, ms: list[float]) -> None:
    ms = sorted(ms)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    print(f"{name:<44} median {statistics.median(ms):7.2f} ms   p95 {p95:7.2f} ms   (n={len(ms)})")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=50)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-duty-") as tmp:
        mport = free_port()
        cfg = write_config(Path(tmp), None, f'[metrics]\nlisten = "127.0.0.1:{mport}"\n'
                                           '[[rooms]]\nid = "waiting-1"\ntype = "waiting"\n')
        d = DaemonProcess(cfg).start()
        try:
            i = iter(range(10**9))

            def register():
                n = next(i)
                r = control(d.socket, {"cmd": "request", "command": "person/register",
                                       "args": {"person": f"p{n}", "role": "officer"}})
                assert r["ok"], r
                r = control(d.socket, {"cmd": "request", "command": "wristband/bind",
                                       "args": {"tag": f"{0xE3000000 + n:08X}", "person": f"p{n}"}})
                assert r["ok"], r
            report(f"register + bind via control socket (x{a.persons})", timed(register, a.persons))
            report("top refresh (control verb 'top')", timed(lambda: control(d.socket, {"cmd": "top"}), a.rounds))
            url = f"http://127.0.0.1:{mport}/metrics"
            report("metrics scrape (/metrics)", timed(lambda: urllib.request.urlopen(url, timeout=10).read(),
                                                      a.rounds))
        finally:
            d.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
