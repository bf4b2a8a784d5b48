"""Active alarms as the journal says them (raised, cleared, acknowledged)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from rules.model import Event
from rules.state.registry import folds

if TYPE_CHECKING:
    from rules.state.center import State


@folds("alarm.raised")
def _alarm_raised(s: State, ev: Event) -> None:
    old = s.active_alarms.get(ev.data["alarm_id"])
    new = dict(ev.data)
    if old is not None and "acknowledged" in old:   # an update keeps its acknowledgement
        new["acknowledged"] = old["acknowledged"]
    s.active_alarms[ev.data["alarm_id"]] = new


@folds("alarm.cleared")
def _alarm_cleared(s: State, ev: Event) -> None:
    s.active_alarms.pop(ev.data["alarm_id"], None)


@folds("alarm.acknowledged")
def _alarm_ack(s: State, ev: Event) -> None:
    a = s.active_alarms.get(ev.data["alarm_id"])
    if a is not None:
        a["acknowledged"] = {"by": ev.data.get("by"), "note": ev.data.get("note"), "ts": ev.ts}

