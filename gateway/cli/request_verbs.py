"""The request verbs (``casegate ack``, ``person add|update|checkout``, ``band bind|unbind``,
``face enroll``, ``recording start|stop``), generated from the command table: each command's
:class:`gateway.commands.Verb` declarations give the verb, its flags, its help, the request
it sends and the line it prints. The daemon runs the request through the same table as
P/request/<command> (its control socket's ``request`` verb), so validation, idempotency and
journal events are those of MQTT."""
from __future__ import annotations

import sys

from gateway.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError, control, emit_json, get_config
from gateway.commands import COMMANDS, Command, UsageError, Verb
from gateway.config import Config


def daemon_request(cfg: Config, command: str, req_args: dict, as_json: bool, describe) -> int:
    """Send one request over the control socket and print its answer.

    The daemon runs it through the command table (gateway/commands/), so validation and journal
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


def _runner(command: str, v: Verb):
    def run(args) -> int:
        cfg, _ = get_config(args)
        try:
            req = v.request(args, cfg.center.timezone)
        except UsageError as e:
            raise CliError(str(e), EXIT_USAGE)
        return daemon_request(cfg, command, req, args.json, lambda data: v.done(args, data))
    return run


def _add_arguments(sp, v: Verb) -> None:
    for flags, kwargs in v.arguments:
        sp.add_argument(*flags, **kwargs)


def add_request_verbs(sub, commands: dict[str, Command] | None = None) -> None:
    """Every CLI verb the command table declares, in the order the commands were declared. A
    one-word verb is a top-level command; a two-word one sits in its group (``person``)."""
    table = sorted((COMMANDS if commands is None else commands).values(), key=lambda c: c.declared)
    group_help = {v.words[0]: v.group_help for c in table for v in c.cli if v.group_help}
    groups: dict = {}
    for c in table:
        for v in c.cli:
            if len(v.words) == 1:
                sp = sub.add_parser(v.words[0], help=v.help, description=v.help)
                sp.add_argument("--json", action="store_true", help="machine-readable output")
                _add_arguments(sp, v)
            else:
                group, word = v.words
                if group not in groups:
                    gp = sub.add_parser(group, help=group_help.get(group))
                    groups[group] = gp.add_subparsers(dest="sub", metavar="<sub>", required=True)
                sp = groups[group].add_parser(word, help=v.help)
                _add_arguments(sp, v)
                sp.add_argument("--json", action="store_true")
            sp.set_defaults(fn=_runner(c.name, v))
