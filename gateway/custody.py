"""Chain of custody (来源去向明晰): every fact about one evidence item, from the journal."""
from __future__ import annotations

from typing import Iterable

from rules.model import Event

CUSTODY_TYPES = ("custody.ordered", "evidence.added", "evidence.removed", "locker.unlock_requested",
                 "locker.opened", "locker.closed", "alarm.raised", "alarm.cleared", "alarm.acknowledged")


def custody_history(events: Iterable[Event], item: str) -> list[dict]:
    """Orders for the item, its additions and removals, and every unlock,
    open and close of the compartment while the item was in it (or asked for
    under one of its orders), with time and who."""
    item = item.upper()
    orders: set[str] = set()
    where: tuple[str, int | None] | None = None
    unlocked: tuple[str, int | None] | None = None     # unlocked under one of its orders, not yet closed
    alarm_ids: set[str] = set()
    rows: list[dict] = []

    def row(ev: Event, who=None, **extra):
        rows.append({"seq": ev.seq, "ts": ev.ts, "event": ev.type, "by": who, "source": ev.source, **extra})

    for ev in events:
        d, t = ev.data or {}, ev.type
        if t == "custody.ordered" and str(d.get("item", "")).upper() == item:
            orders.add(d.get("order"))
            row(ev, d.get("by"), order=d.get("order"), action=d.get("action"), case_id=d.get("case_id"),
                expires=d.get("expires"))
        elif t in ("evidence.added", "evidence.removed") and str(d.get("item", "")).upper() == item:
            row(ev, None, locker=d.get("locker"), compartment=d.get("compartment"))
            where = (d.get("locker"), d.get("compartment")) if t == "evidence.added" else None
        elif t == "locker.unlock_requested" and (
                d.get("order") in orders or (where is not None and (d.get("locker"), d.get("compartment")) == where)):
            row(ev, d.get("by"), locker=d.get("locker"), compartment=d.get("compartment"), order=d.get("order"))
            if d.get("order") in orders:     # opened to deposit it: that open and close are its chain too
                unlocked = (d.get("locker"), d.get("compartment"))
        elif t in ("locker.opened", "locker.closed") and (
                (where is not None and (d.get("locker"), d.get("compartment")) == where)
                or (d.get("locker"), d.get("compartment")) == unlocked):
            row(ev, None, locker=d.get("locker"), compartment=d.get("compartment"))
            if t == "locker.closed":
                unlocked = None
        elif t.startswith("alarm.") and (item in str(d.get("details", "")).upper() or d.get("alarm_id") in alarm_ids):
            alarm_ids.add(d.get("alarm_id"))
            row(ev, d.get("by"), code=d.get("code"), alarm_id=d.get("alarm_id"))
    return rows
