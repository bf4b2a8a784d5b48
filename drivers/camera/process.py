"""A camera in its own process (SPEC §4.6: cameras must not starve the daemon).

dlib's face detector and encoder hold the interpreter lock for 20-100 ms a call,
so a camera analysing in a daemon thread delays the journal writer and the MQTT
uplink by as much (measured in ``bench/camera.py``). :class:`CameraProcess` is
the driver the daemon runs: it starts :class:`~drivers.camera.driver.CameraDriver`
unchanged in a ``multiprocessing`` *spawn* child (no fork of a threaded daemon;
OpenCV and dlib are loaded only there) and relays over one duplex Pipe:

child -> parent                          parent -> child
  ("event", type, data, ts)                ("command", id, name, args, timeout)
  ("health", health, stats)  every 0.5 s   ("reload_faces", id)
  ("log", levelno, message)                ("stop", timeout)
  ("result", id, ok, value | (code, msg))

The child's ``device.online/offline/error`` events are mirrored onto this
driver's state (one event per change, as in-process). A child that dies is
reported as ``device.error`` naming its exit code or signal and restarted with
:class:`~drivers.base.Backoff`; ``health.counters["restarts"]`` counts that.

Signals: the child ignores SIGINT (Ctrl-C reaches the whole process group; the
parent decides when the camera stops). SIGTERM kills it; because a service
stop sends SIGTERM to every process of the unit at once, a child that died of
SIGTERM is reported only if the parent is not itself stopping within
``TERM_GRACE_S``. A parent that dies closes the Pipe, and the child stops.
"""
from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import signal
import threading
import time
import traceback
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from drivers.base import Backoff, CommandError, Driver

HEALTH_S = 0.5            # child health report period
REPLY_MARGIN_S = 5.0      # a command's answer may come this much after its own timeout (2 s was
                          # exceeded on a 2-core CI machine running 4 test workers)
HEALTHY_RUN_S = 60.0      # a child that lived this long resets the restart backoff
TERM_GRACE_S = 2.0        # see the module docstring (SIGTERM)
RELOAD_FACES_S = 2.0


def describe_exit(code: int | None) -> str:
    """Why the camera process ended, for device.error."""
    if code is None:
        return "camera process ended"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"camera process killed by {name}"
    return f"camera process exited with code {code}"


# ---- the parent side ----------------------------------------------------------
class CameraProcess(Driver):
    kind = "camera"

    def __init__(self, cfg: Any, ctx: Any):
        super().__init__(cfg, ctx)
        self._mp = multiprocessing.get_context("spawn")
        self._proc_lock = threading.Lock()
        self._proc = None
        self._conn = None
        self._send_lock = threading.Lock()
        self._pending: dict[int, Future] = {}
        self._pending_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._threads: list[threading.Thread] = []
        self._last_frame_mono = time.monotonic()
        self._last_report_mono = time.monotonic()    # last health report, or when the child was started
        # totals of children that ended, so health counts over restarts
        self._base = {"frames_ok": 0, "frames_bad": 0, "counters": {}}
        self._child = {"frames_ok": 0, "frames_bad": 0, "counters": {}}
        self.restarts = 0
        self.stats: dict[str, Any] = {}     # the running child's CameraStats, as last reported

    @property
    def pid(self) -> int | None:
        p = self._proc
        return p.pid if p is not None and p.is_alive() else None

    # ---- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        self.stop_event.clear()
        self._last_frame_mono = time.monotonic()
        for name, target in (("host", self._supervise), ("watchdog", self._watch)):
            t = threading.Thread(target=target, name=f"camera-{self.device_id}-{name}", daemon=True)
            self._threads.append(t)
            t.start()

    def stop(self, timeout: float = 2.0) -> None:
        deadline = time.monotonic() + timeout
        super().stop(timeout)
        with self._proc_lock:
            proc = self._proc
        if proc is not None:
            # the child stops its driver within 0.6 of our time; then SIGTERM, then SIGKILL
            self._send(("stop", timeout * 0.6))
            proc.join(max(0.0, deadline - 0.15 * timeout - time.monotonic()))
            if proc.is_alive():
                # dlib holds the child's interpreter lock for 0.1-0.5 s a call on a busy machine
                self.ctx.log.info("%s: camera process slow to stop, terminating it", self.device_id)
                proc.terminate()
                proc.join(max(0.0, deadline - 0.05 * timeout - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(max(0.0, deadline - time.monotonic()))
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]
        with self._health_lock:
            self.health.state = "stopped"

    def _spawn(self):
        """Start one child; returns (process, our end of the pipe), or None when stopping."""
        with self._proc_lock:
            if self.stop_event.is_set():
                return None
            ours, theirs = self._mp.Pipe(duplex=True)
            proc = self._mp.Process(
                target=child_main, name=f"casegate-camera-{self.device_id}", daemon=True,
                args=(theirs, self.cfg, self.ctx.center_id, self.ctx.timezone, self.ctx.storage_dir,
                      self.ctx.log.getEffectiveLevel()))
            try:
                proc.start()
            finally:
                theirs.close()      # else we never see EOF when the child dies
            self._proc, self._conn = proc, ours
            self._last_report_mono = time.monotonic()
            return proc, ours

    def _supervise(self) -> None:
        backoff = Backoff(self.stop_event, first=0.5, cap=30.0)
        while not self.stop_event.is_set():
            began = time.monotonic()
            try:
                spawned = self._spawn()
            except Exception as e:   # EAGAIN, ENOMEM, a broken interpreter: say so, retry
                self.set_state("error", f"cannot start the camera process: {e}")
                if not backoff.wait():
                    break
                continue
            if spawned is None:
                break
            proc, conn = spawned
            self._pump(conn)
            proc.join(5.0)
            with self._proc_lock:
                self._conn = None
            conn.close()
            reason = describe_exit(proc.exitcode)
            self._fold_child()
            self._fail_pending(CommandError("device_timeout", f"{reason} before answering"))
            if self.stop_event.is_set():
                break
            if proc.exitcode in (-signal.SIGTERM, -signal.SIGINT) and self.stop_event.wait(TERM_GRACE_S):
                break                  # the whole service is stopping: not a crash
            with self._health_lock:
                self.restarts += 1
                self._sum_health()
            self.set_state("error", reason)
            if time.monotonic() - began >= HEALTHY_RUN_S:
                backoff.reset()
            if not backoff.wait():
                break

    def _pump(self, conn) -> None:
        """Relay what the child says until it is gone."""
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return
            try:
                self._on_message(msg)
            except Exception:    # a bad message must not cut the camera off
                self.ctx.log.exception("%s: bad message from the camera process", self.device_id)

    def _on_message(self, msg: tuple) -> None:
        kind = msg[0]
        if kind == "event":
            _, type_, data, ts = msg
            if type_ in ("device.online", "device.offline", "device.error") and data.get("device") == self.device_id:
                self._mirror_state(type_.split(".", 1)[1], data.get("error"), ts)
            else:
                self.ctx.emit(type_, data, ts)
        elif kind == "health":
            self._apply_health(msg[1], msg[2])
        elif kind == "log":
            self.ctx.log.log(msg[1], "%s", msg[2])
        elif kind == "result":
            _, req, ok, value = msg
            with self._pending_lock:
                fut = self._pending.pop(req, None)
            if fut is not None and not fut.done():
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(CommandError(*value))

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
            if health.get("frames_ok", 0) > self._child["frames_ok"]:
                self._last_frame_mono = time.monotonic()
            self._child = {"frames_ok": health.get("frames_ok", 0), "frames_bad": health.get("frames_bad", 0),
                           "counters": dict(health.get("counters") or {})}
            if health.get("last_frame") is not None:
                self.health.last_frame = health["last_frame"]
            self._sum_health()
        self.stats = stats

    def _fold_child(self) -> None:
        with self._health_lock:
            b, c = self._base, self._child
            b["frames_ok"] += c["frames_ok"]
            b["frames_bad"] += c["frames_bad"]
            for k, v in c["counters"].items():
                b["counters"][k] = b["counters"].get(k, 0) + v
            self._child = {"frames_ok": 0, "frames_bad": 0, "counters": {}}
            self._sum_health()

    def _sum_health(self) -> None:     # caller holds _health_lock
        b, c = self._base, self._child
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
            proc = self._proc
            alive = proc is not None and proc.is_alive()
            if alive and now - self._last_report_mono < self.cfg.offline_s + slack:
                continue
            why = "camera process not responding" if alive else (self.health.error or "camera process not running")
            self.set_state("offline", f"{why} (no frame for {silent:.0f} s)")

    # ---- talking to the child ------------------------------------------------------
    def _send(self, msg: tuple) -> bool:
        conn = self._conn
        if conn is None:
            return False
        try:
            with self._send_lock:
                conn.send(msg)
            return True
        except (OSError, ValueError):      # the child is gone (EPIPE) or the pipe closed
            return False

    def _request(self, msg_for_id, wait: float, what: str):
        req = next(self._ids)
        fut: Future = Future()
        with self._pending_lock:
            self._pending[req] = fut
        if not self._send(msg_for_id(req)):
            with self._pending_lock:
                self._pending.pop(req, None)
            raise CommandError("device_timeout", f"camera {self.device_id} is not running (restarting)")
        try:
            return fut.result(wait)
        except FutureTimeout:
            with self._pending_lock:
                self._pending.pop(req, None)
            raise CommandError("device_timeout", f"no answer from camera {self.device_id} to {what}") from None

    def _fail_pending(self, err: CommandError) -> None:
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(err)

    def command(self, name: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
        return self._request(lambda req: ("command", req, name, dict(args), timeout),
                             timeout + REPLY_MARGIN_S, name)

    def reload_faces(self) -> int | None:
        """Ask the child to re-read the face store now; its count, or None if it did not answer
        (it re-reads the store every second anyway)."""
        try:
            return self._request(lambda req: ("reload_faces", req), RELOAD_FACES_S, "reload_faces")
        except CommandError:
            return None


# ---- the child side -------------------------------------------------------------
class _Link:
    """The child's end of the pipe; sends from any thread."""

    def __init__(self, conn):
        self.conn = conn
        self.lock = threading.Lock()

    def send(self, msg: tuple) -> None:
        try:
            with self.lock:
                self.conn.send(msg)
        except (OSError, ValueError):
            pass          # the parent is gone; the main loop sees EOF and stops


class _PipeLogHandler(logging.Handler):
    """Every log record of the child goes to the parent's ``casegate.<device>`` logger."""

    def __init__(self, link: _Link, device_logger: str):
        super().__init__()
        self.link = link
        self.device_logger = device_logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            if record.exc_info:
                msg += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            if record.name != self.device_logger:
                msg = f"{record.name}: {msg}"
            self.link.send(("log", record.levelno, msg))
        except Exception:
            self.handleError(record)


class _ChildContext:
    """The DriverContext a camera needs: emit (relayed to the parent) and where to store things."""

    def __init__(self, link: _Link, device_id: str, center_id: str, timezone: str, storage_dir: str):
        self.link = link
        self.device_id = device_id
        self.center_id = center_id
        self.timezone = timezone
        self.storage_dir = storage_dir
        self.log = logging.getLogger(f"casegate.{device_id}")

    def emit(self, type: str, data: dict, ts: float | None = None) -> Future:
        # wall-clock ts: the parent's context re-expresses it on its own clock
        self.link.send(("event", type, data, time.time() if ts is None else ts))
        f: Future = Future()
        f.set_result(None)
        return f

    def person_for(self, tag_or_card: str) -> str | None:
        return None       # cameras recognise faces, never tags


def child_main(conn, cfg, center_id: str, timezone: str, storage_dir: str, log_level: int) -> None:
    """Entry point of the camera process: run one CameraDriver until told to stop or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    link = _Link(conn)
    device_logger = f"casegate.{cfg.id}"
    root = logging.getLogger()
    root.handlers[:] = [_PipeLogHandler(link, device_logger)]
    root.setLevel(log_level)
    ctx = _ChildContext(link, cfg.id, center_id, timezone, storage_dir)
    from concurrent.futures import ThreadPoolExecutor
    from drivers.camera.driver import CameraDriver
    drv = CameraDriver(cfg, ctx)
    done = threading.Event()

    def report_health() -> None:
        while True:
            try:
                with drv._health_lock:   # noqa: SLF001 - a consistent snapshot
                    health = drv.health.as_dict()
                link.send(("health", health, drv.stats.as_dict()))
            except Exception:
                pass
            if done.wait(HEALTH_S):
                return

    def run(req: int, fn, *args) -> None:
        try:
            link.send(("result", req, True, fn(*args)))
        except CommandError as e:
            link.send(("result", req, False, (e.code, e.message)))
        except Exception as e:
            ctx.log.exception("%s: command failed", cfg.id)
            link.send(("result", req, False, ("device_refused", f"camera error: {e}")))

    drv.start()
    threading.Thread(target=report_health, name="health", daemon=True).start()
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="command")
    stop_timeout = 2.0
    try:
        while True:
            msg = conn.recv()
            if msg[0] == "stop":
                stop_timeout = float(msg[1])
                break
            if msg[0] == "command":
                _, req, name, args, timeout = msg
                pool.submit(run, req, drv.command, name, args, timeout)
            elif msg[0] == "reload_faces":
                pool.submit(run, msg[1], drv.reload_faces)
    except (EOFError, OSError):
        stop_timeout = 1.0          # the parent is gone
    finally:
        drv.stop(stop_timeout)
        done.set()
        with drv._health_lock:       # noqa: SLF001
            health = drv.health.as_dict()
        link.send(("health", health, drv.stats.as_dict()))
        conn.close()
        # Not a normal interpreter exit: that would join command threads still waiting
        # for a frame, and a capture thread stuck in VideoCapture.open.
        os._exit(0)
