"""Lock board and UHF inventory reader imitations on pseudo-terminals (SPEC §4.4, §4.5).

Each simulator opens a pty pair; the driver opens ``sim.port`` (the slave
device, or the symlink ``link`` if given) as its serial port, the simulator
works the master fd in raw mode on a thread and answers with the exact SPEC
bytes. ``stop()`` closes the pty - the serial device disappears as an
unplugged USB adapter does; ``start()`` again creates a new one (re-pointing
``link``, so a driver configured with the link path finds it again).

Tests script the devices:
    board = LockBoardSimulator(board=0).start()
    board.set_door(3, True); board.set_occupied(3, True)
    board.refuse_unlocks = True      # ST 0x00
    board.ignore_unlocks = True      # no reply at all
    board.mute = True                # answers nothing (module dead)
    board.inject(b"\\x02\\x00garbage")  # raw bytes on the line

    uhf = UhfReaderSimulator(max_frame_tags=2).start()
    uhf.add_tag("E2000017221101441890ABCD", antenna=1); uhf.remove_tag(...)
"""
from __future__ import annotations

import os
import select
import threading
import tty
from typing import Iterable

from drivers.locker import protocol as p
from drivers.common.site import SiteCommandError, SiteDevice, serial_link


class PtyDevice:
    """A device at the far end of a pty; subclasses implement :meth:`handle`."""

    name = "pty-device"

    def __init__(self, link: str | None = None):
        self.link = link
        self._master = -1
        self._slave = -1
        self._tty = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wlock = threading.Lock()
        self.rx = bytearray()          # everything received (for tests; bounded)

    @property
    def port(self) -> str:
        if not self._tty:
            raise RuntimeError("start() the simulator first")
        return self.link or self._tty

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self):
        if self._thread is not None:
            return self
        m, s = os.openpty()
        tty.setraw(m)
        tty.setraw(s)
        self._master, self._slave = m, s
        self._tty = os.ttyname(s)
        if self.link:
            if os.path.lexists(self.link):
                os.unlink(self.link)
            os.symlink(self._tty, self.link)
        self.on_start()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(2)
            self._thread = None
        # Close the master first: the driver's reads then fail (the device is gone).
        for fd in (self._master, self._slave):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = -1
        if self.link and os.path.islink(self.link):
            os.unlink(self.link)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def on_start(self) -> None:
        """Reset per-connection parser state."""

    def handle(self, data: bytes) -> None:
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        with self._wlock:
            view = memoryview(bytes(data))
            while view and self._master >= 0:
                try:
                    n = os.write(self._master, view)
                except BlockingIOError:
                    select.select([], [self._master], [], 0.05)
                    continue
                except OSError:
                    return
                view = view[n:]

    def inject(self, data: bytes) -> None:
        """Put raw bytes on the line (garbage, truncated or corrupted frames)."""
        self.write(data)

    def _run(self) -> None:
        fd = self._master
        while not self._stop.is_set():
            try:
                r, _, _ = select.select([fd], [], [], 0.05)
            except (OSError, ValueError):
                return
            if not r:
                continue
            try:
                data = os.read(fd, 4096)
            except OSError:
                continue
            if not data:
                continue
            if len(self.rx) < 1 << 16:
                self.rx += data
            try:
                self.handle(data)
            except Exception:   # a simulator bug must not kill the line silently
                import logging
                logging.getLogger("casegate.sim").exception("%s handler failed", self.name)


class LockBoardSimulator(PtyDevice):
    """KR-CU16-style lock board(s) on one RS-485 line (one pty)."""

    name = "lockboard-sim"

    def __init__(self, board: int | Iterable[int] = 0, compartments: int = 16,
                 link: str | None = None, unlock_opens: bool = True):
        super().__init__(link)
        boards = (board,) if isinstance(board, int) else tuple(board)
        self.boards = boards
        self.compartments = compartments
        self.hooks: dict[int, int] = {b: 0 for b in boards}
        self.sensors: dict[int, int] = {b: 0 for b in boards}
        self.unlock_opens = unlock_opens
        self.refuse_unlocks = False
        self.ignore_unlocks = False
        self.mute = False
        self.unlocks: list[tuple[int, int]] = []        # (board, compartment) received
        self.status_requests = 0
        self._lock = threading.Lock()
        self._parser = p.BoardParser("board")

    def _b(self, board: int | None) -> int:
        return self.boards[0] if board is None else board

    def set_door(self, compartment: int, open: bool, board: int | None = None) -> None:
        """Lock-hook bit: True = door open."""
        b, bit = self._b(board), 1 << (compartment - 1)
        with self._lock:
            self.hooks[b] = self.hooks[b] | bit if open else self.hooks[b] & ~bit

    def set_occupied(self, compartment: int, occupied: bool, board: int | None = None) -> None:
        b, bit = self._b(board), 1 << (compartment - 1)
        with self._lock:
            self.sensors[b] = self.sensors[b] | bit if occupied else self.sensors[b] & ~bit

    def is_open(self, compartment: int, board: int | None = None) -> bool:
        with self._lock:
            return bool(self.hooks[self._b(board)] >> (compartment - 1) & 1)

    def on_start(self) -> None:
        self._parser = p.BoardParser("board")

    def handle(self, data: bytes) -> None:
        for cmd in self._parser.feed(data):
            if not isinstance(cmd, p.BoardCommand) or cmd.board not in self.hooks or self.mute:
                continue                 # another board's address, or dead
            if cmd.cmd == p.CMD_STATUS:
                with self._lock:
                    self.status_requests += 1
                    reply = p.status_reply(cmd.board, self.hooks[cmd.board], self.sensors[cmd.board])
                self.write(reply)
            elif cmd.cmd == p.CMD_UNLOCK:
                comp = cmd.lock + 1
                with self._lock:
                    self.unlocks.append((cmd.board, comp))
                if self.ignore_unlocks:
                    continue
                ok = not self.refuse_unlocks and comp <= self.compartments
                if ok and self.unlock_opens:
                    self.set_door(comp, True, cmd.board)
                self.write(p.unlock_reply(cmd.board, cmd.lock, ok))


class UhfReaderSimulator(PtyDevice):
    """A Chafon UHFReader18-style inventory reader."""

    name = "uhf-sim"

    def __init__(self, address: int = 0x00, link: str | None = None,
                 max_frame_tags: int | None = None, ant_byte: bool = False):
        super().__init__(link)
        self.address = address
        self.max_frame_tags = max_frame_tags
        self.ant_byte = ant_byte
        self.tags: dict[str, int] = {}          # EPC -> antenna (1..8)
        self.mute = False
        self.inventories = 0
        self._corrupt = 0
        self._lock = threading.Lock()
        self._parser = p.UhfParser()

    def add_tag(self, epc: str, antenna: int = 1) -> None:
        p.epc_bytes(epc)
        if not 1 <= antenna <= 8:
            raise ValueError("antenna must be 1..8")
        with self._lock:
            self.tags[epc.upper()] = antenna

    def remove_tag(self, epc: str) -> None:
        with self._lock:
            self.tags.pop(epc.upper(), None)

    def clear(self) -> None:
        with self._lock:
            self.tags.clear()

    def corrupt_next(self, frames: int = 1) -> None:
        """Send the next ``frames`` response frames with a wrong CRC."""
        with self._lock:
            self._corrupt += frames

    def on_start(self) -> None:
        self._parser = p.UhfParser()

    def responses(self) -> list[bytes]:
        with self._lock:
            tags = dict(self.tags)
        if not self.ant_byte:
            return p.inventory_responses(self.address, list(tags), self.max_frame_tags)
        # One Ant bitmask per frame: group the tags by antenna.
        by_ant: dict[int, list[str]] = {}
        for epc, ant in tags.items():
            by_ant.setdefault(ant, []).append(epc)
        if not by_ant:
            return p.inventory_responses(self.address, [], None)
        frames: list[bytes] = []
        groups = sorted(by_ant.items())
        for gi, (ant, epcs) in enumerate(groups):
            fr = p.inventory_responses(self.address, epcs, self.max_frame_tags, ant=1 << (ant - 1))
            if gi < len(groups) - 1:     # only the very last frame says "done"
                last = fr[-1]
                fixed = p.uhf_frame(last[1], last[2], bytes([0x03]) + last[4:-2])
                fr[-1] = fixed
            frames += fr
        return frames

    def handle(self, data: bytes) -> None:
        for f in self._parser.feed(data):
            if self.mute or f.cmd != p.UHF_INVENTORY or f.adr not in (0xFF, self.address):
                continue
            with self._lock:
                self.inventories += 1
            for fr in self.responses():
                with self._lock:
                    corrupt = self._corrupt > 0
                    if corrupt:
                        self._corrupt -= 1
                if corrupt:
                    fr = fr[:-1] + bytes([fr[-1] ^ 0xFF])
                self.write(fr)


# ---- casegate simulate (drivers/common/site.py) ----------------------------------------------
class LockerSiteDevice(SiteDevice):
    """The configured lock board (and UHF reader), each on a pseudo-terminal linked at its port.
    An unlock from the daemon opens the compartment's door; `put`/`take` change what is inside."""

    usage = ("put <epc> <locker> <compartment>", "take <epc> <locker>", "shut <locker> <compartment>",
             "force <locker> <compartment>")

    def __init__(self, dev):
        super().__init__(dev.id)
        self.compartments = dev.compartments
        self.board_no = dev.board
        self.board = LockBoardSimulator(board=dev.board, compartments=dev.compartments, link=serial_link(dev.port))
        self.antenna_of: dict[int, int] = {}
        self.uhf = None
        if dev.inventory is not None:
            for ant, comps in dev.inventory.antennas.items():
                for c in comps:
                    self.antenna_of[c] = int(ant)
            self.uhf = UhfReaderSimulator(address=dev.inventory.address if dev.inventory.address != 0xFF else 0,
                                          link=serial_link(dev.inventory.port), ant_byte=dev.inventory.ant_byte)

    def start(self) -> None:
        self.board.start()
        if self.uhf is not None:
            self.uhf.start()

    def stop(self) -> None:
        self.board.stop()
        if self.uhf is not None:
            self.uhf.stop()

    def where(self) -> str:
        inv = f", inventory {self.uhf.link} -> {self.uhf.port}" if self.uhf is not None else ""
        return f"board {self.board.link} -> {self.board.port}{inv}"

    def _comp(self, word: str) -> int:
        try:
            c = int(word)
        except ValueError:
            c = 0
        if not 1 <= c <= self.compartments:
            raise SiteCommandError(f"{self.device_id}: compartment {word!r}: 1..{self.compartments}")
        return c

    def handle(self, words: list[str]) -> str | None:
        verb, args = words[0], words[1:]
        if verb == "put" and len(args) == 3 and args[1] == self.device_id:
            c = self._comp(args[2])
            if self.uhf is None:
                raise SiteCommandError(f"{self.device_id} has no inventory reader: items cannot be seen")
            self.uhf.add_tag(args[0].upper(), antenna=self.antenna_of.get(c, 1))
            self.board.set_occupied(c, True)
            return f"{args[0].upper()} put in {self.device_id}/{c}"
        if verb == "take" and len(args) == 2 and args[1] == self.device_id:
            if self.uhf is None:
                raise SiteCommandError(f"{self.device_id} has no inventory reader: items cannot be seen")
            self.uhf.remove_tag(args[0].upper())
            return f"{args[0].upper()} taken out of {self.device_id}"
        if verb in ("shut", "force") and len(args) == 2 and args[0] == self.device_id:
            c = self._comp(args[1])
            self.board.set_door(c, verb == "force")
            return f"{self.device_id}/{c} door {'forced open' if verb == 'force' else 'shut'}"
        return None


def site_device(dev) -> LockerSiteDevice:
    return LockerSiteDevice(dev)
