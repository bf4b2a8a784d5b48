"""How long stops and timeouts take: `cd /work/main && uv run python bench/stop_latency.py [--runs 5]`.

The tests assert what a stop or a timeout does (a hung child ends by SIGKILL, a cooperative one
exits 0, a request unanswered is ``device_timeout``); how long it takes is a figure, measured here
and compared with what the code promises (it depends on machine load, so a test cannot hold it):

1. drivers/common/child.py ``ChildSupervisor``: a request the child ignores (timeout 0.3 s: 0.3 s
   and a little), ``stop(0.5, 0.2, 0.3)`` of a SIGSTOPped child (0.5 + 0.2 waited out, then
   SIGKILL: 0.7 s and a little), ``stop(2.0, ...)`` of a child that obeys Stop (at once, not the
   2 s grace).
2. drivers/camera ``CameraProcess.stop(timeout=1.5)`` of a running and of a SIGSTOPped camera
   child (within the 1.5 s), and ``stop(timeout=1.0)`` while its child still starts.

Figures, not assertions: each line prints min/median/max over the runs and the promised bound.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ["PYTHONPATH"] = str(ROOT / "tests")      # the child imports helpers.child_entries by name

from drivers.base import CommandError, PrintContext  # noqa: E402
from drivers.camera.process import CameraProcess  # noqa: E402
from drivers.camera.simulator import write_synthetic_video  # noqa: E402
from drivers.common.child import ChildSupervisor, Stop  # noqa: E402
from helpers.camera import cfg as camera_cfg  # noqa: E402
from helpers.child_entries import Hello, Ignore  # noqa: E402
from helpers.polling import wait_for  # noqa: E402


def supervisor() -> tuple[ChildSupervisor, list]:
    hello: list = []
    log = logging.getLogger("bench-child")
    sup = ChildSupervisor("helpers.child_entries:echo_child", lambda: ("x",), process_name="bench process",
                          device_name="bench child", log=log, child_log=log, backoff_first=0.05, backoff_cap=0.4,
                          on_message=lambda m: hello.append(m) if type(m) is Hello else None,
                          thread_name="bench-child-supervisor")
    sup.start()
    wait_for(lambda: hello, 60, "the child's hello")
    return sup, hello


def timed(fn) -> float:
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def ignored_request() -> float:
    sup, _ = supervisor()
    try:
        def ask():
            try:
                sup.request(Ignore(), 0.3, "ignore")
            except CommandError as e:
                assert e.code == "device_timeout", e
        return timed(ask)
    finally:
        sup.stop(2.0, 0.5, 0.5, message=Stop(1.0))


def hung_stop() -> float:
    sup, _ = supervisor()
    os.kill(sup.process.pid, signal.SIGSTOP)
    return timed(lambda: sup.stop(0.5, 0.2, 0.3, message=Stop(0.3), join_within=0.5))


def cooperative_stop() -> float:
    sup, _ = supervisor()
    return timed(lambda: sup.stop(2.0, 0.5, 0.5, message=Stop(1.0)))


def camera_stop(video: Path, storage: Path, hang: bool) -> float:
    drv = CameraProcess(camera_cfg(video), PrintContext("cam-int1", storage_dir=str(storage)))
    drv.start()
    wait_for(lambda: drv.health.state == "online", 60, "the camera child online")
    if hang:
        os.kill(drv.process.pid, signal.SIGSTOP)
    return timed(lambda: drv.stop(timeout=1.5))


def camera_stop_while_starting(video: Path, storage: Path) -> float:
    drv = CameraProcess(camera_cfg(video), PrintContext("cam-int1", storage_dir=str(storage)))
    drv.start()
    wait_for(lambda: drv.process is not None, 5, "the camera child spawned")
    return timed(lambda: drv.stop(timeout=1.0))


def report(what: str, promise: str, figures: list[float]) -> None:
    print(f"{what:<58} min {min(figures):.3f}  median {statistics.median(figures):.3f}  "
          f"max {max(figures):.3f} s   (promised: {promise})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    report("ChildSupervisor: request ignored, timeout 0.3 s", ">= 0.3 s, < 2 s",
           [ignored_request() for _ in range(a.runs)])
    report("ChildSupervisor: stop of a SIGSTOPped child", "0.5 + 0.2 s, then SIGKILL: < 1.6 s",
           [hung_stop() for _ in range(a.runs)])
    report("ChildSupervisor: stop of a child that obeys Stop", "< 1.5 s (not the 2 s grace)",
           [cooperative_stop() for _ in range(a.runs)])
    with tempfile.TemporaryDirectory() as tmp:
        video = write_synthetic_video(Path(tmp) / "face.avi", 2, 10, "face_moving")
        storage = Path(tmp) / "state"
        storage.mkdir()
        report("CameraProcess.stop(timeout=1.5), running child", "< 1.7 s",
               [camera_stop(video, storage, False) for _ in range(a.runs)])
        report("CameraProcess.stop(timeout=1.5), SIGSTOPped child", "< 1.7 s, then SIGKILL",
               [camera_stop(video, storage, True) for _ in range(a.runs)])
        report("CameraProcess.stop(timeout=1.0) while the child starts", "< 1.2 s",
               [camera_stop_while_starting(video, storage) for _ in range(a.runs)])
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
