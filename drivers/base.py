"""What every driver is: open, read frames, emit events, report health.

A driver never touches the journal. It gets a :class:`DriverContext` from the
daemon (or from ``casegate probe``) and calls ``ctx.emit(type, data)``; the
core seals, journals and publishes. Device state changes go through
:meth:`Driver.set_state`, which emits ``device.online/offline/error`` once per
change, so a flapping USB cable does not flood the journal.
"""
from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Protocol


class CommandError(Exception):
    """A device command failed; ``code`` is a SPEC §3 error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class DriverContext(Protocol):
    device_id: str
    center_id: str
    timezone: str
    storage_dir: str
    log: logging.Logger

    def emit(self, type: str, data: dict[str, Any], ts: float | None = None) -> Future:
        """Hand an event to the journal. The future resolves to the sealed
        Event once it is durably stored (or raises if it could not be)."""

    def person_for(self, tag_or_card: str) -> str | None:
        """Who is bound to this tag/card now (None if nobody)."""


@dataclass
class DeviceHealth:
    state: str = "starting"          # starting | online | offline | error | stopped
    last_frame: float | None = None  # epoch of the last good frame
    frames_ok: int = 0
    frames_bad: int = 0
    reconnects: int = 0
    error: str | None = None
    counters: dict[str, int] = field(default_factory=dict)  # named drop counters

    def as_dict(self) -> dict:
        return asdict(self)


class Driver(ABC):
    kind: ClassVar[str]

    def __init__(self, cfg: Any, ctx: DriverContext):
        self.cfg = cfg
        self.ctx = ctx
        self.health = DeviceHealth()
        self._health_lock = threading.Lock()
        self.stop_event = threading.Event()

    @property
    def device_id(self) -> str:
        return self.cfg.id

    # ---- lifecycle -----------------------------------------------------
    @abstractmethod
    def start(self) -> None:
        """Start background threads and return at once."""

    def stop(self, timeout: float = 2.0) -> None:
        """Stop threads, close ports. Must return within ``timeout``."""
        self.stop_event.set()

    def restore_presence(self, present: Iterable[tuple[str, str, float]]) -> int:
        """Capability ``presence``: take over who the journal says is in a room now,
        (tag, room, since epoch) - the daemon calls this before :meth:`start`. A driver
        that keeps presence itself (drivers/common/presence.py PresenceTracker) takes
        over its rooms' entries and returns how many; one that only reports (a card
        reader's swipes) has nothing to take over."""
        return 0

    def command(self, name: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Run a device command (e.g. ``locker/open``); raise CommandError."""
        raise CommandError("unknown_command", f"{self.kind} devices do not take {name}")

    # ---- health --------------------------------------------------------
    def frame_ok(self, n: int = 1) -> None:
        with self._health_lock:
            self.health.frames_ok += n
            self.health.last_frame = time.time()

    def frame_bad(self, reason: str, n: int = 1) -> None:
        with self._health_lock:
            self.health.frames_bad += n
            self.health.counters[reason] = self.health.counters.get(reason, 0) + n

    def count(self, reason: str, n: int = 1) -> None:
        with self._health_lock:
            self.health.counters[reason] = self.health.counters.get(reason, 0) + n

    def set_state(self, state: str, error: str | None = None) -> None:
        """online | offline | error. Emits a device event only on change."""
        with self._health_lock:
            changed = state != self.health.state or (state == "error" and error != self.health.error)
            # still offline, but now we know better why (a watchdog's "no frames" first, then the
            # source's own "no such file"): the log says so; the journal keeps one offline event
            new_reason = not changed and state == "offline" and error and error != self.health.error
            if state == "online" and self.health.state in ("offline", "error"):
                self.health.reconnects += 1
            self.health.state = state
            self.health.error = error
        if new_reason:
            self.ctx.log.warning("%s still offline: %s", self.device_id, error)
        if changed and state in ("online", "offline", "error"):
            if state == "online":
                self.ctx.log.info("%s online", self.device_id)
            else:
                self.ctx.log.warning("%s %s: %s", self.device_id, state, error)
            self.ctx.emit(f"device.{state}", {"device": self.device_id, "error": error})


class Backoff:
    """Exponential reconnect backoff with a cap; ``wait`` returns False on stop."""

    def __init__(self, stop: threading.Event, first: float = 0.5, cap: float = 30.0):
        self.stop = stop
        self.first = first
        self.cap = cap
        self.delay = first

    def reset(self) -> None:
        self.delay = self.first

    def wait(self) -> bool:
        stopped = self.stop.wait(self.delay)
        self.delay = min(self.cap, self.delay * 2)
        return not stopped


def add_probe_option(parser, *names: str, **kw) -> None:
    """Add a ``casegate probe`` option unless the CLI or another driver's probe
    already defined it (the generic --port/--seconds/--json are shared)."""
    if any(n in parser._option_string_actions for n in names):  # noqa: SLF001
        return
    parser.add_argument(*names, **kw)


def child_python_env() -> dict[str, str]:
    """The environment for a ``python -m <module of this tree>`` child (the uplink
    process, a face enrolment): this source tree first on PYTHONPATH, so the
    child runs the same code as its parent however the parent was started."""
    import os
    from pathlib import Path
    root = str(Path(__file__).resolve().parent.parent)
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]
    return dict(os.environ, PYTHONPATH=os.pathsep.join([root] + rest))


def driver_class(kind: str) -> type[Driver]:
    """The Driver class of a kind, from its folder's manifest (drivers/registry.py)."""
    from drivers.registry import driver_class as _cls
    return _cls(kind)


class PrintContext:
    """A DriverContext for ``casegate probe`` and tests: no journal, events go to a callback."""

    def __init__(self, device_id: str, on_event: Callable[[str, dict], None] | None = None,
                 bindings: dict[str, str] | None = None, center_id: str = "probe",
                 timezone: str = "Asia/Shanghai", storage_dir: str = "/tmp"):
        self.device_id = device_id
        self.center_id = center_id
        self.timezone = timezone
        self.storage_dir = storage_dir
        self.log = logging.getLogger(f"casegate.{device_id}")
        self.bindings = bindings or {}
        self.events: list[tuple[str, dict]] = []
        self._on_event = on_event
        self._lock = threading.Lock()

    def emit(self, type: str, data: dict[str, Any], ts: float | None = None) -> Future:
        with self._lock:
            self.events.append((type, data))
        if self._on_event:
            self._on_event(type, data)
        f: Future = Future()
        f.set_result(None)
        return f

    def person_for(self, tag_or_card: str) -> str | None:
        return self.bindings.get(tag_or_card)
