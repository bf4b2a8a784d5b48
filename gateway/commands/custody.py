"""Custody: belongings lockers, evidence custody orders, opening a locker compartment."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictInt, StrictStr

from drivers.registry import has
from gateway.commands.checks import law, officer, person, refusal
from gateway.commands.services import Services, WriterView
from gateway.commands.table import ID, Args, command
from rules.model import Draft, format_ts


class Belongings(Args):
    person: str = Field(pattern=ID)
    locker: str = Field(pattern=ID)
    compartment: StrictInt = Field(ge=1, le=256)


class LockerOpen(Args):
    locker: str = Field(pattern=ID)
    compartment: StrictInt = Field(ge=1, le=16)
    by: str = Field(pattern=ID)
    order: str | None = Field(default=None, pattern=ID)


class CustodyOrder(Args):
    order: str = Field(pattern=ID)
    item: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    action: Literal["deposit", "withdraw", "return", "release", "dispose"]
    case_id: str = Field(pattern=ID)
    by: str = Field(pattern=ID)
    expires: StrictStr | None = None
    due: StrictStr | None = None          # withdraw: when the item is to be back
    approved_by: str | None = Field(default=None, pattern=ID)    # v3: release / dispose


@command("belongings/assign", Belongings, example={"person": "s1", "locker": "locker-b1", "compartment": 3})
def belongings_assign(s: Services, core: WriterView, a: Belongings, src: str):
    person(core, a.person)
    dev = s.device_config(a.locker)
    if dev is None or not has(dev, "locker"):
        raise refusal("not_found", f"no locker {a.locker}")
    if dev.purpose != "belongings":
        raise refusal("bad_request", f"locker {a.locker} is for {dev.purpose}, not belongings")
    if a.compartment > dev.compartments:
        raise refusal("bad_request", f"locker {a.locker} has {dev.compartments} compartments")
    d = Draft("belongings.assigned", {"person": a.person, "locker": a.locker,
                                      "compartment": a.compartment}, src)
    return {"event_id": d.id}, [d]


@command("locker/open", LockerOpen, pool=True, device_arg="locker", capability="locker",
         example={"locker": "locker-ev1", "compartment": 5, "by": "o1", "order": "ord-1"})
def locker_open(s: Services, a: LockerOpen, src: str) -> dict:
    # Only an officer may have a compartment opened (chain of custody): checked
    # in the writer thread against the folded state, before the board is told.
    s.in_writer(lambda core: (officer(core, a.by, "opening a locker") and None, [])).result(timeout=30)
    drv = s.driver(a.locker, "locker", "locker device")
    return drv.command("locker/open", {"locker": a.locker, "compartment": a.compartment,
                                       "by": a.by, "order": a.order}, timeout=5.0)


def _order_times(a: CustodyOrder, tz: str | None) -> dict[str, str]:
    # SPEC §2: a time without an offset is in the center's timezone; the
    # event carries it as RFC 3339 UTC so no consumer has to guess.
    from gateway.localtime import parse_given
    times = {}
    for name in ("expires", "due"):
        text = getattr(a, name)
        if text is None:
            continue
        try:
            times[name] = format_ts(parse_given(text, tz))
        except ValueError:
            raise refusal("bad_request", f"{name}: not an RFC 3339 time (e.g. 2026-11-28T18:00:00, "
                                              f"read in {tz}, or with an offset)")
    return times


@command("custody/order", CustodyOrder,
         example={"order": "ord-1", "item": "E2000017221101441890ABCD", "action": "withdraw",
                  "case_id": "c-1", "by": "o1", "due": "2026-11-28T18:00:00+08:00"})
def custody_order(s: Services, core: WriterView, a: CustodyOrder, src: str):
    times = _order_times(a, core.state.timezone)
    if "due" in times and a.action != "withdraw":
        raise refusal("bad_request", "due: only a withdraw order has a return deadline")
    officer(core, a.by, "a custody order")
    if a.action in ("release", "dispose") or a.approved_by:
        law().approver(core, a.approved_by, f"a {a.action} order")
    data = {"order": a.order, "item": a.item.upper(), "action": a.action, "case_id": a.case_id,
            "by": a.by, "expires": times.get("expires")}
    if a.approved_by:
        data["approved_by"] = a.approved_by
    if "due" in times:
        data["due"] = times["due"]
    d = Draft("custody.ordered", data, src)
    return {"order": a.order, "event_id": d.id}, [d]
