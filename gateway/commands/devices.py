"""Devices: maintenance windows and camera snapshots."""
from __future__ import annotations

from pydantic import Field, StrictStr

from gateway.commands.checks import officer, refusal
from gateway.commands.services import Services, WriterView
from gateway.commands.table import ID, Args, command
from rules.model import Draft, format_ts


class Maintenance(Args):
    device: str = Field(pattern=ID)
    for_s: float = Field(ge=0)          # 0 = end the maintenance now
    reason: StrictStr | None = Field(default=None, max_length=500)
    by: str = Field(pattern=ID)


class Snapshot(Args):
    camera: str = Field(pattern=ID)
    room: str | None = Field(default=None, pattern=ID)   # a multi-channel device: the channel watching it


@command("device/maintenance", Maintenance,
         example={"device": "doors-a", "for_s": 1800.0, "reason": "contact replaced", "by": "o1"})
def device_maintenance(s: Services, core: WriterView, a: Maintenance, src: str):
    if s.device_config(a.device) is None:
        raise refusal("not_found", f"no device {a.device} in the config")
    officer(core, a.by, "maintenance", ("officer", "staff"), present=False)
    book = core.engine.book
    if a.for_s == 0:
        if a.device not in book.maintenance:
            raise refusal("not_found", f"device {a.device} is not in maintenance")
        d = Draft("device.maintenance_ended", {"device": a.device, "by": a.by, "reason": a.reason}, src)
        return {"device": a.device, "ended": True, "event_id": d.id}, [d]
    max_h = s.config().alarms.max_maintenance_h
    if a.for_s > max_h * 3600:
        raise refusal("bad_request", f"for_s: at most {max_h * 3600:g} s ([alarms] max_maintenance_h = {max_h:g})")
    until = format_ts(core.clock() + a.for_s)
    d = Draft("device.maintenance", {"device": a.device, "until": until, "reason": a.reason, "by": a.by}, src)
    return {"device": a.device, "until": until, "event_id": d.id}, [d]


@command("camera/snapshot", Snapshot, pool=True, limit="heavy", device_arg="camera", capability="snapshot",
         example={"camera": "cam-int1"})
def camera_snapshot(s: Services, a: Snapshot, src: str) -> dict:
    drv = s.driver(a.camera, "snapshot", "camera device")
    return drv.command("camera/snapshot", {"room": a.room} if a.room else {}, timeout=10.0)
