"""Door contacts on Modbus digital-input modules (SPEC §4.3).

Every ``poll_ms`` the driver reads ``count`` discrete inputs (FC02) from
``first_input`` of unit ``unit`` and turns debounced changes into
``door.opened`` / ``door.closed`` [door, room].

Addressing: a door's ``input`` is the module's discrete-input address (the
terminal number, 0-based), the same number FC02 uses; the read covers
``first_input`` .. ``first_input + count - 1``. With ``count`` unset it reads
up to the highest configured input (``max(input) + 1 - first_input`` inputs).

Debounce: the first successful read sets each door's state and reports it once
(one ``door.opened``/``door.closed`` per door); after that a value that differs
from the known state must be read on 2 consecutive polls before it is
reported (the event carries the time of the first of those polls). A bounce
shorter than one poll interval is never reported. A failed poll (timeout,
exception response, lost connection) restarts the debounce: the device goes
``offline`` (no answer) or ``error`` (Modbus exception response), polls are
retried with :class:`Backoff`, and no door event is produced until reads
succeed again - the known state survives the outage, so only real changes
are reported after it.

Several modules on one RS-485 line (``rtu://`` URLs naming the same port) share
one pymodbus client and one lock (:class:`ModbusBus`), so their requests never
collide on the wire and the port is opened once (pymodbus opens serial ports
exclusively). See :func:`acquire_bus`.
"""
from __future__ import annotations

import collections
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from drivers.base import Backoff, Driver, DriverContext

log = logging.getLogger("casegate.modbus_doors")


def quiet_pymodbus() -> None:
    """pymodbus logs each failed connect at ERROR, then "Repeating....": the driver
    already reports the failure once, with the device id (device.error, the probe's
    "offline: ..." line). Its own lines stay visible under --log-level DEBUG."""
    lg = logging.getLogger("pymodbus")
    if not lg.isEnabledFor(logging.DEBUG):
        lg.setLevel(logging.CRITICAL)

EXCEPTION_NAMES = {
    1: "illegal function", 2: "illegal data address", 3: "illegal data value",
    4: "server device failure", 5: "acknowledge", 6: "server device busy",
    8: "memory parity error", 10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


# ---------------------------------------------------------------- the bus
@dataclass(frozen=True)
class Endpoint:
    """Where a module is: ``tcp`` host/port or ``rtu`` serial port + line settings."""
    scheme: str
    host: str = ""
    port: int = 502
    device: str = ""
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8

    @property
    def key(self) -> str:
        """Identity of the physical line: the resolved serial device, or host:port."""
        if self.scheme == "rtu":
            return "rtu:" + os.path.realpath(self.device)
        return f"tcp:{self.host}:{self.port}"

    def describe(self) -> str:
        return f"{self.device}@{self.baudrate}" if self.scheme == "rtu" else f"{self.host}:{self.port}"


def parse_url(url: str) -> Endpoint:
    """``tcp://host[:port]`` or ``rtu:///dev/ttyUSB1?baudrate=9600&parity=N&stopbits=1&bytesize=8``."""
    u = urlsplit(url)
    if u.scheme == "tcp":
        if not u.hostname:
            raise ValueError(f"no host in {url!r}")
        return Endpoint("tcp", host=u.hostname, port=u.port or 502)
    if u.scheme == "rtu":
        device = (u.netloc + u.path) if u.netloc else u.path
        if not device:
            raise ValueError(f"no serial device in {url!r}")
        q = {k: v[-1] for k, v in parse_qs(u.query).items()}
        unknown = set(q) - {"baudrate", "parity", "stopbits", "bytesize"}
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)} in {url!r}")
        parity = q.get("parity", "N").upper()
        if parity not in ("N", "E", "O"):
            raise ValueError(f"parity must be N, E or O in {url!r}")
        return Endpoint("rtu", device=device, baudrate=int(q.get("baudrate", 9600)), parity=parity,
                        stopbits=int(q.get("stopbits", 1)), bytesize=int(q.get("bytesize", 8)))
    raise ValueError(f"url must start with tcp:// or rtu://, got {url!r}")


class ModbusBus:
    """One pymodbus sync client and the lock that serialises every request on it."""

    def __init__(self, ep: Endpoint, timeout_s: float):
        from pymodbus.client import ModbusSerialClient, ModbusTcpClient
        self.endpoint = ep
        self.lock = threading.Lock()
        self.refs = 0
        if ep.scheme == "rtu":
            self.client = ModbusSerialClient(ep.device, baudrate=ep.baudrate, parity=ep.parity,
                                             stopbits=ep.stopbits, bytesize=ep.bytesize,
                                             timeout=timeout_s, retries=0)
        else:
            self.client = ModbusTcpClient(ep.host, port=ep.port, timeout=timeout_s, retries=0)

    def set_timeout(self, timeout_s: float) -> None:
        """Per-request timeout (members of one bus may configure different ones).
        pymodbus 3.x keeps it in ``comm_params.timeout_connect``; caller holds ``lock``."""
        cp = getattr(self.client, "comm_params", None)
        if cp is not None and hasattr(cp, "timeout_connect"):
            cp.timeout_connect = timeout_s

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # closing a half-dead port must not raise
            pass


# Bus registry. Keyed by the physical line, reference counted: an entry lives
# exactly as long as some driver uses that line and is closed by the last
# release. It is not a process-wide singleton in the harmful sense: nothing is
# shared between different ports, nothing outlives its users, and a stopped and
# restarted driver (config reload) gets a fresh client once the old one released
# it. Sharing is the point: two modules on /dev/ttyUSB1 must not open the port
# twice (pymodbus opens it exclusively) nor talk over each other.
_BUSES: dict[str, ModbusBus] = {}
_BUSES_LOCK = threading.Lock()


def acquire_bus(ep: Endpoint, timeout_s: float) -> ModbusBus:
    with _BUSES_LOCK:
        bus = _BUSES.get(ep.key)
        if bus is None:
            bus = _BUSES[ep.key] = ModbusBus(ep, timeout_s)
        elif bus.endpoint != ep:
            log.warning("%s: line settings differ from the first user's %s; using those",
                        ep.describe(), bus.endpoint.describe())
        bus.refs += 1
        return bus


def release_bus(bus: ModbusBus) -> None:
    with _BUSES_LOCK:
        bus.refs -= 1
        if bus.refs <= 0:
            if _BUSES.get(bus.endpoint.key) is bus:
                del _BUSES[bus.endpoint.key]
            with bus.lock:
                bus.close()


class PollError(Exception):
    def __init__(self, state: str, reason: str, counter: str):
        super().__init__(reason)
        self.state = state          # offline | error | busy (line not free in time; nothing was sent)
        self.reason = reason
        self.counter = counter


def read_inputs(bus: ModbusBus, unit: int, first: int, count: int, timeout_s: float,
                stop: threading.Event | None = None) -> list[bool]:
    """One FC02 request on ``bus``; returns ``count`` booleans or raises :class:`PollError`."""
    from pymodbus.exceptions import ConnectionException, ModbusIOException
    deadline = time.monotonic() + max(2.0, 4 * timeout_s)
    # Wait for the line: other modules' requests take at most their timeout each.
    while not bus.lock.acquire(timeout=0.1):
        if (stop is not None and stop.is_set()) or time.monotonic() > deadline:
            raise PollError("busy", "bus busy", "bus_busy")
    try:
        client = bus.client
        bus.set_timeout(timeout_s)
        if not client.connected and not client.connect():
            bus.close()
            why = None
            if bus.endpoint.scheme == "rtu":
                # pymodbus says only "failed": open the port once ourselves for the one wording
                # of every serial driver (no such device / permission / busy)
                from drivers.common.serial_port import check_openable
                why = check_openable(bus.endpoint.device)
            raise PollError("offline", why or f"cannot connect to {bus.endpoint.describe()}", "connect_failed")
        try:
            rr = client.read_discrete_inputs(first, count=count, device_id=unit)
        except ModbusIOException as e:
            if bus.endpoint.scheme == "tcp":
                bus.close()   # a late answer must not be read as the next one's
            raise PollError("offline", f"no response within {timeout_s * 1000:.0f} ms", "timeout") from e
        except ConnectionException as e:
            bus.close()
            raise PollError("offline", f"connection lost: {e}", "connection_lost") from e
        except (OSError, ValueError) as e:   # serial errors, malformed answers
            bus.close()
            raise PollError("offline", f"I/O error: {e}", "io_error") from e
    finally:
        bus.lock.release()
    if rr.isError():
        code = getattr(rr, "exception_code", None)
        if code is None:
            raise PollError("error", f"bad response: {rr}", "bad_response")
        name = EXCEPTION_NAMES.get(code, "unknown")
        raise PollError("error", f"modbus exception {code} ({name})", "exception")
    bits = list(getattr(rr, "bits", []) or [])
    if len(bits) < count:
        raise PollError("error", f"short response: {len(bits)} of {count} inputs", "short_response")
    return [bool(b) for b in bits[:count]]


# ---------------------------------------------------------------- debounce
class DoorDebounce:
    """Per-door 2-poll debounce. Pure: feed it reads, it returns changes."""

    def __init__(self, polls: int = 2):
        self.polls = polls
        self.state: bool | None = None      # the raw input value reported last
        self._cand: bool | None = None
        self._seen = 0
        self._since = 0.0

    def reset_candidate(self) -> None:
        self._cand, self._seen = None, 0

    def feed(self, value: bool, now: float) -> tuple[bool, float] | None:
        """Return (new value, time first seen) when it is to be reported."""
        if self.state is None:
            self.state = value
            self.reset_candidate()
            return value, now
        if value == self.state:
            self.reset_candidate()
            return None
        if value != self._cand:
            self._cand, self._seen, self._since = value, 0, now
        self._seen += 1
        if self._seen >= self.polls:
            self.state = value
            self.reset_candidate()
            return value, self._since
        return None


class DoorChatterBound:
    """At most ``max_changes`` reported changes of one door per ``window_s``. A contact
    that chatters (a loose magnet flipping every few polls passes the 2-poll debounce)
    would otherwise journal door.opened/closed several times a second. Changes past
    the bound are suppressed (counted); the door's settled state is reported once the
    window allows, so the journal's opened/closed still alternate and end right.
    Pure: time is passed in."""

    def __init__(self, max_changes: int, window_s: float):
        self.max_changes = max_changes
        self.window_s = window_s
        self.times: collections.deque[float] = collections.deque()
        self.reported: bool | None = None      # the value last reported

    def allow(self, now: float) -> bool:
        while self.times and now - self.times[0] >= self.window_s:
            self.times.popleft()
        return len(self.times) < self.max_changes

    def report(self, value: bool, now: float) -> None:
        self.reported = value
        self.times.append(now)


class ModbusDoorsDriver(Driver):
    kind = "modbus_doors"

    def __init__(self, cfg: Any, ctx: DriverContext):
        super().__init__(cfg, ctx)
        self.endpoint = parse_url(cfg.url)
        self.first = cfg.first_input
        if cfg.count is not None:
            self.read_count = cfg.count
        elif cfg.doors:
            self.read_count = max(1, max(d.input for d in cfg.doors) + 1 - self.first)
        else:
            self.read_count = 1
        self.timeout_s = cfg.timeout_ms / 1000.0
        self.doors = []
        self.chatter: dict[str, DoorChatterBound] = {}
        for d in cfg.doors:
            idx = d.input - self.first
            if not 0 <= idx < self.read_count:
                ctx.log.error("%s: door %s input %d is outside the polled inputs %d..%d; ignored",
                              cfg.id, d.door, d.input, self.first, self.first + self.read_count - 1)
                self.count("door_input_out_of_range")
                continue
            self.doors.append((d, idx, DoorDebounce()))
            self.chatter[d.door] = DoorChatterBound(getattr(cfg, "chatter_max_changes", 30),
                                                    getattr(cfg, "chatter_window_s", 60.0))
        self.last_inputs: list[bool] | None = None
        self._bus: ModbusBus | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -----------------------------------------------------
    def open_bus(self) -> ModbusBus:
        """Join the shared line (done by :meth:`start`; tests may call it and drive
        :meth:`poll_once` themselves)."""
        if self._bus is None:
            self._bus = acquire_bus(self.endpoint, self.timeout_s)
        return self._bus

    def start(self) -> None:
        self.stop_event.clear()
        quiet_pymodbus()
        self.open_bus()
        self._thread = threading.Thread(target=self._run, name=f"modbus-{self.device_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        super().stop(timeout)
        if self._thread:
            self._thread.join(timeout)
            self._thread = None
        if self._bus:
            release_bus(self._bus)
            self._bus = None
        with self._health_lock:
            self.health.state = "stopped"

    # ---- polling -------------------------------------------------------
    def _run(self) -> None:
        backoff = Backoff(self.stop_event, first=max(0.2, self.cfg.poll_ms / 1000.0), cap=30.0)
        period = self.cfg.poll_ms / 1000.0
        next_t = time.monotonic()
        while not self.stop_event.is_set():
            if self.poll_once():
                backoff.reset()
                next_t += period
                now = time.monotonic()
                if next_t < now:        # fell behind (slow bus): keep the period, skip the backlog
                    next_t = now
                if self.stop_event.wait(next_t - now):
                    break
            else:
                if not backoff.wait():
                    break
                next_t = time.monotonic()

    def poll_once(self) -> bool:
        """One read + debounce. True if the module answered with data."""
        assert self._bus is not None
        try:
            bits = read_inputs(self._bus, self.cfg.unit, self.first, self.read_count,
                               self.timeout_s, self.stop_event)
        except PollError as e:
            if e.state == "busy":
                # The line was taken by other modules' slow requests: a skipped
                # poll, not a fault of this module (and not a poll for the debounce).
                self.count(e.counter)
                return True
            if e.state == "error" or e.counter in ("bad_response", "short_response"):
                self.frame_bad(e.counter)
            else:
                self.count(e.counter)
            for _, _, db in self.doors:
                db.reset_candidate()
            if not self.stop_event.is_set():
                self.set_state(e.state, e.reason)
            return False
        now = time.time()
        self.frame_ok()
        self.last_inputs = bits
        self.set_state("online")
        for d, idx, db in self.doors:
            change = db.feed(bits[idx], now)
            bound = self.chatter[d.door]
            if change is not None:
                value, since = change
            elif db.state is not None and db.state != bound.reported:
                value, since = db.state, now       # settled after suppressed chatter
            else:
                continue
            if value == bound.reported:
                continue                           # chatter that came back to what was reported
            if not bound.allow(now):
                self.count("door_chatter_suppressed")
                self._log_once_chatter(d.door)
                continue
            bound.report(value, now)
            closed = int(value) == d.closed_when
            self.ctx.emit("door.closed" if closed else "door.opened",
                          {"door": d.door, "room": d.room}, ts=since)
        return True

    def _log_once_chatter(self, door: str) -> None:
        logged = self.__dict__.setdefault("_chatter_logged", set())
        if door not in logged:
            logged.add(door)
            self.ctx.log.warning("%s: door %s chatters (more than %d changes in %g s): further changes "
                                 "suppressed until it settles; check the contact and its magnet",
                                 self.device_id, door, self.chatter[door].max_changes,
                                 self.chatter[door].window_s)
