"""What a hostile camera costs the daemon (issues 28, 30): `uv run python bench/hostile_camera.py [--seconds 30]`.

1. Parser: CPU per byte of ``Multipart`` on a part made of newlines (the quadratic-scan
   bait of issue 30: 10 MB), on a stream of short junk lines, and on well-formed Hikvision
   parts, in this process (ns/byte, MB/s).
2. Daemon: the real ``casegate run`` (no broker) with one ``camera_events`` device pointed
   at a hostile camera (drivers/camera_events/hostile.py, in a child process whose own CPU
   is not counted), per mode: the daemon's CPU (utime + stime) over ``--seconds`` as % of a
   core, against the same daemon with a well-behaved camera; its RSS growth; how the device
   ends up (state, error). Target (issue 28): <= 10 % of a core per hostile camera.
Every loop is bounded in count and time. Figures, not assertions.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from drivers.camera_events.hostile import HostileProcess  # noqa: E402
from drivers.camera_events.signals import Multipart  # noqa: E402
from drivers.camera_events.simulator import HikvisionSimulator  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
MODES = ("lines", "newlines", "drip", "names", "hugepart", "bomb", "onvif_flood", "good")


def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def parser_figures() -> None:
    print("1. Multipart parser, CPU per byte (this process)")
    sim = HikvisionSimulator()
    good = b"".join(sim.part("application/xml", sim.alert_xml("VMD", 1, "active", i)) for i in range(2000))
    sim.server.server_close()
    cases = {
        "part of 10 MB of newlines": (b"--boundary\r\nContent-Type: application/xml\r\n\r\n",
                                      b"\n" * 65536, 160, 16 << 20),
        "short junk lines (past the 1024-line cut)": (b"", b"x\r\n" * 1000, 2, 2 << 20),
        "well-formed Hikvision parts": (b"", good, 5, 2 << 20),
    }
    for name, (head, chunk, n, max_part) in cases.items():
        mp = Multipart("boundary", max_part=max_part)
        mp.feed(head)
        t = time.process_time()
        parts = 0
        for _ in range(n):
            parts += len(mp.feed(chunk))
        cpu = time.process_time() - t
        size = len(chunk) * n
        print(f"   {name:42s} {size / 1e6:7.2f} MB  {cpu * 1e9 / size:7.2f} ns/byte  "
              f"{size / 1e6 / max(cpu, 1e-9):8.1f} MB/s  parts {parts}  violation: {mp.violation}")


def daemon_figures(seconds: float, modes: list[str]) -> None:
    print(f"2. The daemon with one camera_events device, CPU over {seconds:g} s (hostile camera in a child)")
    for mode in modes:
        with tempfile.TemporaryDirectory() as tmp, HostileProcess("dripsnap" if mode == "good" else mode) as cam:
            tmp = Path(tmp)
            pw = tmp / "pw"
            pw.write_text("cam-secret\n")
            os.chmod(pw, 0o600)
            cfg = tmp / "casegate.toml"
            cfg.write_text(f"""[center]
id = "bench"
[storage]
dir = "{tmp / 'state'}"
[mqtt]
enabled = false
[[rooms]]
id = "interrogation-1"
type = "interrogation"
[[devices]]
id = "cam"
driver = "camera_events"
vendor = "{cam.vendor}"
url = "{cam.url}"
password_file = "{pw}"
channels = {{ "1" = "interrogation-1" }}
offline_s = 10
pull_timeout_s = 1
""")
            log = open(tmp / "daemon.log", "w")
            env = dict(os.environ)
            env.pop("NOTIFY_SOCKET", None)
            d = subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config", str(cfg), "run"], cwd=ROOT,
                                 stdout=log, stderr=subprocess.STDOUT, env=env)
            sock = tmp / "state" / "casegate.sock"
            try:
                end = time.monotonic() + 60
                while not sock.exists() and time.monotonic() < end and d.poll() is None:
                    time.sleep(0.1)
                time.sleep(1.0)                      # let start-up CPU settle before measuring
                rss0, cpu0, t0 = rss_mb(d.pid), proc_cpu_s(d.pid), time.monotonic()
                peak = rss0
                while time.monotonic() - t0 < seconds and d.poll() is None:
                    time.sleep(0.5)
                    peak = max(peak, rss_mb(d.pid))
                cpu = proc_cpu_s(d.pid) - cpu0
                wall = time.monotonic() - t0
                st = subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(cfg), "status", "--json"],
                                    cwd=ROOT, capture_output=True, text=True, timeout=30, env=env)
                try:
                    dev = next(x for x in json.loads(st.stdout)["devices"] if x.get("id") == "cam")
                except (ValueError, StopIteration):
                    dev = {"state": "?", "error": st.stdout[-200:] + st.stderr[-200:]}
                print(f"   {mode:12s} CPU {100 * cpu / wall:5.1f} % of a core   RSS {rss0:6.1f} -> peak {peak:6.1f} MB"
                      f"   device {dev.get('state')}: {str(dev.get('error') or '')[:90]}")
            finally:
                d.terminate()
                try:
                    d.wait(20)
                except subprocess.TimeoutExpired:
                    d.kill()
                    d.wait(5)
                log.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0, help="per daemon measurement (default 30)")
    ap.add_argument("--modes", default=",".join(MODES), help=f"daemon modes (default {','.join(MODES)})")
    ap.add_argument("--only", default="12", help="which sections to run")
    a = ap.parse_args()
    if "1" in a.only:
        parser_figures()
    if "2" in a.only:
        daemon_figures(a.seconds, [m for m in a.modes.split(",") if m])
    return 0


if __name__ == "__main__":
    sys.exit(main())
