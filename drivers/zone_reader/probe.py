"""``casegate probe --driver zone_reader --listen 0.0.0.0:4501 [--seconds 30]``

Listens as the MR7901 platform (no daemon), accepts stations, replies exactly
as the daemon does, and prints every frame decoded, the resulting events, and
a summary. Exit 1 if it cannot listen; 0 otherwise.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

from drivers.base import PrintContext, add_probe_option as _add
from drivers.zone_reader import protocol as P
from drivers.zone_reader.driver import ZoneReaderDriver




def add_arguments(parser: argparse.ArgumentParser) -> None:
    _add(parser, "--listen", default="0.0.0.0:4501", help="host:port to accept stations on (default 0.0.0.0:4501)")
    _add(parser, "--seconds", type=float, default=30.0, help="how long to listen (default 30)")
    _add(parser, "--station", action="append", default=[], metavar="DEV_ID=ROOM",
         help="map a station to a room (repeatable); unmapped stations are decoded and answered anyway")
    _add(parser, "--presence-timeout", dest="presence_timeout_s", type=float, default=10.0,
         help="seconds without a record before a tag has left (default 10)")


def describe(item) -> str:
    """One decoded item of a frame, for humans."""
    if isinstance(item, P.TagRecord):
        kind = "door" if item.door else "tag"
        if item.void:
            where = "direction void" if item.door else "station stop"
        elif item.door:
            where = "passed IN" if item.in_range else "passed OUT"
        else:
            where = "in range" if item.in_range else "LEFT range"
        flags = [f for f, on in (("LOW-BATTERY", item.low_battery), ("SOS", item.sos), ("BAD-CC", not item.cc_ok)) if on]
        exc = f" exciter={item.exciter}" if item.exciter else ""
        return (f"{kind} {item.tag} {where} type=0x{item.tag_type:02X} ant={item.antenna} rssi={item.rssi}"
                f"{exc}{' ' + ' '.join(flags) if flags else ''} t={P.format_time6(item.time)}")
    if isinstance(item, P.WristbandData):
        names = {1: "heart_rate", 2: "strap", 3: "battery%", 4: "sos"}
        return f"wristband {item.tag} {names.get(item.kind, f'kind{item.kind}')}={item.value} rssi={item.rssi}"
    if isinstance(item, P.ReaderState):
        return f"reader {item.reader_id} tag {item.tag} state={'REMOVED' if item.removed else item.state}"
    if isinstance(item, P.HeartbeatInfo):
        return (f"heartbeat battery={item.battery}/10 external_power={'LOST' if item.external_power_lost else 'ok'} "
                f"dev_status=0x{item.dev_status:04X} param_crc=0x{item.param_crc:04X} ver={item.ver} "
                f"t={P.format_time6(item.time)}")
    if isinstance(item, tuple) and item and item[0] == "register":
        return f"register dev_type=0x{item[1]:04X} reg_code={item[2]}"
    if isinstance(item, tuple) and item and item[0] == "login":
        return f"login sw_ver=0x{item[1]:04X} param_crc=0x{item[2]:04X}"
    if isinstance(item, tuple) and item and item[0] == "tlv":
        return f"unknown TLV 0x{item[1]:04X} {item[2].hex()}"
    return repr(item)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    from drivers.zone_reader.config import ZoneReaderConfig
    listen = getattr(args, "listen", None) or "0.0.0.0:4501"
    seconds = float(getattr(args, "seconds", None) or 30.0)
    stations: dict[str, str] = {}
    for s in getattr(args, "station", None) or []:
        dev, sep, room = s.partition("=")
        if not sep or not dev or not room:
            print(f"--station wants DEV_ID=ROOM, got {s!r}", file=sys.stderr)
            return 2
        stations[dev] = room
    try:
        cfg = ZoneReaderConfig(id="probe", driver="zone_reader", listen=listen, stations=stations,
                               presence_timeout_s=getattr(args, "presence_timeout_s", None) or 10.0)
    except Exception as e:
        print(f"bad --listen {listen!r}: {e}", file=sys.stderr)
        return 2
    t0 = time.monotonic()

    def stamp() -> str:
        return f"{time.monotonic() - t0:7.3f}s"

    def on_event(type_: str, data: dict) -> None:
        if type_.startswith("device."):
            return
        fields = " ".join(f"{k}={v}" for k, v in data.items())
        print(f"{stamp()}  EVENT {type_} {fields}", file=out, flush=True)

    ctx = PrintContext("probe", on_event=on_event)
    # A listen failure is printed once below, with its fix; the driver's own log line would repeat it.
    ctx.log.addFilter(lambda rec: "cannot listen" not in rec.getMessage())
    drv = ZoneReaderDriver(cfg, ctx)

    def on_frame(dev_id: str, f: P.Frame, decoded: list) -> None:
        print(f"{stamp()}  {dev_id} {f.name} seq={f.seq} ver={f.ver} {len(f.content)} bytes", file=out, flush=True)
        for item in decoded:
            print(f"           {describe(item)}", file=out, flush=True)
    drv.on_frame = on_frame

    drv.start()
    deadline = t0 + seconds
    while time.monotonic() < deadline and not drv.listening.is_set() and drv.listen_error is None:
        time.sleep(0.01)
    if not drv.listening.is_set():
        drv.stop()
        msg = drv.listen_error or f"cannot listen on {listen}"
        if "ermission" in msg:
            msg += " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        elif "in use" in msg:
            msg += (" — the daemon (or another probe) listens there: stop it first (systemctl stop casegate), "
                    "or probe on another port with --listen")
        print(msg, file=sys.stderr)
        return 1
    host, port = drv.address or ("?", 0)
    print(f"listening on {host}:{port} for {seconds:g} s (stations connect to this address) ...",
          file=out, flush=True)
    try:
        while time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
    except KeyboardInterrupt:
        pass
    snap = drv.snapshot()
    drv.stop()
    h = drv.health
    print(f"summary: {len(snap['stations'])} station(s): "
          + (", ".join(f"{d} ({s['frames']} frames{', unknown' if not s['known'] else ''})"
                       for d, s in snap["stations"].items() if s["frames"]) or "none connected"), file=out)
    c = h.counters
    print(f"         {h.frames_ok} good frames, {h.frames_bad} bad (bad_crc={c.get('bad_crc', 0)}, "
          f"bad_length={c.get('bad_length', 0)}, truncated={c.get('truncated', 0)}), "
          f"noise_bytes={c.get('noise_bytes', 0)}, duplicates={c.get('duplicate_seq', 0)}, "
          f"tag records={c.get('tag_records', 0)}, bad tag cc={c.get('bad_tag_cc', 0)}, "
          f"bad TLVs={c.get('bad_tlv', 0)}, unknown TLVs={c.get('unknown_tlv', 0)}", file=out, flush=True)
    return 0


def args_from_config(dev, storage_dir: str) -> list[str]:
    """`casegate probe <device-id>`: this device's options from the config."""
    # The configured stations too: without them every station of the site was reported "unknown".
    return ["--listen", dev.listen] + [a for dev_id, room in dev.stations.items()
                                       for a in ("--station", f"{dev_id}={room}")]
