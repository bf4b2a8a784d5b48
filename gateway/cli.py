"""The ``casegate`` command line (SPEC §5).

Exit codes: 0 ok, 1 failed or unhealthy, 2 bad usage or invalid config,
3 daemon not running (for commands that need it).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from gateway import __version__
from gateway.config import Config, ConfigError, DEFAULT_CONFIG_PATH, config_path, load_config

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_DAEMON = 0, 1, 2, 3


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


# ---- output helpers -------------------------------------------------------------
def _console():
    from rich.console import Console
    # Piped output (grep, a script, `ack $(...)`) must not cut alarm ids to 80 columns.
    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 4096)


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n")


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.table import Table
    t = Table(title=title, box=None, header_style="bold", pad_edge=False)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    _console().print(t)


# ---- config and daemon access ------------------------------------------------------
def get_config(args) -> tuple[Config, str | None]:
    """The config the user meant. A missing *default* file means built-in defaults."""
    explicit = args.config or os.environ.get("CASEGATE_CONFIG")
    path = config_path(args.config)
    if not explicit and not Path(path).exists():
        return Config(), None
    try:
        return load_config(path), path
    except ConfigError as e:
        raise CliError(str(e), EXIT_USAGE)


def control(cfg: Config, req: dict, timeout: float = 15.0) -> dict:
    path = cfg.socket_path
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        raise CliError(f"no daemon on {path} — is the service running? systemctl status casegate",
                       EXIT_NO_DAEMON)
    except PermissionError:
        raise CliError(f"permission denied on {path} — run as root or a member of the casegate group",
                       EXIT_FAILED)
    with s:
        s.sendall((json.dumps(req) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf)


def journal_path(cfg: Config) -> Path:
    p = cfg.journal_path
    if not p.exists():
        raise CliError(f"no journal at {p} (storage.dir = {cfg.storage.dir})", EXIT_FAILED)
    return p


# ---- commands -------------------------------------------------------------------------
def cmd_run(args) -> int:
    from gateway.daemon import run, setup_logging
    setup_logging(args.log_level)
    cfg, path = get_config(args)
    if path is None:
        print(f"casegate: {DEFAULT_CONFIG_PATH} not found, running on built-in defaults", file=sys.stderr)
    return run(cfg, path)


def cmd_config_check(args) -> int:
    path = config_path(args.config)
    try:
        cfg = load_config(path)
    except ConfigError as e:
        for p in e.problems:
            print(p, file=sys.stderr)
        return EXIT_USAGE
    from rules.catalog import rule_settings
    rules = rule_settings(cfg.rules)
    enabled = sorted(c for c, s in rules.items() if s.enabled)
    summary = {
        "file": path, "center": cfg.center.id, "storage": cfg.storage.dir,
        "mqtt": f"{cfg.mqtt.host}:{cfg.mqtt.port} (MQTT {'5' if cfg.mqtt.protocol == 5 else '3.1.1'}"
                f"{', TLS' if cfg.mqtt.tls else ''})",
        "rooms": [{"id": r.id, "type": r.type} for r in cfg.rooms],
        "devices": [{"id": d.id, "driver": d.driver} for d in cfg.devices],
        "rules_enabled": enabled,
        "rules_disabled": sorted(set(rules) - set(enabled)),
    }
    if args.json:
        emit_json({"ok": True, **summary})
        return EXIT_OK
    print(f"{path}: OK")
    print(f"center {cfg.center.id} · storage {cfg.storage.dir} · broker {summary['mqtt']}")
    table("rooms", ["id", "type", "name", "adjacent"],
          [[r.id, r.type, r.name, ",".join(r.adjacent)] for r in cfg.rooms])
    table("devices", ["id", "driver", "where"], [[d.id, d.driver, _device_where(d)] for d in cfg.devices])
    print(f"rules: {len(enabled)} enabled" + (f", disabled: {', '.join(summary['rules_disabled'])}"
                                             if summary["rules_disabled"] else ""))
    return EXIT_OK


def _device_where(d) -> str:
    for attr in ("listen", "port", "url"):
        v = getattr(d, attr, None)
        if v:
            return str(v)
    return ""


def cmd_status(args) -> int:
    cfg, _ = get_config(args)
    resp = control(cfg, {"cmd": "status"})
    if not resp.get("ok"):
        raise CliError(f"daemon could not report status: {resp.get('error')}")
    data = resp["data"]
    healthy = data["uplink"].get("connected") and not data["journal"].get("error") and all(
        d.get("state") == "online" for d in data["devices"])
    if args.json:
        emit_json({**data, "healthy": bool(healthy)})
    else:
        up = data["uplink"]
        j = data["journal"]
        print(f"casegate {data['version']} · center {data['center']} · pid {data['pid']} · "
              f"up {int(data['uptime_s'])} s")
        print(f"uplink   {'connected' if up.get('connected') else 'DISCONNECTED'} "
              f"{up.get('broker', '')} · backlog {up.get('backlog', j['backlog'])} · "
              f"delivered {up.get('delivered', 0)}" + (f" · last error: {up['last_error']}"
                                                        if up.get("last_error") else ""))
        size = f"{j['bytes'] / 1e6:.1f} MB" if j.get("bytes") is not None else "size unknown"
        print(f"journal  {j['path']} · {size} · {j['events']} events · "
              f"last seq {j['last_seq']}" + (f" · ERROR {j['error']}" if j.get("error") else ""))
        print(f"alarms   {data['active_alarms']} active")
        _devices_table(data["devices"])
    return EXIT_OK if healthy else EXIT_FAILED


def _devices_table(devs: list[dict]) -> None:
    from gateway.events import format_ts
    table("devices", ["device", "driver", "state", "last frame", "ok", "bad", "reconnects", "error"],
          [[d["id"], d["driver"], d.get("state"), format_ts(d["last_frame"]) if d.get("last_frame") else "-",
            d.get("frames_ok", 0), d.get("frames_bad", 0), d.get("reconnects", 0), d.get("error") or ""]
           for d in devs])


def cmd_devices(args) -> int:
    cfg, _ = get_config(args)
    devs = control(cfg, {"cmd": "devices"})["data"]
    if args.json:
        emit_json(devs)
    else:
        _devices_table(devs)
    return EXIT_OK if all(d.get("state") == "online" for d in devs) else EXIT_FAILED


def _ts_arg(text: str | None) -> str | None:
    if not text:
        return None
    from gateway.events import format_ts, parse_ts
    try:
        return format_ts(parse_ts(text))
    except ValueError:
        raise CliError(f"not a time: {text!r} (use RFC 3339, e.g. 2026-11-26T20:30:00Z)", EXIT_USAGE)


def cmd_events(args) -> int:
    from gateway.journal import iter_events, open_reader
    cfg, _ = get_config(args)
    conn = open_reader(journal_path(cfg))
    types = args.type or None
    since = _ts_arg(args.since)
    evs = list(iter_events(conn, types=types, since_ts=since))
    if args.limit:
        evs = evs[-args.limit:]
    last = evs[-1].seq if evs else (conn.execute("SELECT MAX(seq) FROM events").fetchone()[0] or 0)

    def show(ev):
        if args.json:
            print(ev.to_json(), flush=True)
        else:
            print(f"{ev.seq:>8} {ev.ts} {ev.type:<26} {ev.source:<16} "
                  f"{json.dumps(ev.data, ensure_ascii=False, separators=(',', ':'))}", flush=True)

    for ev in evs:
        show(ev)
    if args.follow:
        try:
            while True:
                time.sleep(0.3)
                for ev in iter_events(conn, since_seq=last + 1, types=types):
                    show(ev)
                    last = ev.seq
        except KeyboardInterrupt:
            return EXIT_OK
    return EXIT_OK


def _alarm_rows(alarms: list[dict]) -> list[list]:
    return [[a.get("alarm_id"), a.get("code"), a.get("severity"), a.get("room"),
             ",".join(a.get("persons") or []), a.get("since"),
             (a.get("acknowledged") or {}).get("by", "") if isinstance(a.get("acknowledged"), dict) else "",
             (a.get("message") or {}).get("zh", "")] for a in alarms]


def cmd_alarms(args) -> int:
    from gateway.journal import iter_events, open_reader
    cfg, _ = get_config(args)
    conn = open_reader(journal_path(cfg))
    history: list[dict] = []
    active: dict[str, dict] = {}
    for ev in iter_events(conn, types=["alarm.raised", "alarm.cleared", "alarm.acknowledged"]):
        aid = ev.data.get("alarm_id")
        if ev.type == "alarm.raised":
            active[aid] = dict(ev.data)
        elif ev.type == "alarm.cleared":
            active.pop(aid, None)
        elif aid in active:
            active[aid]["acknowledged"] = {"by": ev.data.get("by"), "note": ev.data.get("note"), "ts": ev.ts}
        history.append({"seq": ev.seq, "ts": ev.ts, "event": ev.type, **ev.data})
    if args.active:
        items = list(active.values())
        if args.json:
            emit_json(items)
        else:
            table(f"{len(items)} active alarms", ["alarm_id", "code", "severity", "room", "persons", "since",
                                                  "acked by", "message"], _alarm_rows(items))
        return EXIT_OK
    if args.json:
        emit_json(history)
    else:
        table(None, ["seq", "ts", "event", "code", "severity", "room", "persons", "alarm_id"],
              [[h["seq"], h["ts"], h["event"].split(".")[1], h.get("code"), h.get("severity"), h.get("room"),
                ",".join(h.get("persons") or []), h.get("alarm_id")] for h in history])
    return EXIT_OK


def cmd_ack(args) -> int:
    cfg, _ = get_config(args)
    resp = control(cfg, {"cmd": "ack", "alarm_id": args.alarm_id, "by": args.by, "note": args.note})
    if args.json:
        emit_json(resp)
    elif resp.get("ok"):
        print(f"acknowledged {args.alarm_id} by {args.by}")
    else:
        print(f"casegate: {resp['error']['code']}: {resp['error']['message']}", file=sys.stderr)
    return EXIT_OK if resp.get("ok") else EXIT_FAILED


def cmd_trace(args) -> int:
    from gateway.journal import iter_events, open_reader
    from rules.replay import trace
    cfg, _ = get_config(args)
    conn = open_reader(journal_path(cfg))
    since = _ts_arg(args.since)
    types = ["presence.entered", "presence.left", "person.registered", "person.left",
             "wristband.bound", "wristband.unbound"]
    evs = _with_archive(cfg, iter_events(conn, types=types, since_ts=since), types, since)
    rows = trace(evs, args.person)
    if args.json:
        emit_json(rows)
    else:
        table(f"trace of {args.person}", ["room", "entered", "left", "seconds"],
              [[r["room"], r["entered"], r.get("left") or "(still there)", r.get("seconds")] for r in rows])
    return EXIT_OK if rows else EXIT_FAILED


def cmd_custody(args) -> int:
    from gateway.custody import CUSTODY_TYPES, custody_history
    from gateway.journal import iter_events, open_reader
    cfg, _ = get_config(args)
    conn = open_reader(journal_path(cfg))
    rows = custody_history(_with_archive(cfg, iter_events(conn, types=CUSTODY_TYPES), CUSTODY_TYPES),
                           args.item)
    if args.json:
        emit_json(rows)
    else:
        table(f"chain of custody of {args.item.upper()}", ["ts", "event", "by", "locker", "compartment", "order / code"],
              [[r["ts"], r["event"], r.get("by") or r["source"], r.get("locker"), r.get("compartment"),
                r.get("order") or r.get("code") or ""] for r in rows])
    return EXIT_OK if rows else EXIT_FAILED


def _with_archive(cfg: Config, journal_events, types, since_ts: str | None = None):
    """Journal events merged with <storage.dir>/archive/ (pruned ranges), in seq order;
    a damaged archive file is a clear error naming it, not a traceback."""
    from gateway.archive import ArchiveError, archive_dir, archive_files, iter_with_archive
    directory = archive_dir(cfg.storage.dir)
    if not archive_files(directory):
        return journal_events

    def merged():
        try:
            yield from iter_with_archive(journal_events, directory, types, since_ts)
        except ArchiveError as e:
            raise CliError(f"archive {directory}/{e}; `casegate journal verify --archive` checks it")
    return merged()


def cmd_journal_verify_archive(args, cfg: Config) -> int:
    from gateway.archive import archive_dir, verify_with_archive
    from gateway.journal import open_reader
    directory = archive_dir(cfg.storage.dir)
    conn = open_reader(journal_path(cfg))
    try:
        r = verify_with_archive(conn, directory)
    finally:
        conn.close()
    if args.json:
        emit_json(r.__dict__)
    elif r.ok:
        print(f"journal + archive OK: {r.checked} events, seq 1..{r.last_seq} "
              f"({r.archived} from {r.files} archive files in {directory}, {r.checked - r.archived} in the journal"
              + (f", {r.shed} shed telemetry payloads, links checked" if r.shed else "") + ")")
    else:
        where = f" (archive file {r.file})" if r.file else ""
        print(f"journal + archive BROKEN at seq {r.bad_seq}{where}: {r.reason}", file=sys.stderr)
    return EXIT_OK if r.ok else EXIT_FAILED


def cmd_journal_verify(args) -> int:
    from gateway.journal import JournalError, verify
    cfg, _ = get_config(args)
    if getattr(args, "archive", False):
        return cmd_journal_verify_archive(args, cfg)
    try:
        r = verify(journal_path(cfg))
    except JournalError as e:
        raise CliError(str(e))
    if args.json:
        emit_json(r.__dict__)
    elif r.ok:
        print(f"journal OK: {r.checked} events, seq {r.first_seq}..{r.last_seq}"
              + (f" ({r.shed} shed telemetry payloads, links checked)" if r.shed else "")
              + (f"; {r.pruned} older events pruned to archive/ in {r.holes} ranges, anchors linked"
                 " (`journal verify --archive` checks their contents)" if r.pruned else ""))
    else:
        print(f"journal BROKEN at seq {r.bad_seq}: {r.reason} ({r.checked} events verified before it)",
              file=sys.stderr)
    return EXIT_OK if r.ok else EXIT_FAILED


def cmd_replay(args) -> int:
    from gateway.journal import iter_events, open_reader
    from rules.replay import replay
    cfg, _ = get_config(args)
    conn = open_reader(journal_path(cfg))
    evs = iter_events(conn, since_ts=_ts_arg(args.since), until_ts=_ts_arg(args.until))
    # After pruning, replay from the start is still the proof: archived ranges are read back.
    until = _ts_arg(args.until)
    evs = (e for e in _with_archive(cfg, evs, None, _ts_arg(args.since)) if until is None or e.ts <= until)
    alarms = replay(evs, cfg)
    if args.json:
        emit_json([a.envelope() | {"seq": None, "prev": None, "hash": None} for a in alarms])
    else:
        table(f"{len(alarms)} alarm events from replay", ["ts", "event", "code", "room", "persons", "alarm_id"],
              [[a.ts, a.type.split(".")[1], a.data.get("code"), a.data.get("room"),
                ",".join(a.data.get("persons") or []), a.data.get("alarm_id")] for a in alarms])
    return EXIT_OK


def cmd_face_enroll(args) -> int:
    from drivers.base import CommandError
    from drivers.camera.enroll import enroll_file
    cfg, _ = get_config(args)
    if not Path(args.image).is_file():
        raise CliError(f"{args.image}: no such file", EXIT_USAGE)
    try:
        res = enroll_file(str(cfg.storage_dir), args.person, args.image)
    except CommandError as e:
        print(f"casegate: {e.code}: {e.message}", file=sys.stderr)
        return EXIT_FAILED
    except FileNotFoundError:
        raise CliError(f"{args.image}: no such file", EXIT_USAGE)
    if args.json:
        emit_json(res)
    else:
        print(f"enrolled face of {args.person}")
    return EXIT_OK


PROBE_KINDS = ("zone_reader", "card_reader", "modbus_doors", "locker", "camera")


def cmd_probe(args, rest: list[str]) -> int:
    import importlib
    kind = args.driver
    pre: list[str] = []
    if args.device:
        cfg, _ = get_config(args)
        dev = next((d for d in cfg.devices if d.id == args.device), None)
        if dev is None:
            raise CliError(f"no device {args.device!r} in the config", EXIT_USAGE)
        kind = dev.driver
        pre = _probe_args_from_config(dev, str(cfg.storage_dir))
    if kind is None and ("-h" in rest or "--help" in rest):
        print("usage: casegate probe <device-id> [--seconds N]\n"
              "       casegate probe --driver {" + ",".join(PROBE_KINDS) + "} [driver options] [--seconds N]\n\n"
              "Talks to the hardware directly (the daemon need not run), decodes frames for N seconds and\n"
              "prints what was read and every error. `casegate probe --driver KIND --help` lists a driver's options.")
        return EXIT_OK
    if kind not in PROBE_KINDS:
        raise CliError(f"probe needs a device id or --driver one of {', '.join(PROBE_KINDS)}", EXIT_USAGE)
    mod = importlib.import_module(f"drivers.{kind}.probe")
    p = argparse.ArgumentParser(prog=f"casegate probe --driver {kind}")
    mod.add_arguments(p)
    if not any(a.dest == "seconds" for a in p._actions):
        p.add_argument("--seconds", type=float, default=10)
    if not any(a.dest == "json" for a in p._actions):
        p.add_argument("--json", action="store_true")
    pargs = p.parse_args(pre + rest)
    return mod.run(pargs)


def _probe_args_from_config(dev, cfg_storage_dir: str) -> list[str]:
    out: list[str] = []
    if dev.driver == "zone_reader":
        out += ["--listen", dev.listen]
    elif dev.driver == "card_reader":
        out += ["--port", dev.port, "--baudrate", str(dev.baudrate)]
    elif dev.driver == "modbus_doors":
        out += ["--url", dev.url, "--unit", str(dev.unit)]
    elif dev.driver == "locker":
        out += ["--port", dev.port, "--baudrate", str(dev.baudrate), "--board", str(dev.board),
                "--compartments", str(dev.compartments)]
        if dev.inventory:
            out += ["--inventory-port", dev.inventory.port,
                    "--inventory-baudrate", str(dev.inventory.baudrate),
                    "--inventory-address", str(dev.inventory.address)]
    elif dev.driver == "camera":
        # the daemon's storage dir holds the enrolled faces the probe should recognise
        out += ["--url", dev.url, "--fps", str(dev.fps), "--tolerance", str(dev.tolerance),
                "--motion-threshold", str(dev.motion_threshold), "--face-frames", str(dev.face_frames),
                "--storage-dir", cfg_storage_dir]
    return out


def cmd_demo(args) -> int:
    from gateway.demo import run_demo
    return run_demo(args)


# ---- parser ----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="casegate", description="Edge gateway of a case-handling center "
                                "(执法办案管理中心): hardware in, journaled facts and alarms out over MQTT.")
    p.add_argument("--config", help=f"config file (default $CASEGATE_CONFIG or {DEFAULT_CONFIG_PATH})")
    p.add_argument("--version", action="version", version=f"casegate {__version__}")
    sub = p.add_subparsers(dest="command", metavar="<command>")

    def add(name, help, fn, json_flag=True):
        sp = sub.add_parser(name, help=help, description=help)
        if json_flag:
            sp.add_argument("--json", action="store_true", help="machine-readable output")
        sp.set_defaults(fn=fn)
        return sp

    sp = add("run", "run the daemon (systemd Type=notify)", cmd_run, json_flag=False)
    sp.add_argument("--log-level", default=os.environ.get("CASEGATE_LOG_LEVEL", "INFO"))

    cfgp = sub.add_parser("config", help="configuration commands")
    cfgsub = cfgp.add_subparsers(dest="sub", metavar="<sub>", required=True)
    sp = cfgsub.add_parser("check", help="validate the config; print rooms, devices, rules")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_config_check)

    add("status", "uplink, backlog, journal, devices, active alarms (needs the daemon)", cmd_status)
    add("devices", "per device: state, last frame, frames ok/bad, reconnects (needs the daemon)", cmd_devices)

    sp = sub.add_parser("probe", help="talk to hardware directly, without the daemon",
                        description="casegate probe <device> | casegate probe --driver KIND --port URL ... "
                                    "[--seconds N]; see `casegate probe --driver KIND --help`",
                        add_help=False)
    sp.add_argument("device", nargs="?", help="a device id from the config")
    sp.add_argument("--driver", choices=PROBE_KINDS)
    sp.set_defaults(fn=cmd_probe, wants_rest=True)

    sp = add("events", "events from the journal", cmd_events)
    sp.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    sp.add_argument("--type", action="append", help="only this type (repeatable), e.g. presence.entered")
    sp.add_argument("--since", help="RFC 3339 time")
    sp.add_argument("--limit", type=int, help="only the last N")

    sp = add("alarms", "alarm history from the journal", cmd_alarms)
    sp.add_argument("--active", action="store_true", help="only alarms active now")

    sp = add("ack", "acknowledge an alarm (does not clear it; needs the daemon)", cmd_ack)
    sp.add_argument("alarm_id")
    sp.add_argument("--by", required=True, help="the acknowledging officer's person id")
    sp.add_argument("--note")

    sp = add("trace", "rooms a person visited with enter/leave times (轨迹回放)", cmd_trace)
    sp.add_argument("person")
    sp.add_argument("--since")

    sp = add("custody", "chain of custody of an evidence item: orders, unlocks, opens, adds/removes", cmd_custody)
    sp.add_argument("item", help="the item's EPC")

    jp = sub.add_parser("journal", help="journal commands")
    jsub = jp.add_subparsers(dest="sub", metavar="<sub>", required=True)
    sp = jsub.add_parser("verify", help="check the hash chain and seq continuity")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--archive", action="store_true",
                    help="prove archive/ + journal end to end (every pruned range present and chained)")
    sp.set_defaults(fn=cmd_journal_verify)

    sp = add("replay", "re-run the rules over the journal and print the alarms", cmd_replay)
    sp.add_argument("--since")
    sp.add_argument("--until")

    fp = sub.add_parser("face", help="face commands")
    fsub = fp.add_subparsers(dest="sub", metavar="<sub>", required=True)
    sp = fsub.add_parser("enroll", help="enrol a person's face from a JPEG/PNG photo")
    sp.add_argument("person")
    sp.add_argument("image")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_face_enroll)

    sp = add("demo", "a simulated center driven through a scripted day", cmd_demo, json_flag=False)
    sp.add_argument("--speed", type=float, default=60.0, help="time compression (default 60: 1 min per s)")
    sp.add_argument("--dir", help="keep the demo's storage here (default: a temporary dir)")
    sp.add_argument("--no-broker", action="store_true", help="do not start a local mosquitto")
    sp.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    rest: list[str] = []
    if "probe" in argv:
        # Probe options belong to the driver's own parser; split them off here
        # so option values are never taken for the positional device id.
        i = argv.index("probe")
        args = parser.parse_args(argv[:i + 1])
        tail = argv[i + 1:]
        j = 0
        while j < len(tail):
            a = tail[j]
            if a == "--driver" and j + 1 < len(tail):
                args.driver = tail[j + 1]
                j += 2
                continue
            if a.startswith("--driver="):
                args.driver = a.split("=", 1)[1]
            elif not a.startswith("-") and args.device is None and not rest:
                args.device = a
            else:
                rest.append(a)
            j += 1
    else:
        args = parser.parse_args(argv)
    if not getattr(args, "fn", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        if getattr(args, "wants_rest", False):
            return args.fn(args, rest)
        return args.fn(args)
    except CliError as e:
        print(f"casegate: {e}", file=sys.stderr)
        return e.code
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
