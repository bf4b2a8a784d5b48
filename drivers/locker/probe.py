"""``casegate probe --driver locker --port /dev/ttyUSB2 [--board 0] [--inventory-port /dev/ttyUSB3] --seconds 5``

Talks to the lock board (and the UHF reader) directly: prints every
compartment's lock-hook and occupancy state, then changes, and the tags of
each inventory. Nothing is unlocked. Exit 0 if the board (and the reader, if
given) answered at least once; 1 if a port cannot be opened or nothing
answered.
"""
from __future__ import annotations

import argparse
import sys
import time

from drivers.base import add_probe_option as _add
from drivers.locker import protocol as p
from drivers.common.serial_port import SerialOpenError
from drivers.locker.driver import FrameStream, open_locker_port




def add_arguments(parser: argparse.ArgumentParser) -> None:
    _add(parser, "--port", help="lock board serial port (pyserial URL), e.g. /dev/ttyUSB2")
    _add(parser, "--baudrate", type=int, default=None, help="lock board baud rate (default 19200)")
    _add(parser, "--board", type=int, default=0, help="board address 0-15 (default 0)")
    _add(parser, "--compartments", type=int, default=16, help="compartments to show (default 16)")
    _add(parser, "--inventory-port", dest="inventory_port", default=None, help="UHF reader serial port")
    _add(parser, "--inventory-baudrate", dest="inventory_baudrate", type=int, default=57600,
         help="UHF reader baud rate (default 57600)")
    _add(parser, "--inventory-address", dest="inventory_address", type=lambda s: int(s, 0), default=0xFF,
         help="UHF reader address (default 0xFF, broadcast)")
    _add(parser, "--seconds", type=float, default=5.0, help="how long to probe (default 5)")


def _table(r: p.StatusReply, n: int) -> str:
    rows = []
    for c in range(1, n + 1):
        rows.append(f"  {c:2d}: {'OPEN  ' if r.is_open(c) else 'closed'} "
                    f"{'occupied' if r.is_occupied(c) else 'empty'}")
    return "\n".join(rows)


def _now() -> str:
    return time.strftime('%H:%M:%S')


def _check_args(args: argparse.Namespace) -> str | None:
    """What is wrong with the options (exit 2), or None."""
    if not getattr(args, "port", None):
        return "--port is required"
    if not 0 <= args.board <= 15:
        return "--board must be 0..15"
    return None


def _open_ports(args: argparse.Namespace):
    """(lock board port, UHF reader port or None); raises SerialOpenError with none left open."""
    bser = open_locker_port(args.port, getattr(args, "baudrate", None) or 19200)
    inv_port = getattr(args, "inventory_port", None)
    if not inv_port:
        return bser, None
    try:
        return bser, open_locker_port(inv_port, args.inventory_baudrate)
    except SerialOpenError:
        bser.close()
        raise


class _BoardWatch:
    """Polls the board's status; prints the first table, then every change."""

    def __init__(self, stream: FrameStream, board: int, n: int, out):
        self.stream, self.board, self.n, self.out = stream, board, n, out
        self.last: p.StatusReply | None = None
        self.ok = self.fails = 0

    def poll(self) -> None:
        board, out = self.board, self.out
        self.stream.drain()
        self.stream.write(p.status_command(board))
        r = self.stream.next(lambda f: isinstance(f, p.StatusReply) and f.board == board, 0.5)
        if r is None:
            self.fails += 1
            print(f"{_now()} no status reply from board {board}", file=out)
            return
        self.ok += 1
        if self.last is None:
            print(f"{_now()} board {board} status:\n{_table(r, self.n)}", file=out)
        else:
            self._changes(r, self.last)
        self.last = r

    def _changes(self, r: p.StatusReply, last: p.StatusReply) -> None:
        for c in range(1, self.n + 1):
            if r.is_open(c) != last.is_open(c):
                print(f"{_now()} compartment {c} {'opened' if r.is_open(c) else 'closed'}", file=self.out)
            if r.is_occupied(c) != last.is_occupied(c):
                print(f"{_now()} compartment {c} {'occupied' if r.is_occupied(c) else 'empty'}", file=self.out)


class _InventoryWatch:
    """Runs an inventory round; prints the tags when they change."""

    def __init__(self, stream: FrameStream, address: int, out):
        self.stream, self.address, self.out = stream, address, out
        self.last_tags: set[str] | None = None
        self.ok = self.fails = 0

    def poll(self) -> None:
        tags = _inventory(self.stream, self.address, self.out)
        if tags is None:
            self.fails += 1
            return
        self.ok += 1
        if tags != self.last_tags:
            print(f"{_now()} inventory: {len(tags)} tag(s)" + "".join(f"\n  {e}" for e in sorted(tags)),
                  file=self.out)
        self.last_tags = tags


def _poll_until(end: float, watches: list) -> None:
    """One round of every watch a second, until ``end`` (monotonic)."""
    while True:
        t0 = time.monotonic()
        for w in watches:
            w.poll()
        if time.monotonic() >= end:
            break
        time.sleep(max(0.0, min(1.0 - (time.monotonic() - t0), end - time.monotonic())))
        if time.monotonic() >= end:
            break


def run(args: argparse.Namespace, out=None) -> int:
    out = out or sys.stdout
    problem = _check_args(args)
    if problem:
        print(f"probe locker: {problem}", file=sys.stderr)
        return 2
    port, board = args.port, args.board
    n = max(1, min(16, getattr(args, "compartments", 16)))
    try:
        bser, iser = _open_ports(args)
    except SerialOpenError as e:
        print(f"probe locker: {e}", file=sys.stderr)
        return 1
    inv_port = getattr(args, "inventory_port", None)
    board_watch = _BoardWatch(FrameStream(bser, p.BoardParser("host")), board, n, out)
    inv_watch = _InventoryWatch(FrameStream(iser, p.UhfParser()), args.inventory_address, out) if iser else None
    print(f"probing lock board {board} on {port}" + (f", UHF reader on {inv_port}" if inv_port else "")
          + f" for {args.seconds:g} s", file=out)
    try:
        _poll_until(time.monotonic() + max(0.0, args.seconds), [w for w in (board_watch, inv_watch) if w])
    except KeyboardInterrupt:
        pass
    except Exception as e:
        print(f"probe locker: port error: {e}", file=sys.stderr)
        return 1
    finally:
        bser.close()
        if iser:
            iser.close()
    print(f"board: {board_watch.ok} replies, {board_watch.fails} missed, "
          f"bad frames {dict(board_watch.stream.parser.bad) or 0}", file=out)
    if inv_watch is not None:
        print(f"inventory: {inv_watch.ok} complete, {inv_watch.fails} failed, "
              f"bad frames {dict(inv_watch.stream.parser.bad) or 0}", file=out)
    healthy = board_watch.ok > 0 and (inv_watch is None or inv_watch.ok > 0)
    return 0 if healthy else 1


def _inventory(stream: FrameStream, address: int, out) -> set[str] | None:
    stream.drain()
    bad0 = sum(stream.parser.bad.values())
    stream.write(p.inventory_command(address))
    tags: set[str] = set()
    deadline = time.monotonic() + 2.0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            print(f"{time.strftime('%H:%M:%S')} inventory: no complete answer", file=out)
            return None
        f = stream.next(lambda f: f.cmd == p.UHF_INVENTORY, left)
        if f is None:
            continue
        try:
            inv = p.decode_inventory(f)
        except p.ProtocolError as e:
            print(f"{time.strftime('%H:%M:%S')} inventory: bad frame: {e}", file=out)
            return None
        tags.update(inv.epcs)
        if not inv.more:
            break
    if sum(stream.parser.bad.values()) != bad0:
        print(f"{time.strftime('%H:%M:%S')} inventory: a frame was corrupted, round discarded", file=out)
        return None
    return tags


def args_from_config(dev, storage_dir: str) -> list[str]:
    """`casegate probe <device-id>`: this device's options from the config."""
    out = ["--port", dev.port, "--baudrate", str(dev.baudrate), "--board", str(dev.board),
           "--compartments", str(dev.compartments)]
    if dev.inventory:
        out += ["--inventory-port", dev.inventory.port,
                "--inventory-baudrate", str(dev.inventory.baudrate),
                "--inventory-address", str(dev.inventory.address)]
    return out
