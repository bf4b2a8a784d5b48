"""The camera as the daemon runs it: CameraDriver in a child process, CameraProcess relaying.

Real child processes, real video files, real faces; each test starts one or two children
(about 2 s each to load OpenCV and dlib's models)."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from drivers.base import CommandError, PrintContext, driver_class
from drivers.camera.faces import FaceStore
from drivers.camera.process import CameraProcess, describe_exit
from drivers.camera.simulator import astronaut_face, write_synthetic_video

# shared with test_camera.py; the fixtures are used by name
from helpers.camera import ROOM, cfg, enrolled, mode, of_type, png_bytes, storage, wait_for  # noqa: F401,E402,I001

ROOT = Path(__file__).resolve().parents[2]
START_S = 30         # a child loads OpenCV and dlib first; generous for a loaded CI machine


@pytest.fixture
def run_process():
    started: list[CameraProcess] = []

    def make(c, storage, on_event=None):
        ctx = PrintContext(c.id, on_event=on_event, storage_dir=str(storage))
        drv = CameraProcess(c, ctx)
        drv.start()
        started.append(drv)
        return drv, ctx

    yield make
    for d in started:
        proc = d.process
        d.stop(timeout=3)
        assert proc is None or not proc.is_alive(), "camera process survived stop()"
        assert not d._threads, "host threads did not stop"


def test_the_daemon_runs_cameras_in_a_process():
    assert driver_class("camera") is CameraProcess


def test_face_recognised_in_the_child_reaches_the_parent(enrolled, tmp_path, run_process):
    video = write_synthetic_video(tmp_path / "face.avi", 3, 10, "face_moving")
    drv, ctx = run_process(cfg(video, face_frames=3), enrolled)
    assert wait_for(lambda: of_type(ctx, "camera.face_recognized"), START_S)
    assert drv.pid not in (None, os.getpid())
    rec = of_type(ctx, "camera.face_recognized")
    assert rec[0]["person"] == "suspect-7" and rec[0]["distance"] < 0.5 and rec[0]["room"] == ROOM
    types = [t for t, _ in ctx.events]
    assert types.index("device.online") < types.index("camera.face_recognized")
    assert types.count("device.online") == 1
    # stats arrive with the child's health report every 0.5 s, which may have been taken between
    # the detection and the recognition it led to: wait for a report that has both
    assert wait_for(lambda: drv.stats.get("detections", 0) >= 3 and drv.health.frames_ok >= 3
                    and drv.stats.get("recognized"), 10)
    assert drv.health.state == "online" and drv.health.last_frame > time.time() - 5
    assert drv.stats["recognized"][0] == "suspect-7"


def test_snapshot_command_crosses_the_boundary(storage, tmp_path, run_process):
    video = write_synthetic_video(tmp_path / "room.avi", 2, 10, "motion")
    drv, ctx = run_process(cfg(video), storage)
    assert wait_for(lambda: drv.health.state == "online", START_S)
    out = drv.command("camera/snapshot", {"camera": "cam-int1", "alarm_id": "lone_interrogation:00ff"}, timeout=3)
    f = out["file"]
    assert f.startswith(str(storage / "snapshots") + os.sep) and f.endswith("-alarm.jpg")
    assert mode(storage / "snapshots") == 0o700 and mode(f) == 0o600
    assert open(f, "rb").read(3) == b"\xff\xd8\xff"
    assert wait_for(lambda: of_type(ctx, "camera.snapshot"), 2)
    assert of_type(ctx, "camera.snapshot") == [{"camera": "cam-int1", "room": ROOM, "file": f, "reason": "alarm",
                                                "alarm_id": "lone_interrogation:00ff"}]


def test_command_errors_keep_their_codes(storage, tmp_path, run_process):
    no_frames, _ = run_process(cfg(tmp_path / "missing.avi"), storage)
    assert wait_for(lambda: no_frames.stats, START_S)           # the child is up and reporting
    with pytest.raises(CommandError) as e:
        no_frames.command("camera/snapshot", {}, timeout=0.5)
    # "within 0.5 s" is the child's own answer; the parent's timeout would say "no answer from ..."
    assert e.value.code == "device_timeout" and "within 0.5 s" in e.value.message
    with pytest.raises(CommandError) as e:
        no_frames.command("camera/zoom", {}, timeout=1)
    assert e.value.code == "unknown_command"

    (tmp_path / "blocked").mkdir()
    (tmp_path / "blocked" / "snapshots").write_text("a file where the folder should be")
    video = write_synthetic_video(tmp_path / "room.avi", 2, 10, "still")
    unwritable, _ = run_process(cfg(video, id="cam-int2"), tmp_path / "blocked")
    assert wait_for(lambda: unwritable.health.state == "online", START_S)
    with pytest.raises(CommandError) as e:
        unwritable.command("camera/snapshot", {}, timeout=3)
    assert e.value.code == "device_refused" and "cannot write the snapshot" in e.value.message


def test_killed_child_is_reported_and_restarted(enrolled, tmp_path, run_process):
    video = write_synthetic_video(tmp_path / "face.avi", 3, 10, "face_moving")
    drv, ctx = run_process(cfg(video, face_frames=2), enrolled)
    assert wait_for(lambda: of_type(ctx, "camera.face_recognized"), START_S)
    first = drv.pid
    os.kill(first, signal.SIGKILL)
    assert wait_for(lambda: of_type(ctx, "device.error"), 5)
    assert of_type(ctx, "device.error") == [{"device": "cam-int1", "error": "camera process killed by SIGKILL"}]
    n = len(ctx.events)
    # back: a new child, online again, recognising again
    assert wait_for(lambda: [t for t, _ in ctx.events[n:]].count("camera.face_recognized") >= 1, START_S)
    after = [t for t, _ in ctx.events[n:]]
    assert after.index("device.online") < after.index("camera.face_recognized")
    assert drv.pid not in (None, first)
    assert drv.health.state == "online" and drv.health.counters["restarts"] == 1
    assert drv.health.reconnects == 1


def test_child_exit_code_is_named():
    assert describe_exit(3) == "camera process exited with code 3"
    assert describe_exit(-signal.SIGSEGV) == "camera process killed by SIGSEGV"


def test_stop_is_prompt_even_for_a_hung_child(storage, tmp_path):
    video = write_synthetic_video(tmp_path / "face.avi", 2, 10, "face_moving")
    for hang in (False, True):
        drv = CameraProcess(cfg(video), PrintContext("cam-int1", storage_dir=str(storage)))
        drv.start()
        assert wait_for(lambda: drv.health.state == "online", START_S)
        proc = drv.process
        if hang:
            os.kill(proc.pid, signal.SIGSTOP)         # deaf to the stop message and to SIGTERM
        drv.stop(timeout=1.5)                         # how long it takes: bench/stop_latency.py
        assert not proc.is_alive() and proc.exitcode == (-signal.SIGKILL if hang else 0)
        assert drv.health.state == "stopped" and not drv._threads
        assert not any(t.name.startswith("camera-cam-int1") for t in threading.enumerate())
        assert of_type(drv.ctx, "device.error") == []   # our own stop is not a crash


def test_stop_while_the_child_is_starting(storage, tmp_path):
    video = write_synthetic_video(tmp_path / "face.avi", 2, 10, "still")
    drv = CameraProcess(cfg(video), PrintContext("cam-int1", storage_dir=str(storage)))
    drv.start()
    assert wait_for(lambda: drv.process is not None, 5)
    proc = drv.process
    drv.stop(timeout=1.0)                             # how long it takes: bench/stop_latency.py
    assert not proc.is_alive()


def test_enrolment_reaches_the_running_child(storage, tmp_path, run_process):
    video = write_synthetic_video(tmp_path / "face.avi", 3, 10, "face_moving")
    drv, ctx = run_process(cfg(video, face_frames=2), storage)
    assert wait_for(lambda: of_type(ctx, "camera.face_unknown"), START_S)   # nobody enrolled yet
    FaceStore(storage / "faces").enroll("late-1", png_bytes(astronaut_face()))
    assert drv.reload_faces() == 1
    assert wait_for(lambda: of_type(ctx, "camera.face_recognized"), 10)
    assert of_type(ctx, "camera.face_recognized")[0]["person"] == "late-1"


def test_offline_and_child_logs_reach_the_parent(storage, tmp_path, run_process, caplog):
    caplog.set_level(logging.INFO, logger="casegate.cam-int1")
    # offline_s leaves the child time to try the file (spawn + cv2 import under load) first
    drv, ctx = run_process(cfg(tmp_path / "missing.avi", offline_s=3.0), storage)
    assert wait_for(lambda: of_type(ctx, "device.offline"), START_S)
    time.sleep(1.5)
    offline = of_type(ctx, "device.offline")
    # once; its reason is the child's open error, or (the child slow to start under load)
    # the frame watchdog's "no frames" — the child's own reason then arrives as its log below
    assert len(offline) == 1 and ("no such file" in offline[0]["error"] or "no frame" in offline[0]["error"])
    assert drv.health.state == "offline"
    # the child's own reason reaches the parent's log (it may come after the watchdog under load)
    assert wait_for(lambda: any(r.name == "casegate.cam-int1" and "no such file" in r.getMessage()
                                for r in list(caplog.records)), 2 * START_S)   # seen > 30 s at load 15
    assert drv.pid is not None                       # a camera without frames is offline, not crashed
    assert "restarts" not in drv.health.counters


PARENT_ONLY = textwrap.dedent("""
    import os, sys, time
    from drivers.base import PrintContext
    from drivers.camera.process import CameraProcess
    from gateway.config import CameraConfig
    if __name__ == "__main__":
        video, storage = sys.argv[1], sys.argv[2]
        c = CameraConfig(id="cam-int1", driver="camera", url=video, room="r", fps=5, face_frames=2)
        ctx = PrintContext(c.id, storage_dir=storage)
        drv = CameraProcess(c, ctx)
        drv.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(t == "camera.face_recognized" for t, _ in ctx.events):
            time.sleep(0.1)
        with open(f"/proc/{drv.pid}/maps") as f:
            child_has_dlib = "_dlib_pybind11" in f.read()
        drv.stop(3)
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("dlib", "face_recognition", "face_recognition_models"))
        print("recognised", [d["person"] for t, d in ctx.events if t == "camera.face_recognized"])
        print("child has dlib", child_has_dlib)
        print("parent imported", heavy)
""")


def test_parent_never_loads_the_face_models(enrolled, tmp_path):
    video = write_synthetic_video(tmp_path / "face.avi", 3, 10, "face_moving")
    script = tmp_path / "parent.py"
    script.write_text(PARENT_ONLY)
    r = subprocess.run([sys.executable, str(script), str(video), str(enrolled)], capture_output=True, text=True,
                       timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "recognised ['suspect-7']" in r.stdout, r.stdout + r.stderr[-2000:]
    assert "child has dlib True" in r.stdout
    assert "parent imported []" in r.stdout, r.stdout


# ---- through the real daemon -------------------------------------------------------
def camera_daemon_config(tmp_path, video) -> Path:
    from helpers.daemon import write_config
    return write_config(tmp_path, None, extra=textwrap.dedent(f"""
        [[rooms]]
        id = "{ROOM}"
        type = "interrogation"
        name = "审讯室 1"

        [[devices]]
        id = "cam-int1"
        driver = "camera"
        url = "{video}"
        room = "{ROOM}"
        fps = 5
    """))


def journal_events(config, type_: str) -> list[dict]:
    """The camera's events of one type, from the journal (casegate events --json: JSON lines)."""
    import json

    from helpers.daemon import cli
    r = cli("events", "--json", "--type", type_, config=config)
    assert r.returncode == 0, r.stderr
    return [e for e in map(json.loads, r.stdout.splitlines()) if e["source"] == "cam-int1"]


def child_pids(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def camera_child(pid: int) -> int | None:
    for c in child_pids(pid):
        try:
            if b"drivers.camera.process:child_main" in Path(f"/proc/{c}/cmdline").read_bytes():
                return c
        except OSError:
            pass
    return None


def test_daemon_status_shows_the_camera_process_health(tmp_path):
    from helpers.daemon import DaemonProcess
    video = write_synthetic_video(tmp_path / "room.avi", 2, 10, "motion")
    config = camera_daemon_config(tmp_path, video)
    d = DaemonProcess(config).start()
    try:
        st = d.wait_status(lambda s: any(x["id"] == "cam-int1" and x["state"] == "online" and x["frames_ok"] >= 5
                                         for x in s["devices"]), timeout=START_S)
        cam = next(x for x in st["devices"] if x["id"] == "cam-int1")
        assert cam["last_frame"] and cam["error"] is None
        assert camera_child(d.proc.pid) is not None
        assert d.terminate() == 0
    finally:
        d.stop()
    assert journal_events(config, "device.online")
    assert journal_events(config, "device.error") == []


def test_daemon_stop_by_signal_to_the_whole_group_is_not_a_crash(tmp_path):
    """systemd's stop sends SIGTERM to every process of the unit, the camera process too."""
    from helpers.daemon import cli
    video = write_synthetic_video(tmp_path / "room.avi", 2, 10, "motion")
    config = camera_daemon_config(tmp_path, video)
    log = open(tmp_path / "daemon.log", "w")
    env = {k: v for k, v in os.environ.items() if k not in ("CASEGATE_CONFIG", "NOTIFY_SOCKET")}
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config", str(config), "run"], cwd=ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def online():
            r = cli("devices", "--json", config=config)
            return r.returncode in (0, 1) and '"online"' in r.stdout
        assert wait_for(online, START_S, step=0.2), (tmp_path / "daemon.log").read_text()
        child = camera_child(proc.pid)
        assert child is not None
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(15) == 0
        assert wait_for(lambda: not Path(f"/proc/{child}").exists(), 5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()
    assert journal_events(config, "device.online")
    assert journal_events(config, "device.error") == [], (tmp_path / "daemon.log").read_text()


def test_camera_process_does_not_outlive_a_killed_daemon(tmp_path):
    from helpers.daemon import DaemonProcess
    video = write_synthetic_video(tmp_path / "room.avi", 2, 10, "still")
    d = DaemonProcess(camera_daemon_config(tmp_path, video)).start()
    try:
        assert wait_for(lambda: camera_child(d.proc.pid) is not None, START_S)
        child = camera_child(d.proc.pid)
        d.kill9()
        assert wait_for(lambda: not Path(f"/proc/{child}").exists()
                        or b"Z" == Path(f"/proc/{child}/stat").read_bytes().rpartition(b")")[2].split()[0], 10)
    finally:
        d.stop()
