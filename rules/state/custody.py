"""Lockers, evidence and custody: compartments, their items and holders, custody orders
and removals."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rules.model import Event, parse_local_ts
from rules.state.registry import folds

if TYPE_CHECKING:
    from rules.state.center import State


# custody.ordered actions that authorise taking an item out of a cabinet.
AUTHORISING_ACTIONS = frozenset({"withdraw", "return", "release", "dispose"})


@dataclass(slots=True)
class UnlockRequest:
    at: float
    by: str | None
    order: str | None


@dataclass(slots=True)
class Compartment:
    locker: str
    compartment: int
    open: bool = False
    since: float = 0.0                              # of the current open/closed state
    items: dict[str, float] = field(default_factory=dict)   # item -> added at
    unlock: UnlockRequest | None = None             # the latest locker.unlock_requested
    holder: str | None = None                       # person whose belongings it holds
    prev_holder: str | None = None                  # holder before the last change


@dataclass(slots=True)
class Belongings:
    person: str
    locker: str
    compartment: int
    since: float


@dataclass(slots=True)
class CustodyOrder:
    order: str
    item: str
    action: str
    case_id: str | None
    by: str | None
    expires: float | None
    at: float
    used: bool = False          # authorised a removal whose item has not come back yet
    due: float | None = None    # withdraw: the item is to be back by then


@dataclass(slots=True)
class Removal:
    item: str
    locker: str
    compartment: int
    at: float
    order: str | None           # the custody order that authorised it, None = unauthorised


@folds("locker.opened", "locker.closed")
def _locker_open(s: State, ev: Event) -> None:
    c = s.compartment(ev.data["locker"], ev.data["compartment"])
    c.open = ev.type == "locker.opened"
    c.since = ev.epoch


@folds("locker.unlock_requested")
def _unlock(s: State, ev: Event) -> None:
    d = ev.data
    c = s.compartment(d["locker"], d["compartment"])
    c.unlock = UnlockRequest(ev.epoch, d.get("by"), d.get("order"))


def _order_valid(o: CustodyOrder, t: float) -> bool:
    return (o.action in AUTHORISING_ACTIONS and not o.used
            and (o.expires is None or o.expires > t))


@folds("evidence.added")
def _evidence_added(s: State, ev: Event) -> None:
    d = ev.data
    item = str(d["item"]).upper()
    c = s.compartment(d["locker"], d["compartment"])
    c.items[item] = ev.epoch
    if s.removed.pop(item, None) is not None:
        # The item came back: the orders that let it out are spent.
        ids = s.orders_by_item.get(item)
        if ids:
            keep = []
            for oid in ids:
                o = s.orders.get(oid)
                if o is not None and o.used:
                    del s.orders[oid]
                elif o is not None:
                    keep.append(oid)
            s.orders_by_item[item] = keep


@folds("evidence.removed")
def _evidence_removed(s: State, ev: Event) -> None:
    d = ev.data
    item = str(d["item"]).upper()
    c = s.compartment(d["locker"], d["compartment"])
    c.items.pop(item, None)
    order = None
    for oid in s.orders_by_item.get(item, ()):
        o = s.orders.get(oid)
        if o is not None and _order_valid(o, ev.epoch):
            o.used = True
            order = oid
            break
    s.removed[item] = Removal(item, c.locker, c.compartment, ev.epoch, order)
    if not c.items and c.holder is not None:
        # Belongings handed back: the assignment ends with the last item.
        holder = c.holder
        b = s.belongings.get(holder)
        if b is not None and (b.locker, b.compartment) == (c.locker, c.compartment):
            del s.belongings[holder]
        c.prev_holder, c.holder = holder, None


@folds("custody.ordered")
def _custody(s: State, ev: Event) -> None:
    d = ev.data
    item = str(d["item"]).upper()
    expires = _order_time(d.get("expires"), s.timezone)
    o = CustodyOrder(d["order"], item, d.get("action", ""), d.get("case_id"), d.get("by"),
                     expires, ev.epoch, due=_order_time(d.get("due"), s.timezone))
    s.orders[o.order] = o
    s.orders_by_item.setdefault(item, []).append(o.order)
    r = s.removed.get(item)
    if r is not None and r.order is None and _order_valid(o, ev.epoch):
        r.order = o.order           # authorised after the fact
        o.used = True


def _order_time(text, tz: str) -> float | None:
    """A custody order's expires/due: RFC 3339, a time without an offset being
    in the center's timezone (SPEC §2); unreadable = none."""
    if not text:
        return None
    try:
        return parse_local_ts(text, tz)
    except (ValueError, TypeError):
        return None


@folds("belongings.assigned")
def _belongings(s: State, ev: Event) -> None:
    d = ev.data
    pid = d["person"]
    c = s.compartment(d["locker"], d["compartment"])
    old = s.belongings.get(pid)
    if old is not None:
        oc = s.compartments.get((old.locker, old.compartment))
        if oc is not None and oc.holder == pid and oc is not c:
            oc.prev_holder, oc.holder = pid, None
    if c.holder is not None and c.holder != pid:
        s.belongings.pop(c.holder, None)
    c.prev_holder, c.holder = c.holder, pid
    s.belongings[pid] = Belongings(pid, c.locker, c.compartment, ev.epoch)

