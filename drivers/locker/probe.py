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


def run(args: argparse.Namespace, out=None) -> int:
    out = out or sys.stdout
    port = getattr(args, "port", None)
    if not port:
        print("probe locker: --port is required", file=sys.stderr)
        return 2
    board = args.board
    if not 0 <= board <= 15:
        print("probe locker: --board must be 0..15", file=sys.stderr)
        return 2
    n = max(1, min(16, getattr(args, "compartments", 16)))
    try:
        bser = open_locker_port(port, getattr(args, "baudrate", None) or 19200)
    except SerialOpenError as e:
        print(f"probe locker: {e}", file=sys.stderr)
        return 1
    inv_port = getattr(args, "inventory_port", None)
    iser = None
    if inv_port:
        try:
            iser = open_locker_port(inv_port, args.inventory_baudrate)
        except SerialOpenError as e:
            bser.close()
            print(f"probe locker: {e}", file=sys.stderr)
            return 1
    board_stream = FrameStream(bser, p.BoardParser("host"))
    inv_stream = FrameStream(iser, p.UhfParser()) if iser else None
    print(f"probing lock board {board} on {port}" + (f", UHF reader on {inv_port}" if inv_port else "")
          + f" for {args.seconds:g} s", file=out)
    last: p.StatusReply | None = None
    last_tags: set[str] | None = None
    ok_board = ok_inv = 0
    fails_board = fails_inv = 0
    end = time.monotonic() + max(0.0, args.seconds)
    try:
        while True:
            t0 = time.monotonic()
            board_stream.drain()
            board_stream.write(p.status_command(board))
            r = board_stream.next(lambda f: isinstance(f, p.StatusReply) and f.board == board, 0.5)
            if r is None:
                fails_board += 1
                print(f"{time.strftime('%H:%M:%S')} no status reply from board {board}", file=out)
            else:
                ok_board += 1
                if last is None:
                    print(f"{time.strftime('%H:%M:%S')} board {board} status:\n{_table(r, n)}", file=out)
                else:
                    for c in range(1, n + 1):
                        if r.is_open(c) != last.is_open(c):
                            print(f"{time.strftime('%H:%M:%S')} compartment {c} "
                                  f"{'opened' if r.is_open(c) else 'closed'}", file=out)
                        if r.is_occupied(c) != last.is_occupied(c):
                            print(f"{time.strftime('%H:%M:%S')} compartment {c} "
                                  f"{'occupied' if r.is_occupied(c) else 'empty'}", file=out)
                last = r
            if inv_stream is not None:
                tags = _inventory(inv_stream, args.inventory_address, out)
                if tags is None:
                    fails_inv += 1
                else:
                    ok_inv += 1
                    if tags != last_tags:
                        print(f"{time.strftime('%H:%M:%S')} inventory: {len(tags)} tag(s)"
                              + "".join(f"\n  {e}" for e in sorted(tags)), file=out)
                    last_tags = tags
            if time.monotonic() >= end:
                break
            time.sleep(max(0.0, min(1.0 - (time.monotonic() - t0), end - time.monotonic())))
            if time.monotonic() >= end:
                break
    except KeyboardInterrupt:
        pass
    except Exception as e:
        print(f"probe locker: port error: {e}", file=sys.stderr)
        return 1
    finally:
        bser.close()
        if iser:
            iser.close()
    bp, up = board_stream.parser, (inv_stream.parser if inv_stream else None)
    print(f"board: {ok_board} replies, {fails_board} missed, bad frames {dict(bp.bad) or 0}", file=out)
    if up is not None:
        print(f"inventory: {ok_inv} complete, {fails_inv} failed, bad frames {dict(up.bad) or 0}", file=out)
    healthy = ok_board > 0 and (inv_stream is None or ok_inv > 0)
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
