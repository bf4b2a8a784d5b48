"""125 kHz EM4100 card readers on a serial port (SPEC §4.2).

One thread: a :class:`~drivers.common.serial_line.SerialLine` keeps ``cfg.port``
(any pyserial URL) open; this module decodes what it reads and emits
``card.swiped`` [card, reader, room, person]. A card repeated within
``repeat_ms`` is one swipe. When the port vanishes (USB unplugged, pty closed)
the line reports the device ``offline`` with the reason and reopens it with
backoff (capped at ``reconnect_max_s``) until it is back, then ``online``.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from drivers.base import Driver, DriverContext
from drivers.card_reader.protocol import CardParser, RepeatFilter
from drivers.common.serial_line import SerialLine

READ_TIMEOUT_S = 0.2


class _CardLine(SerialLine):
    """The reader's port: online while open; every byte goes to the driver's decoder."""

    def __init__(self, drv: "CardReaderDriver"):
        super().__init__(drv, drv.cfg.port, drv.cfg.baudrate, read_timeout=READ_TIMEOUT_S,
                         backoff_cap=getattr(drv.cfg, "reconnect_max_s", 30.0), parser=drv.parser,
                         thread_name=f"card-{drv.device_id}")
        self.drv = drv

    def on_bytes(self, data: bytes, now: float, wall: float) -> None:
        self.drv.handle_bytes(data, now, wall)


class CardReaderDriver(Driver):
    kind = "card_reader"

    def __init__(self, cfg: Any, ctx: DriverContext):
        super().__init__(cfg, ctx)
        self.parser = CardParser(on_error=self._parse_error)
        self.repeat = RepeatFilter(cfg.repeat_ms)
        self._thread: threading.Thread | None = None
        self._line: _CardLine | None = None
        #: optional hooks for ``casegate probe``
        self.on_card: Callable[[str, bool], None] | None = None          # (card, is_new_swipe)
        self.on_parse_error: Callable[[str, int], None] | None = None    # (reason, n)

    # ---- lifecycle -------------------------------------------------------
    def start(self) -> None:
        self.stop_event.clear()
        self._line = _CardLine(self)
        self._thread = self._line.start()

    def stop(self, timeout: float = 2.0) -> None:
        super().stop(timeout)
        if self._thread is not None:
            self._thread.join(timeout)
        with self._health_lock:
            self.health.state = "stopped"

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
