"""Wristband and tag rules: wristband_tamper, sos, tag_low_battery,
vital_signs_abnormal, tag_signal_lost. Subject: the tag (persons = its owner).

Inputs: ``tag.status`` [tag, person, battery, tamper, sos, heart_rate], sent
only when a value changes (so the latest status is the current one), and the
presence/binding events. ``battery`` is a percentage, or a boolean /
``"low"`` for the low-battery bit; a ``low_battery`` field is honoured too.
"""
from __future__ import annotations

from collections import OrderedDict

from pydantic import Field

from rules.base import NONE, Facts, duration, is_card, local, rule, tag_rule
from rules.citations import ADMIN, ATTENDANCE, ATTENDANCE_CRIMINAL, CRIM, PROC
from rules.declare import Equipment, RuleSettings, Spells, alarm

ATTEND = ATTENDANCE + ATTENDANCE_CRIMINAL     # every article an attendance alarm may cite (rules/citations.py)
# A tag's facility alarms concern the base stations (presence readers) of the room it was in.
STATIONS = Equipment(room_of="presence")


def _owner(ctx, tag):
    return ctx.state.tag_owner.get(tag)


def _holder(ctx, tag):
    """Whose band it is for tamper/SOS/vitals: its owner, or the suspect it was
    unbound from while he is still in the center (unbinding never silences)."""
    st = ctx.state
    return st.tag_owner.get(tag) or st.former_owner.get(tag)


def _facts(ctx, tag, zh, en, details=None):
    owner = _holder(ctx, tag)
    who = ctx.label(owner) if owner else "未绑定"
    who_en = ctx.label(owner) if owner else "unbound"
    rooms = ctx.state.tag_rooms.get(tag)
    room = min(rooms) if rooms else ctx.state.tag_last_room.get(tag)
    return Facts(room, [owner] if owner else [], f"标签{tag}（{who}）{zh}", f"tag {tag} ({who_en}): {en}",
                 details or {})


def _truthy(v) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "on", "open", "opened", "removed", "pressed")
    return bool(v)


alarm("wristband_tamper", "critical", "手环防拆", "Wristband tampered", legal=True, basis=ATTEND, order=150)


@tag_rule("wristband_tamper")
def wristband_tamper(ctx, tag, t):
    """手环防拆: strap opened (wristband data kind 2) or reader state removed
    (TLV 0x8801), reported as ``tamper``. Only for a bound tag: an unbound band
    in the drawer is nobody's escape. Clears when tamper is false again or at
    ``person.left``; unbinding a suspect's band while he is in the center does
    not clear it (the band stays his until he leaves or it is bound again)."""
    st = ctx.state.tag_status.get(tag)
    if not st or not _truthy(st.get("tamper")) or _holder(ctx, tag) is None:
        return None
    return _facts(ctx, tag, "手环被拆", "strap opened or reader removed")


alarm("sos", "critical", "一键求助", "SOS button pressed", legal=True, basis=ATTEND, order=160)


@tag_rule("sos")
def sos(ctx, tag, t):
    """一键求助: the SOS button of a bound wristband or officer card. Raised at
    once on ``sos`` true; clears when the tag reports ``sos`` false (button
    released/reset) or is unbound. Acknowledgement does not clear it."""
    st = ctx.state.tag_status.get(tag)
    if not st or not _truthy(st.get("sos")) or _holder(ctx, tag) is None:
        return None
    return _facts(ctx, tag, "按下一键求助", "SOS button pressed")


def _low(st, below):
    if _truthy(st.get("low_battery")):
        return True
    b = st.get("battery")
    if b is None or b is False:
        return False
    if b is True:
        return True
    if isinstance(b, str):
        if b.strip().lower() in ("low", "true"):
            return True
        try:
            b = float(b)
        except ValueError:
            return False
    try:
        return float(b) < below
    except (TypeError, ValueError):
        return False


class LowBattery(RuleSettings):
    below_pct: float = Field(default=20, ge=0, le=100)


alarm("tag_low_battery", "warning", "低电压", "Tag battery low", LowBattery, equipment=STATIONS, order=170)


@tag_rule("tag_low_battery")
def tag_low_battery(ctx, tag, t):
    """低电压: low-battery bit or ``battery`` < ``below_pct`` on a bound tag.
    Clears when the battery reads at or above the threshold again (or the low
    bit clears), or when the tag is unbound (handed back for charging)."""
    st = ctx.state.tag_status.get(tag)
    below = ctx.settings["tag_low_battery"].below_pct
    if not st or not _low(st, below) or _owner(ctx, tag) is None:
        return None
    b = st.get("battery")
    return _facts(ctx, tag, f"电量低（{b}）", f"battery low ({b})", {"battery": b})


class VitalSigns(Spells):
    low_bpm: float = 45
    high_bpm: float = 130
    grace_s: float = Field(default=30, ge=0)


alarm("vital_signs_abnormal", "critical", "生命体征异常", "Abnormal heart rate", VitalSigns, legal=True, order=190,
      basis=(f"{CRIM} 第119条", f"{PROC} 第201条", f"{ADMIN} 第71条"))


@tag_rule("vital_signs_abnormal")
def vital_signs_abnormal(ctx, tag, t):
    """生命体征异常 (self-harm / medical emergency; source: DOMAIN.md catalog):
    heart rate < ``low_bpm`` or > ``high_bpm`` continuously for
    ``grace_s``, on a bound wristband. A null heart rate (no reading) is not
    abnormal; a reading back in range clears."""
    st = ctx.state.tag_status.get(tag)
    if not st or _holder(ctx, tag) is None:
        return None
    hr = st.get("heart_rate")
    if hr is None or isinstance(hr, bool):
        return None
    try:
        hr = float(hr)
    except (TypeError, ValueError):
        return None
    s = ctx.settings["vital_signs_abnormal"]
    if s.low_bpm <= hr <= s.high_bpm:
        return None
    return _facts(ctx, tag, f"心率异常{hr:g}次/分（正常{s.low_bpm:g}–{s.high_bpm:g}）",
                  f"heart rate {hr:g} bpm outside {s.low_bpm:g}–{s.high_bpm:g}", {"heart_rate": hr})


# ---- tag_signal_lost --------------------------------------------------------------------------
class SignalLost(RuleSettings):
    after_s: float = Field(default=60, gt=0)


SL = alarm("tag_signal_lost", "major", "信号丢失", "Tag signal lost", SignalLost, equipment=STATIONS, order=180)


def _sl_check(ctx, tag, t):
    if _owner(ctx, tag) is None or is_card(tag) or ctx.state.tag_rooms.get(tag):
        return None
    seen = ctx.state.tag_seen.get(tag)
    after = duration(ctx.settings[SL].after_s)
    last_room = ctx.state.tag_last_room.get(tag)
    if last_room is None:
        # Never in any room since it was bound: "last seen" would be the binding time, which
        # reads as if a station had heard the band then (a technician looked for a station).
        when = local(ctx, seen) if seen else "-"
        return _facts(ctx, tag, f"绑定后{after}内从未被基站读到（绑定于{when}）",
                      f"never read by a base station since it was bound at {when} ({after})",
                      {"last_seen": None, "bound_at": _fmt(seen), "last_room": None})
    return _facts(ctx, tag, f"信号丢失超过{after}（最后{local(ctx, seen) if seen else '-'}）",
                  f"not seen for {after} (last {local(ctx, seen) if seen else '-'})",
                  {"last_seen": _fmt(seen), "last_room": last_room})


def _fmt(x):
    from rules.model import format_ts
    return format_ts(x) if x else None


def _absent(ctx) -> OrderedDict:
    m = ctx.memo[SL]
    a = m.get("absent")
    if a is None:
        a = m["absent"] = OrderedDict()
    return a


def _sl_timer(ctx, subject, kind, d):
    """One engine timer serves every absent tag: they wait in deadline order
    (deadline = engine time + after_s, and engine time never goes back)."""
    absent = _absent(ctx)
    out = NONE
    while absent:
        tag, deadline = next(iter(absent.items()))
        if deadline > d:
            break
        absent.popitem(last=False)
        if ctx.alarm(SL, tag) is None:
            facts = _sl_check(ctx, tag, d)
            if facts is not None:
                r = ctx.raise_(SL, tag, d, facts)
                out = out + r if out else r
    if absent:
        ctx.arm(SL, "*", next(iter(absent.values())))
    return out


@rule(SL, on=("presence.entered", "presence.left", "tag.status", "wristband.bound",
              "wristband.unbound", "person.left"), timer=_sl_timer)
def tag_signal_lost(ctx, ev, t):
    """信号丢失. Definition: a *bound* active tag (8 hex digits; 125 kHz cards
    are only swiped, never tracked) that has no current presence in any room
    raises ``after_s`` after it was last seen, where "last seen" is the time of
    the latest of: its binding, its last ``presence.entered``, the end of its
    last presence (``presence.left``, which zone readers send on leaving range
    or after ``presence_timeout_s`` of silence), its last ``tag.status``. The
    alarm is raised at that deadline (since = last seen + after_s) and clears
    when the tag is seen again (``presence.entered`` or ``tag.status``) or is
    unbound / its person leaves. Subject: the tag.
    """
    out = NONE
    st = ctx.state
    alarms = ctx.alarms
    absent = _absent(ctx)
    seen_now = ev.type in ("presence.entered", "tag.status", "wristband.bound")
    for tag in ctx.dirty_tags:
        present = bool(st.tag_rooms.get(tag))
        if present and tag not in absent and (SL, tag) not in alarms:
            continue                       # the common case: a tag moving between rooms
        bound = tag in st.tag_owner and not is_card(tag)
        if not bound or present or seen_now:
            absent.pop(tag, None)
            if (SL, tag) in alarms:
                r = ctx.clear(SL, tag, t)
                out = out + r if out else r
        if bound and not present and (SL, tag) not in alarms:
            absent.pop(tag, None)
            absent[tag] = t + ctx.settings[SL].after_s
            if ctx.armed(SL, "*") is None:
                ctx.arm(SL, "*", next(iter(absent.values())))
    return out
