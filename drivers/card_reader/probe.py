"""``casegate probe --driver card_reader --port URL [--baudrate 9600] [--seconds 10]``

Opens the port directly (no daemon), prints every decoded card and every
error (bad checksum, non-hex digits, noise bytes), then a summary. Exit 1 if
the port cannot be opened (or is lost); 0 otherwise.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

import serial

from drivers.base import PrintContext, add_probe_option as _add
from drivers.card_reader.driver import READ_TIMEOUT_S, CardReaderDriver
from drivers.common.serial_port import SerialOpenError, open_serial

_ERRORS = {
    "bad_checksum": "bad checksum (frame dropped)",
    "non_hex": "non-hex digit inside a frame (frame dropped)",
    "truncated": "frame cut short by a new 02 / early 03 (dropped)",
    "no_etx": "frame not closed by 03 (dropped)",
}




def add_arguments(parser: argparse.ArgumentParser) -> None:
    _add(parser, "--port", help="pyserial URL of the reader: /dev/ttyUSB0, socket://host:port, rfc2217://...")
    _add(parser, "--baudrate", type=int, default=9600, help="default 9600 (8N1)")
    _add(parser, "--seconds", type=float, default=10.0, help="how long to read (default 10)")
    _add(parser, "--repeat-ms", dest="repeat_ms", type=int, default=1000,
         help="the same card within this many ms is one swipe (default 1000)")
    _add(parser, "--room", default="probe", help="room reported in card.swiped (default 'probe')")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    port = getattr(args, "port", None)
    if not port:
        print("card_reader probe needs --port (e.g. /dev/ttyUSB0)", file=sys.stderr)
        return 2
    baud = getattr(args, "baudrate", None) or 9600
    seconds = float(getattr(args, "seconds", None) or 10.0)
    try:
        ser = open_serial(port, baud, timeout=READ_TIMEOUT_S)
    except SerialOpenError as e:
        print(e, file=sys.stderr)
        return 1

    from drivers.card_reader.config import CardReaderConfig
    cfg = CardReaderConfig(id="probe", driver="card_reader", port=port, baudrate=baud,
                           room=getattr(args, "room", None) or "probe",
                           repeat_ms=getattr(args, "repeat_ms", None) if getattr(args, "repeat_ms", None) is not None else 1000)
    t0 = time.monotonic()

    def stamp() -> str:
        return f"{time.monotonic() - t0:7.3f}s"

    noise = [0]

    def flush_noise() -> None:
        # noise arrives a byte or a few at a time at 9600 baud: report it per run, not per read
        if noise[0]:
            n = noise[0]
            noise[0] = 0
            print(f"{stamp()}  error: {n} noise byte{'s' if n != 1 else ''} outside frames", file=out, flush=True)

    def on_event(type_: str, data: dict) -> None:
        if type_ == "card.swiped":
            flush_noise()
            print(f"{stamp()}  card.swiped card={data['card']} person={data['person'] or '-'}", file=out, flush=True)

    ctx = PrintContext("probe", on_event=on_event)
    drv = CardReaderDriver(cfg, ctx)

    def on_card(card: str, new: bool) -> None:
        if not new:
            flush_noise()
            print(f"{stamp()}  card {card} (repeat, same swipe)", file=out, flush=True)
    drv.on_card = on_card

    def on_error(reason: str, n: int) -> None:
        if reason == "noise_bytes":
            noise[0] += n
        else:
            flush_noise()
            print(f"{stamp()}  error: {_ERRORS.get(reason, reason)}", file=out, flush=True)
    drv.on_parse_error = on_error

    print(f"reading {port} at {baud} 8N1 for {seconds:g} s ...", file=out, flush=True)
    rc = 0
    deadline = t0 + seconds
    try:
        while time.monotonic() < deadline:
            ser.timeout = max(0.01, min(0.2, deadline - time.monotonic()))
            data = ser.read(max(1, ser.in_waiting))
            if data:
                now = time.monotonic()
                for k in range(len(data)):   # byte by byte: errors and cards print in stream order
                    drv.handle_bytes(data[k:k + 1], now)
            else:
                flush_noise()
    except (serial.SerialException, OSError) as e:
        print(f"{stamp()}  error: port lost: {e}", file=out, flush=True)
        rc = 1
    except KeyboardInterrupt:
        pass
    finally:
        try:
            ser.close()
        except Exception:
            pass
    flush_noise()
    p = drv.parser
    swipes = sum(1 for t, _ in ctx.events if t == "card.swiped")
    cards = sorted({d["card"] for t, d in ctx.events if t == "card.swiped"})
    print(f"summary: {p.frames} good frames, {swipes} swipes ({len(cards)} distinct cards: "
          f"{', '.join(cards) or '-'}), {p.bad_checksum} bad checksums, {p.non_hex} non-hex, "
          f"{p.truncated} truncated, {p.no_etx} without 03, {p.noise_bytes} noise bytes, "
          f"{p.bytes_fed} bytes read", file=out, flush=True)
    if p.bytes_fed == 0:
        print("no bytes at all: check the wiring/baud rate, or hold a card to the reader", file=out, flush=True)
    return rc


def args_from_config(dev, storage_dir: str) -> list[str]:
    """`casegate probe <device-id>`: this device's options from the config."""
    return ["--port", dev.port, "--baudrate", str(dev.baudrate)]
