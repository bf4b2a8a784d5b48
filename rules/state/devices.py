"""Devices offline and in error (a dead camera's count is no longer a fact)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from rules.model import Event
from rules.state.registry import folds

if TYPE_CHECKING:
    from rules.state.center import State


@folds("device.online", "device.offline", "device.error")
def _device(s: State, ev: Event) -> None:
    dev = ev.data.get("device")
    if not dev:
        return
    if ev.type == "device.offline":
        s.devices_offline.setdefault(dev, ev.epoch)
        for v in s.cameras.values():
            if v.camera == dev:          # a dead camera's count is no longer a fact
                v.count = None
                v.still_since = None
    elif ev.type == "device.online":
        s.devices_offline.pop(dev, None)
        s.device_errors.pop(dev, None)
        kinds = s.tampered.get(dev)
        if kinds is not None and kinds.pop("video_lost", None) is not None and not kinds:
            del s.tampered[dev]        # video is back, whatever a restarted camera process remembers
    else:
        s.device_errors[dev] = str(ev.data.get("error") or "")

