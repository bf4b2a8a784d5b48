"""Evidence and belongings lockers (SPEC §4.4 lock board, §4.5 UHF inventory).

Two threads, each owning one serial port, so no port is ever shared between
threads:

* board thread - polls ``02 B0 30 03 SUM`` every ``poll_ms``, turns lock-hook
  bit changes into ``locker.opened`` / ``locker.closed`` [locker, compartment]
  (the first answer reports every compartment's state once), and executes
  unlock requests queued by :meth:`LockerDriver.command` between polls.
* inventory thread (if ``inventory`` is configured) - sends ``Len Adr 01 CRC``
  every ``inventory.poll_ms``, collects the (possibly multi-frame) answer and
  turns it into ``evidence.added`` / ``evidence.removed`` [locker, compartment,
  item]. An inventory that timed out or contained a bad frame is discarded
  whole: it proves nothing about absent items. The first complete inventory
  reports every item present once.

``locker/open``: validated, ``locker.unlock_requested`` journaled (the command
waits for the journal), then ``0x31`` sent; the answer comes only from the
board (ST 0x11 -> ``{"opened": true}``, anything else -> ``device_refused``,
silence -> ``device_timeout``). A successful unlock triggers an immediate
status poll so ``locker.opened`` follows promptly.

Device state: ``offline`` while the board port is closed/failing or the board
has not answered 3 polls in a row; ``error`` while only the inventory reader
fails; ``online`` otherwise. Each port is a :class:`~drivers.common.serial_line.SerialLine`
(opened, backed off and reopened there); this module keeps the two protocols.

Item compartment: ``inventory.labels`` (EPC or EPC prefix -> compartment,
longest prefix wins), else ``inventory.antennas`` when the antennas that saw
the tag cover exactly one compartment, else null. The SPEC §4.5 inventory
frame carries no antenna; readers that add the UHFReader288-style Ant byte
(``Status Ant Num ...``) are supported with ``inventory.ant_byte = true``.
Without it, every configured antenna is assumed to have seen the tag.
"""
from __future__ import annotations

import queue
from collections import deque
import threading
import time
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from drivers.base import Backoff, CommandError, Driver, DriverContext
from drivers.common.serial_line import SerialLine
from drivers.common.serial_port import SerialOpenError, open_serial
from drivers.locker import protocol as p

STATUS_MISSES_OFFLINE = 3
INVENTORY_MISSES_ERROR = 3


# ---------------------------------------------------------------- serial helpers
def open_locker_port(port: str, baudrate: int, timeout: float = 0.02):
    """A lock board or UHF reader port: 8N1, short reads (the stream parser polls), a
    stale input buffer dropped. Raises SerialOpenError (drivers/common/serial_port.py)."""
    return open_serial(port, baudrate, timeout=timeout, write_timeout=1.0, flush_input=True)


class FrameStream:
    """A serial port + stream parser; frames decoded together are handed out one by one."""

    def __init__(self, ser, parser):
        self.ser = ser
        self.parser = parser
        self.pending: deque = deque()

    def drain(self) -> None:
        """Before a request: decode and drop late answers, then drop a partial frame."""
        n = self.ser.in_waiting
        if n:
            self.pending.extend(self.parser.feed(self.ser.read(n)))
        self.parser.flush()
        self.pending.clear()

    def write(self, data: bytes) -> None:
        self.ser.write(data)

    def next(self, want, timeout: float, stop: threading.Event | None = None, on_other=None):
        """The next frame for which ``want(frame)`` is true; None on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            while self.pending:
                f = self.pending.popleft()
                if want(f):
                    return f
                if on_other:
                    on_other(f)
            if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
                return None
            n = self.ser.in_waiting
            data = self.ser.read(n if n > 0 else 1)
            if data:
                self.pending.extend(self.parser.feed(data))


class _LockerLine(SerialLine):
    """A port of the locker, opened by :func:`open_locker_port`. The device state is the driver's ``_update_state`` of both lines, not "port open":
    the board must answer a poll, the reader deliver a whole inventory. Whatever
    ends a session (SerialException, OSError, termios.error) is a port error."""

    role = ""               # "board" | "inventory": the counters' prefix and the state it updates

    def __init__(self, drv: "LockerDriver", port: str, baudrate: int, thread_name: str):
        super().__init__(drv, port, baudrate, read_timeout=0.02, thread_name=thread_name)
        self.drv = drv

    def open(self):
        return open_locker_port(self.port, self.baudrate)

    def _report(self, err: str) -> None:
        if self.role == "board":
            self.drv._update_state(board_err=err)
        else:
            self.drv._update_state(inv_err=err)

    def opened(self) -> None:
        """Online only once the device answers (the session resets the backoff then)."""

    def open_failed(self, e: SerialOpenError) -> None:
        self.drv.count(f"{self.role}_open_failed")
        self._report(str(e))

    def lost(self, e: BaseException) -> None:
        self.drv.count(f"{self.role}_port_error")
        self._report(f"port error on {self.port}: {e}")

    fault = lost


class _BoardLine(_LockerLine):
    role = "board"

    def __init__(self, drv: "LockerDriver"):
        super().__init__(drv, drv.cfg.port, drv.cfg.baudrate, f"locker-{drv.device_id}")

    def open_failed(self, e: SerialOpenError) -> None:
        super().open_failed(e)
        self.drv._fail_pending("lock board port is not open")

    def opened(self) -> None:
        self.drv._board_port_open = True

    def session(self, ser) -> None:
        self.drv._board_loop(FrameStream(ser, self.drv.board_parser), self.backoff)

    def closed(self) -> None:
        self.drv._board_port_open = False
        self.drv._fail_pending("lock board port closed")


class _InventoryLine(_LockerLine):
    role = "inventory"

    def __init__(self, drv: "LockerDriver"):
        inv = drv.cfg.inventory
        super().__init__(drv, inv.port, inv.baudrate, f"uhf-{drv.device_id}")

    def session(self, ser) -> None:
        self.drv._inventory_loop(FrameStream(ser, self.drv.uhf_parser), self.backoff)


# ---------------------------------------------------------------- unlock requests
@dataclass
class _Unlock:
    compartment: int
    deadline: float
    future: Future


@dataclass
class _Item:
    compartment: int | None
    missing: int = 0


class LockerDriver(Driver):
    kind = "locker"

    def __init__(self, cfg: Any, ctx: DriverContext):
        super().__init__(cfg, ctx)
        self.board = cfg.board
        self.mask = (1 << cfg.compartments) - 1
        self.hooks: int | None = None          # last lock-hook bits (None: never read)
        self.sensors: int | None = None
        self.items: dict[str, _Item] = {}
        self.inventories = 0                   # complete inventories processed
        self._queue: "queue.Queue[_Unlock]" = queue.Queue()
        self._poll_now = threading.Event()
        self._board_port_open = False
        self._board_err: str | None = "starting"
        self._inv_err: str | None = None
        self._state_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.board_parser = p.BoardParser("host", on_bad=lambda r: self.frame_bad(f"board_{r}"))
        self.uhf_parser = p.UhfParser(on_bad=lambda r: self.frame_bad(f"uhf_{r}"))
        inv = cfg.inventory
        self.ant_byte = bool(getattr(inv, "ant_byte", False)) if inv else False
        self._labels = sorted(((k.upper(), v) for k, v in (inv.labels if inv else {}).items()),
                              key=lambda kv: -len(kv[0]))
        self._antennas = {int(k): list(v) for k, v in (inv.antennas if inv else {}).items()}

    # ---- lifecycle -----------------------------------------------------
    def start(self) -> None:
        self.stop_event.clear()
        lines: list[SerialLine] = [_BoardLine(self)]
        if self.cfg.inventory is not None:
            lines.append(_InventoryLine(self))
        self._threads = [line.start() for line in lines]

    def stop(self, timeout: float = 2.0) -> None:
        super().stop(timeout)
        end = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))
        self._threads = []
        self._fail_pending("locker driver stopped")
        with self._health_lock:
            self.health.state = "stopped"

    def _fail_pending(self, why: str) -> None:
        while True:
            try:
                req = self._queue.get_nowait()
            except queue.Empty:
                return
            if req.future.set_running_or_notify_cancel():
                req.future.set_exception(CommandError("device_timeout", why))

    # ---- state ----------------------------------------------------------
    def _update_state(self, board_err: str | None | bool = False, inv_err: str | None | bool = False) -> None:
        with self._state_lock:
            if board_err is not False:
                self._board_err = board_err  # type: ignore[assignment]
            if inv_err is not False:
                self._inv_err = inv_err      # type: ignore[assignment]
            if self.stop_event.is_set():
                return
            if self._board_err is not None:
                if self._board_err != "starting":
                    self.set_state("offline", self._board_err)
            elif self._inv_err is not None:
                self.set_state("error", f"inventory reader: {self._inv_err}")
            else:
                self.set_state("online")

    # ---- command ----------------------------------------------------------
    def command(self, name: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
        if name != "locker/open":
            return super().command(name, args, timeout)
        deadline = time.monotonic() + timeout
        if not isinstance(args, dict):
            raise CommandError("bad_request", "arguments must be an object")
        locker = args.get("locker", self.device_id)
        if locker != self.device_id:
            raise CommandError("bad_request", f"this is locker {self.device_id}, not {locker}")
        comp = args.get("compartment")
        if not isinstance(comp, int) or isinstance(comp, bool) or not 1 <= comp <= self.cfg.compartments:
            raise CommandError("bad_request",
                               f"compartment must be 1..{self.cfg.compartments}, got {comp!r}")
        by = args.get("by")
        if not isinstance(by, str) or not by:
            raise CommandError("bad_request", "by (who opens) is required")
        order = args.get("order")
        if order is not None and not isinstance(order, str):
            raise CommandError("bad_request", "order must be a string")
        # Journal the request before anything moves (SPEC §2).
        fut = self.ctx.emit("locker.unlock_requested", {"locker": self.device_id, "compartment": comp,
                                                         "by": by, "order": order})
        try:
            fut.result(timeout=max(0.05, deadline - time.monotonic()))
        except FutureTimeout:
            raise CommandError("device_timeout", "unlock request not journaled in time; not sent") from None
        except Exception as e:
            raise CommandError("device_refused", f"unlock request could not be journaled ({e}); not sent") from None
        if not self._board_port_open:
            raise CommandError("device_timeout", f"lock board port {self.cfg.port} is not open")
        req = _Unlock(comp, deadline, Future())
        self._queue.put(req)
        try:
            req.future.result(timeout=max(0.0, deadline - time.monotonic()) + 1.0)
        except FutureTimeout:
            req.future.cancel()
            raise CommandError("device_timeout", "lock board did not answer in time") from None
        except CancelledError:
            raise CommandError("device_timeout", "unlock cancelled") from None
        return {"locker": self.device_id, "compartment": comp, "opened": True}

    # ---- board thread -------------------------------------------------------
    # (opening, backoff and reopening: _BoardLine, a drivers/common/serial_line.py SerialLine)
    def _board_loop(self, ser, backoff: Backoff) -> None:
        period = self.cfg.poll_ms / 1000.0
        status_timeout = max(0.1, min(0.3, period))
        next_poll = time.monotonic()
        misses = 0
        while not self.stop_event.is_set():
            wait = max(0.0, min(next_poll - time.monotonic(), 0.1))
            try:
                req = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                req = None
            if req is not None:
                if self._do_unlock(ser, req):
                    misses = 0
                continue
            now = time.monotonic()
            if now < next_poll and not self._poll_now.is_set():
                continue
            self._poll_now.clear()
            next_poll = max(next_poll + period, now)
            ser.drain()
            ser.write(p.status_command(self.board))
            reply = ser.next(lambda f: isinstance(f, p.StatusReply) and f.board == self.board,
                             status_timeout, self.stop_event, self._other_board_frame)
            if reply is None:
                if self.stop_event.is_set():
                    return
                misses += 1
                self.count("status_timeout")
                if misses >= STATUS_MISSES_OFFLINE:
                    self._update_state(board_err=f"no reply from lock board {self.board}")
                continue
            misses = 0
            backoff.reset()
            self.frame_ok()
            self._on_status(reply)
            self._update_state(board_err=None)

    def _other_board_frame(self, f) -> None:
        self.count("unexpected_reply")

    def _do_unlock(self, ser, req: _Unlock) -> bool:
        """Run one unlock; True if the board answered."""
        if not req.future.set_running_or_notify_cancel():
            return False                       # the caller gave up: never unlock late
        remaining = req.deadline - time.monotonic()
        if remaining <= 0:
            req.future.set_exception(CommandError("device_timeout", "unlock not sent: timed out waiting for the line"))
            return False
        lock = req.compartment - 1
        try:
            ser.drain()
            ser.write(p.unlock_command(self.board, req.compartment))
            reply = ser.next(lambda f: isinstance(f, p.UnlockReply) and f.board == self.board and f.lock == lock,
                             min(self.cfg.unlock_timeout_ms / 1000.0, remaining), self.stop_event,
                             self._other_board_frame)
        except Exception:
            req.future.set_exception(CommandError("device_timeout", "lock board port failed during unlock"))
            raise
        if reply is None:
            self.count("unlock_timeout")
            req.future.set_exception(CommandError(
                "device_timeout", f"no answer from lock board {self.board} within {self.cfg.unlock_timeout_ms} ms"))
            return False
        self.frame_ok()
        if reply.opened:
            self._poll_now.set()
            req.future.set_result(True)
        else:
            self.count("unlock_refused")
            req.future.set_exception(CommandError(
                "device_refused", f"lock board refused to open compartment {req.compartment} (ST=0x{reply.st:02X})"))
        return True

    def _on_status(self, r: p.StatusReply) -> None:
        hooks, sensors = r.hooks & self.mask, r.sensors & self.mask
        old = self.hooks
        self.hooks, self.sensors = hooks, sensors
        changed = self.mask if old is None else (old ^ hooks)
        now = time.time()
        for i in range(self.cfg.compartments):
            if changed >> i & 1:
                typ = "locker.opened" if hooks >> i & 1 else "locker.closed"
                self.ctx.emit(typ, {"locker": self.device_id, "compartment": i + 1}, ts=now)

    # ---- inventory thread ----------------------------------------------------
    # (opening, backoff and reopening: _InventoryLine)
    def _inventory_loop(self, ser, backoff: Backoff) -> None:
        inv = self.cfg.inventory
        period = inv.poll_ms / 1000.0
        misses = 0
        next_t = time.monotonic()
        while not self.stop_event.is_set():
            wait = next_t - time.monotonic()
            if wait > 0 and self.stop_event.wait(wait):
                return
            next_t = max(next_t + period, time.monotonic())
            result = self.run_inventory(ser)
            if self.stop_event.is_set():
                return
            if result is None:
                misses += 1
                if misses >= INVENTORY_MISSES_ERROR:
                    self._update_state(inv_err=f"no complete inventory from the UHF reader on {inv.port}")
                continue
            misses = 0
            backoff.reset()
            self._update_state(inv_err=None)
            self.on_inventory(result)

    def run_inventory(self, ser: FrameStream) -> dict[str, tuple[int, ...]] | None:
        """One inventory round: {EPC: antennas that saw it}, or None if incomplete."""
        inv = self.cfg.inventory
        timeout = max(0.5, min(3.0, inv.poll_ms / 1000.0))
        ser.drain()
        bad_before = sum(self.uhf_parser.bad.values())
        ser.write(p.inventory_command(inv.address))
        seen: dict[str, set[int]] = {}
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.uhf_parser.flush()
                self.count("inventory_timeout")
                return None
            frame = ser.next(lambda f: f.cmd == p.UHF_INVENTORY and (inv.address == 0xFF or f.adr == inv.address),
                             left, self.stop_event, lambda f: self.count("unexpected_uhf_frame"))
            if frame is None:
                if self.stop_event.is_set():
                    return None
                continue
            try:
                result = p.decode_inventory(frame, self.ant_byte)
            except p.ProtocolError:
                self.frame_bad("uhf_bad_inventory")
                return None
            self.frame_ok()
            for epc in result.epcs:
                seen.setdefault(epc, set()).update(result.antennas)
            if not result.more:
                break
        if sum(self.uhf_parser.bad.values()) != bad_before:
            self.count("inventory_discarded")   # a frame of this round was lost
            return None
        return {e: tuple(sorted(a)) for e, a in seen.items()}

    def compartment_for(self, epc: str, antennas: tuple[int, ...] = ()) -> int | None:
        for prefix, comp in self._labels:
            if epc.startswith(prefix):
                return comp
        ants = antennas if antennas else tuple(self._antennas)
        cands = {c for a in ants for c in self._antennas.get(a, ())}
        return next(iter(cands)) if len(cands) == 1 else None

    def on_inventory(self, seen: dict[str, tuple[int, ...]]) -> None:
        """Fold one complete inventory into the item set and emit changes."""
        self.inventories += 1
        now = time.time()
        for epc, ants in seen.items():
            comp = self.compartment_for(epc, ants)
            item = self.items.get(epc)
            if item is None:
                self.items[epc] = _Item(comp)
                self.ctx.emit("evidence.added", {"locker": self.device_id, "compartment": comp, "item": epc}, ts=now)
                continue
            item.missing = 0
            if comp is not None and comp != item.compartment:
                self.ctx.emit("evidence.removed", {"locker": self.device_id, "compartment": item.compartment,
                                                   "item": epc}, ts=now)
                item.compartment = comp
                self.ctx.emit("evidence.added", {"locker": self.device_id, "compartment": comp, "item": epc}, ts=now)
        for epc in [e for e in self.items if e not in seen]:
            item = self.items[epc]
            item.missing += 1
            if item.missing >= self.cfg.inventory.missing_after:
                del self.items[epc]
                self.ctx.emit("evidence.removed", {"locker": self.device_id, "compartment": item.compartment,
                                                   "item": epc}, ts=now)
