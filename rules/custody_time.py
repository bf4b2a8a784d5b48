"""Custody time limits: detention_warning, detention_timeout.

The clock starts at ``person.registered`` (到案时间) and runs until
``person.left``. The limit is the person's ``limit_h`` when given (e.g. 24 for
an approved major/complex case), else by ``case_type``:

* criminal 传唤/拘传: 12 h (24 h when approved) — 刑事诉讼法 art. 119;
  公安机关办理刑事案件程序规定 arts. 80, 200. A suspect without a case type
  gets the criminal limit.
* administrative 询问查证: 8 h (24 h when approved) — 治安管理处罚法 (2012)
  art. 83; 公安机关办理行政案件程序规定 art. 69.

Settings live in ``[rules.detention_timeout]`` (criminal_h, administrative_h,
warn_before_min); ``[rules.detention_warning]`` only switches warnings on/off.

Warnings: ONE ``detention_warning`` alarm per person, raised at the first
threshold (limit − 60 min) and escalated in place at each later one
(limit − 30 min): re-sent as ``alarm.raised`` with the same ``alarm_id`` and
``since`` and updated ``details.minutes_left`` / message. ``detention_timeout``
is raised at the limit. Both stay active until ``person.left``.
"""
from __future__ import annotations

from gateway.events import format_ts
from rules.base import NONE, Facts, rule

DW, DT = "detention_warning", "detention_timeout"
EVENTS = ("person.registered", "person.left")


def limit_hours(ctx, p) -> float:
    s = ctx.settings[DT]
    if p.limit_h is not None:
        return float(p.limit_h)
    if p.case_type == "administrative":
        return s.administrative_h
    return s.criminal_h


def _subject_person(ctx, pid):
    p = ctx.state.persons.get(pid)
    if p is None or p.role != "suspect":
        return None
    return p


@rule(DW, on=EVENTS, timer=lambda ctx, pid, kind, d: _warn_timer(ctx, pid, kind, d))
def detention_warning(ctx, ev, t):
    pid = ev.data.get("person")
    p = _subject_person(ctx, pid)
    if p is None:
        return NONE
    for kind in list(_warn_kinds(ctx)):
        ctx.disarm(DW, pid, kind)
    if ev.type == "person.left" or p.left:
        return ctx.clear(DW, pid, t)
    out = ctx.clear(DW, pid, t)          # a re-registration starts a new clock
    limit = p.registered_at + limit_hours(ctx, p) * 3600.0
    for minutes in _warn_kinds(ctx):
        ctx.arm(DW, pid, max(p.registered_at, limit - float(minutes) * 60.0), minutes)
    return out


def _warn_kinds(ctx):
    return [f"{m:g}" for m in sorted(set(ctx.settings[DT].warn_before_min), reverse=True)]


def _warn_timer(ctx, pid, kind, d):
    p = ctx.person(pid)
    if p is None:
        return NONE
    hours = limit_hours(ctx, p)
    limit = p.registered_at + hours * 3600.0
    minutes_left = max(0.0, (limit - d) / 60.0)
    a = ctx.alarm(DW, pid)
    if a is not None and a["details"].get("minutes_left", 1e9) <= minutes_left:
        return NONE          # an earlier (closer) threshold already fired
    room = next(iter(ctx.state.presence.get(pid, {})), None)
    facts = Facts(room, [pid],
                  f"嫌疑人{ctx.label(pid)}距{hours:g}小时办案时限还剩{minutes_left:.0f}分钟"
                  f"（到案{format_ts(p.registered_at)}，时限{format_ts(limit)}）",
                  f"suspect {ctx.label(pid)}: {minutes_left:.0f} min left of the {hours:g} h limit "
                  f"(registered {format_ts(p.registered_at)}, limit {format_ts(limit)})",
                  {"threshold_min": float(kind), "minutes_left": round(minutes_left, 1),
                   "limit_h": hours, "registered": format_ts(p.registered_at),
                   "deadline": format_ts(limit), "case_type": p.case_type})
    return ctx.raise_(DW, pid, d, facts)


@rule(DT, on=EVENTS, timer=lambda ctx, pid, kind, d: _timeout_timer(ctx, pid, d))
def detention_timeout(ctx, ev, t):
    pid = ev.data.get("person")
    p = _subject_person(ctx, pid)
    if p is None:
        return NONE
    ctx.disarm(DT, pid)
    if ev.type == "person.left" or p.left:
        return ctx.clear(DT, pid, t)
    out = ctx.clear(DT, pid, t)
    ctx.arm(DT, pid, p.registered_at + limit_hours(ctx, p) * 3600.0)
    return out


def _timeout_timer(ctx, pid, d):
    p = ctx.person(pid)
    if p is None:
        return NONE
    hours = limit_hours(ctx, p)
    room = next(iter(ctx.state.presence.get(pid, {})), None)
    over = (d - p.registered_at) / 3600.0
    return ctx.raise_(DT, pid, d, Facts(
        room, [pid],
        f"嫌疑人{ctx.label(pid)}到案已满{hours:g}小时（到案{format_ts(p.registered_at)}），应立即处理",
        f"suspect {ctx.label(pid)} held for the full {hours:g} h limit "
        f"(registered {format_ts(p.registered_at)})",
        {"limit_h": hours, "registered": format_ts(p.registered_at),
         "deadline": format_ts(p.registered_at + hours * 3600.0), "hours": round(over, 3),
         "case_type": p.case_type}))
