"""``casegate probe``: talk to hardware directly, without the daemon, through the driver's
own probe (drivers/<kind>/probe.py), whose options pass through untouched."""
from __future__ import annotations

import argparse

from gateway.cli.common import EXIT_OK, EXIT_USAGE, CliError, get_config


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


def add_probe(sub) -> None:
    sp = sub.add_parser("probe", help="talk to hardware directly, without the daemon",
                        description="casegate probe <device> | casegate probe --driver KIND --port URL ... "
                                    "[--seconds N]; see `casegate probe --driver KIND --help`",
                        add_help=False)
    sp.add_argument("device", nargs="?", help="a device id from the config")
    sp.add_argument("--driver", choices=_probe_kinds())
    sp.set_defaults(fn=cmd_probe, wants_rest=True)


def parse_probe(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Probe options belong to the driver's own parser; split them off here
    so option values are never taken for the positional device id."""
    rest: list[str] = []
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
    return args, rest
