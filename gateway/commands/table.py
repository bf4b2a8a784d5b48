"""The command table: every request command declared once, beside its handler.

A domain module (gateway/commands/persons.py, alarms.py, ...) declares a command with
:func:`command` on its handler: the name (``P/request/<name>``), the argument model, how it
runs (writer thread or device pool), its rate-limit class, idempotency, the paths that offer
it, an example and its CLI verbs. The package finds the domain modules itself
(gateway/commands/__init__.py), so adding a command edits no list elsewhere.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

# Ids name files (a person's face, a camera's snapshots, a device's state topic): never
# ".", "..", a hidden name or one a command line reads as an option (issue 28 item 4).
ID = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
# An MQTT account named in P/client/<account>/request/...: a topic level the broker's ACL
# ties to the account's user name (docs/security.md §3a).
CLIENT_ID = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$"


class Args(BaseModel):
    """A request's arguments; every command's model extends it."""
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)
    request_id: str = Field(pattern=ID)


# How a request arrives. Every path goes through RequestRouter.dispatch, so a command's
# validation, idempotency, journal events and answer are the same on each.
PATHS = ("mqtt",       # P/request/<command> from central systems (the uplink)
         "control",    # the daemon's control socket: casegate ack / person add / band bind / face enroll ...
         "demo")       # casegate demo's desk in-process, when it runs without a broker
# Rate limits keep a central client from making the gateway publish millions of messages;
# the control socket is 0660 root:casegate (an operator at the console) and the demo is
# the gateway's own process, so neither is limited (a commissioning script may enrol a
# whole shift's photos at once).
RATE_LIMITED_PATHS = frozenset({"mqtt"})


class UsageError(Exception):
    """A command line the CLI cannot turn into a request (a bad time, an unreadable file):
    the CLI prints it and exits 2, as argparse does for a bad flag."""


@dataclass(frozen=True)
class Verb:
    """A CLI verb that sends a command through the daemon's control socket
    (``casegate person add``, ``casegate ack``). gateway/cli/request_verbs.py builds the
    argparse parsers from these, so the verb, its flags and its help live with the command.

    ``words``: ``("ack",)`` for a top-level verb, ``("person", "add")`` for one in a group
    (``group_help`` names the group in ``casegate --help``; one verb of the group gives it).
    ``arguments``: ``(flags, add_argument kwargs)`` pairs. ``request(args, tz)``: the
    request's arguments from the parsed command line (``tz``: the center's timezone, for
    times given without an offset; :class:`UsageError` for what cannot be sent).
    ``done(args, data)``: the line printed when the daemon answers ok."""
    words: tuple[str, ...]
    help: str
    request: Callable[[argparse.Namespace, str | None], dict]
    done: Callable[[argparse.Namespace, dict], str]
    arguments: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = ()
    group_help: str | None = None


def arg(*flags: str, **kwargs: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    """One argparse argument of a :class:`Verb`: ``arg("--by", required=True, help=...)``."""
    return flags, kwargs


@dataclass(frozen=True)
class Command:
    """One request command, defined once for every path (SPEC §3)."""
    name: str
    model: type[Args]
    # Writer-thread commands: ``(services, core, args, source) -> (data, drafts)``, reading the
    # folded state; their drafts are journaled before the answer. Pool commands talk to a
    # device: ``(services, args, source) -> data``. ``services``: gateway/commands/services.py.
    handler: Callable[..., Any]
    # Device commands (an unlock waiting for the board, a photo, a reload) run on a small
    # pool so they never hold up the state changes, which run in order in the writer thread
    # (a bind right behind a register must see the registration).
    pool: bool = False
    # "heavy": one token of [mqtt] heavy_requests_per_min; "resend": one token of
    # resend_events_per_min per event re-published; None: not limited.
    limit: Literal["heavy", "resend"] | None = None
    # The answer is kept under its request_id: a re-sent request gets it again and acts once.
    # Commands that change nothing (or only re-publish) act again instead.
    stored: bool = True
    paths: frozenset[str] = frozenset(PATHS)      # who may call it
    example: dict[str, Any] = field(default_factory=dict)   # valid args (tests, bench/fuzz_requests.py)
    # A device command's device: the argument naming it (each device has its own queue, so a
    # slow camera never holds up a locker/open) and the capability that device must declare
    # (drivers/common/config.py CAPABILITIES; the handler asks Services.driver for it).
    device_arg: str | None = None
    capability: str | None = None
    # A payload cap above [mqtt] max_request_bytes (face/enroll carries a photo).
    max_bytes: int | None = None
    cli: tuple[Verb, ...] = ()                    # its verbs on the casegate command line
    declared: int = 0             # set by register(): the CLI lists verbs in declaration order


COMMANDS: dict[str, Command] = {}
_declared = itertools.count(1)

# The order docs/asyncapi.yaml has published the request channels in (the contract is
# byte-stable; registration order follows module discovery). A command not named here
# comes after these, by name: adding one needs no edit here.
PUBLISHED_ORDER = ("ping", "person/register", "person/checkout", "person/update", "person/rest",
                   "wristband/bind", "wristband/unbind", "belongings/assign", "alarm/ack", "alarm/shelve",
                   "alarm/unshelve", "device/maintenance", "locker/open", "custody/order", "face/enroll",
                   "camera/snapshot", "events/resend", "config/reload", "state/republish", "recording/state",
                   "identification/start", "identification/end")


def register(c: Command) -> Command:
    """Add ``c`` to :data:`COMMANDS`, keeping the published order; a name twice is a bug."""
    if c.name in COMMANDS:
        raise ValueError(f"command {c.name} declared twice")
    if not c.paths or not c.paths <= set(PATHS):
        raise ValueError(f"command {c.name}: paths must be some of {PATHS}")
    c = dataclasses.replace(c, declared=next(_declared))
    COMMANDS[c.name] = c
    rank = {n: i for i, n in enumerate(PUBLISHED_ORDER)}
    ordered = sorted(COMMANDS.values(), key=lambda x: (rank.get(x.name, len(rank)), x.name))
    COMMANDS.clear()
    COMMANDS.update((x.name, x) for x in ordered)
    return c


def unregister(name: str) -> None:
    """Drop a command (a test's temporary one)."""
    COMMANDS.pop(name, None)


def command(name: str, model: type[Args], **options: Any) -> Callable[[Callable], Callable]:
    """Declare the decorated function as the handler of command ``name`` (see :class:`Command`
    for ``options``). Returns the function unchanged."""
    def declare(fn: Callable) -> Callable:
        register(Command(name, model, fn, **options))
        return fn
    return declare
