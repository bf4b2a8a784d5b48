"""``casegate probe --driver camera_events --vendor hikvision --url http://10.0.0.31 --username admin
--password-file /etc/casegate/cam.password [--channel 1] [--ca-file cam.crt | --no-tls-verify]
[--seconds 10] [--json]``

Connects to the camera's event stream without the daemon, prints every decoded event for
``--seconds`` and then a summary; every failure is worded for a technician (wrong
user/password, Basic-only camera, connection refused, no event stream at either path).
Exit 1 if the camera could not be reached or refused us; 0 otherwise.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TextIO

from drivers.base import PrintContext, add_probe_option as _add


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _add(parser, "--vendor", choices=("hikvision", "dahua", "onvif"), help="camera_events: the camera's API")
    _add(parser, "--url", help="camera_events: http(s)://host[:port] of the camera")
    _add(parser, "--username", default="admin", help="camera_events: user (default admin)")
    _add(parser, "--password-file", dest="password_file", help="camera_events: file holding the password")
    _add(parser, "--ca-file", dest="ca_file", help="camera_events: https: PEM certificate (or CA) to trust")
    _add(parser, "--no-tls-verify", dest="no_tls_verify", action="store_true",
         help="camera_events: https: do not verify the certificate (only on purpose)")
    _add(parser, "--channel", action="append", help="camera_events: channel number to show (repeatable; default 1)")
    _add(parser, "--seconds", type=float, default=10.0, help="how long to read (default 10)")
    _add(parser, "--json", action="store_true", help="one JSON object a line")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    from drivers.camera_events.config import CameraEventsConfig
    from drivers.camera_events.driver import CameraEventsDriver, read_password
    vendor, url, pwf = getattr(args, "vendor", None), getattr(args, "url", None), getattr(args, "password_file", None)
    if not (vendor and url and pwf):
        print("camera_events probe needs --vendor, --url and --password-file", file=sys.stderr)
        return 2
    try:
        password = read_password(pwf)
    except ValueError as e:
        print(str(e), file=sys.stderr)
        return 2
    channels = getattr(args, "channel", None) or ["1"]
    try:
        cfg = CameraEventsConfig(id="probe", driver="camera_events", vendor=vendor, url=url,
                                 username=getattr(args, "username", None) or "admin", password_file=pwf,
                                 channels={c: f"channel-{c}" for c in channels}, reconnect_step_s=2,
                                 ca_file=getattr(args, "ca_file", None) or "",
                                 tls_verify=not getattr(args, "no_tls_verify", False))
    except Exception as e:
        print(f"bad option: {e}", file=sys.stderr)
        return 2
    as_json = bool(getattr(args, "json", False))
    seconds = float(getattr(args, "seconds", None) or 10.0)
    t0 = time.monotonic()
    errors: list[str] = []

    def show(kind: str, data: dict) -> None:
        if as_json:
            print(json.dumps({"t": round(time.monotonic() - t0, 3), "type": kind, **data}), file=out, flush=True)
        else:
            body = " ".join(f"{k}={v}" for k, v in data.items() if k != "device")
            print(f"{time.monotonic() - t0:7.3f}s  {kind} {body}", file=out, flush=True)

    def on_event(kind: str, data: dict) -> None:
        if kind in ("device.error", "device.offline") and data.get("error"):
            errors.append(data["error"])
        show(kind, data)

    ctx = PrintContext("probe", on_event=on_event)
    drv = CameraEventsDriver(cfg, ctx, password=password)
    seen = {"heartbeats": 0}

    def on_signal(sig) -> None:
        if sig.kind == "heartbeat":
            seen["heartbeats"] += 1
            if not as_json:
                print(f"{time.monotonic() - t0:7.3f}s  heartbeat", file=out, flush=True)
        elif not as_json:
            state = "active" if sig.active else "inactive"
            print(f"{time.monotonic() - t0:7.3f}s  {sig.source} channel={sig.channel or '-'} {state}"
                  f"{' (image)' if sig.image else ''}", file=out, flush=True)
    drv.on_signal = on_signal
    print(f"connecting to {vendor} camera {url} for {seconds:g} s ...", file=sys.stderr if as_json else out,
          flush=True)
    drv.start()
    try:
        time.sleep(seconds)
    except KeyboardInterrupt:
        pass
    finally:
        drv.stop(3.0)
        last_error = getattr(drv, "_last_error", None)
    h = drv.health
    summary = {"connects": drv.stats["connects"], "parts": drv.stats["parts"], "signals": drv.stats["signals"],
               "heartbeats": seen["heartbeats"], "unparseable": h.counters.get("unparseable_part", 0),
               "error": None if drv.stats["connects"] else (last_error or (errors[-1] if errors else None))}
    if as_json:
        print(json.dumps({"summary": summary}), file=out, flush=True)
    else:
        print(f"summary: {summary['connects']} connections, {summary['signals']} events decoded "
              f"({summary['heartbeats']} heartbeats), {summary['unparseable']} unparseable parts", file=out, flush=True)
        if summary["error"]:
            print(f"error: {summary['error']}", file=out, flush=True)
    return 0 if drv.stats["connects"] else 1


def args_from_config(dev, storage_dir: str) -> list[str]:
    """`casegate probe <device-id>`: this device's options from the config."""
    out = ["--vendor", dev.vendor, "--url", dev.url, "--username", dev.username, "--password-file", dev.password_file]
    if dev.ca_file:
        out += ["--ca-file", dev.ca_file]
    if not dev.tls_verify:
        out.append("--no-tls-verify")
    for ch in dev.channels:
        out += ["--channel", ch]
    return out
