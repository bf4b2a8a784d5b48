"""How soon the daemon is READY after days down: `cd /work/main && uv run python bench/start_after_downtime.py [--runs 3]`.

The journal of tests/test_start_after_downtime.py (tests/helpers/downtime.py: 1,000 unacknowledged critical alarms, its last
event 3 days ago, legal deadlines spread over the gap); the real daemon started on it with our
own NOTIFY_SOCKET. Prints the seconds from spawn to READY=1 per run (the unit's start timeout
is what matters: TimeoutStartSec, extended by EXTEND_TIMEOUT_USEC while catching up; the test
asserts that and the catch-up, this script how long it takes). Figures, not assertions.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from helpers.daemon import DaemonProcess, write_config  # noqa: E402
from helpers.downtime import ROOMS, build  # noqa: E402


def ready_after(tmp: Path, template: Path) -> float:
    shutil.copytree(template, tmp / "state")
    cfg = write_config(tmp, None, ROOMS)
    notify = tmp / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.settimeout(300)
    d = DaemonProcess(cfg, env={"NOTIFY_SOCKET": str(notify)})
    t0 = time.monotonic()
    d.start(wait=False)
    try:
        while "READY=1" not in sock.recv(4096).decode():
            pass
        return time.monotonic() - t0
    finally:
        d.stop()
        sock.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as t:
        base = Path(t)
        (base / "template").mkdir()
        build(write_config(base / "template", None, ROOMS))
        figures = []
        for i in range(a.runs):
            run = base / f"run{i}"
            run.mkdir()
            figures.append(ready_after(run, base / "template" / "state"))
            print(f"run {i + 1}: READY=1 after {figures[-1]:.2f} s (load {os.getloadavg()[0]:.1f})", flush=True)
    print(f"READY=1 after days down: min {min(figures):.2f}  median {statistics.median(figures):.2f}  "
          f"max {max(figures):.2f} s (the unit's TimeoutStartSec budget: 10 s before any extension)")


if __name__ == "__main__":
    main()
