"""One serial line kept open by one thread: open, back off and reopen, report up/down, close.

Every serial driver used to write this loop itself (card reader, lock board, UHF
inventory reader); each copy differed only in what it reported. :class:`SerialLine`
is the loop, once:

* **open** through :func:`~drivers.common.serial_port.open_serial` (the one wording of
  "cannot open" for ``device.offline``, ``casegate devices`` and the probes);
* **back off** with :class:`~drivers.base.Backoff` after a failed open or a lost port
  (no busy loop while a USB adapter is unplugged), and reopen until stopped;
* **report** through hooks whose defaults make the owning driver ``online`` when the
  port opens and ``offline`` with the reason when it will not open or is lost;
  a driver whose "online" needs more than an open port (a lock board that must
  answer a poll) overrides them;
* **account** for a frame cut in half by the port going away: a parser that keeps
  a partial frame (``pending``) is reset on every open and, when the port closed
  with bytes pending, counted as ``partial_frame_dropped``;
* **close** the port whatever ended the session, and stop within one read timeout
  of the owner's ``stop_event``.

What stays with each driver is its protocol: :meth:`SerialLine.on_bytes` for a
reader that only listens (the default :meth:`SerialLine.session` feeds it), or an
overridden :meth:`SerialLine.session` for a request/answer protocol that writes.
Ports are used by the line's thread only, so no port is shared between threads.
"""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import serial

from drivers.base import Backoff
from drivers.common.serial_port import SerialOpenError, open_serial

if TYPE_CHECKING:
    from drivers.base import Driver

#: exceptions that mean "the port went away" (USB unplugged, pty closed), not a bug
PORT_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError)


class SerialLine:
    """The open/backoff/reopen loop of one port of ``owner`` (run :meth:`run` in a thread,
    or call :meth:`start`). Subclass it and override the hooks; the defaults suit a
    reader that is online while its port is open."""

    def __init__(self, owner: "Driver", port: str, baudrate: int, *, read_timeout: float,
                 write_timeout: float | None = None, flush_input: bool = False,
                 backoff_first: float = 0.5, backoff_cap: float = 30.0, parser: Any = None,
                 thread_name: str | None = None):
        self.owner = owner
        self.port = port
        self.baudrate = baudrate
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self.flush_input = flush_input
        self.parser = parser            # optional: has ``pending`` and ``reset()`` (partial frames)
        self.stop = owner.stop_event
        self.backoff = Backoff(self.stop, first=backoff_first, cap=backoff_cap)
        self.thread_name = thread_name or f"serial-{owner.device_id}"
        self.ser: Any = None            # the open port while a session runs, else None
        self.thread: threading.Thread | None = None

    # ---- the loop ------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self.ser is not None

    def start(self) -> threading.Thread:
        self.thread = threading.Thread(target=self.run, name=self.thread_name, daemon=True)
        self.thread.start()
        return self.thread

    def join(self, timeout: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout)

    def open(self) -> Any:
        """The pyserial port, or :class:`SerialOpenError` (override for another opener)."""
        return open_serial(self.port, self.baudrate, timeout=self.read_timeout,
                           write_timeout=self.write_timeout, flush_input=self.flush_input)

    def run(self) -> None:
        """Open, run a session, close, back off; until the owner stops."""
        while not self.stop.is_set():
            try:
                ser = self.open()
            except SerialOpenError as e:
                self.open_failed(e)
                if not self.backoff.wait():
                    break
                continue
            self._run_session(ser)
            if not self.stop.is_set() and not self.backoff.wait():
                break

    def _run_session(self, ser: Any) -> None:
        self.ser = ser
        if self.parser is not None:
            self.parser.reset()
        try:
            self.opened()
            self.session(ser)
        except PORT_ERRORS as e:
            # counted before "offline" is visible: whoever sees the loss sees its cut frame
            # (a test read the counter between the two, once, in a full run)
            self._account_partial_frame()
            if not self.stop.is_set():
                self.lost(e)
        except Exception as e:      # never let the thread die silently
            self.fault(e)
        finally:
            self.ser = None
            try:
                ser.close()
            except Exception:       # closing a half-dead port must not raise
                pass
            self.closed()
        self._account_partial_frame()

    def _account_partial_frame(self) -> None:
        parser = self.parser
        if parser is not None and parser.pending:
            self.owner.count("partial_frame_dropped")
            parser.reset()

    # ---- hooks -----------------------------------------------------------------
    def session(self, ser: Any) -> None:
        """Use the open port until it fails or the owner stops; the default reads and
        hands every chunk to :meth:`on_bytes`. A port error raised here ends the session."""
        while not self.stop.is_set():
            data = ser.read(max(1, ser.in_waiting))
            if data:
                self.on_bytes(data, time.monotonic(), time.time())

    def on_bytes(self, data: bytes, now: float, wall: float) -> None:
        """Bytes read from the port (``now`` monotonic, ``wall`` epoch)."""
        raise NotImplementedError(f"{type(self).__name__} reads bytes but has no on_bytes")

    def opened(self) -> None:
        """The port is open: by default the backoff starts over and the owner is online."""
        self.backoff.reset()
        self.owner.set_state("online")

    def open_failed(self, e: SerialOpenError) -> None:
        """The port would not open; ``str(e)`` is the technician-facing reason."""
        self.owner.set_state("offline", str(e))

    def lost(self, e: BaseException) -> None:
        """The open port failed (unplugged, closed pty)."""
        self.owner.set_state("offline", f"{self.port}: {e}")

    def fault(self, e: Exception) -> None:
        """Anything else the session raised: a bug, counted and logged with its traceback."""
        owner = self.owner
        owner.count("internal_error")
        owner.ctx.log.exception("%s: reader thread error", owner.device_id)
        owner.set_state("error", f"{self.port}: {e!r}")

    def closed(self) -> None:
        """The port is closed (after any session, however it ended)."""
