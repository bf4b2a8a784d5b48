"""Protections the law gives persons in the center: interrogation_not_recorded
(同步录音录像), female_minor_without_female_staff, mixed_waiting_room (分别看管),
camera_tamper (视频遮挡). DOMAIN v2 "Legal limits" gives the articles; the
catalog carries them as ``legal_basis``.

Recording: a room's recorder system (or an operator) sends ``recording/state``;
each report is a ``recording.started``/``recording.stopped`` event. The
recorder re-sends its state periodically, so a room whose last "recording"
report is older than ``[rules.interrogation_not_recorded] stale_s`` counts as
not recording: a recorder that dies silently must not pass for a running one.
"""
from __future__ import annotations

from pydantic import Field

from rules.base import NONE, RULES, ROOM_EVENTS, Facts, person_rule, room_rule, rule
from rules.citations import ADMIN, CRIM, INQ, PROC, PSAL
from rules.declare import Equipment, RuleSettings, Spells, alarm

INTERROGATION = frozenset({"interrogation"})
WAITING = frozenset({"waiting"})
RECORDING_EVENTS = ("recording.started", "recording.stopped")
RECORDED = (f"{CRIM} 第123条", f"{PROC} 第208条", f"{PSAL} 第97条")   # questioning recorded in full


class NotRecorded(Spells):
    grace_s: float = Field(default=60, ge=0)
    # the recorder system re-sends its state; silent longer than this = not recording (0: never stale)
    stale_s: float = Field(default=120, ge=0)


IR = alarm("interrogation_not_recorded", "critical", "未同步录音录像", "Questioning in a room that is not recording",
           NotRecorded, legal=True, basis=RECORDED, order=280)


def recorder_evidence(ctx, room: str, t: float) -> bool:
    """Recording now, as the room's configured recorder (审讯主机) itself reports it —
    the only recording that enables the one-officer relaxation (治安管理处罚法 2025 art.
    108); an officer's report by hand does not (DOMAIN v3 "records that count")."""
    r = ctx.state.recording.get(room)
    return r is not None and r.evidence and recording_now(ctx, room, t)


def recording_now(ctx, room: str, t: float) -> bool:
    """The room's recorder has reported "recording" and has not gone silent."""
    r = ctx.state.recording.get(room)
    if r is None or not r.recording:
        return False
    stale = ctx.settings[IR].stale_s
    return stale <= 0 or t < r.seen + stale


def _cat(out, r):
    if r:
        return out + r if out else r
    return out


def _ir_check(ctx, room, t):
    c = ctx.state.counts.get(room)
    if not c or not c.get("suspect") or not c.get("officer"):
        return None
    if ctx.room_types.get(room) != "interrogation" or recording_now(ctx, room, t):
        return None
    persons = ctx.state.persons
    sus, offs = [], []
    for who in ctx.state.rooms.get(room, ()):
        p = persons.get(who)
        if p is None or p.left:
            continue
        if p.role == "suspect":
            sus.append(who)
        elif p.role == "officer":
            offs.append(who)
    sus.sort()
    offs.sort()
    r = ctx.state.recording.get(room)
    why = "stopped" if r is not None and not r.recording else ("silent" if r is not None else "never reported")

    def text():
        rl = ctx.room_label(room)
        zh_why = {"stopped": "录像已停止", "silent": "录像系统无状态上报", "never reported": "无录像记录"}[why]
        return (f"{rl} 嫌疑人{'、'.join(ctx.label(x) for x in sus)}正在被讯问，{zh_why}",
                f"{rl}: suspect {', '.join(ctx.label(x) for x in sus)} questioned while the room is not "
                f"recording ({why})")
    return Facts(room, sus + offs, text, None, {"recording": why, "source": r.source if r else None})


def _ir_timer(ctx, room, kind, d):
    if kind == "":
        return ctx._hold_fire(RULES[IR], room, d)
    # kind "stale": the recorder's last report is now too old. Re-judge the
    # room, and lone_interrogation, whose relaxation needs the recording.
    out = ctx.hold(IR, room, d, _ir_check(ctx, room, d))
    if "lone_interrogation" in ctx.enabled:
        from rules.families.interrogation import lone_interrogation
        out = _cat(out, ctx.hold("lone_interrogation", room, d, lone_interrogation(ctx, room, d)))
    return out


@rule(IR, on=ROOM_EVENTS + RECORDING_EVENTS, check=_ir_check, timer=_ir_timer)
def interrogation_not_recorded(ctx, ev, t):
    """未同步录音录像: questioning is recorded on audio and video (刑事诉讼法
    art. 123; 程序规定 art. 208; 治安管理处罚法 2025 art. 97). A suspect and an
    officer together in an ``interrogation`` room that is not recording
    (stopped, never reported, or silent for ``stale_s``) for ``grace_s``.
    Subject: the room. Clears when it records again or the questioning ends."""
    out = NONE
    rt = ctx.room_types
    stale = ctx.settings[IR].stale_s
    for room in ctx.dirty_rooms:
        if rt.get(room) != "interrogation":
            continue
        if ev.type == "recording.started" and stale > 0:
            r = ctx.state.recording.get(room)
            if r is not None:
                ctx.arm(IR, room, r.seen + stale, "stale")
        elif ev.type == "recording.stopped":
            ctx.disarm(IR, room, "stale")
        f = _ir_check(ctx, room, t)
        if f is None and not ctx.tracked(IR, room):
            continue
        out = _cat(out, ctx.hold(IR, room, t, f))
    return out


# ---- female_minor_without_female_staff --------------------------------------------------------
class FemaleMinor(Spells):
    grace_s: float = Field(default=10, ge=0)    # people walk in one after another


alarm("female_minor_without_female_staff", "major", "女性未成年人无女性工作人员",
      "Female minor questioned without a female officer or staff member", FemaleMinor, legal=True, order=290,
      basis=(f"{CRIM} 第281条", f"{PROC} 第324条", f"{ADMIN} 第75条", f"{PSAL} 第98条"))


@person_rule("female_minor_without_female_staff", INTERROGATION, room_keys=("female_attendant",))
def female_minor_without_female_staff(ctx, pid, t):
    """讯问女性未成年犯罪嫌疑人，应当有女工作人员在场 (刑事诉讼法 art. 281;
    程序规定 art. 324; 行政程序规定 art. 75; 治安管理处罚法 2025 art. 98).

    A female minor suspect in an ``interrogation`` room with no female officer
    or staff member in that same room (next door does not count), for
    ``grace_s``. Subject: the minor."""
    p = ctx.person(pid)
    if p is None or p.role != "suspect" or not p.minor or p.gender != "female":
        return None
    rt = ctx.room_types
    counts = ctx.state.counts
    for room in ctx.state.presence.get(pid, ()):
        if rt.get(room) != "interrogation" or counts.get(room, {}).get("female_attendant"):
            continue

        def text(room=room):
            rl = ctx.room_label(room)
            return (f"{rl} 讯问女性未成年嫌疑人{ctx.label(pid)}，无女性工作人员在场",
                    f"{rl}: female minor {ctx.label(pid)} questioned with no female officer or staff present")
        return Facts(room, [pid], text, None, {})
    return None


# ---- mixed_waiting_room --------------------------------------------------------------------------
class MixedWaiting(Spells):
    grace_s: float = Field(default=30, ge=0)    # a suspect led through a waiting room is not held there


alarm("mixed_waiting_room", "major", "分别看管", "Suspects who must be held apart share a waiting room",
      MixedWaiting, legal=True, order=300,
      basis=(f"{INQ} 第10条", f"{INQ} 第30条", f"{CRIM} 第280条", f"{PROC} 第328条"))


@room_rule("mixed_waiting_room", WAITING, on=ROOM_EVENTS + ("person.updated",))
def mixed_waiting_room(ctx, room, t):
    """分别看管: men and women, minors and adults are held apart (继续盘问规定
    art. 30; 刑事诉讼法 art. 280; 程序规定 art. 328), and the vulnerable of
    继续盘问规定 art. 10 are never held in a waiting room.

    A ``waiting`` room holding suspects of both sexes (or one of unregistered
    gender with others), a minor with an adult suspect, or a vulnerable suspect,
    for ``grace_s``. Subject: the room;
    persons: the suspects in it (updated as they come and go)."""
    c = ctx.state.counts.get(room)
    if not c or not c.get("suspect"):
        return None
    persons = ctx.state.persons
    sus = []
    genders, minors, adults, vulnerable, unknown = set(), [], [], [], []
    for who in ctx.state.rooms.get(room, ()):
        p = persons.get(who)
        if p is None or p.left or p.role != "suspect":
            continue
        sus.append(who)
        if p.gender:
            genders.add(p.gender)
        else:
            unknown.append(who)
        (minors if p.minor else adults).append(who)
        if p.vulnerable:
            vulnerable.append(who)
    reasons = []
    if len(genders) > 1:
        reasons.append("mixed_sex")
    elif unknown and len(sus) > 1:
        # DOMAIN v3: a suspect whose gender is not on record cannot be shown to be held
        # apart from the other sex: an alarm, not a pass
        reasons.append("gender_unknown")
    if minors and adults:
        reasons.append("minor_with_adult")
    if vulnerable:
        reasons.append("vulnerable")
    if not reasons:
        return None
    sus.sort()
    vulnerable.sort()

    def text():
        rl = ctx.room_label(room)
        zh = {"mixed_sex": "男女混关", "minor_with_adult": "未成年人与成年人同室", "vulnerable": "特殊人员不得送入候问室",
              "gender_unknown": "性别未登记不能确认分别看管"}
        return (f"{rl} {'、'.join(zh[r] for r in reasons)}：{'、'.join(ctx.label(x) for x in sus)}",
                f"{rl}: {', '.join(r.replace('_', ' ') for r in reasons)}: "
                f"{', '.join(ctx.label(x) for x in sus)}")
    return Facts(room, sus, text, None, {"reasons": reasons, "vulnerable": vulnerable})


# ---- camera_tamper ----------------------------------------------------------------------------------
class CameraTamper(RuleSettings):
    # room types whose cameras must not be covered, moved or lose video
    room_types: list[str] = ["interrogation", "waiting"]


CT = alarm("camera_tamper", "critical", "视频遮挡", "Camera covered, moved or losing video", CameraTamper,
           legal=True, basis=RECORDED, equipment=Equipment(details=("camera",), subject=True), order=330)


@rule(CT, on=("camera.tampered", "device.online"))
def camera_tamper(ctx, ev, t):
    """视频遮挡: a camera watching an interrogation or waiting room (``room_types``)
    is covered, moved or loses video (``camera.tampered`` active) - the
    recording the law requires (刑事诉讼法 art. 123; 程序规定 art. 208) is gone.
    Raised at once (the camera's own analysis already waited), updated as the
    kinds change, cleared when no kind is active (``device.online`` ends
    video_lost). Subject: the camera."""
    cam = ev.data.get("camera") if ev.type == "camera.tampered" else ev.data.get("device")
    if not cam or (ev.type == "device.online" and ctx.alarm(CT, cam) is None):
        return NONE
    kinds = ctx.state.tampered.get(cam) or {}
    want = ctx.settings[CT].room_types
    active = sorted(k for k, (room, _) in kinds.items() if ctx.room_types.get(room) in want)
    if not active:
        return ctx.clear(CT, cam, t)
    room = kinds[active[0]][0]
    rl = ctx.room_label(room)
    zh = {"covered": "被遮挡", "moved": "被移动", "video_lost": "视频丢失"}
    return ctx.raise_(CT, cam, t, Facts(
        room, [], f"{rl} 摄像机{cam}{'、'.join(zh.get(k, k) for k in active)}",
        f"{rl}: camera {cam} {', '.join(k.replace('_', ' ') for k in active)}",
        {"camera": cam, "kinds": active}))
