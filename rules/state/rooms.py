"""A room's facilities: doors, card badges, the audio/video recorder, identification sessions."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rules.model import Event
from rules.state.registry import folds

if TYPE_CHECKING:
    from rules.state.center import State


@dataclass(slots=True)
class Door:
    door: str
    room: str | None
    open: bool
    since: float


@dataclass(slots=True)
class Recording:
    """A room's audio/video recorder (同步录音录像) as its recorder system reports it."""
    room: str
    recording: bool
    since: float            # of the current state
    seen: float             # last report (the recorder re-sends its state periodically)
    source: str | None = None
    # True: the room's configured recorder (审讯主机) said so; False: an officer by hand
    # (``by``), which never enables the one-officer relaxation (治安管理处罚法 2025 art. 108)
    evidence: bool = True


@folds("door.opened", "door.closed")
def _door(s: State, ev: Event) -> None:
    d = ev.data
    s.doors[d["door"]] = Door(d["door"], d.get("room"), ev.type == "door.opened", ev.epoch)


@folds("card.swiped", "door.passed")
def _badge(s: State, ev: Event) -> None:
    d = ev.data
    if d.get("person") and d.get("room"):
        s.last_badge[d["room"]] = (d["person"], ev.epoch)


@folds("recording.started", "recording.stopped")
def _recording(s: State, ev: Event) -> None:
    d = ev.data
    room = d["room"]
    on = ev.type == "recording.started"
    r = s.recording.get(room)
    # v2 events carry no by/recorder: they came from the recorder system
    evidence = bool(d.get("recorder", d.get("by") is None))
    if r is None or r.recording != on:
        s.recording[room] = Recording(room, on, ev.epoch, ev.epoch, d.get("source"), evidence)
    else:
        r.seen = ev.epoch
        r.source = d.get("source")
        r.evidence = evidence


@folds("identification.started", "identification.ended")
def _identification(s: State, ev: Event) -> None:
    d = ev.data
    room, case = d["room"], d["case_id"]
    if ev.type == "identification.started":
        s.identifications.setdefault(room, {})[case] = ev.epoch
    else:
        sessions = s.identifications.get(room)
        if sessions is not None:
            sessions.pop(case, None)
            if not sessions:
                del s.identifications[room]

