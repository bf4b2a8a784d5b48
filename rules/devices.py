"""Device rules: device_offline. Subject: the device."""
from __future__ import annotations

from gateway.events import format_ts
from rules.base import Facts, local, rule


def _check(ctx, device, t):
    since = ctx.state.devices_offline.get(device)
    if since is None:
        return None
    rooms = ctx.device_rooms.get(device, ())
    room = rooms[0] if rooms else None
    return Facts(room, [], f"设备{device}自{local(ctx, since)}起离线", f"device {device} offline since {local(ctx, since)}",
                 {"device": device, "offline_since": format_ts(since)})


@rule("device_offline", on=("device.offline", "device.online"), check=_check, grace=None)
def device_offline(ctx, ev, t):
    """设备离线 (全程记录 needs working sensors): raised on ``device.offline``
    (each driver decides when: no frame or heartbeat for ``missed_intervals``
    intervals), cleared on ``device.online``."""
    dev = ev.data.get("device")
    if not dev:
        return ()
    return ctx.hold("device_offline", dev, t, _check(ctx, dev, t))
