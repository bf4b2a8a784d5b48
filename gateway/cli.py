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
import typing
from pathlib import Path
from typing import Any

from gateway import __version__
from gateway.config import Config, ConfigError, DEFAULT_CONFIG_PATH, config_path, load_config
from rules.model import CaseType

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


def local(ts: str | float | None, cfg: Config | None) -> str:
    """A journal time (RFC 3339 UTC or epoch) for people: the center's local time with
    its offset (2026-11-28 09:18:26 +08:00). --json keeps the RFC 3339 UTC form."""
    from rules.model import format_local, parse_ts
    if ts is None or ts == "":
        return "-"
    try:
        epoch = ts if isinstance(ts, (int, float)) else parse_ts(ts)
    except ValueError:
        return str(ts)
    return format_local(epoch, cfg.center.timezone if cfg else None)


def duration(seconds: float | None) -> str:
    from rules.model import format_duration
    return "-" if seconds is None else format_duration(seconds)


# DOMAIN.md case types, as the event model declares them (person/register takes the same)
CASE_TYPES = typing.get_args(CaseType)


def _check_event_types(conn, types: list[str]) -> None:
    """A type neither the event model nor this journal knows is a typo: exit 2 naming the known ones."""
    # the event model's own list (rules/model/event_types.py), not a copy that new types miss
    from rules.model import EVENT_DATA as KNOWN_EVENT_TYPES
    for t in types:
        if t in KNOWN_EVENT_TYPES:
            continue
        if conn.execute("SELECT 1 FROM events WHERE type = ? LIMIT 1", (t,)).fetchone():
            continue      # a type added after this list (another driver, a newer version)
        seen = {r[0] for r in conn.execute("SELECT DISTINCT type FROM events")}
        known = sorted(set(KNOWN_EVENT_TYPES) | seen)
        import difflib
        close = difflib.get_close_matches(t, known, n=3)
        hint = f" — did you mean {' or '.join(close)}?" if close else ""
        raise CliError(f"unknown event type {t!r}{hint}\nknown types: {', '.join(known)}", EXIT_USAGE)


# ---- config and daemon access ------------------------------------------------------
# Set when get_config fell back to built-in defaults (no config given, no default file): the
# "no daemon" message then says so instead of blaming the service. One CLI call, one config.
_defaults_used = False


def get_config(args) -> tuple[Config, str | None]:
    """The config the user meant. A missing *default* file means built-in defaults."""
    global _defaults_used
    explicit = args.config or os.environ.get("CASEGATE_CONFIG")
    path = config_path(args.config)
    if not explicit and not Path(path).exists():
        _defaults_used = True
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
        if _defaults_used:
            # Built-in defaults: the socket looked for is the default one, which says nothing
            # about a daemon started with another config.
            raise CliError(f"no daemon on {path} (no config given: {DEFAULT_CONFIG_PATH} does not exist, "
                           "so the built-in defaults were used) — pass --config PATH of the running daemon, "
                           "or start it: systemctl start casegate", EXIT_NO_DAEMON)
        raise CliError(f"no daemon on {path} — is the service running? systemctl status casegate",
                       EXIT_NO_DAEMON)
    except PermissionError:
        raise CliError(f"permission denied on {path} — run as root or a member of the casegate group",
                       EXIT_FAILED)
    try:
        with s:
            s.sendall((json.dumps(req) + "\n").encode())
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
    except socket.timeout:
        raise CliError(f"the daemon did not answer within {timeout:g} s on {path} — busy or stuck? "
                       "journalctl -u casegate", EXIT_FAILED)
    except OSError as e:
        raise CliError(f"lost the connection to the daemon on {path}: {e.strerror or e}", EXIT_FAILED)
    try:
        return json.loads(buf)
    except ValueError:
        raise CliError(f"the daemon closed the connection on {path} without an answer "
                       "(stopping? see journalctl -u casegate)", EXIT_FAILED)


def journal_path(cfg: Config) -> Path:
    p = cfg.journal_path
    if not p.exists():
        raise CliError(f"no journal at {p} (storage.dir = {cfg.storage.dir})", EXIT_FAILED)
    return p


# ---- commands -------------------------------------------------------------------------
def cmd_run(args) -> int:
    from gateway.daemon import run
    from gateway.logging_setup import setup_logging
    path = config_path(args.config)
    if not Path(path).exists():
        # A daemon on built-in defaults would run as demo-center with no rooms and
        # create /var/lib/casegate: never what a technician meant.
        raise CliError(f"{path}: config file not found — write one (see config/small-center.toml and "
                       f"config/reference.toml) or pass --config PATH; `casegate demo` runs without one",
                       EXIT_USAGE)
    try:
        cfg = load_config(path)
    except ConfigError as e:
        raise CliError(str(e), EXIT_USAGE)
    _check_storage_dir(cfg)
    from gateway.signing import KeyFileError, load_or_create
    try:
        load_or_create(cfg.storage_dir, cfg.center.id)      # SPEC §8: the device key, made at the first start
    except (KeyFileError, OSError) as e:
        raise CliError(f"device key: {e}", EXIT_USAGE)
    setup_logging(args.log_level, cfg.center.timezone)
    from gateway.storage_lock import StorageLocked
    try:
        return run(cfg, path)
    except StorageLocked as e:
        raise CliError(str(e), EXIT_USAGE)


def _check_storage_dir(cfg: Config) -> None:
    """The storage dir exists or can be made, and is writable: a clear error, not a traceback."""
    d = cfg.storage_dir
    try:
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise CliError(f"storage.dir = {str(d)!r}: cannot create it ({e.strerror}) — create it "
                       f"(install -d -o casegate -m 0700 {d}) or set [storage] dir", EXIT_USAGE)
    if not d.is_dir():
        raise CliError(f"storage.dir = {str(d)!r}: exists but is not a directory", EXIT_USAGE)
    if not os.access(d, os.W_OK | os.X_OK):
        from gateway.checks import storage_not_writable_fix
        raise CliError(f"storage.dir = {str(d)!r}: not writable by uid {os.getuid()} — "
                       f"{storage_not_writable_fix(d)}", EXIT_USAGE)


def cmd_config_check(args) -> int:
    path = config_path(args.config)
    try:
        cfg = load_config(path)
    except ConfigError as e:
        for p in e.problems:
            print(p, file=sys.stderr)
        return EXIT_USAGE
    from gateway.checks import FAIL, WARN, config_findings, rule_thresholds
    from rules.catalog import rule_settings
    rules = rule_settings(cfg.rules)
    enabled = sorted(c for c, s in rules.items() if s.enabled)
    findings = [f for f in config_findings(cfg) if f.level in (WARN, FAIL)]
    failed = any(f.level == FAIL for f in findings)
    thresholds = rule_thresholds(cfg)
    summary = {
        "file": path, "center": cfg.center.id, "storage": cfg.storage.dir,
        "mqtt": f"{cfg.mqtt.host}:{cfg.mqtt.port} (MQTT {'5' if cfg.mqtt.protocol == 5 else '3.1.1'}"
                f"{', TLS' if cfg.mqtt.tls else ''})",
        "rooms": [{"id": r.id, "type": r.type} for r in cfg.rooms],
        "devices": [{"id": d.id, "driver": d.driver} for d in cfg.devices],
        "rules_enabled": enabled,
        "rules_disabled": sorted(set(rules) - set(enabled)),
        "rules": {code: rules[code].model_dump(mode="json") for code in sorted(rules)},
        "problems": [f.as_dict() for f in findings],
    }
    if args.json:
        emit_json({"ok": not failed, **summary,
                   "warnings": [f.message for f in findings if f.level == WARN]})
        return EXIT_USAGE if failed else EXIT_OK
    for f in findings:
        print(f"{path}: {f.check}: {f.level}: {f.message}" + (f" — {f.fix}" if f.fix else ""),
              file=sys.stderr)
    if failed:
        return EXIT_USAGE
    print(f"{path}: OK" + (f" ({len(findings)} warning{'s' if len(findings) > 1 else ''})" if findings else ""))
    print(f"center {cfg.center.id} ({cfg.center.timezone}) · storage {cfg.storage.dir} · broker {summary['mqtt']}")
    table("rooms", ["id", "type", "name", "adjacent"],
          [[r.id, r.type, r.name, ",".join(r.adjacent)] for r in cfg.rooms])
    table("devices", ["id", "driver", "where"], [[d.id, d.driver, _device_where(d)] for d in cfg.devices])
    table("rules in effect (* = set in this file)", ["code", "enabled", "settings"],
          [[code, "yes" if on else "NO", text] for code, on, text in thresholds])
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
    from gateway.top import devices_down
    healthy = data["uplink"].get("connected") and not data["journal"].get("error") and not devices_down(
        data["devices"])
    if args.json:
        emit_json({**data, "healthy": bool(healthy)})
    else:
        up = data["uplink"]
        j = data["journal"]
        print(f"casegate {data['version']} · center {data['center']} · pid {data['pid']} · "
              f"up {duration(data['uptime_s'])}")
        print(f"uplink   {'connected' if up.get('connected') else 'DISCONNECTED'} "
              f"{up.get('broker', '')} · backlog {up.get('backlog', j['backlog'])} · "
              f"delivered {up.get('delivered', 0)}" + (f" · last error: {up['last_error']}"
                                                        if up.get("last_error") else ""))
        size = f"{j['bytes'] / 1e6:.1f} MB" if j.get("bytes") is not None else "size unknown"
        print(f"journal  {j['path']} · {size} · {j['events']} events · "
              f"last seq {j['last_seq']}" + (f" · ERROR {j['error']}" if j.get("error") else ""))
        print(f"alarms   {data['active_alarms']} active")
        ast = data.get("alarm_states")
        if ast:
            print(f"         {ast['unacknowledged']} unacknowledged ({ast['cleared_unacknowledged']} cleared), "
                  f"{ast['shelves']} shelved, {ast['maintenance']} devices in maintenance")
        _status_start_clock(data)
        off = data.get("legal_disabled")
        if off:                       # DOMAIN v3: legal alarms switched off by the config, and why
            print(f"LEGAL ALARMS DISABLED {', '.join(off['codes'])} · reason: {off['reason']}")
        _devices_table(data["devices"], cfg)
        if not healthy:
            print("unhealthy: " + "; ".join(_unhealthy_reasons(data)), file=sys.stderr)
    return EXIT_OK if healthy else EXIT_FAILED


def _unhealthy_reasons(data: dict) -> list[str]:
    """Why `status` exits 1, in words a technician can act on."""
    reasons = []
    if not data["uplink"].get("connected"):
        reasons.append("the MQTT uplink is not connected (casegate doctor checks the broker)")
    if data["journal"].get("error"):
        reasons.append(f"the journal cannot write: {data['journal']['error']}")
    from gateway.top import devices_down
    down = devices_down(data["devices"])
    if down:
        reasons.append(f"device(s) not online: {', '.join(down)} (casegate devices; casegate probe <device>)")
    return reasons or ["see above"]


def _status_start_clock(data: dict) -> None:
    """The clock (synchronised? steps?) and how the last start rebuilt the state."""
    clk = data.get("clock")
    if clk:
        sync = {True: "synchronised", False: "NOT synchronised", None: "sync unknown"}[clk.get("synchronised")]
        line = f"clock    {sync} ({clk.get('source')})"
        if clk.get("unsynchronised_for_s"):
            line += f" for {clk['unsynchronised_for_s']:.0f} s"
        if clk.get("steps"):
            line += f" · {clk['steps']} wall-clock step(s) journaled"
            if clk.get("corrections"):
                line += f" ({clk['corrections']} correction(s) of an unsynchronised clock)"
        if clk.get("journal_ahead_s"):
            line += f" · journal time {clk['journal_ahead_s']:.0f} s ahead of the wall clock"
        print(line)
    st = data.get("start")
    if st:
        src = f"checkpoint seq {st['from_checkpoint']} + " if st.get("from_checkpoint") else "full replay of "
        line = f"start    {src}{st.get('replayed', 0)} events in {st.get('seconds', 0):.2f} s"
        last = (data.get("checkpoint") or {}).get("last")
        if last:
            line += f" · last checkpoint seq {last['seq']} ({last['bytes'] / 1e6:.1f} MB)"
        print(line)


def _devices_table(devs: list[dict], cfg: Config | None = None) -> None:
    table("devices", ["device", "driver", "state", "last frame", "ok", "bad", "reconnects", "error"],
          [[d["id"], d["driver"], d.get("state"), local(d.get("last_frame") or None, cfg),
            d.get("frames_ok", 0), d.get("frames_bad", 0), d.get("reconnects", 0), d.get("error") or ""]
           for d in devs])


def cmd_devices(args) -> int:
    cfg, _ = get_config(args)
    devs = control(cfg, {"cmd": "devices"})["data"]
    if args.json:
        emit_json(devs)
    else:
        _devices_table(devs, cfg)
    return EXIT_OK if all(d.get("state") == "online" for d in devs) else EXIT_FAILED


def _ts_arg(text: str | None, cfg: Config | None = None) -> str | None:
    """A time flag as RFC 3339 UTC; without an offset it is the center's local time
    (``[center] timezone``, SPEC §3 v3), as a person reads it off a form or a table."""
    if not text:
        return None
    from rules.model import format_ts
    from gateway.localtime import parse_given
    try:
        return format_ts(parse_given(text, cfg.center.timezone if cfg is not None else None))
    except ValueError as e:
        raise CliError(f"not a time: {e}", EXIT_USAGE)


def cmd_events(args) -> int:
    from gateway.journal import iter_events, open_reader
    cfg, _ = get_config(args)
    conn = open_reader(journal_path(cfg))
    types = args.type or None
    if types:
        _check_event_types(conn, types)
    since = _ts_arg(args.since, cfg)
    evs = list(iter_events(conn, types=types, since_ts=since))
    if args.limit:
        evs = evs[-args.limit:]
    last = evs[-1].seq if evs else (conn.execute("SELECT MAX(seq) FROM events").fetchone()[0] or 0)

    def show(ev):
        if args.json:
            print(ev.to_json(), flush=True)
        else:
            print(f"{ev.seq:>8} {local(ev.ts, cfg)} {ev.type:<26} {ev.source:<16} "
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


def _alarm_state(a: dict) -> str:
    """ISA-18.2 state of a listed alarm, for people."""
    active = a.get("active", True)
    acked = bool(a.get("acknowledged"))
    text = ("active" if active else "cleared") + (", acked" if acked else ", unacked")
    if a.get("shelved"):
        text += ", maintenance" if a.get("suppressed_by") == "maintenance" else ", shelved"
    if a.get("escalation_level"):
        text += f", esc {a['escalation_level']}"
    return text


def _alarm_rows(alarms: list[dict], cfg: Config | None = None) -> list[list]:
    return [[a.get("alarm_id"), a.get("code"), a.get("severity"), _alarm_state(a), a.get("room"),
             ",".join(a.get("persons") or []), local(a.get("since"), cfg),
             (a.get("acknowledged") or {}).get("by", "") if isinstance(a.get("acknowledged"), dict) else "",
             (a.get("message") or {}).get("zh", "")] for a in alarms]


def cmd_alarms(args) -> int:
    from gateway.journal import iter_events, open_reader
    from rules.alarm_states import AlarmBook
    cfg, _ = get_config(args)
    conn = open_reader(journal_path(cfg))
    if args.stats:
        return _alarm_stats(args, cfg, conn)
    history: list[dict] = []
    # The same fold the daemon keeps (rules/alarm_states.py), from the journal alone.
    book = AlarmBook()
    for ev in iter_events(conn, types=["alarm.raised", "alarm.cleared", "alarm.acknowledged", "alarm.escalated",
                                       "alarm.shelved", "alarm.unshelved", "device.maintenance",
                                       "device.maintenance_ended"]):
        # The same alarm_id re-sent while active is an update (persons or room changed).
        aid = ev.data.get("alarm_id")
        kind = ev.type.split(".", 1)[1]
        if ev.type == "alarm.raised" and aid in book.standing and book.standing[aid]["active"]:
            kind = "updated"
        book.note(ev, cfg)
        if ev.domain == "alarm":
            history.append({"seq": ev.seq, "ts": ev.ts, "event": ev.type, "kind": kind, **ev.data})
    if args.active or args.standing:
        items = []
        for aid, rec in book.standing.items():
            if args.active and not rec["active"]:
                continue
            a = {k: v for k, v in rec["data"].items() if k not in ("acknowledged", "by", "note")}
            a.update(active=rec["active"], acknowledged=rec["ack"], shelved=bool(a.pop("shelved", False)),
                     escalation_level=rec["level"])
            items.append(a)
        if args.json:
            emit_json(items)
        else:
            what = "active alarms" if args.active else "standing alarms (active or unacknowledged)"
            table(f"{len(items)} {what}", ["alarm_id", "code", "severity", "state", "room", "persons", "since",
                                           "acked by", "message"], _alarm_rows(items, cfg))
        return EXIT_OK
    if args.json:
        emit_json(history)
    else:
        table(None, ["seq", "ts", "event", "code", "severity", "room", "persons", "alarm_id"],
              [[h["seq"], local(h["ts"], cfg), h["kind"], h.get("code"), h.get("severity"), h.get("room"),
                ",".join(h.get("persons") or []), h.get("alarm_id")] for h in history])
    return EXIT_OK


def _alarm_stats(args, cfg, conn) -> int:
    from gateway.alarm_stats import CHATTER_RAISES, FLOOD_ALARMS, STATS_TYPES, compute
    from rules.model import format_duration, format_local, parse_ts
    from gateway.journal import iter_events
    since = _ts_arg(args.since, cfg)
    row = conn.execute("SELECT ts FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    until = parse_ts(row[0]) if row else None      # still-active alarms stand until the journal's end
    st = compute(iter_events(conn, types=STATS_TYPES, since_ts=since),
                 parse_ts(since) if since else None, until)
    if args.json:
        emit_json(st)
        return EXIT_OK
    tz = cfg.center.timezone

    def dur(x):
        return format_duration(x) if x is not None else "-"

    def local(ts):
        return format_local(parse_ts(ts), tz) if ts else "-"
    rows = []
    for code, x in st["codes"].items():
        rows.append([code, x["raised"], x["cleared"], x["acknowledged"], dur(x["mean_ack_s"]), dur(x["max_ack_s"]),
                     x["standing_24h"], f"{x['max_raises_10min']}{' CHATTERING' if x['chattering'] else ''}",
                     x["escalations"], x["suppressed"], dur(x["shelved_s"]) if x["shelved_s"] else "-"])
    table(f"alarms {local(st['from'])} .. {local(st['to'])}",
          ["code", "raised", "cleared", "acked", "mean to ack", "max to ack", "standing >24 h",
           f"max raises/10 min (>{CHATTER_RAISES} chatters)", "escalations", "suppressed", "shelved"], rows)
    t = st["totals"]
    w10, w60 = st["worst_10min"], st["worst_hour"]
    print(f"{t['raised']} alarms raised, {t['announced']} announced, {t['acknowledged']} acknowledged; "
          f"{t['standing_24h']} standing > 24 h; average {t['per_10min_avg'] if t['per_10min_avg'] is not None else '-'}"
          f" per 10 min")
    print(f"worst 10 min: {w10['alarms']} alarms from {local(w10['from'])}"
          f"{f' - FLOOD (> {FLOOD_ALARMS} per 10 min, ISA-18.2)' if st['flood'] else ''}")
    print(f"worst hour: {w60['alarms']} alarms from {local(w60['from'])}")
    if t["chattering_codes"]:
        print(f"chattering: {', '.join(t['chattering_codes'])}")
    return EXIT_OK


def cmd_ack(args) -> int:
    # The same alarm/ack handler as over MQTT: a bad officer id is a one-line bad_request.
    cfg, _ = get_config(args)
    req = {"alarm_id": args.alarm_id, "by": args.by}
    if args.note:
        req["note"] = args.note
    return daemon_request(cfg, "alarm/ack", req, args.json,
                          lambda d: f"acknowledged {args.alarm_id} by {args.by}")


def cmd_trace(args) -> int:
    from gateway.journal import iter_events, open_reader
    from rules.replay import trace
    cfg, _ = get_config(args)
    conn = open_reader(journal_path(cfg))
    since = _ts_arg(args.since, cfg)
    types = ["presence.entered", "presence.left", "person.registered", "person.left",
             "wristband.bound", "wristband.unbound"]
    # The whole history, then the visits still going on at --since or later: a person in the room
    # since before --since is in it at that time (filtering events first lost the entry).
    evs = _with_archive(cfg, iter_events(conn, types=types), types)
    rows = [r for r in trace(evs, args.person) if since is None or r["left"] is None or r["left"] >= since]
    if not rows:
        known = conn.execute("SELECT 1 FROM events WHERE type = 'person.registered' AND "
                             "json_extract(data, '$.person') = ? LIMIT 1", (args.person,)).fetchone()
        if args.json:
            emit_json(rows)
        raise CliError(f"no room visits recorded for {args.person}" + (" since " + args.since if since else "")
                       if known else f"no such person {args.person!r} in the journal")
    if args.json:
        emit_json(rows)
    else:
        table(f"trace of {args.person}", ["room", "entered", "left", "stayed"],
              [[r["room"], local(r["entered"], cfg), local(r["left"], cfg) if r.get("left") else "(still there)",
                duration(r.get("seconds"))] for r in rows])
    return EXIT_OK


def cmd_custody(args) -> int:
    from gateway.custody import CUSTODY_TYPES, custody_history
    from gateway.journal import iter_events, open_reader
    cfg, _ = get_config(args)
    conn = open_reader(journal_path(cfg))
    rows = custody_history(_with_archive(cfg, iter_events(conn, types=CUSTODY_TYPES), CUSTODY_TYPES),
                           args.item)
    if not rows:
        if args.json:
            emit_json(rows)
        raise CliError(f"no such item {args.item.upper()!r} in the journal (no order, deposit or removal "
                       f"names it)")
    if args.json:
        emit_json(rows)
    else:
        table(f"chain of custody of {args.item.upper()}", ["time", "event", "by", "locker", "compartment", "order / code"],
              [[local(r["ts"], cfg), r["event"], r.get("by") or r["source"], r.get("locker"), r.get("compartment"),
                r.get("order") or r.get("code") or ""] for r in rows])
    return EXIT_OK


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


def cmd_journal_backup(args) -> int:
    """SPEC §5 v3: online, 0600, verified (gateway/backup.py)."""
    from gateway.backup import BackupError, backup_journal
    cfg, _ = get_config(args)
    try:
        r = backup_journal(journal_path(cfg), args.file)
    except BackupError as e:
        raise CliError(str(e))
    if args.json:
        emit_json(r.as_dict())
    else:
        print(f"backup OK: {r.path} (0600), {r.events} events, seq {r.first_seq}..{r.last_seq}, "
              f"{r.bytes / 1e6:.1f} MB, chain verified"
              + (" (taken while the daemon runs)" if r.daemon_running else ""))
    return EXIT_OK


def read_event_file(path: str, center: str, verify: bool = False, tz: str | None = None,
                    counts: dict | None = None) -> list:
    """Events from a JSON Lines file (SPEC §5 ``replay --input``): full envelopes
    as published on MQTT or bare {ts, type, source, data}. Each gets its place
    in a fresh chain; with ``verify`` the envelopes' own seq/prev/hash must hold.
    Bad lines are a usage error naming FILE:LINE. A line whose ``id`` came before
    is a duplicate (SPEC §3: a re-sent event keeps its id) and is dropped, counted
    in ``counts["duplicates"]``; a time a person gave without an offset in the
    data (``arrived_at`` ...) is read in ``tz``, as the live gateway reads it."""
    from rules.model import Draft, GENESIS, parse_ts, seal, verify_envelope
    from gateway.localtime import normalise_given_times
    seen_ids: set[str] = set()
    dropped = 0
    try:
        fh = open(path, encoding="utf-8")
    except OSError as e:
        raise CliError(f"{path}: {e.strerror}", EXIT_USAGE)
    out = []
    prev, last_seq, vprev = GENESIS, 0, None
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                raise CliError(f"{path}:{n}: not a JSON object", EXIT_USAGE)
            if not isinstance(obj, dict):
                raise CliError(f"{path}:{n}: not a JSON object", EXIT_USAGE)
            typ, ts, data = obj.get("type"), obj.get("ts"), obj.get("data")
            if not isinstance(typ, str) or not isinstance(ts, str) or not isinstance(data, dict):
                raise CliError(f"{path}:{n}: needs ts (RFC 3339), type and data (an object)", EXIT_USAGE)
            try:
                epoch = parse_ts(ts)
            except ValueError:
                raise CliError(f"{path}:{n}: ts {ts!r} is not an RFC 3339 time", EXIT_USAGE)
            eid = obj.get("id")
            if isinstance(eid, str):
                if eid in seen_ids:
                    dropped += 1
                    continue
                seen_ids.add(eid)
            if verify:
                if "hash" not in obj or "seq" not in obj:
                    raise CliError(f"{path}:{n}: --verify needs full envelopes (seq, prev, hash)", EXIT_USAGE)
                why = verify_envelope(obj, vprev)
                if why is None and last_seq and obj["seq"] != last_seq + 1:
                    why = f"seq {obj['seq']} follows {last_seq}"
                if why:
                    print(f"input BROKEN at line {n} (seq {obj.get('seq')}): {why}", file=sys.stderr)
                    raise SystemExit(EXIT_FAILED)
                vprev, last_seq = obj["hash"], obj["seq"]
            kw = {"id": obj["id"]} if isinstance(obj.get("id"), str) else {}
            normalise_given_times(typ, data, tz)
            d = Draft(typ, data, str(obj.get("source") or "input"), epoch, **kw)
            ev = seal(d, len(out) + 1, center, prev, epoch)
            prev = ev.hash
            out.append(ev)
    if counts is not None:
        counts["duplicates"] = dropped
    return out


def cmd_replay(args) -> int:
    from gateway.journal import iter_events, open_reader
    from rules.replay import replay
    if getattr(args, "replay_config", None):
        args.config = args.replay_config
    cfg, _ = get_config(args)
    if getattr(args, "input", None):
        return _replay_input(args, cfg)
    conn = open_reader(journal_path(cfg))
    evs = iter_events(conn, since_ts=_ts_arg(args.since, cfg), until_ts=_ts_arg(args.until, cfg))
    # After pruning, replay from the start is still the proof: archived ranges are read back.
    until = _ts_arg(args.until, cfg)
    evs = (e for e in _with_archive(cfg, evs, None, _ts_arg(args.since, cfg)) if until is None or e.ts <= until)
    alarms = replay(evs, cfg)
    kinds, open_ids = [], set()
    for a in alarms:        # a re-sent alarm.raised of an active alarm is an update
        aid = a.data.get("alarm_id")
        kinds.append("updated" if a.type == "alarm.raised" and aid in open_ids else a.type.split(".")[1])
        if a.type == "alarm.raised":
            open_ids.add(aid)
        elif a.type == "alarm.cleared":
            open_ids.discard(aid)
    if args.json:
        emit_json([a.envelope() | {"seq": None, "prev": None, "hash": None} for a in alarms])
    else:
        table(f"{len(alarms)} alarm events from replay", ["ts", "event", "code", "room", "persons", "alarm_id"],
              [[local(a.ts, cfg), a.type.split(".")[1], a.data.get("code"), a.data.get("room"),
                ",".join(a.data.get("persons") or []), a.data.get("alarm_id")] for a in alarms])
    return EXIT_OK


def _replay_input(args, cfg) -> int:
    """SPEC §5 v2: the rule output and derived events the live daemon would have
    journaled from a file of events, under this config."""
    from rules.model import format_local, parse_ts
    from rules.replay import replay_input
    counts: dict = {}
    evs = read_event_file(args.input, cfg.center.id, verify=args.verify, tz=cfg.center.timezone, counts=counts)
    if counts.get("duplicates"):
        print(f"{args.input}: dropped {counts['duplicates']} duplicate events (an id seen before; "
              f"SPEC §3: a re-sent event keeps its id)", file=sys.stderr)
    # deadlines fire up to --until: by default the last input time; "now" = as of now
    if (args.until or "").strip().lower() == "now":
        import time as _time
        until = _time.time()
    elif args.until:
        until = parse_ts(_ts_arg(args.until, cfg))
    else:
        until = max((e.epoch for e in evs), default=None)
    out = replay_input(evs, cfg, until=until)
    if args.json:
        for e in out:
            sys.stdout.write(json.dumps({"id": e.id, "ts": e.ts, "center": e.center, "type": e.type,
                                         "source": e.source, "data": e.data}, ensure_ascii=False) + "\n")
        return EXIT_OK
    tz = cfg.center.timezone
    table(f"{len(out)} events from replaying {len(evs)} input events ({args.input})",
          ["time", "event", "code", "room", "persons", "alarm_id"],
          [[format_local(e.epoch, tz), e.type, e.data.get("code"), e.data.get("room"),
            ",".join(e.data.get("persons") or ([e.data["person"]] if e.data.get("person") else [])),
            e.data.get("alarm_id")] for e in out])
    return EXIT_OK


def cmd_face_enroll(args) -> int:
    """Through the daemon: the same face/enroll as over MQTT (registered-person check,
    face.enrolled journaled, cameras reload their faces)."""
    import base64
    cfg, _ = get_config(args)
    try:
        image = Path(args.image).read_bytes()
    except FileNotFoundError:
        raise CliError(f"{args.image}: no such file", EXIT_USAGE)
    except OSError as e:
        raise CliError(f"{args.image}: cannot read: {e.strerror}", EXIT_USAGE)
    return daemon_request(cfg, "face/enroll", {"person": args.person,
                                               "image": base64.b64encode(image).decode("ascii")},
                          args.json, lambda d: f"enrolled face of {d.get('person', args.person)}"
                                               f" (event {d.get('event_id', '?')})")


def cmd_doctor(args) -> int:
    from gateway.doctor import run_checks

    def daemon_status(cfg):
        try:
            resp = control(cfg, {"cmd": "status"}, timeout=5)
        except (CliError, OSError, ValueError):
            return None
        return resp.get("data") if resp.get("ok") else None
    path = config_path(args.config)
    findings = run_checks(path, user=args.user, daemon_status=daemon_status)
    failed = any(f.level == "FAIL" for f in findings)
    if args.json:
        emit_json({"ok": not failed, "config": path, "checks": [f.as_dict() for f in findings]})
    else:
        from rich.text import Text
        con = _console()
        style = {"OK": "green", "WARN": "yellow", "FAIL": "bold red"}
        for f in findings:
            line = Text(f"{f.level:<4}", style=style[f.level])
            line.append(f" {f.check}: {f.message}")
            if f.fix and f.level != "OK":
                line.append(f"\n      fix: {f.fix}", style="dim" if f.level == "WARN" else "")
            con.print(line)
        n = {lvl: sum(1 for f in findings if f.level == lvl) for lvl in ("OK", "WARN", "FAIL")}
        con.print(f"{n['OK']} ok, {n['WARN']} warnings, {n['FAIL']} failed")
    return EXIT_FAILED if failed else EXIT_OK


def cmd_top(args) -> int:
    from gateway.top import run_top
    cfg, _ = get_config(args)
    control(cfg, {"cmd": "status"}, timeout=5)       # no daemon at start: exit 3 with the hint

    def fetch():
        try:
            resp = control(cfg, {"cmd": "top"}, timeout=5)
        except CliError as e:
            raise RuntimeError(str(e)) from None
        if not resp.get("ok"):
            raise RuntimeError((resp.get("error") or {}).get("message", "daemon refused"))
        return resp["data"]
    return run_top(fetch, interval=args.interval, once=args.once)


# ---- commissioning through the daemon (same handlers as P/request/<command>) -----------
def daemon_request(cfg: Config, command: str, req_args: dict, as_json: bool, describe) -> int:
    """Send one request over the control socket and print its answer.

    The daemon runs it through the command table (gateway/requests.py), so validation and journal
    events are those of P/request/<command>; errors are printed as code: message."""
    resp = control(cfg, {"cmd": "request", "command": command, "args": req_args}, timeout=90)
    if as_json:
        emit_json(resp)
    elif resp.get("ok"):
        data = resp.get("data") or {}
        print(describe(data) + (" (unchanged)" if data.get("unchanged") else ""))
    else:
        err = resp.get("error") or {}
        code, msg = err.get("code", "error"), err.get("message", "")
        if code == "unknown_command":
            msg += f" — this daemon does not support {command} (upgrade casegate?)"
        print(f"casegate: {command} refused: {code}: {msg}", file=sys.stderr)
    if resp.get("ok"):
        return EXIT_OK
    return EXIT_USAGE if (resp.get("error") or {}).get("code") == "bad_request" else EXIT_FAILED


def _drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None and v is not False}


def cmd_person_add(args) -> int:
    cfg, _ = get_config(args)
    req = _drop_none({"person": args.person, "role": args.role, "name": args.name, "gender": args.gender,
                      "minor": args.minor or None, "age": args.age, "vulnerable": args.vulnerable,
                      "case_id": args.case_id, "case_type": args.case_type, "limit_h": args.limit_h,
                      "arrived_at": _ts_arg(args.arrived_at, cfg), "visitor_kind": args.visitor_kind,
                      "for": args.for_person, "approver": args.approver or None, "identity": args.identity,
                      "approved_by": args.approved_by, "reason": args.reason})
    return daemon_request(cfg, "person/register", req, args.json,
                          lambda d: f"registered {args.person} as {args.role}")


def cmd_person_update(args) -> int:
    cfg, _ = get_config(args)
    req = _drop_none({"person": args.person, "by": args.by, "reason": args.reason,
                      "case_type": args.case_type, "limit_h": args.limit_h, "case_id": args.case_id,
                      "detained_at": _ts_arg(args.detained_at, cfg), "vulnerable": args.vulnerable or None,
                      "approved_by": args.approved_by})
    return daemon_request(cfg, "person/update", req, args.json, lambda d: f"updated {args.person}")


def cmd_person_checkout(args) -> int:
    cfg, _ = get_config(args)
    return daemon_request(cfg, "person/checkout", {"person": args.person, "by": args.by}, args.json,
                          lambda d: f"checkout of {args.person} approved by {args.by}")


def cmd_simulate(args) -> int:
    """casegate simulate [--script FILE]: see gateway/simulate.py and docs/operations.md."""
    from gateway.simulate import Site
    path = config_path(args.config)
    try:
        cfg = load_config(path)
    except ConfigError as e:
        raise CliError(str(e), EXIT_USAGE)
    lines = None
    if args.script:
        try:
            lines = Path(args.script).read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise CliError(f"{args.script}: {e.strerror}", EXIT_USAGE)

    from gateway.simulate import RecorderLink
    try:
        link = RecorderLink(cfg, args.recorder_password_file) if cfg.mqtt.enabled else None
    except OSError as e:
        raise CliError(f"--recorder-password-file: {e.strerror}", EXIT_USAGE)
    site = Site(cfg, recorder_link=link)
    site.start()
    if not site.devices:
        site.stop()
        raise CliError("no device of this config can be simulated (see the lines above)", EXIT_FAILED)
    failed = 0
    try:
        if lines is not None:
            failed = site.run_lines(lines)
        if lines is None or sys.stdin.isatty():
            interactive = sys.stdin.isatty()
            if interactive:
                print("simulate> ", end="", flush=True)
            failed += site.run_lines(sys.stdin, prompt=interactive)
    except KeyboardInterrupt:
        pass
    finally:
        site.stop()
        if link is not None:
            link.close()
    return EXIT_FAILED if failed and lines is not None else EXIT_OK


def cmd_recording(args) -> int:
    """recording start|stop ROOM --by O: an operator's entry of the recorder's state (commissioning,
    or a recorder that cannot send its own events). The daemon journals who entered it."""
    cfg, _ = get_config(args)
    req = {"room": args.room, "recording": args.recording, "source": "operator", "by": args.by}
    return daemon_request(cfg, "recording/state", req, args.json,
                          lambda d: f"{args.room}: recording {'started' if args.recording else 'stopped'} "
                                    f"(by {args.by})")


def cmd_band_bind(args) -> int:
    cfg, _ = get_config(args)
    return daemon_request(cfg, "wristband/bind", {"tag": args.tag, "person": args.person}, args.json,
                          lambda d: f"tag {d.get('tag', args.tag)} bound to {args.person}")


def cmd_band_unbind(args) -> int:
    cfg, _ = get_config(args)
    return daemon_request(cfg, "wristband/unbind", {"tag": args.tag}, args.json,
                          lambda d: f"tag {d.get('tag', args.tag)} unbound from {d.get('person', '?')}")


def _probe_kinds() -> tuple[str, ...]:
    from drivers.registry import kinds
    return kinds()


def cmd_probe(args, rest: list[str]) -> int:
    from drivers.registry import spec, specs
    kind = args.driver
    pre: list[str] = []
    if args.device:
        cfg, _ = get_config(args)
        dev = next((d for d in cfg.devices if d.id == args.device), None)
        if dev is None:
            raise CliError(f"no device {args.device!r} in the config", EXIT_USAGE)
        kind = dev.driver
        pre = spec(kind).probe().args_from_config(dev, str(cfg.storage_dir))
    if kind is None and ("-h" in rest or "--help" in rest):
        print("usage: casegate probe <device-id> [--seconds N]\n"
              "       casegate probe --driver KIND [driver options] [--seconds N]\n\n"
              "Talks to the hardware directly (the daemon need not run), decodes frames for N seconds and\n"
              "prints what was read and every error. `casegate probe --driver KIND --help` lists a driver's options.\n\n"
              "kinds:\n" + "\n".join(f"  {k:<14} {s.summary}" for k, s in specs().items()))
        return EXIT_OK
    if kind not in specs():
        raise CliError(f"probe needs a device id or --driver one of {', '.join(specs())}", EXIT_USAGE)
    mod = spec(kind).probe()
    p = argparse.ArgumentParser(prog=f"casegate probe --driver {kind}")
    mod.add_arguments(p)
    if not any(a.dest == "seconds" for a in p._actions):
        p.add_argument("--seconds", type=float, default=10)
    if not any(a.dest == "json" for a in p._actions):
        p.add_argument("--json", action="store_true")
    pargs = p.parse_args(pre + rest)
    return mod.run(pargs)


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
    sp.add_argument("--driver", choices=_probe_kinds())
    sp.set_defaults(fn=cmd_probe, wants_rest=True)

    sp = add("events", "events from the journal", cmd_events)
    sp.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    sp.add_argument("--type", action="append", help="only this type (repeatable), e.g. presence.entered")
    sp.add_argument("--since", help="RFC 3339 time")
    sp.add_argument("--limit", type=int, help="only the last N")

    sp = add("alarms", "alarm history from the journal", cmd_alarms)
    sp.add_argument("--active", action="store_true", help="only alarms active now, with their states")
    sp.add_argument("--standing", action="store_true",
                    help="active or unacknowledged alarms (what P/state/alarms lists), with their states")
    sp.add_argument("--stats", action="store_true",
                    help="alarm KPIs per code: raised, cleared, acked, time to ack, standing, chattering, "
                         "shelved time, worst 10 min (ISA-18.2)")
    sp.add_argument("--since", help="RFC 3339 time (with --stats)")

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
    sp = jsub.add_parser("backup", help="online copy of the journal to FILE: SQLite backup API, 0600, verified")
    sp.add_argument("file", metavar="FILE", help="the new backup file (never overwritten; not in the storage dir)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_journal_backup)

    sp = add("replay", "re-run the rules over the journal and print the alarms", cmd_replay)
    sp.add_argument("--since")
    sp.add_argument("--until", help="RFC 3339 (no offset: the center's local time); with --input deadlines "
                                    "fire up to it: default the last input time, `now` = as of now")
    sp.add_argument("--input", metavar="FILE.jsonl",
                    help="replay a file of events (envelopes or bare {ts,type,source,data}) instead of the journal")
    sp.add_argument("--config", dest="replay_config", metavar="PATH", help="the config to replay under")
    sp.add_argument("--verify", action="store_true", help="with --input: check the envelopes' seq/prev/hash")

    fp = sub.add_parser("face", help="face commands")
    fsub = fp.add_subparsers(dest="sub", metavar="<sub>", required=True)
    sp = fsub.add_parser("enroll", help="enrol a person's face from a JPEG/PNG photo")
    sp.add_argument("person")
    sp.add_argument("image")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_face_enroll)

    _add_commissioning(sub)

    sp = add("doctor", "check this installation: config, storage, serial ports, devices, broker/TLS, clock, "
             "systemd; OK/WARN/FAIL with the fix (exit 1 on a FAIL)", cmd_doctor)
    sp.add_argument("--user", help="the service user to check permissions for (default: casegate if it exists)")

    sp = add("top", "live view for the duty room: rooms, alarms, devices, uplink (needs the daemon; q quits)",
             cmd_top, json_flag=False)
    sp.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    sp.add_argument("--once", action="store_true", help="print one screen and exit (also when not a terminal)")
    from gateway.ingest.cli import add_parser as add_ingest_parser
    add_ingest_parser(sub)          # casegate ingest (SPEC §6), gateway/ingest/
    from gateway.case_cli import add_parsers as add_case_parsers
    add_case_parsers(sub)           # casegate case export|verify, keys show (SPEC §8), gateway/case_cli.py

    sp = add("simulate", "commissioning without hardware: the configured devices played by their simulators "
             "(stations, readers, doors, lockers, cameras) on the addresses and ports of the config",
             cmd_simulate, json_flag=False)
    sp.add_argument("--script", metavar="FILE", help="commands, one a line (move <tag> <room>, swipe <card> <reader>, "
                    "door open|close <door>, recorder start|stop <room>, wait <s>, …); without it: typed commands")
    sp.add_argument("--recorder-password-file", metavar="FILE",
                    help="the recorders' MQTT password, when the broker asks for one (each recorder logs in "
                         "as its [[rooms]] recorder account)")

    sp = add("demo", "a simulated center driven through a scripted day", cmd_demo, json_flag=False)
    sp.add_argument("--speed", type=float, default=60.0, help="time compression (default 60: 1 min per s)")
    sp.add_argument("--dir", help="keep the demo's storage here (default: a temporary dir)")
    sp.add_argument("--keep", action="store_true", help="keep the temporary work dir (journal, config, demo.log)")
    sp.add_argument("--no-broker", action="store_true", help="do not start a local mosquitto")
    sp.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def _add_commissioning(sub) -> None:
    """person add|update|checkout, band bind|unbind: commissioning without a central system."""
    pp = sub.add_parser("person", help="register, update, check out persons (through the daemon)")
    psub = pp.add_subparsers(dest="sub", metavar="<sub>", required=True)
    sp = psub.add_parser("add", help="register a person (same as MQTT person/register)")
    sp.add_argument("person", help="person id, e.g. an officer's badge number")
    sp.add_argument("--role", required=True, choices=["suspect", "officer", "staff", "visitor"])
    sp.add_argument("--name")
    sp.add_argument("--gender", choices=["male", "female"])
    sp.add_argument("--minor", action="store_true", help="under 18")
    sp.add_argument("--age", type=int)
    sp.add_argument("--vulnerable", action="store_true", help="needs special protection (DOMAIN)")
    sp.add_argument("--case-id")
    sp.add_argument("--case-type", choices=CASE_TYPES)
    sp.add_argument("--limit-h", type=float, help="detention limit in hours, if not the law's default")
    sp.add_argument("--arrived-at", help="到案时间, RFC 3339; without an offset the center's local time (default: now)")
    sp.add_argument("--visitor-kind", help="e.g. lawyer, guardian, interpreter")
    sp.add_argument("--for", dest="for_person", help="the person a visitor is here for")
    sp.add_argument("--approver", action="store_true", help="an officer who approves (办案部门负责人)")
    sp.add_argument("--identity", help="hash (hex) of the ID-card number, never the number")
    sp.add_argument("--approved-by", help="the approver of a limit above the base one")
    sp.add_argument("--reason", help="the grounds of that approval")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_person_add)
    sp = psub.add_parser("update", help="correct a registration (same as MQTT person/update)")
    sp.add_argument("person")
    sp.add_argument("--by", required=True, help="the officer making the change")
    sp.add_argument("--reason", required=True, help="why (journaled)")
    sp.add_argument("--case-type", choices=CASE_TYPES)
    sp.add_argument("--limit-h", type=float)
    sp.add_argument("--case-id")
    sp.add_argument("--detained-at", help="RFC 3339; without an offset the center's local time")
    sp.add_argument("--vulnerable", action="store_true")
    sp.add_argument("--approved-by", help="an approver: lengthening a limit, correcting detained_at")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_person_update)
    sp = psub.add_parser("checkout", help="approve a person's leaving (same as MQTT person/checkout)")
    sp.add_argument("person")
    sp.add_argument("--by", required=True, help="the approving officer")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_person_checkout)

    rp = sub.add_parser("recording", help="tell the daemon a room's recorder started or stopped (by hand)")
    rsub = rp.add_subparsers(dest="sub", metavar="<sub>", required=True)
    for verb in ("start", "stop"):
        sp = rsub.add_parser(verb, help=f"the recorder of ROOM {'is recording' if verb == 'start' else 'stopped'} "
                                        "(same as MQTT recording/state; journaled as entered by --by)")
        sp.add_argument("room", help="an interrogation room id")
        sp.add_argument("--by", required=True, help="the officer entering it (an operator's entry never counts "
                                                    "as recorder evidence for one-officer questioning)")
        sp.add_argument("--json", action="store_true")
        sp.set_defaults(fn=cmd_recording, recording=verb == "start")

    bp = sub.add_parser("band", help="bind or unbind wristbands and cards (through the daemon)")
    bsub = bp.add_subparsers(dest="sub", metavar="<sub>", required=True)
    sp = bsub.add_parser("bind", help="bind a wristband (8 hex) or card (10 hex) to a person")
    sp.add_argument("tag")
    sp.add_argument("person")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_band_bind)
    sp = bsub.add_parser("unbind", help="unbind a wristband or card")
    sp.add_argument("tag")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_band_unbind)


def _hoist_config(argv: list[str]) -> list[str]:
    """`casegate status --config X` means what `casegate --config X status` does.

    --config is a global option, but technicians type it after the command (as systemd units and
    most tools take it); argparse would say only "unrecognized arguments". `replay --config` is
    replay's own option (the config to replay under) and stays where it is."""
    cmd = next((i for i, a in enumerate(argv) if not a.startswith("-")
                and (i == 0 or argv[i - 1] != "--config")), None)
    if cmd is None or argv[cmd] == "replay":
        return argv
    out, moved, i = argv[:cmd + 1], [], cmd + 1
    while i < len(argv):
        a = argv[i]
        if a == "--config" and i + 1 < len(argv):
            moved += argv[i:i + 2]
            i += 2
            continue
        if a.startswith("--config="):
            moved.append(a)
        else:
            out.append(a)
        i += 1
    return moved + out if moved else argv


def main(argv: list[str] | None = None) -> int:
    argv = _hoist_config(list(sys.argv[1:] if argv is None else argv))
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
