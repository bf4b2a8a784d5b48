"""Camera rules: suspect_motionless, headcount_mismatch. Subject: the room.

Cameras analyse frames only on motion (SPEC §4.6), so ``camera.headcount``
and ``camera.face_*`` events mean motion; ``camera.still`` [camera, room,
seconds] reports a stillness that began ``seconds`` ago (0 = motion again).
"""
from __future__ import annotations

from pydantic import Field

from rules.model import format_ts
from rules.base import NONE, ROOM_EVENTS, Facts, duration, local, room_rule, rule
from rules.citations import ATTENDANCE, ATTENDANCE_CRIMINAL
from rules.declare import Equipment, Grace, RuleSettings, alarm

alarm("headcount_mismatch", "minor", "人数不符", "Camera headcount differs from tag count", Grace,
      equipment=Equipment(details=("camera",), room_of="headcount"), order=210)


@room_rule("headcount_mismatch", None, camera_rooms=True,
           on=ROOM_EVENTS + ("camera.headcount", "device.offline", "device.online"))
def headcount_mismatch(ctx, room, t):
    """人数不符 (实时人数盘点): the room camera's person count differs from the
    number of tags present in the room (bound or not; a person with two tags
    counts once) for ``grace_s``. Rooms without a camera count, or whose
    camera is offline, are not judged."""
    v = ctx.state.cameras.get(room)
    if v is None or v.count is None:
        return None
    tags = len(ctx.state.rooms.get(room, ()))
    if tags == v.count:
        return None
    count = v.count

    def text():
        rl = ctx.room_label(room)
        return (f"{rl} 摄像机计数{count}人，标签计数{tags}人", f"{rl}: camera counts {count}, tags count {tags}")
    # persons stay empty: the alarm is about the room, and listing everybody in
    # it would turn every door transit into an alarm update.
    return Facts(room, [], text, None, {"camera": v.camera, "camera_count": count, "tag_count": tags})


class Motionless(RuleSettings):
    after_s: float = Field(default=300, gt=0)


MO = alarm("suspect_motionless", "major", "长时间静止", "Suspect motionless", Motionless,
           legal=True, basis=ATTENDANCE + ATTENDANCE_CRIMINAL, equipment=Equipment(details=("camera",)), order=200)


def _suspects(ctx, room):
    if not ctx.state.counts.get(room, {}).get("suspect"):
        return []
    persons = ctx.state.persons
    out = []
    for who in ctx.state.rooms.get(room, ()):
        p = persons.get(who)
        if p is not None and not p.left and p.role == "suspect":
            out.append(who)
    return sorted(out)


def _mo_facts(ctx, room, t):
    v = ctx.state.cameras.get(room)
    if v is None or v.still_since is None:
        return None
    after = ctx.settings[MO].after_s
    if t - v.still_since < after:
        return None
    sus = _suspects(ctx, room)
    if not sus:
        return None
    rl = ctx.room_label(room)
    who = "、".join(ctx.label(x) for x in sus)
    return Facts(room, sus, f"{rl} 嫌疑人{who}所在房间自{local(ctx, v.still_since)}起{duration(after)}无活动",
                 f"{rl}: no motion since {local(ctx, v.still_since)} ({duration(after)}) with suspect "
                 f"{', '.join(ctx.label(x) for x in sus)}",
                 {"camera": v.camera, "still_since": format_ts(v.still_since)})


def _cat(out, r):
    if r:
        return out + r if out else r
    return out


def _mo_timer(ctx, room, kind, d):
    facts = _mo_facts(ctx, room, d)
    if facts is None:
        return NONE
    return ctx.raise_(MO, room, d, facts)


@rule(MO, on=ROOM_EVENTS + ("camera.still", "camera.headcount", "camera.face_recognized",
                            "camera.face_unknown", "device.offline"), timer=_mo_timer)
def suspect_motionless(ctx, ev, t):
    """长时间静止 (self-harm / medical watch; source: DOMAIN.md catalog):
    a room with a suspect present shows no motion for ``after_s``. Raised at
    stillness start + after_s (at once if the camera reports a longer
    stillness); cleared on motion (any camera detection, ``camera.still``
    with 0 s) or when no suspect is left in the room."""
    out = NONE
    cameras = ctx.state.cameras
    for room in ctx.dirty_rooms:
        v = cameras.get(room)
        if (v is None or v.still_since is None) and (MO, room) not in ctx.alarms \
                and (MO, room, "") not in ctx.timers:
            continue
        active = ctx.alarm(MO, room)
        if v is None or v.still_since is None or not _suspects(ctx, room):
            ctx.disarm(MO, room)
            if active is not None:
                out = _cat(out, ctx.clear(MO, room, t))
            continue
        due = v.still_since + ctx.settings[MO].after_s
        if active is not None:
            out = _cat(out, ctx.raise_(MO, room, t, _mo_facts(ctx, room, t)))  # persons may change
        elif due <= t:
            ctx.disarm(MO, room)
            out = _cat(out, ctx.raise_(MO, room, t, _mo_facts(ctx, room, t)))
        elif ctx.armed(MO, room) != due:
            ctx.arm(MO, room, due)
    return out
