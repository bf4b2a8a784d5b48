"""The ``casegate`` command line (SPEC §5).

Exit codes: 0 ok, 1 failed or unhealthy, 2 bad usage or invalid config,
3 daemon not running (for commands that need it).

One module per job: common.py (output, config, the control socket), service.py (run,
config check, doctor, simulate, demo), status.py (status, devices, top), history.py (events,
alarms, trace, custody), journal.py (journal verify|backup, replay), probe.py, and
request_verbs.py, which generates the verbs that send a request command (ack, person, band,
face, recording) from the command table (gateway/commands/).
"""
from __future__ import annotations

import argparse
import sys

from gateway import __version__
from gateway.cli import history, journal, probe, service, status
from gateway.cli.common import (EXIT_FAILED, EXIT_NO_DAEMON, EXIT_OK, EXIT_USAGE, CliError, control, emit_json,
                                get_config, table)
from gateway.cli.journal import read_event_file
from gateway.cli.request_verbs import add_request_verbs, daemon_request
from gateway.config import DEFAULT_CONFIG_PATH

__all__ = ["EXIT_FAILED", "EXIT_NO_DAEMON", "EXIT_OK", "EXIT_USAGE", "CliError", "build_parser", "control",
           "daemon_request", "emit_json", "get_config", "main", "read_event_file", "table"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="casegate", description="Edge gateway of a case-handling center "
                                "(执法办案管理中心): hardware in, journaled facts and alarms out over MQTT.")
    p.add_argument("--config", help=f"config file (default $CASEGATE_CONFIG or {DEFAULT_CONFIG_PATH})")
    p.add_argument("--version", action="version", version=f"casegate {__version__}")
    sub = p.add_subparsers(dest="command", metavar="<command>")
    from gateway.case_cli import add_parsers as add_case_parsers        # case export|verify, keys show (SPEC §8)
    from gateway.ingest.cli import add_parser as add_ingest_parser      # casegate ingest (SPEC §6)
    # The order of `casegate --help`; the request verbs come from the command table.
    for add in (service.add_run, service.add_config, status.add_status, status.add_devices, probe.add_probe,
                history.add_events, history.add_alarms, history.add_trace, history.add_custody,
                journal.add_journal, journal.add_replay, add_request_verbs, service.add_doctor, status.add_top,
                add_ingest_parser, add_case_parsers, service.add_simulate, service.add_demo):
        add(sub)
    return p


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
        args, rest = probe.parse_probe(parser, argv)
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
