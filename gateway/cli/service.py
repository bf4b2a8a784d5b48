"""Verbs that run or check this installation: run, config check, doctor, simulate, demo."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from gateway.cli.common import (EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError, console, control, emit_json, table,
                                verb)
from gateway.config import Config, ConfigError, config_path, load_config


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
        con = console()
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


def cmd_demo(args) -> int:
    from gateway.demo import run_demo
    return run_demo(args)


def add_run(sub) -> None:
    sp = verb(sub, "run", "run the daemon (systemd Type=notify)", cmd_run, json_flag=False)
    sp.add_argument("--log-level", default=os.environ.get("CASEGATE_LOG_LEVEL", "INFO"))


def add_config(sub) -> None:
    cfgp = sub.add_parser("config", help="configuration commands")
    cfgsub = cfgp.add_subparsers(dest="sub", metavar="<sub>", required=True)
    sp = cfgsub.add_parser("check", help="validate the config; print rooms, devices, rules")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_config_check)


def add_doctor(sub) -> None:
    sp = verb(sub, "doctor", "check this installation: config, storage, serial ports, devices, broker/TLS, clock, "
              "systemd; OK/WARN/FAIL with the fix (exit 1 on a FAIL)", cmd_doctor)
    sp.add_argument("--user", help="the service user to check permissions for (default: casegate if it exists)")


def add_simulate(sub) -> None:
    sp = verb(sub, "simulate", "commissioning without hardware: the configured devices played by their simulators "
              "(stations, readers, doors, lockers, cameras) on the addresses and ports of the config",
              cmd_simulate, json_flag=False)
    sp.add_argument("--script", metavar="FILE", help="commands, one a line (move <tag> <room>, swipe <card> <reader>, "
                    "door open|close <door>, recorder start|stop <room>, wait <s>, …); without it: typed commands")
    sp.add_argument("--recorder-password-file", metavar="FILE",
                    help="the recorders' MQTT password, when the broker asks for one (each recorder logs in "
                         "as its [[rooms]] recorder account)")


def add_demo(sub) -> None:
    sp = verb(sub, "demo", "a simulated center driven through a scripted day", cmd_demo, json_flag=False)
    sp.add_argument("--speed", type=float, default=60.0, help="time compression (default 60: 1 min per s)")
    sp.add_argument("--dir", help="keep the demo's storage here (default: a temporary dir)")
    sp.add_argument("--keep", action="store_true", help="keep the temporary work dir (journal, config, demo.log)")
    sp.add_argument("--no-broker", action="store_true", help="do not start a local mosquitto")
    sp.add_argument("--json", action="store_true", help="print the summary as JSON")
