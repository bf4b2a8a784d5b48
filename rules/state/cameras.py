"""What the cameras say of a room: headcount, stillness, faces, tampering."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rules.model import Event
from rules.state.registry import folds

if TYPE_CHECKING:
    from rules.state.center import State


@dataclass(slots=True)
class CameraView:
    camera: str
    room: str
    count: int | None = None
    count_at: float = 0.0
    still_since: float | None = None   # start of the current stillness, None = motion seen
    motion_at: float = 0.0


@folds("camera.headcount")
def _headcount(s: State, ev: Event) -> None:
    d = ev.data
    v = _camera(s, d)
    try:
        v.count = int(d["count"])
    except (TypeError, ValueError, KeyError):
        v.count = None
    v.count_at = ev.epoch
    v.motion_at = ev.epoch          # detection runs only on motion (SPEC §4.6)
    v.still_since = None


def _camera(s: State, d: dict) -> CameraView:
    room = d["room"]
    v = s.cameras.get(room)
    if v is None:
        v = s.cameras[room] = CameraView(d.get("camera", ""), room)
    elif d.get("camera"):
        v.camera = d["camera"]
    return v


@folds("camera.still")
def _still(s: State, ev: Event) -> None:
    d = ev.data
    v = _camera(s, d)
    try:
        secs = float(d.get("seconds") or 0)
    except (TypeError, ValueError):
        secs = 0.0
    if secs > 0:
        v.still_since = ev.epoch - secs
    else:
        v.still_since = None
        v.motion_at = ev.epoch


@folds("camera.face_recognized", "camera.face_unknown")
def _face(s: State, ev: Event) -> None:
    v = _camera(s, ev.data)
    v.motion_at = ev.epoch
    v.still_since = None


@folds("camera.tampered")
def _tampered(s: State, ev: Event) -> None:
    d = ev.data
    cam, kind = d["camera"], d["kind"]
    if d.get("active"):
        s.tampered.setdefault(cam, {})[kind] = [d.get("room"), ev.epoch]
    else:
        kinds = s.tampered.get(cam)
        if kinds is not None:
            kinds.pop(kind, None)
            if not kinds:
                del s.tampered[cam]

