"""Facility rules: door_held_open, locker_open_too_long, locker_unauthorized_open,
evidence_unauthorized_removal, belongings_forgotten, belongings_overdue.

Chain of custody (来源去向明晰; 涉案财物集中管理、凭手续出入库) as DOMAIN.md
describes it (the Ministry's rules on property involved in cases; no article
numbers are cited here because they are not verified). Lockers have no room
in config: an alarm's room is the center's only ``evidence_store`` (evidence
lockers) or ``belongings`` (belongings lockers) room when there is exactly
one, else null.
"""
from __future__ import annotations

from pydantic import Field

from rules.model import format_ts
from rules.base import NONE, Facts, duration, local, rule
from rules.citations import ADMIN, PROC
from rules.declare import Equipment, RuleSettings, alarm

LOCKER = Equipment(details=("locker",))            # the alarm's details name the locker
CUSTODY = (f"{ADMIN} 第190条", f"{PROC} 第235条")   # evidence 凭手续出入库, handed over and returned

LOCKER_EVENTS = ("locker.opened", "locker.closed")


def _cat(out, r):
    if r:
        return out + r if out else r
    return out


def _locker_room(ctx, locker):
    purpose = ctx.locker_purpose.get(locker, "evidence")
    rooms = ctx.rooms_by_type.get("belongings" if purpose == "belongings" else "evidence_store", ())
    return rooms[0] if len(rooms) == 1 else None


def _comp(subject):
    locker, _, comp = subject.rpartition("/")
    return locker, int(comp)


# ---- doors ----------------------------------------------------------------------------------------
# A badge this long before a door opens (or while it is open) is who opened it.
BADGE_BEFORE_OPEN_S = 30.0


def _door_opener(ctx, d) -> str | None:
    badge = ctx.state.last_badge.get(d.room) if d.room else None
    if badge is None:
        return None
    who, at = badge
    return who if at >= d.since - BADGE_BEFORE_OPEN_S else None


def _door_check(ctx, door, t):
    d = ctx.state.doors.get(door)
    if d is None or not d.open:
        return None
    rl = ctx.room_label(d.room)
    lim = ctx.settings["door_held_open"].limit_s
    by = _door_opener(ctx, d)
    zh_by, en_by = (f"（最后刷卡：{by}）", f" (last badge: {by})") if by else ("", "")
    return Facts(d.room, [by] if by else [], f"{rl} 门{door}自{local(ctx, d.since)}起打开超过{duration(lim)}{zh_by}",
                 f"{rl}: door {door} open since {local(ctx, d.since)}, more than {duration(lim)}{en_by}",
                 {"door": door, "opened": format_ts(d.since), "by": by})


class DoorHeldOpen(RuleSettings):
    limit_s: float = Field(default=120, gt=0)


alarm("door_held_open", "warning", "门未关", "Door held open", DoorHeldOpen,
      equipment=Equipment(details=("door",), door_of="doors"), order=220)


@rule("door_held_open", on=("door.opened", "door.closed"), check=_door_check, grace="limit_s")
def door_held_open(ctx, ev, t):
    """门未关: a door open more than ``limit_s`` (raised at opened + limit_s,
    cleared at ``door.closed``). Subject: the door."""
    door = ev.data.get("door")
    return ctx.hold("door_held_open", door, t, _door_check(ctx, door, t))


# ---- lockers -------------------------------------------------------------------------------------
def _open_check(ctx, subject, t):
    locker, comp = _comp(subject)
    c = ctx.state.compartments.get((locker, comp))
    if c is None or not c.open:
        return None
    lim = ctx.settings["locker_open_too_long"].limit_s
    return Facts(_locker_room(ctx, locker), [], f"柜{locker}第{comp}格门自{local(ctx, c.since)}起打开超过{duration(lim)}",
                 f"locker {locker} compartment {comp} open since {local(ctx, c.since)}, more than {duration(lim)}",
                 {"locker": locker, "compartment": comp, "opened": format_ts(c.since)})


class LockerOpenTooLong(RuleSettings):
    limit_s: float = Field(default=60, gt=0)


alarm("locker_open_too_long", "minor", "柜门未关", "Locker compartment left open", LockerOpenTooLong,
      equipment=LOCKER, order=230)


@rule("locker_open_too_long", on=LOCKER_EVENTS, check=_open_check, grace="limit_s")
def locker_open_too_long(ctx, ev, t):
    """柜门未关: a compartment open more than ``limit_s``. Subject: locker/compartment."""
    subject = f"{ev.data['locker']}/{int(ev.data['compartment'])}"
    return ctx.hold("locker_open_too_long", subject, t, _open_check(ctx, subject, t))


class LockerUnauthorized(RuleSettings):
    window_s: float = Field(default=30, gt=0)


alarm("locker_unauthorized_open", "critical", "非授权开柜", "Locker opened without authorisation", LockerUnauthorized,
      legal=True, basis=CUSTODY, equipment=LOCKER, order=240)


@rule("locker_unauthorized_open", on=LOCKER_EVENTS)
def locker_unauthorized_open(ctx, ev, t):
    """非授权开柜: a compartment opens with no ``locker.unlock_requested`` for it
    (a ``locker/open`` command) in the last ``window_s``. Raised at the
    opening, cleared when the compartment closes. Subject: locker/compartment."""
    locker, comp = ev.data["locker"], int(ev.data["compartment"])
    subject = f"{locker}/{comp}"
    if ev.type == "locker.closed":
        return ctx.clear("locker_unauthorized_open", subject, t)
    c = ctx.state.compartments.get((locker, comp))
    req = c.unlock if c is not None else None
    window = ctx.settings["locker_unauthorized_open"].window_s
    if req is not None and 0 <= t - req.at <= window:
        return NONE
    last = format_ts(req.at) if req is not None else None
    return ctx.raise_("locker_unauthorized_open", subject, t, Facts(
        _locker_room(ctx, locker), [], f"柜{locker}第{comp}格未经授权被打开",
        f"locker {locker} compartment {comp} opened without an unlock command",
        {"locker": locker, "compartment": comp, "last_unlock_request": last}))


# ---- evidence ---------------------------------------------------------------------------------------
ER = alarm("evidence_unauthorized_removal", "critical", "财物违规取出", "Evidence removed without a custody order",
           legal=True, basis=CUSTODY, equipment=LOCKER, order=250)


@rule(ER, on=("evidence.removed", "evidence.added", "custody.ordered"))
def evidence_unauthorized_removal(ctx, ev, t):
    """财物违规取出: an item leaves an evidence cabinet with no matching custody
    order: a ``custody.ordered`` for that item with action withdraw, release,
    dispose or return, not expired and not already spent on an earlier removal
    (an order is spent once its item comes back). Belongings lockers are not
    evidence. Raised at the removal; cleared when the item is back
    (``evidence.added``) or an order for it arrives after the fact.
    Subject: the item."""
    item = str(ev.data.get("item", "")).upper()
    if ev.type == "evidence.removed":
        locker = ev.data.get("locker")
        if ctx.locker_purpose.get(locker, "evidence") != "evidence":
            return NONE
        r = ctx.state.removed.get(item)
        if r is None or r.order is not None:
            return NONE
        comp = int(ev.data.get("compartment", 0))
        # Who unlocked the compartment last, when the journal knows it (locker/open by).
        c = ctx.state.compartments.get((locker, comp))
        unlock = c.unlock if c is not None and c.unlock is not None and c.unlock.at <= t else None
        by = unlock.by if unlock is not None else None
        zh_by, en_by = (f"（最后开柜：{by}）", f" (last unlocked by {by})") if by else ("", "")
        return ctx.raise_(ER, item, t, Facts(
            _locker_room(ctx, locker), [by] if by else [],
            f"涉案财物{item}从柜{locker}第{comp}格取出，无出库审批{zh_by}",
            f"item {item} removed from locker {locker} compartment {comp} without a custody order{en_by}",
            {"item": item, "locker": locker, "compartment": comp, "by": by,
             "unlocked_at": format_ts(unlock.at) if unlock is not None else None}))
    if ctx.alarm(ER, item) is None:
        return NONE
    r = ctx.state.removed.get(item)
    if r is None or r.order is not None:
        return ctx.clear(ER, item, t)
    return NONE


# ---- belongings ---------------------------------------------------------------------------------------
class BelongingsOverdue(RuleSettings):
    limit_h: float = Field(default=24, gt=0)


BF = alarm("belongings_forgotten", "minor", "物品遗忘", "Belongings left in the locker at checkout",
           equipment=LOCKER, order=130)
BO = alarm("belongings_overdue", "minor", "暂存超时", "Belongings held too long", BelongingsOverdue,
           equipment=LOCKER, order=140)
BELONGINGS_EVENTS = ("belongings.assigned", "evidence.added", "evidence.removed",
                     "person.checkout_approved", "person.left", "person.registered")


def _belongings_people(ctx, ev) -> list[str]:
    """Persons whose belongings an event may concern: the event's person, and
    the compartment's holder and previous holder (an assignment ended by a
    reassignment or by the last item's removal)."""
    d = ev.data
    out = [d["person"]] if ev.type.startswith("person.") or ev.type == "belongings.assigned" else []
    if "locker" in d:
        c = ctx.state.compartments.get((d["locker"], int(d.get("compartment", 0))))
        if c is not None:
            for pid in (c.holder, c.prev_holder):
                if pid and pid not in out:
                    out.append(pid)
    return out


def _bf_check(ctx, pid, t):
    p = ctx.state.persons.get(pid)
    b = ctx.state.belongings.get(pid)
    if p is None or not p.checkout_approved or b is None:
        return None
    c = ctx.state.compartments.get((b.locker, b.compartment))
    if c is None or not c.items:
        return None
    items = sorted(c.items)
    return Facts(_locker_room(ctx, b.locker), [pid],
                 f"{ctx.label(pid)}已批准出区，随身物品仍在柜{b.locker}第{b.compartment}格（{len(items)}件）",
                 f"{ctx.label(pid)} checked out with belongings still in locker {b.locker} "
                 f"compartment {b.compartment} ({len(items)} item(s))",
                 {"locker": b.locker, "compartment": b.compartment, "items": items})


@rule(BF, on=BELONGINGS_EVENTS, check=_bf_check)
def belongings_forgotten(ctx, ev, t):
    """物品遗忘 (随身物品 returned at exit; source: DOMAIN.md catalog):
    ``person.checkout_approved`` while the person's belongings
    compartment (``belongings.assigned``) still holds items (items =
    ``evidence.added`` into that compartment, minus removals). Raised at once;
    clears when the compartment is empty or reassigned. Subject: the person."""
    out = NONE
    for pid in _belongings_people(ctx, ev):
        if not pid:
            continue
        out = _cat(out, ctx.hold(BF, pid, t, _bf_check(ctx, pid, t), 0))
    return out


def _bo_check(ctx, pid, t):
    b = ctx.state.belongings.get(pid)
    if b is None:
        return None
    lim = ctx.settings[BO].limit_h
    if t < b.since + lim * 3600.0:
        return None
    return Facts(_locker_room(ctx, b.locker), [pid],
                 f"{ctx.label(pid)}的随身物品自{local(ctx, b.since)}起在柜{b.locker}第{b.compartment}格暂存超过{lim:g}小时",
                 f"belongings of {ctx.label(pid)} held in locker {b.locker} compartment {b.compartment} "
                 f"since {local(ctx, b.since)}, more than {lim:g} h",
                 {"locker": b.locker, "compartment": b.compartment, "since": format_ts(b.since)})


def _bo_timer(ctx, pid, kind, d):
    facts = _bo_check(ctx, pid, d)
    if facts is None or ctx.alarm(BO, pid) is not None:
        return NONE
    return ctx.raise_(BO, pid, d, facts)


@rule(BO, on=BELONGINGS_EVENTS, timer=_bo_timer)
def belongings_overdue(ctx, ev, t):
    """暂存超时: belongings held more than ``limit_h`` from ``belongings.assigned``.
    The assignment ends (and the alarm clears) when its compartment is
    emptied, reassigned, or at ``person.left`` with the compartment empty.
    Subject: the person."""
    out = NONE
    lim = ctx.settings[BO].limit_h * 3600.0
    for pid in _belongings_people(ctx, ev):
        if not pid:
            continue
        b = ctx.state.belongings.get(pid)
        if b is None:
            ctx.disarm(BO, pid)
            out = _cat(out, ctx.clear(BO, pid, t))
        else:
            a = ctx.alarm(BO, pid)
            if a is not None and a["details"].get("since") != format_ts(b.since):
                out = _cat(out, ctx.clear(BO, pid, t))   # a new assignment: its own clock
                a = None
            if a is None and ctx.armed(BO, pid) != b.since + lim:
                ctx.arm(BO, pid, b.since + lim)
    return out
