"""Checks several commands' handlers share, against the folded state in the writer thread:
who a ``by`` is, a person or room that must exist, a time a person typed, a legal limit."""
from __future__ import annotations

import re

from gateway.commands.services import WriterView

TAG = re.compile(r"^([0-9A-Fa-f]{8}|[0-9A-Fa-f]{10})$")


# The command modules are imported by every `casegate` call (the CLI builds its request verbs
# from their declarations), so they import gateway.core (the journal: sqlite_utils) and
# gateway.legal (the rules) only when a handler runs: importing them up front measured
# +1.5-2.5 s per CLI call on this 2-core machine under the test suite's load.
def refusal(code: str, message: str) -> Exception:
    """``RequestError(code, message)`` (gateway/core.py), to raise: a command refused with a
    SPEC §3 error code."""
    from gateway.core import RequestError
    return RequestError(code, message)


def law():
    """gateway/legal.py: what the law asks of a request (imported when a handler runs)."""
    from gateway import legal
    return legal


def person(core: WriterView, pid: str, present: bool = True):
    p = core.state.persons.get(pid)
    if p is None or (present and p.left):
        raise refusal("not_found", f"no registered person {pid}")
    return p


def officer(core: WriterView, pid: str, what: str, roles: tuple[str, ...] = ("officer",), present: bool = True):
    """``by`` of an approval must be a registered officer (SPEC v2): in the
    center for approvals (``present``); for alarm handling also one who has
    left (the duty officer acknowledging from the central room)."""
    p = core.state.persons.get(pid)
    if p is None or (present and p.left) or p.role not in roles:
        who = "not registered" if p is None or (present and p.left) else f"a {p.role}"
        raise refusal("forbidden", f"{what} needs a registered {' or '.join(roles)} as by; "
                                        f"{pid} is {who} (person/register with role {roles[0]})")
    return p


def room_type(core: WriterView, room: str) -> str:
    for r in core.engine.config.rooms:
        if r.id == room:
            return r.type
    raise refusal("not_found", f"no room {room} in the config")


def norm_tag(tag: str) -> str:
    if not TAG.fullmatch(tag):
        raise refusal("bad_request", "tag must be 8 (wristband) or 10 (card) hex digits")
    return tag.upper()


def time_arg(name: str, text: str, tz: str | None, now: float) -> float:
    """An RFC 3339 time from a request; without an offset it is the center's
    local time (SPEC §2). A time more than 5 min ahead of the gateway's clock
    is refused (a typo in the date would silently shorten a legal limit)."""
    from gateway.localtime import parse_given
    try:
        epoch = parse_given(text, tz)
    except ValueError as e:
        raise refusal("bad_request", f"{name}: {e}")
    if epoch > now + 300:
        raise refusal("bad_request", f"{name}: {text} is in the future")
    return epoch


def true_now(core: WriterView) -> float:
    """The best estimate of true time now (SPEC §7 v3): journal time less the
    wall-clock errors the rules know of; a default 到案 is stamped with it."""
    fn = getattr(core.engine, "true_now", None)
    return fn(core.clock()) if fn is not None else core.clock()


def check_limit(case_type: str | None, limit_h: float | None, vulnerable: bool) -> None:
    """limit_h must be one of the values the law allows for the case type (DOMAIN v2)."""
    from rules.families.custody_time import ARTICLES, allowed_limits
    if limit_h is None:
        return
    if case_type is None:
        raise refusal("bad_request", "limit_h needs case_type: criminal | administrative | inquiry")
    allowed = allowed_limits(case_type, vulnerable)
    if limit_h not in allowed:
        who = "a vulnerable person in continued inquiry" if case_type == "inquiry" and vulnerable \
            else f"case_type {case_type}"
        raise refusal("bad_request", f"limit_h {limit_h:g} is not allowed for {who}: allowed "
                                          f"{' | '.join(f'{x:g}' for x in allowed)} h ({ARTICLES[case_type]})")


def cli_time(text: str | None, tz: str | None) -> str | None:
    """A time flag of a CLI verb as RFC 3339 UTC; without an offset it is the center's local
    time (``[center] timezone``, SPEC §3 v3), as a person reads it off a form or a table."""
    if not text:
        return None
    from gateway.commands.table import UsageError
    from rules.model import format_ts
    from gateway.localtime import parse_given
    try:
        return format_ts(parse_given(text, tz))
    except ValueError as e:
        raise UsageError(f"not a time: {e}")


def drop_unset(d: dict) -> dict:
    """A CLI verb's request without the flags not given (None) or off (False)."""
    return {k: v for k, v in d.items() if v is not None and v is not False}
