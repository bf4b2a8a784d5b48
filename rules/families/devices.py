"""Device rules: device_offline. Subject: the device."""
from __future__ import annotations

from pydantic import Field

from rules.model import format_ts
from rules.base import Facts, local, rule
from rules.declare import Equipment, RuleSettings, alarm


class DeviceOffline(RuleSettings):
    # Not read by the rule (it follows device.offline): the daemon hands it to drivers with a
    # heartbeat (gateway/device_context.py DeviceContext.missed_intervals), which decide when.
    missed_intervals: int = Field(default=3, ge=1)


DEVICE = Equipment(details=("device",), subject=True)     # the subject is the device


def _check(ctx, device, t):
    since = ctx.state.devices_offline.get(device)
    if since is None:
        return None
    rooms = ctx.device_rooms.get(device, ())
    room = rooms[0] if rooms else None
    return Facts(room, [], f"设备{device}自{local(ctx, since)}起离线", f"device {device} offline since {local(ctx, since)}",
                 {"device": device, "offline_since": format_ts(since)})


alarm("device_offline", "major", "设备离线", "Device offline", DeviceOffline, equipment=DEVICE, order=350)


@rule("device_offline", on=("device.offline", "device.online"), check=_check, grace=None)
def device_offline(ctx, ev, t):
    """设备离线 (全程记录 needs working sensors): raised on ``device.offline``
    (each driver decides when: a driver with a heartbeat after ``missed_intervals``
    silent intervals, which reaches it through the daemon's DeviceContext; a polled
    device on a failed poll; a camera after its ``offline_s``), cleared on ``device.online``."""
    dev = ev.data.get("device")
    if not dev:
        return ()
    return ctx.hold("device_offline", dev, t, _check(ctx, dev, t))


def _impostor_check(ctx, device, t):
    d = ctx.memo["station_impostor"].get(device)
    if d is None:
        return None
    rooms = ctx.device_rooms.get(device, ())
    room = rooms[0] if rooms else None
    station = d.get("station") or device
    reason = d.get("error") or ""
    return Facts(room, [], f"基站{station}疑似被冒用: {reason}", f"base station {station} impostor suspected: {reason}",
                 {"device": device, "station": station, "kind": d.get("kind"), "peers": list(d.get("peers") or [])})


# A fake base station could feed presence that hides a lone interrogation or an
# unattended suspect: it protects the presence record those two alarms stand on. It is
# facility evidence of a legal alarm's blindness, and no article speaks to it (DOMAIN v3).
alarm("station_impostor", "critical", "基站冒用", "Base station impostor", legal=True, equipment=DEVICE, order=360)


@rule("station_impostor", on=("device.error", "device.online"), check=_impostor_check, grace=None)
def station_impostor(ctx, ev, t):
    """基站冒用: the zone reader journals ``device.error`` with ``impostor: true`` for a
    station device ("<zone id>/<dev_id>") when a second live peer claims a logged-in
    dev_id, a pinned station connects from another address, or a register carries a
    wrong reg_code; the driver journals ``device.online`` for that station device when
    the conflict is resolved (``conflict_clear_s`` without new evidence), which clears it.
    Later evidence while raised updates the alarm's details only through its first facts."""
    dev = ev.data.get("device")
    if not dev:
        return ()
    memo = ctx.memo["station_impostor"]
    if ev.type == "device.error":
        if not ev.data.get("impostor"):
            return ()
        memo[dev] = {"station": ev.data.get("station"), "kind": ev.data.get("kind"),
                     "error": ev.data.get("error"), "peers": list(ev.data.get("peers") or [])}
    elif dev in memo:
        del memo[dev]
    else:
        return ()
    return ctx.hold("station_impostor", dev, t, _impostor_check(ctx, dev, t))
