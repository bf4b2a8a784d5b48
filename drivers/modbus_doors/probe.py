"""``casegate probe --driver modbus_doors --url tcp://127.0.0.1:502 --unit 1 --count 8 --seconds 10``

Reads the discrete inputs once per second (FC02, no daemon, no journal),
prints the first reading, every change and every Modbus error. Exit 0 if at
least one read succeeded, 1 otherwise (or if the port cannot be opened).
"""
from __future__ import annotations

import argparse
import sys
import time

from drivers.base import add_probe_option as _add
from drivers.common.serial_port import check_openable
from drivers.modbus_doors.driver import ModbusBus, PollError, parse_url, quiet_pymodbus, read_inputs




def add_arguments(parser: argparse.ArgumentParser) -> None:
    _add(parser, "--url", help="tcp://host:port or rtu:///dev/ttyUSB1?baudrate=9600")
    _add(parser, "--port", help="same as --url (the generic probe option)")
    _add(parser, "--unit", type=int, default=1, help="Modbus unit id (default 1)")
    _add(parser, "--first", type=int, default=0, help="first discrete input (default 0)")
    _add(parser, "--count", type=int, default=8, help="number of inputs (default 8)")
    _add(parser, "--seconds", type=float, default=10.0, help="how long to probe (default 10)")
    _add(parser, "--interval", type=float, default=1.0, help="seconds between reads (default 1)")
    _add(parser, "--timeout-ms", dest="timeout_ms", type=int, default=500, help="reply timeout (default 500)")


def _fmt(bits: list[bool], first: int) -> str:
    return " ".join(f"{first + i}={int(b)}" for i, b in enumerate(bits))


def run(args: argparse.Namespace, out=None) -> int:
    out = out or sys.stdout
    quiet_pymodbus()
    url = getattr(args, "url", None) or getattr(args, "port", None)
    if not url:
        print("probe modbus_doors: --url is required (tcp://host:port or rtu:///dev/ttyUSB1?baudrate=9600)",
              file=sys.stderr)
        return 2
    try:
        ep = parse_url(url)
    except ValueError as e:
        print(f"probe modbus_doors: {e}", file=sys.stderr)
        return 2
    if ep.scheme == "rtu":
        problem = check_openable(ep.device)     # pymodbus swallows the open error: name the reason
        if problem:
            print(f"probe modbus_doors: {problem}", file=sys.stderr)
            return 1
    unit, first, count = args.unit, getattr(args, "first", 0), args.count
    timeout_s = getattr(args, "timeout_ms", 500) / 1000.0
    interval = max(0.05, getattr(args, "interval", 1.0))
    bus = ModbusBus(ep, timeout_s)
    print(f"probing {url} unit {unit} inputs {first}..{first + count - 1} for {args.seconds:g} s", file=out)
    last: list[bool] | None = None
    ok = errors = 0
    last_error = None
    end = time.monotonic() + max(0.0, args.seconds)
    try:
        while True:
            t0 = time.monotonic()
            try:
                bits = read_inputs(bus, unit, first, count, timeout_s)
            except PollError as e:
                errors += 1
                if e.reason != last_error:
                    print(f"{time.strftime('%H:%M:%S')} {e.state}: {e.reason}", file=out)
                last_error = e.reason
            else:
                ok += 1
                last_error = None
                if last is None:
                    print(f"{time.strftime('%H:%M:%S')} inputs: {_fmt(bits, first)}", file=out)
                else:
                    for i, (a, b) in enumerate(zip(last, bits)):
                        if a != b:
                            print(f"{time.strftime('%H:%M:%S')} input {first + i}: {int(a)} -> {int(b)}", file=out)
                last = bits
            if time.monotonic() >= end:
                break
            time.sleep(max(0.0, min(interval - (time.monotonic() - t0), end - time.monotonic())))
            if time.monotonic() >= end:
                break
    except KeyboardInterrupt:
        pass
    finally:
        bus.close()
    print(f"{ok} reads ok, {errors} failed", file=out)
    return 0 if ok else 1


def args_from_config(dev, storage_dir: str) -> list[str]:
    """`casegate probe <device-id>`: this device's options from the config."""
    return ["--url", dev.url, "--unit", str(dev.unit)]
