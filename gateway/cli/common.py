"""What every CLI verb shares: exit codes and CliError, output (JSON, tables, local times,
durations), the config the user meant, the daemon's control socket, the journal's path, time
flags and the archive-merged journal."""
from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from gateway.config import Config, ConfigError, DEFAULT_CONFIG_PATH, config_path, load_config

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_DAEMON = 0, 1, 2, 3


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


# ---- output helpers -------------------------------------------------------------
def console():
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
    console().print(t)


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


def ts_arg(text: str | None, cfg: Config | None = None) -> str | None:
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


def with_archive(cfg: Config, journal_events, types, since_ts: str | None = None):
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


def verb(sub, name: str, help: str, fn, json_flag: bool = True):
    """A top-level verb: its help is also its description; ``--json`` unless told not to."""
    sp = sub.add_parser(name, help=help, description=help)
    if json_flag:
        sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.set_defaults(fn=fn)
    return sp
