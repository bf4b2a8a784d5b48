"""The gateway itself: ping, re-publishing events and state, reloading the config."""
from __future__ import annotations

from pydantic import Field, StrictInt

from gateway.commands.checks import refusal
from gateway.commands.services import Services, WriterView
from gateway.commands.table import Args, command


class Ping(Args):
    pass


class Resend(Args):
    from_seq: StrictInt = Field(ge=1)
    to_seq: StrictInt = Field(ge=1)


class Reload(Args):
    pass


class Republish(Args):
    """state/republish: every retained state topic again (as after a reconnect)."""
    pass


@command("ping", Ping, stored=False)
def ping(s: Services, core: WriterView, a: Ping, src: str):
    return s.ping_data(), []


@command("events/resend", Resend, limit="resend", stored=False, example={"from_seq": 1, "to_seq": 100})
def events_resend(s: Services, core: WriterView, a: Resend, src: str):
    if a.to_seq < a.from_seq:
        raise refusal("bad_request", "to_seq is before from_seq")
    if a.from_seq > core.journal.last_seq:
        raise refusal("not_found", f"seq {a.from_seq} not journaled yet (last {core.journal.last_seq})")
    n = s.resend(a.from_seq, a.to_seq)
    return {"from_seq": a.from_seq, "to_seq": min(a.to_seq, core.journal.last_seq), "count": n}, []


# Not in the writer thread: reloading calls into the core itself.
@command("config/reload", Reload, pool=True, limit="heavy")
def config_reload(s: Services, a: Reload, src: str) -> dict:
    problems = s.request_reload()
    if problems:
        raise refusal("bad_request", problems)
    return {"reloaded": True}


@command("state/republish", Republish, limit="heavy", stored=False)
def state_republish(s: Services, core: WriterView, a: Republish, src: str):
    # Only hands the uplink a note: the publishing happens on its side.
    return {"topics": s.republish_state()}, []
