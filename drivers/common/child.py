"""One supervised child process, talking to its parent in typed messages.

Two parts of casegate run in a child process of their own so that they cannot starve
the journal writer of the interpreter lock: a camera (dlib holds the GIL 20-100 ms a
call, drivers/camera/process.py) and the MQTT uplink (paho's per-packet Python,
gateway/uplink_process.py). Both need the same supervision, which lives here:

* **spawn**: a fresh interpreter, ``python -m drivers.common.child ENTRY FD``, with one end of
  a socketpair as a :class:`multiprocessing.connection.Connection`. Not
  ``multiprocessing``'s spawn: that re-imports the parent's ``__main__``, which breaks
  (or runs the daemon again) under any script without a ``__main__`` guard, and costs
  the import of whatever that script imports. The child's first message is a
  :class:`Start` naming the ``module:function`` it runs, with its arguments.
* **restart** with :class:`~drivers.base.Backoff`; a child that ran ``healthy_run_s``
  resets the backoff (a crash after a good run is not a crash loop).
* **stop** with grace: a :class:`Stop` message, then SIGTERM, then SIGKILL, each phase
  bounded, so a hung child never holds up a service stop.
* :func:`describe_exit`: why a child ended, named the same for every child.
* **requests**: a :class:`Request` subclass gets a ``request_id`` and a future; the child
  answers with a :class:`Reply` (value or (code, message)); a timeout, a dead child or
  one that ends before answering is a ``device_timeout`` :class:`CommandError`.
* **log relay**: every log record of the child reaches the parent's logging as a
  :class:`Log` message, so journald shows one stream.

Messages are dataclasses, one class per kind, pickled over the Connection: a field
added to one kind cannot shift another kind's positions, and a receiver matches on
the class instead of ``msg[0]`` strings. The message classes of one child live next
to it (its module is imported on both sides).

Signals: a systemd stop sends SIGTERM to every process of the unit at once, so a
child that died of SIGTERM/SIGINT is not a crash if the parent itself stops within
``term_grace_s``. A parent that dies closes the socket; the child sees EOF and stops.

Layering: drivers never import gateway. ``gateway.uplink_process`` imports this
module, and this module imports a child's entry only by the name the parent gave.
"""
from __future__ import annotations

import importlib
import itertools
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Callable

from drivers.base import Backoff, CommandError, child_python_env


# ---- the messages every child speaks -------------------------------------------------
@dataclass
class Start:
    """Parent -> child, first: run ``entry`` ("module:function") as ``function(link, *args)``."""
    entry: str
    args: tuple
    log_level: int


@dataclass
class Stop:
    """Parent -> child: stop within ``timeout`` s and exit."""
    timeout: float


@dataclass
class Log:
    """Child -> parent: one log record (its text includes the traceback, if any)."""
    level: int
    logger: str
    text: str


@dataclass(kw_only=True)
class Request:
    """Parent -> child, the base of every message that gets a :class:`Reply`
    (the supervisor sets ``request_id``)."""
    request_id: int = 0


@dataclass
class Reply:
    """Child -> parent: the answer to request ``request_id``: ``value``, or
    ``error`` = (SPEC §3 error code, message)."""
    request_id: int
    value: Any = None
    error: tuple[str, str] | None = None


def describe_exit(code: int | None, process_name: str) -> str:
    """Why a child ended: "camera process killed by SIGKILL", "uplink process exited with code 1"."""
    if code is None:
        return f"{process_name} ended"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"{process_name} killed by {name}"
    return f"{process_name} exited with code {code}"


# ---- the parent side --------------------------------------------------------------------
class ChildHandle:
    """A running child as the supervisor (and tests) see it: pid, is_alive(), exitcode,
    join(timeout), terminate(), kill() - the multiprocessing.Process vocabulary."""

    def __init__(self, popen: subprocess.Popen):
        self._popen = popen
        self.pid = popen.pid

    @property
    def exitcode(self) -> int | None:
        return self._popen.poll()

    def is_alive(self) -> bool:
        return self._popen.poll() is None

    def join(self, timeout: float | None = None) -> None:
        """Wait for the child to end, at most ``timeout`` s. A pidfd wakes us the moment it
        ends (Popen.wait polls every 50 ms; stop() phases are a few hundred ms)."""
        if self._popen.poll() is not None:
            return
        try:
            fd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):     # no pidfd (old kernel): poll
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
            return
        try:
            # poll, not select: select() cannot watch an fd >= 1024 (a daemon with many open files)
            waiter = select.poll()
            waiter.register(fd, select.POLLIN)
            waiter.poll(None if timeout is None else max(0.0, timeout) * 1000)
        finally:
            os.close(fd)
        self._popen.poll()

    def terminate(self) -> None:
        if self._popen.poll() is None:
            self._popen.terminate()

    def kill(self) -> None:
        if self._popen.poll() is None:
            self._popen.kill()


class SupervisedChildView:
    """What an owner of a :class:`ChildSupervisor` (kept in ``self._child``) shows of its
    child: the camera process and the uplink process both expose these."""

    _child: "ChildSupervisor"

    @property
    def pid(self) -> int | None:
        return self._child.pid

    @property
    def process(self):
        """The current (or last) child: pid, is_alive(), exitcode (:class:`ChildHandle`)."""
        return self._child.process

    @property
    def restarts(self) -> int:
        return self._child.restarts


class ChildSupervisor:
    """Runs ``entry`` in a child, restarts it when it dies, relays what it says.

    ``on_message(msg)`` gets every message except :class:`Log` and :class:`Reply` (handled
    here), on the supervisor's thread. Hooks, all optional and on that thread:
    ``on_started()`` after each spawn (replay what a new child must know),
    ``on_ended(reason)`` after each child ended and was reaped, ``on_crash(reason, delay)``
    when it is to be restarted (``restarts`` already counts it), ``on_spawn_failed(exc)``.
    """

    def __init__(self, entry: str, args: Callable[[], tuple], *, process_name: str, device_name: str,
                 on_message: Callable[[Any], None], log: logging.Logger,
                 child_log: logging.Logger | None = None, log_level: Callable[[], int] | None = None,
                 on_started: Callable[[], None] | None = None, on_ended: Callable[[str], None] | None = None,
                 on_crash: Callable[[str, float], None] | None = None,
                 on_spawn_failed: Callable[[BaseException], None] | None = None,
                 stop_event: threading.Event | None = None, thread_name: str | None = None,
                 backoff_first: float = 0.5, backoff_cap: float = 30.0, healthy_run_s: float = 60.0,
                 term_grace_s: float = 2.0, linger_s: float = 5.0):
        self.entry = entry
        self.args = args
        self.process_name = process_name        # "camera process": exits, logs
        self.device_name = device_name          # "camera cam-int1": request errors
        self.on_message = on_message
        self.log = log
        self.child_log = child_log              # every child record into this logger; else by its name
        self.log_level = log_level or (lambda: log.getEffectiveLevel())
        self.on_started = on_started
        self.on_ended = on_ended
        self.on_crash = on_crash
        self.on_spawn_failed = on_spawn_failed
        self.stopping = stop_event if stop_event is not None else threading.Event()
        self.thread_name = thread_name or process_name.replace(" ", "-")
        self.backoff = Backoff(self.stopping, first=backoff_first, cap=backoff_cap)
        self.healthy_run_s = healthy_run_s
        self.term_grace_s = term_grace_s
        self.linger_s = linger_s
        self.restarts = 0
        self.process: ChildHandle | None = None
        self.last_heard = time.monotonic()      # anything from the child, or its spawn
        self.heard_since_start = False
        self._conn: Connection | None = None
        self._proc_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._pending: dict[int, Future] = {}
        self._pending_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        """The running child's pid (None while none runs)."""
        p = self.process
        return p.pid if p is not None and p.is_alive() else None

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def start(self) -> None:
        self._thread = threading.Thread(target=self._supervise, name=self.thread_name, daemon=True)
        self._thread.start()

    # ---- lifecycle ----------------------------------------------------------------------
    def _spawn(self) -> tuple[ChildHandle, Connection] | None:
        """Start one child; None when stopping (under the lock stop() takes: no child
        can be started after stop() looked for the one to stop)."""
        with self._proc_lock:
            if self.stopping.is_set():
                return None
            ours, theirs = socket.socketpair()
            try:
                # the entry on the command line too: `ps` shows which child is which
                # -P: not the working directory first on sys.path (a stray drivers/ there would run)
                popen = subprocess.Popen([sys.executable, "-P", "-m", "drivers.common.child", self.entry,
                                          str(theirs.fileno())],
                                         pass_fds=(theirs.fileno(),), env=child_python_env(), close_fds=True,
                                         # Its own session: a Ctrl-C in the terminal interrupts the
                                         # parent only, which then stops its children in order; in
                                         # the terminal's group a child still importing OpenCV printed
                                         # a KeyboardInterrupt traceback (seen within 1.5 s of start).
                                         start_new_session=True)
            except BaseException:
                ours.close()
                raise
            finally:
                theirs.close()      # else we never see EOF when the child dies
            conn = Connection(ours.detach())
            proc = ChildHandle(popen)
            try:
                conn.send(Start(self.entry, tuple(self.args()), self.log_level()))
            except (OSError, ValueError):
                pass                # died at once: the pump sees EOF and it is a crash like any
            self.process, self._conn = proc, conn
            self.last_heard = time.monotonic()
            self.heard_since_start = False
            return proc, conn

    def _supervise(self) -> None:
        while not self.stopping.is_set():
            began = time.monotonic()
            try:
                spawned = self._spawn()
            except Exception as e:   # EAGAIN, ENOMEM, a broken interpreter: say so, retry
                if self.on_spawn_failed is not None:
                    self.on_spawn_failed(e)
                else:
                    self.log.error("cannot start the %s: %s", self.process_name, e)
                if not self.backoff.wait():
                    break
                continue
            if spawned is None:
                break
            proc, conn = spawned
            if self.on_started is not None:
                self.on_started()
            self._pump(conn)
            proc.join(self.linger_s)
            if proc.is_alive():              # closed the channel but lingers: make it a clean restart
                proc.kill()
                proc.join(2.0)
            with self._proc_lock:
                self._conn = None
            conn.close()
            reason = describe_exit(proc.exitcode, self.process_name)
            if self.on_ended is not None:
                self.on_ended(reason)
            self._fail_pending(CommandError("device_timeout", f"{reason} before answering"))
            if self.stopping.is_set():
                break
            if proc.exitcode in (-signal.SIGTERM, -signal.SIGINT) and self.stopping.wait(self.term_grace_s):
                break                        # the whole service is stopping: not a crash
            self.restarts += 1
            if time.monotonic() - began >= self.healthy_run_s:
                self.backoff.reset()
            if self.on_crash is not None:
                self.on_crash(reason, self.backoff.delay)
            if not self.backoff.wait():
                break

    def stop(self, exit_within: float, term_within: float, kill_within: float, *,
             message: Any = None, join_within: float | None = None) -> None:
        """Stop supervising and end the child: send ``message`` (a :class:`Stop`, or None
        when the caller queued its own), wait ``exit_within`` s, SIGTERM, wait
        ``term_within``, SIGKILL, wait ``kill_within``; then give the supervisor thread
        ``join_within`` s (default ``kill_within``) to pass on the child's last messages."""
        self.stopping.set()
        with self._proc_lock:
            proc = self.process
        if proc is not None and proc.is_alive():
            if message is not None:
                self.send(message)
            proc.join(max(0.0, exit_within))
            if proc.is_alive():
                self.log.info("%s slow to stop, terminating it", self.process_name)
                proc.terminate()
                proc.join(max(0.0, term_within))
            if proc.is_alive():
                proc.kill()
                proc.join(max(0.0, kill_within))
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(max(0.0, kill_within if join_within is None else join_within))

    def kill(self) -> None:
        """Kill the running child (hung); the supervisor restarts it as after any crash."""
        p = self.process
        if p is not None:
            p.kill()

    def silent_for(self) -> float:
        return time.monotonic() - self.last_heard

    # ---- messages -----------------------------------------------------------------------
    def _pump(self, conn: Connection) -> None:
        """Relay what the child says until it is gone."""
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return
            except Exception:       # an unpicklable message: its kind is unknown here
                self.log.exception("unreadable message from the %s", self.process_name)
                continue
            self.last_heard = time.monotonic()
            self.heard_since_start = True
            try:
                cls = type(msg)
                if cls is Log:
                    self._relay_log(msg)
                elif cls is Reply:
                    self._resolve(msg)
                else:
                    self.on_message(msg)
            except Exception:    # a bad message must not cut the child off
                self.log.exception("bad message from the %s", self.process_name)

    def _relay_log(self, msg: Log) -> None:
        target = self.child_log
        if target is None:
            logging.getLogger(msg.logger).log(msg.level, "%s", msg.text)
        elif msg.logger == target.name:
            target.log(msg.level, "%s", msg.text)
        else:
            target.log(msg.level, "%s: %s", msg.logger, msg.text)

    def _resolve(self, msg: Reply) -> None:
        with self._pending_lock:
            fut = self._pending.pop(msg.request_id, None)
        if fut is None or fut.done():
            return                  # answered after its timeout
        if msg.error is None:
            fut.set_result(msg.value)
        else:
            fut.set_exception(CommandError(*msg.error))

    def send(self, msg: Any) -> bool:
        """Send to the running child now (blocks while its socket buffer is full);
        False if none is running."""
        conn = self._conn
        if conn is None:
            return False
        try:
            with self._send_lock:
                conn.send(msg)
            return True
        except (OSError, ValueError, TypeError):
            # the child is gone (EPIPE) or the channel was closed meanwhile by the supervisor
            # thread (multiprocessing's Connection.close() leaves a None handle: TypeError)
            return False

    def request(self, msg: Request, wait: float, what: str) -> Any:
        """Send ``msg`` and wait up to ``wait`` s for its :class:`Reply`'s value;
        the child's error, or ``device_timeout``, as :class:`CommandError`."""
        msg.request_id = rid = next(self._ids)
        fut: Future = Future()
        with self._pending_lock:
            self._pending[rid] = fut
        if not self.send(msg):
            with self._pending_lock:
                self._pending.pop(rid, None)
            raise CommandError("device_timeout", f"{self.device_name} is not running (restarting)")
        try:
            return fut.result(wait)
        except FutureTimeout:
            with self._pending_lock:
                self._pending.pop(rid, None)
            raise CommandError("device_timeout", f"no answer from {self.device_name} to {what}") from None

    def _fail_pending(self, err: CommandError) -> None:
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(err)


# ---- the child side ---------------------------------------------------------------------
class ParentLink:
    """The child's end of the channel: send from any thread, receive on one."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self._lock = threading.Lock()

    def send(self, msg: Any) -> bool:
        """False once the parent is gone (the receiving loop then sees EOF and stops)."""
        try:
            with self._lock:
                self.conn.send(msg)
            return True
        except (OSError, ValueError):
            return False

    def recv(self) -> Any:
        """The next message; EOFError/OSError when the parent is gone."""
        return self.conn.recv()

    def answer(self, request: Request, fn: Callable[..., Any], *args: Any,
               unexpected: Callable[[Exception], tuple[str, str]] | None = None) -> None:
        """Run ``fn(*args)`` and reply to ``request``: its value, its CommandError's code and
        message, or ``unexpected(e)`` for any other exception (logged with its traceback)."""
        try:
            value = fn(*args)
        except CommandError as e:
            self.send(Reply(request.request_id, error=(e.code, e.message)))
        except Exception as e:
            logging.getLogger(__name__).exception("request %s failed", type(request).__name__)
            err = unexpected(e) if unexpected is not None else ("internal_error", str(e))
            self.send(Reply(request.request_id, error=err))
        else:
            self.send(Reply(request.request_id, value=value))

    def close(self) -> None:
        try:
            self.conn.close()
        except OSError:
            pass


class LogRelay(logging.Handler):
    """Every log record of the child goes to the parent as a :class:`Log`."""

    def __init__(self, link: ParentLink):
        super().__init__()
        self.link = link

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            self.link.send(Log(record.levelno, record.name, text))
        except Exception:
            self.handleError(record)


def main(fd: int) -> None:
    """``python -m drivers.common.child ENTRY FD``: read the :class:`Start`, relay logging, run the entry."""
    conn = Connection(fd)
    start: Start = conn.recv()
    link = ParentLink(conn)
    root = logging.getLogger()
    root.handlers[:] = [LogRelay(link)]
    root.setLevel(start.log_level)
    module, _, function = start.entry.partition(":")
    getattr(importlib.import_module(module), function)(link, *start.args)


if __name__ == "__main__":
    # Through the imported module, not this __main__ copy: the message classes the
    # parent unpickles must be drivers.common.child's, not __main__'s.
    from drivers.common.child import main as _main
    _main(int(sys.argv[2]))     # argv[1]: the entry, for `ps` (the Start message is what counts)
