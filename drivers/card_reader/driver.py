"""125 kHz EM4100 card readers on a serial port (SPEC §4.2).

One thread: open ``cfg.port`` (any pyserial URL; drivers/common/serial_port.py),
read, decode, emit ``card.swiped`` [card, reader, room, person]. A card repeated
within ``repeat_ms`` is one swipe. When the port vanishes (USB unplugged, pty
closed: read raises SerialException/OSError) the device goes ``offline`` with
the reason and the thread retries opening it with :class:`Backoff` (no busy
loop) until it is back, then ``online``.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

import serial

from drivers.base import Backoff, Driver, DriverContext
from drivers.common.serial_port import SerialOpenError, open_serial
from drivers.card_reader.protocol import CardParser, RepeatFilter

READ_TIMEOUT_S = 0.2


class CardReaderDriver(Driver):
    kind = "card_reader"

    def __init__(self, cfg: Any, ctx: DriverContext):
        super().__init__(cfg, ctx)
        self.parser = CardParser(on_error=self._parse_error)
        self.repeat = RepeatFilter(cfg.repeat_ms)
        self._thread: threading.Thread | None = None
        self._ser: serial.SerialBase | None = None
        #: optional hooks for ``casegate probe``
        self.on_card: Callable[[str, bool], None] | None = None          # (card, is_new_swipe)
        self.on_parse_error: Callable[[str, int], None] | None = None    # (reason, n)

    # ---- lifecycle -------------------------------------------------------
    def start(self) -> None:
        self.stop_event.clear()
        self._thread = threading.Thread(target=self._run, name=f"card-{self.device_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        super().stop(timeout)
        if self._thread is not None:
            self._thread.join(timeout)
        with self._health_lock:
            self.health.state = "stopped"

    def _run(self) -> None:
        backoff = Backoff(self.stop_event, first=0.5, cap=getattr(self.cfg, "reconnect_max_s", 30.0))
        url = self.cfg.port
        while not self.stop_event.is_set():
            try:
                ser = open_serial(url, self.cfg.baudrate, timeout=READ_TIMEOUT_S)
            except SerialOpenError as e:
                self.set_state("offline", str(e))
                if not backoff.wait():
                    break
                continue
            self._ser = ser
            self.parser.reset()
            backoff.reset()
            self.set_state("online")
            try:
                while not self.stop_event.is_set():
                    data = ser.read(max(1, ser.in_waiting))
                    if data:
                        self.handle_bytes(data, time.monotonic(), time.time())
            except (serial.SerialException, OSError) as e:
                if not self.stop_event.is_set():
                    self.set_state("offline", f"{url}: {e}")
            except Exception as e:  # never let the thread die silently
                self.count("internal_error")
                self.ctx.log.exception("%s: reader thread error", self.device_id)
                self.set_state("error", f"{url}: {e!r}")
            finally:
                self._ser = None
                try:
                    ser.close()
                except Exception:
                    pass
            if self.parser.pending:
                self.count("partial_frame_dropped")
                self.parser.reset()
            if not self.stop_event.is_set() and not backoff.wait():
                break

    # ---- decoding --------------------------------------------------------
    def _parse_error(self, reason: str, n: int) -> None:
        if reason == "noise_bytes":
            self.count(reason, n)
        else:
            self.frame_bad(reason, n)
        if self.on_parse_error is not None:
            self.on_parse_error(reason, n)

    def handle_bytes(self, data: bytes, now: float, wall: float | None = None) -> list[str]:
        """Feed raw port bytes; emits ``card.swiped`` for new swipes and returns them."""
        swiped = []
        for card in self.parser.feed(data):
            self.frame_ok()
            new = self.repeat.accept(card, now)
            if new:
                swiped.append(card)
                self.ctx.emit("card.swiped", {"card": card, "reader": self.device_id, "room": self.cfg.room,
                                              "person": self.ctx.person_for(card)},
                              ts=wall if wall is not None else time.time())
            else:
                self.count("repeats")
            if self.on_card is not None:
                self.on_card(card, new)
        return swiped
