"""An RDM6300-style EM4100 reader imitation (SPEC §4.2).

It writes the exact frames (``02`` · 10 hex · 2 hex XOR · ``03``) either to a
pseudo-terminal it creates (the driver opens :attr:`port`, optionally a stable
symlink ``link``) or to any pyserial URL (e.g. one end of a ``socat`` pty
pair). A held card is repeated ``repeats`` times every ``repeat_interval_s``
like a real module; garbage and bad-checksum frames can be injected on demand
or at random rates (seeded). :meth:`unplug` / :meth:`replug` make the port
vanish and come back, as a USB cable would.

``start()`` runs a writer thread fed by a bounded queue; without it, calls
write synchronously.
"""
from __future__ import annotations

import os
import queue
import random
import threading
import time
import tty

from drivers.card_reader.protocol import encode
from drivers.common.site import SiteCommandError, SiteDevice, serial_link

_NOISE = bytes(b for b in range(256) if b != 0x02)


class CardReaderSimulator:
    def __init__(self, url: str | None = None, *, link: str | None = None, baudrate: int = 9600,
                 repeat_interval_s: float = 0.1, garbage_rate: float = 0.0, bad_checksum_rate: float = 0.0,
                 seed: int | None = 0):
        self.url = url
        self.link = link
        self.baudrate = baudrate
        self.repeat_interval_s = repeat_interval_s
        self.garbage_rate = garbage_rate
        self.bad_checksum_rate = bad_checksum_rate
        self.rng = random.Random(seed)
        self._master: int | None = None
        self._slave: int | None = None
        self._ser = None
        self.slave_name: str | None = None
        self._q: queue.Queue = queue.Queue(maxsize=10000)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wlock = threading.Lock()
        self.stats = {"frames": 0, "bad_checksum": 0, "garbage_bytes": 0, "bytes": 0}
        self.open()

    # ---- the port ---------------------------------------------------------
    @property
    def port(self) -> str:
        """What the driver should open."""
        if self.url is not None:
            return self.url
        return self.link or self.slave_name or ""

    def open(self) -> None:
        if self.url is not None:
            import serial
            self._ser = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=0.2, write_timeout=2)
            return
        master, slave = os.openpty()
        tty.setraw(slave)            # no echo, no line discipline before the driver opens it
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.slave_name = os.ttyname(slave)
        if self.link:
            tmp = f"{self.link}.tmp{os.getpid()}"
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            os.symlink(self.slave_name, tmp)
            os.replace(tmp, self.link)

    def unplug(self) -> None:
        """The port vanishes: the pty is closed (the driver's reads fail) and the link removed."""
        with self._wlock:
            if self.link:
                try:
                    os.unlink(self.link)
                except FileNotFoundError:
                    pass
            for fd in (self._master, self._slave):
                if fd is not None:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            self._master = self._slave = None
            if self._ser is not None:
                self._ser.close()
                self._ser = None

    def replug(self) -> None:
        """A new pty (and the same ``link``), as when the USB cable is plugged back in."""
        with self._wlock:
            self.open()

    def close(self) -> None:
        self.stop()
        self.unplug()

    # ---- writing ----------------------------------------------------------
    def _write_now(self, data: bytes) -> None:
        with self._wlock:
            if self._master is not None:
                view = memoryview(data)
                deadline = time.monotonic() + 2.0
                while view and time.monotonic() < deadline:
                    try:
                        n = os.write(self._master, view)
                    except BlockingIOError:
                        time.sleep(0.01)
                        continue
                    view = view[n:]
            elif self._ser is not None:
                self._ser.write(data)
            else:
                raise OSError("simulated reader is unplugged")
            self.stats["bytes"] += len(data)

    def write(self, data: bytes, delay_s: float = 0.0) -> None:
        """Raw bytes (after ``delay_s``, in order with everything else queued)."""
        if self._thread is not None and self._thread.is_alive():
            self._q.put((delay_s, data), timeout=2)
        else:
            if delay_s:
                time.sleep(delay_s)
            self._write_now(data)

    def garbage(self, n: int = 8) -> bytes:
        """Random noise bytes (never an 02, so no false frame start)."""
        g = bytes(self.rng.choice(_NOISE) for _ in range(n))
        self.stats["garbage_bytes"] += n
        self.write(g)
        return g

    def bad_checksum(self, card: str) -> bytes:
        good = encode(card)
        cs = int(good[11:13], 16) ^ 0x5A
        f = encode(card, checksum_override=cs)
        self.stats["bad_checksum"] += 1
        self.write(f)
        return f

    def swipe(self, card: str, repeats: int = 1) -> None:
        """Present a card: its frame ``repeats`` times, ``repeat_interval_s`` apart.
        With ``garbage_rate``/``bad_checksum_rate`` set, noise or a corrupted
        frame is mixed in at random."""
        frame = encode(card)
        for k in range(max(1, repeats)):
            if self.garbage_rate and self.rng.random() < self.garbage_rate:
                self.garbage(self.rng.randint(1, 6))
            if self.bad_checksum_rate and self.rng.random() < self.bad_checksum_rate:
                self.bad_checksum(card)
            self.write(frame, self.repeat_interval_s if k else 0.0)
            self.stats["frames"] += 1

    # ---- background -------------------------------------------------------
    def start(self) -> "CardReaderSimulator":
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="card-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            try:
                self._q.put_nowait((0.0, None))
            except queue.Full:
                pass
            self._thread.join(timeout)
            self._thread = None

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued has been written."""
        deadline = time.monotonic() + timeout
        while self._q.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._q.unfinished_tasks

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                delay, data = self._q.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                if data is None:
                    continue
                if delay and self._stop.wait(delay):
                    continue
                try:
                    self._write_now(data)
                except OSError:
                    pass  # unplugged: bytes are lost, as on a real cable
            finally:
                self._q.task_done()


# ---- casegate simulate (drivers/common/site.py) ----------------------------------------------
class CardReaderSiteDevice(SiteDevice):
    """A reader module on the configured port (a pseudo-terminal linked at that path)."""

    usage = ("swipe <card> <reader>",)

    def __init__(self, dev):
        super().__init__(dev.id)
        self.link = serial_link(dev.port)
        self.room = dev.room
        self.sim: CardReaderSimulator | None = None

    def start(self) -> None:
        self.sim = CardReaderSimulator(link=self.link).start()

    def stop(self) -> None:
        if self.sim is not None:
            self.sim.close()

    def where(self) -> str:
        return f"{self.link} -> {self.sim.slave_name if self.sim else '?'} (room {self.room})"

    def handle(self, words: list[str]) -> str | None:
        if words[0] != "swipe" or len(words) != 3 or words[2] not in (self.device_id, self.room):
            return None
        card = words[1].upper()
        if len(card) != 10 or any(c not in "0123456789ABCDEF" for c in card):
            raise SiteCommandError(f"{words[1]!r}: a card id is 10 hex digits, e.g. 14008EC793")
        self.sim.swipe(card, repeats=3)
        return f"card {card} swiped at {self.device_id} ({self.room})"


def site_device(dev) -> CardReaderSiteDevice:
    return CardReaderSiteDevice(dev)
