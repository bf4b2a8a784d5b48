"""A camera in its own process (SPEC §4.6: cameras must not starve the daemon).

dlib's face detector and encoder hold the interpreter lock for 20-100 ms a call,
so a camera analysing in a daemon thread delays the journal writer and the MQTT
uplink by as much (measured in ``bench/camera.py``). :class:`CameraProcess` is
the driver the daemon runs: it starts :class:`~drivers.camera.driver.CameraDriver`
unchanged in a child (drivers/common/child.py: a fresh interpreter, OpenCV and
dlib are loaded only there, restarts, stop with grace, requests, log relay) and
relays typed messages:

child -> parent                          parent -> child
  CameraEvent(type, data, ts)              Command(name, args, timeout) -> Reply
  CameraHealth(health, stats) every 0.5 s  ReloadFaces() -> Reply
  Log, Reply (drivers/common/child.py)     Stop(timeout)

The child's ``device.online/offline/error`` events are mirrored onto this
driver's state (one event per change, as in-process). A child that dies is
reported as ``device.error`` naming its exit code or signal and restarted with
backoff; ``health.counters["restarts"]`` counts that.

Signals: the child ignores SIGINT (Ctrl-C reaches the whole process group; the
parent decides when the camera stops). SIGTERM kills it; because a service
stop sends SIGTERM to every process of the unit at once, a child that died of
SIGTERM is reported only if the parent is not itself stopping within
``TERM_GRACE_S``. A parent that dies closes the channel, and the child stops.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from drivers.base import CommandError, Driver
from drivers.common.child import ChildSupervisor, ParentLink, Request, Stop, SupervisedChildView
from drivers.common.child import describe_exit as _describe_exit

HEALTH_S = 0.5            # child health report period
REPLY_MARGIN_S = 5.0      # a command's answer may come this much after its own timeout (2 s was
                          # exceeded on a 2-core CI machine running 4 test workers)
HEALTHY_RUN_S = 60.0      # a child that lived this long resets the restart backoff
TERM_GRACE_S = 2.0        # see the module docstring (SIGTERM)
RELOAD_FACES_S = 2.0
PROCESS_NAME = "camera process"


# ---- the messages (pickled by class: this module is imported on both sides) ---------
@dataclass
class CameraEvent:
    """Child -> parent: an event of the camera driver, wall-clock ``ts``."""
    type: str
    data: dict
    ts: float


@dataclass
class CameraHealth:
    """Child -> parent, every HEALTH_S: DeviceHealth.as_dict() and CameraStats.as_dict()."""
    health: dict
    stats: dict


@dataclass
class Command(Request):
    """Parent -> child: Driver.command(name, args, timeout); the Reply is its result."""
    name: str
    args: dict
    timeout: float


@dataclass
class ReloadFaces(Request):
    """Parent -> child: re-read the face store now; the Reply is the face count."""


def describe_exit(code: int | None) -> str:
    """Why the camera process ended, for device.error."""
    return _describe_exit(code, PROCESS_NAME)


# ---- the parent side ----------------------------------------------------------
class CameraProcess(SupervisedChildView, Driver):
    kind = "camera"

    def __init__(self, cfg: Any, ctx: Any):
        super().__init__(cfg, ctx)
        self._child = ChildSupervisor(
            "drivers.camera.process:child_main",
            lambda: (self.cfg, self.ctx.center_id, self.ctx.timezone, self.ctx.storage_dir),
            process_name=PROCESS_NAME, device_name=f"camera {self.device_id}",
            on_message=self._on_message, log=ctx.log, child_log=ctx.log,
            on_started=self._on_started, on_ended=lambda reason: self._fold_child(),
            on_crash=self._on_crash, on_spawn_failed=self._on_spawn_failed,
            stop_event=self.stop_event, thread_name=f"camera-{self.device_id}-host",
            healthy_run_s=HEALTHY_RUN_S, term_grace_s=TERM_GRACE_S)
        self._threads: list[threading.Thread] = []
        self._last_frame_mono = time.monotonic()
        self._last_report_mono = time.monotonic()    # last health report, or when the child was started
        # totals of children that ended, so health counts over restarts
        self._base = {"frames_ok": 0, "frames_bad": 0, "counters": {}}
        self._child_health = {"frames_ok": 0, "frames_bad": 0, "counters": {}}
        self.stats: dict[str, Any] = {}     # the running child's CameraStats, as last reported

    # ---- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        self.stop_event.clear()
        self._last_frame_mono = time.monotonic()
        self._child.start()
        watchdog = threading.Thread(target=self._watch, name=f"camera-{self.device_id}-watchdog", daemon=True)
        self._threads += [self._child.thread, watchdog]
        watchdog.start()

    def stop(self, timeout: float = 2.0) -> None:
        deadline = time.monotonic() + timeout
        super().stop(timeout)
        # the child stops its driver within 0.6 of our time; then SIGTERM, then SIGKILL
        # (dlib holds the child's interpreter lock for 0.1-0.5 s a call on a busy machine)
        self._child.stop(exit_within=deadline - 0.15 * timeout - time.monotonic(), term_within=0.1 * timeout,
                         kill_within=0.05 * timeout, message=Stop(timeout * 0.6),
                         join_within=deadline - time.monotonic())
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]
        with self._health_lock:
            self.health.state = "stopped"

    def _on_started(self) -> None:
        self._last_report_mono = time.monotonic()

    def _on_spawn_failed(self, e: BaseException) -> None:
        self.set_state("error", f"cannot start the camera process: {e}")

    def _on_crash(self, reason: str, delay: float) -> None:
        with self._health_lock:
            self._sum_health()
        self.set_state("error", reason)

    def _on_message(self, msg: Any) -> None:
        if type(msg) is CameraEvent:
            if (msg.type in ("device.online", "device.offline", "device.error")
                    and msg.data.get("device") == self.device_id):
                self._mirror_state(msg.type.split(".", 1)[1], msg.data.get("error"), msg.ts)
            else:
                self.ctx.emit(msg.type, msg.data, msg.ts)
        elif type(msg) is CameraHealth:
            self._apply_health(msg.health, msg.stats)
        else:
            self.ctx.log.warning("%s: unexpected message from the camera process: %r",
                                 self.device_id, type(msg).__name__)

    def _mirror_state(self, state: str, error: str | None, ts: float | None) -> None:
        """The child's device state change, journaled once per change (the child already logged it)."""
        with self._health_lock:
            old, old_error = self.health.state, self.health.error
            if state == old and not (state == "error" and error != old_error):
                return
            if state == "online" and old in ("offline", "error"):
                self.health.reconnects += 1
            self.health.state, self.health.error = state, error
        self.ctx.emit(f"device.{state}", {"device": self.device_id, "error": error}, ts)

    def _apply_health(self, health: dict, stats: dict) -> None:
        self._last_report_mono = time.monotonic()
        with self._health_lock:
            if health.get("frames_ok", 0) > self._child_health["frames_ok"]:
                self._last_frame_mono = time.monotonic()
            self._child_health = {"frames_ok": health.get("frames_ok", 0),
                                  "frames_bad": health.get("frames_bad", 0),
                                  "counters": dict(health.get("counters") or {})}
            if health.get("last_frame") is not None:
                self.health.last_frame = health["last_frame"]
            self._sum_health()
        self.stats = stats

    def _fold_child(self) -> None:
        with self._health_lock:
            b, c = self._base, self._child_health
            b["frames_ok"] += c["frames_ok"]
            b["frames_bad"] += c["frames_bad"]
            for k, v in c["counters"].items():
                b["counters"][k] = b["counters"].get(k, 0) + v
            self._child_health = {"frames_ok": 0, "frames_bad": 0, "counters": {}}
            self._sum_health()

    def _sum_health(self) -> None:     # caller holds _health_lock
        b, c = self._base, self._child_health
        self.health.frames_ok = b["frames_ok"] + c["frames_ok"]
        self.health.frames_bad = b["frames_bad"] + c["frames_bad"]
        counters = dict(b["counters"])
        for k, v in c["counters"].items():
            counters[k] = counters.get(k, 0) + v
        if self.restarts:
            counters["restarts"] = self.restarts
        self.health.counters = counters

    def _watch(self) -> None:
        """Offline after ``offline_s`` without a frame when the child cannot say so itself:
        none is running (a crash loop) or it stopped reporting (frozen). A child that
        reports has its own watchdog, which knows the reason (no such file, stream stopped)."""
        slack = max(1.5, min(5.0, self.cfg.offline_s / 4)) + HEALTH_S
        step = max(0.05, min(1.0, self.cfg.offline_s / 4))
        while not self.stop_event.wait(step):
            now = time.monotonic()
            silent = now - self._last_frame_mono
            if silent < self.cfg.offline_s + slack or self.health.state in ("offline", "stopped"):
                continue
            alive = self._child.pid is not None
            if alive and now - self._last_report_mono < self.cfg.offline_s + slack:
                continue
            why = "camera process not responding" if alive else (self.health.error or "camera process not running")
            self.set_state("offline", f"{why} (no frame for {silent:.0f} s)")

    # ---- talking to the child ------------------------------------------------------
    def command(self, name: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
        return self._child.request(Command(name, dict(args), timeout), timeout + REPLY_MARGIN_S, name)

    def reload_faces(self) -> int | None:
        """Ask the child to re-read the face store now; its count, or None if it did not answer
        (it re-reads the store every second anyway)."""
        try:
            return self._child.request(ReloadFaces(), RELOAD_FACES_S, "reload_faces")
        except CommandError:
            return None


# ---- the child side -------------------------------------------------------------
class _ChildContext:
    """The DriverContext a camera needs: emit (relayed to the parent) and where to store things."""

    def __init__(self, link: ParentLink, device_id: str, center_id: str, timezone: str, storage_dir: str):
        self.link = link
        self.device_id = device_id
        self.center_id = center_id
        self.timezone = timezone
        self.storage_dir = storage_dir
        self.log = logging.getLogger(f"casegate.{device_id}")

    def emit(self, type: str, data: dict, ts: float | None = None) -> Future:
        # wall-clock ts: the parent's context re-expresses it on its own clock
        self.link.send(CameraEvent(type, data, time.time() if ts is None else ts))
        f: Future = Future()
        f.set_result(None)
        return f

    def person_for(self, tag_or_card: str) -> str | None:
        return None       # cameras recognise faces, never tags


def _unexpected(e: Exception) -> tuple[str, str]:
    return "device_refused", f"camera error: {e}"


def child_main(link: ParentLink, cfg, center_id: str, timezone: str, storage_dir: str) -> None:
    """Entry point of the camera process: run one CameraDriver until told to stop or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctx = _ChildContext(link, cfg.id, center_id, timezone, storage_dir)
    from concurrent.futures import ThreadPoolExecutor
    from drivers.camera.driver import CameraDriver
    drv = CameraDriver(cfg, ctx)
    done = threading.Event()

    def health() -> CameraHealth:
        with drv._health_lock:   # noqa: SLF001 - a consistent snapshot
            h = drv.health.as_dict()
        return CameraHealth(h, drv.stats.as_dict())

    def report_health() -> None:
        while True:
            try:
                link.send(health())
            except Exception:
                pass
            if done.wait(HEALTH_S):
                return

    drv.start()
    threading.Thread(target=report_health, name="health", daemon=True).start()
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="command")
    stop_timeout = 2.0
    try:
        while True:
            msg = link.recv()
            if type(msg) is Stop:
                stop_timeout = float(msg.timeout)
                break
            if type(msg) is Command:
                pool.submit(link.answer, msg, drv.command, msg.name, msg.args, msg.timeout, unexpected=_unexpected)
            elif type(msg) is ReloadFaces:
                pool.submit(link.answer, msg, drv.reload_faces, unexpected=_unexpected)
    except (EOFError, OSError):
        stop_timeout = 1.0          # the parent is gone
    finally:
        drv.stop(stop_timeout)
        done.set()
        link.send(health())
        link.close()
        # Not a normal interpreter exit: that would join command threads still waiting
        # for a frame, and a capture thread stuck in VideoCapture.open.
        os._exit(0)
