"""Evidence custody deadlines: evidence_handover_overdue, evidence_not_returned.

办案人民警察应当在依法提取涉案财物后的二十四小时内将财物移交涉案财物管理人员
(行政程序规定 art. 190); seized property is kept safe, never used or exchanged
(程序规定 art. 235). A ``deposit`` custody order is the officer's hand-over:
it is fulfilled when its item is seen in a locker (``evidence.added``). A
``withdraw`` order with a ``due`` time lets the item out until then. Order
times without an offset are in the center's timezone (rules.state).
"""
from __future__ import annotations

from types import SimpleNamespace

from rules.model import format_local, format_ts
from pydantic import Field

from rules.base import NONE, Facts, rule
from rules.declare import RuleSettings, alarm
from rules.families.facility import CUSTODY, LOCKER, _locker_room

class EvidenceHandover(RuleSettings):
    limit_h: float = Field(default=24, gt=0)    # deposit order -> item in an evidence locker


EH = alarm("evidence_handover_overdue", "major", "财物移交超时", "Evidence not handed to the custodian in time",
           EvidenceHandover, legal=True, basis=CUSTODY, equipment=LOCKER, order=310)
EN = alarm("evidence_not_returned", "major", "调用未归还", "Withdrawn evidence not returned by its due time",
           legal=True, basis=CUSTODY, equipment=LOCKER, order=320)


def _cat(out, r):
    if r:
        return out + r if out else r
    return out


def _evidence_room(ctx):
    rooms = ctx.rooms_by_type.get("evidence_store", ())
    return rooms[0] if len(rooms) == 1 else None


def _eh_facts(ctx, o, t):
    lim = ctx.settings[EH].limit_h
    by = [o.by] if o.by and ctx.person(o.by) is not None else []
    return Facts(_evidence_room(ctx), by,
                 f"涉案财物{o.item}（案件{o.case_id}，入库单{o.order}）提取后{lim:g}小时内未移交入库",
                 f"item {o.item} (case {o.case_id}, deposit order {o.order}) not in an evidence locker "
                 f"{lim:g} h after the order",
                 {"order": o.order, "item": o.item, "case_id": o.case_id, "by": o.by,
                  "ordered": format_ts(o.at)})


def _in_evidence_locker(ctx, item: str) -> bool:
    for c in ctx.state.compartments.values():
        if item in c.items and ctx.locker_purpose.get(c.locker, "evidence") == "evidence":
            return True
    return False


def _eh_timer(ctx, order, kind, d):
    o = ctx.state.orders.get(order)
    if o is None or order not in ctx.memo[EH]:
        return NONE
    return ctx.raise_(EH, order, d, _eh_facts(ctx, o, d))


@rule(EH, on=("custody.ordered", "evidence.added"), timer=_eh_timer)
def evidence_handover_overdue(ctx, ev, t):
    """财物移交超时: a ``deposit`` order whose item is not in an *evidence*
    locker (belongings lockers do not count) ``limit_h`` (24) after the order.
    Raised at that deadline; cleared when the item is added. Subject: the
    order. Bookkeeping: memo order -> item for orders not yet fulfilled."""
    st = ctx.state
    d = ev.data
    waiting = ctx.memo[EH]
    if ev.type == "custody.ordered":
        o = st.orders.get(d.get("order"))
        if o is None or o.action != "deposit":
            return NONE
        if _in_evidence_locker(ctx, o.item):      # already there: nothing to hand over
            return NONE
        waiting[o.order] = o.item
        ctx.arm(EH, o.order, o.at + ctx.settings[EH].limit_h * 3600.0)
        return NONE
    if ctx.locker_purpose.get(d.get("locker"), "evidence") != "evidence" or not waiting:
        return NONE
    out = NONE
    item = str(d.get("item", "")).upper()
    for oid in [oid for oid, it in waiting.items() if it == item]:
        del waiting[oid]
        ctx.disarm(EH, oid)
        out = _cat(out, ctx.clear(EH, oid, t))
    return out


def _en_facts(ctx, r, o):
    return Facts(_locker_room(ctx, r.locker), [o.by] if o.by and ctx.person(o.by) is not None else [],
                 f"涉案财物{r.item}（调用单{o.order}）应于{format_local(o.due, ctx.state.timezone)}前归还，尚未归还",
                 f"item {r.item} (withdrawal {o.order}) was due back at {format_local(o.due, ctx.state.timezone)}, not returned",
                 {"item": r.item, "order": o.order, "case_id": o.case_id, "by": o.by,
                  "due": format_ts(o.due), "removed": format_ts(r.at),
                  "locker": r.locker, "compartment": r.compartment})


def _overdue_withdrawal(ctx, item):
    """(removal, order) of an item out on a withdraw order with a due time."""
    r = ctx.state.removed.get(item)
    if r is None or r.order is None:
        return None, None
    o = ctx.state.orders.get(r.order)
    if o is None or o.action != "withdraw" or o.due is None:
        return None, None
    return r, o


def _en_out(ctx, item):
    """(removal, order) of a withdrawn item not yet back in an evidence locker, from the
    rule's memo (the state forgets the removal once the item is seen in any locker)."""
    m = ctx.memo[EN].get(item)
    if m is None:
        return None, None
    order, case_id, by, due, removed, locker, compartment = m
    return (SimpleNamespace(item=item, at=removed, locker=locker, compartment=compartment),
            SimpleNamespace(order=order, case_id=case_id, by=by, due=due))


def _en_timer(ctx, item, kind, d):
    r, o = _en_out(ctx, item)
    if r is None or d < o.due:
        return NONE
    return ctx.raise_(EN, item, d, _en_facts(ctx, r, o))


@rule(EN, on=("evidence.removed", "evidence.added", "custody.ordered"), timer=_en_timer)
def evidence_not_returned(ctx, ev, t):
    """调用未归还: an item taken out on a ``withdraw`` order is not back in an
    *evidence* locker (``evidence.added``; a belongings locker is no return — DOMAIN
    v3) by the order's ``due``. Raised at ``due``; cleared when the item is back.
    Subject: the item. Bookkeeping: memo item -> the withdrawal, until it is back."""
    item = str(ev.data.get("item", "")).upper()
    m = ctx.memo[EN]
    if ev.type == "evidence.added":
        if ctx.locker_purpose.get(ev.data.get("locker"), "evidence") != "evidence":
            return NONE
        m.pop(item, None)
        ctx.disarm(EN, item)
        return ctx.clear(EN, item, t)
    r, o = _overdue_withdrawal(ctx, item)
    if r is None:
        return NONE
    m[item] = (o.order, o.case_id, o.by, o.due, r.at, r.locker, r.compartment)
    if o.due <= t:
        ctx.disarm(EN, item)
        return ctx.raise_(EN, item, t, _en_facts(ctx, r, o))
    if ctx.armed(EN, item) != o.due:
        ctx.arm(EN, item, o.due)
    return NONE
