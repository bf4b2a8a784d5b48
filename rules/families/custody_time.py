"""Custody time limits: detention_warning, detention_timeout,
custody_transfer_overdue, consecutive_summons.

The clock starts at the person's ``arrived_at`` (到案时间 on the summons;
default: registration time) and runs until ``person.left``. It survives room
moves, restarts, reloads, case-type changes (``person.updated``) and
re-registration within the same stay (rules.state keeps the earliest arrival).

The limit (DOMAIN v2 legal-limit table, ``LAW`` below):

* criminal 传唤/拘传: 12 h, 24 h approved — 刑事诉讼法 art. 119; 程序规定 arts. 78–80, 200;
* administrative 询问查证: 8 h; 12 h (many involved / identity unknown); 24 h —
  治安管理处罚法 (2025) art. 97;
* inquiry 继续盘问: 12 h; 24 h; 48 h approved — 人民警察法 art. 9; 继续盘问规定
  arts. 10–11; exactly 4 h for ``vulnerable`` persons.

A person's ``limit_h`` (the approved tier) is used when given, else the
center's default for the case type (``[rules.detention_timeout]``
criminal_h / administrative_h / inquiry_h / vulnerable_inquiry_h, each within
the law). The request handlers refuse a limit the law does not allow; a
journal that carries one anyway (an old journal, a hand-made file through
``replay --input``) is held to the law's maximum.

Deadlines are derived from (arrived_at, limit) whenever the person changes,
and again after a config reload (``on_reconfigure``), so a live change, a
SIGHUP and a restart (a replay under the new config) give the same deadline.

Detention (拘留, ``person.updated`` with ``detained_at``) ends the summons:
its warning/timeout are cleared with a reason, and ``custody_transfer_overdue``
takes over: the detained person must be in the detention house within 24 h
(刑事诉讼法 art. 85; 程序规定 art. 126). DOMAIN lists one code for it, so
its warning (2 h before) is a ``detention_warning`` with subject
``transfer:<person>`` and ``details.kind = "custody_transfer"``.
"""
from __future__ import annotations

from pydantic import Field

from rules.model import format_ts
from rules import citations
from rules.base import NONE, Facts, duration, local, on_reconfigure, rule
from rules.citations import ADMIN, CRIM, PROC
from rules.declare import RuleSettings, alarm


class DetentionTimeout(RuleSettings):
    # Default limits per case type when a person has no limit_h; a center may be
    # stricter than the law but never looser: at most the law's base limits (DOMAIN v3,
    # rules/legal_bounds.py, which names the article); longer ones per person, approved.
    criminal_h: float = Field(default=12, gt=0)          # 传唤/拘传: 12 h (24 h approved, per person)
    administrative_h: float = Field(default=8, gt=0)     # 询问查证: 8 h (12 h, 24 h per person)
    inquiry_h: float = Field(default=12, gt=0)           # 继续盘问: 12 h (24 h, 48 h approved, per person)
    vulnerable_inquiry_h: float = Field(default=4, gt=0)  # 继续盘问 of vulnerable persons: 4 h
    warn_before_min: list[float] = [60, 30]


class CustodyTransfer(RuleSettings):
    limit_h: float = Field(default=24, gt=0)              # 拘留 -> 看守所 within 24 h (刑诉 art. 85; ≤ 24: legal_bounds)
    warn_before_min: float = Field(default=120, ge=0)     # detention_warning this long before


class ConsecutiveSummons(RuleSettings):
    min_gap_h: float = Field(default=12, gt=0)            # registered again sooner than this after leaving (≥ 12: legal_bounds)


# The time-limit codes cite per case type (rules/citations.py); declared: every article they may cite.
_LIMITS = tuple(dict.fromkeys(a for k in ("criminal", "administrative", "administrative_before_2026", "inquiry")
                              for a in citations.TIME_LIMIT[k]))
DW = alarm("detention_warning", "major", "超时预警", "Detention time limit approaching",
           legal=True, basis=_LIMITS + citations.TRANSFER, order=40)
DT = alarm("detention_timeout", "critical", "办案超时", "Detention time limit exceeded", DetentionTimeout,
           legal=True, basis=_LIMITS, order=50)
CT = alarm("custody_transfer_overdue", "critical", "送押超时", "Detained person not transferred within 24 h",
           CustodyTransfer, legal=True, basis=(f"{CRIM} 第85条", f"{PROC} 第126条"), order=70)
CS = alarm("consecutive_summons", "major", "连续传唤", "Suspect summoned again within 12 h of leaving",
           ConsecutiveSummons, legal=True, basis=(f"{CRIM} 第119条", f"{PROC} 第200条", f"{ADMIN} 第69条"), order=80)
EVENTS = ("person.registered", "person.updated", "person.left")

# The law's allowed limits per case type (hours), DOMAIN v2. Vulnerable persons
# in continued inquiry: exactly 4 h.
LAW: dict[str, tuple[float, ...]] = {"criminal": (12, 24), "administrative": (8, 12, 24),
                                     "inquiry": (12, 24, 48)}
VULNERABLE_INQUIRY = (4,)
ARTICLES = {"criminal": "刑事诉讼法 第119条；公安机关办理刑事案件程序规定 第78-80条、第200条",
            "administrative": "治安管理处罚法(2025) 第97条",
            "inquiry": "人民警察法 第9条；公安机关适用继续盘问规定 第10-11条"}
CASE_ZH = {"criminal": "刑事传唤", "administrative": "行政询问查证", "inquiry": "继续盘问"}


def allowed_limits(case_type: str | None, vulnerable: bool) -> tuple[float, ...]:
    """The limits (h) the law allows for a case type (() = unknown case type)."""
    if case_type == "inquiry" and vulnerable:
        return VULNERABLE_INQUIRY
    return LAW.get(case_type or "", ())


def limit_hours(ctx, p) -> float:
    return effective_limit(ctx.settings[DT], p.case_type, p.limit_h, p.vulnerable)


def default_limit(s, case_type: str | None, vulnerable: bool) -> float:
    """The center's default limit (h) for a new stay ([rules.detention_timeout])."""
    if case_type == "inquiry" and vulnerable:
        return min(s.vulnerable_inquiry_h, VULNERABLE_INQUIRY[0])
    if case_type == "administrative":
        return s.administrative_h
    if case_type == "inquiry":
        return s.inquiry_h
    return s.criminal_h


def effective_limit(s, case_type: str | None, limit_h: float | None, vulnerable: bool) -> float:
    """The limit (h) a suspect is held to: his ``limit_h`` (the request handlers write the
    center's default into the registration, so a reload never moves a running clock —
    DOMAIN v3), else the default; never above the law's maximum, exactly 4 h at most for
    the vulnerable in continued inquiry."""
    if case_type == "inquiry" and vulnerable:
        return min(s.vulnerable_inquiry_h, VULNERABLE_INQUIRY[0])
    law_max = max(LAW.get(case_type or "criminal", LAW["criminal"]))
    if limit_h is not None:
        return min(float(limit_h), law_max)
    return default_limit(s, case_type, vulnerable)


def _suspect(ctx, pid):
    p = ctx.state.persons.get(pid)
    if p is None or p.role != "suspect":
        return None
    return p


def _room(ctx, pid):
    return next(iter(ctx.state.presence.get(pid, {})), None)


def _cat(out, r):
    if r:
        return out + r if out else r
    return out


def _warn_kinds(ctx):
    return [f"{m:g}" for m in sorted(set(ctx.settings[DT].warn_before_min), reverse=True)]


# ---- detention_warning / detention_timeout ------------------------------------------------------
def _sync_detention(ctx, pid, t):
    """Re-derive the person's summons deadline and timers from the folded state."""
    p = _suspect(ctx, pid)
    if p is None:
        return NONE
    kinds = _warn_kinds(ctx)
    for kind in kinds:
        ctx.disarm(DW, pid, kind)
    ctx.disarm(DT, pid)
    if p.left:
        return _cat(ctx.clear(DW, pid, t), ctx.clear(DT, pid, t))
    if p.detained_at is not None:
        why = "detained: the 24 h transfer clock applies (custody_transfer_overdue)"
        return _cat(ctx.clear_because(DW, pid, t, why), ctx.clear_because(DT, pid, t, why))
    out = NONE
    deadline = p.arrived_at + limit_hours(ctx, p) * 3600.0
    enabled = ctx.enabled
    if DT in enabled:
        # An expired limit is never lengthened (程序规定 art. 200 para 2: the summons then
        # ends at once; 继续盘问规定 art. 17): a journal that says otherwise (vulnerable
        # withdrawn, a longer limit_h after the deadline) keeps the timeout standing.
        if ctx.alarm(DT, pid) is None:
            ctx.arm(DT, pid, deadline)
    if DW in enabled:
        a = ctx.alarm(DW, pid)
        due = None              # the closest warning threshold already reached
        for kind in kinds:
            at = max(p.arrived_at, deadline - float(kind) * 60.0)
            if at > t:
                ctx.arm(DW, pid, at, kind)
            else:
                due = kind
        if a is not None and due is None:
            out = _cat(out, ctx.clear_because(DW, pid, t, "limit extended"))
        elif due is not None and (a is None or a["details"].get("threshold_min") != float(due)):
            ctx.arm(DW, pid, t, due)
    return out


@rule(DW, on=EVENTS, timer=lambda ctx, pid, kind, d: _warn_timer(ctx, pid, kind, d))
def detention_warning(ctx, ev, t):
    """超时预警: ONE alarm per person, raised at the first threshold (limit −
    60 min) and escalated in place at each later one (limit − 30 min). The
    timers are armed by detention_timeout's sync (one derivation for both)."""
    if DT not in ctx.enabled:              # the sync lives in detention_timeout
        return _sync_detention(ctx, ev.data.get("person"), t)
    return NONE


def _warn_timer(ctx, subject, kind, d):
    if subject.startswith("transfer:"):
        return _transfer_warn(ctx, subject, d)
    pid = subject
    p = ctx.person(pid)
    if p is None or p.detained_at is not None:
        return NONE
    hours = limit_hours(ctx, p)
    limit = p.arrived_at + hours * 3600.0
    # the threshold's own time, not when it was noticed (a reload or restart after it):
    # the alarm is then the same whenever it is derived
    at = max(p.arrived_at, limit - float(kind) * 60.0)
    minutes_left = max(0.0, (limit - at) / 60.0)
    a = ctx.alarm(DW, pid)
    if a is not None and a["details"].get("minutes_left", 1e9) <= minutes_left:
        return NONE          # an earlier (closer) threshold already fired
    kind_zh = CASE_ZH.get(p.case_type or "", "办案")
    facts = Facts(_room(ctx, pid), [pid],
                  f"嫌疑人{ctx.label(pid)}距{kind_zh}{hours:g}小时时限还剩{duration(limit - at)}"
                  f"（到案{local(ctx, p.arrived_at)}，时限{local(ctx, limit)}）",
                  f"suspect {ctx.label(pid)}: {duration(limit - at)} left of the {hours:g} h limit "
                  f"(arrived {local(ctx, p.arrived_at)}, limit {local(ctx, limit)})",
                  {"threshold_min": float(kind), "minutes_left": round(minutes_left, 1),
                   "limit_h": hours, "arrived_at": format_ts(p.arrived_at),
                   "deadline": format_ts(limit), "case_type": p.case_type,
                   "legal_article": ARTICLES.get(p.case_type or "")})
    return ctx.raise_(DW, pid, d, facts, since=at)


@rule(DT, on=EVENTS, timer=lambda ctx, pid, kind, d: _timeout_timer(ctx, pid, d))
def detention_timeout(ctx, ev, t):
    """办案超时: raised at arrived_at + limit; stays active until ``person.left``
    (or detention, cleared with a reason); a limit lengthened after it never clears it."""
    return _sync_detention(ctx, ev.data.get("person"), t)


@on_reconfigure(DT)
def _reconfigure_detention(ctx, t):
    out = NONE
    for pid, p in list(ctx.state.persons.items()):
        if p.role == "suspect" and not p.left:
            out = _cat(out, _sync_detention(ctx, pid, t))
            if CT in ctx.enabled:
                out = _cat(out, _sync_transfer(ctx, pid, t))
    return list(out)


@on_reconfigure(DW)
def _reconfigure_warnings(ctx, t):
    """Warnings alone (detention_timeout disabled): the same re-derivation."""
    if DT in ctx.enabled:
        return []                  # done by _reconfigure_detention
    out = NONE
    for pid, p in list(ctx.state.persons.items()):
        if p.role == "suspect" and not p.left:
            out = _cat(out, _sync_detention(ctx, pid, t))
    return list(out)


def _timeout_timer(ctx, pid, d):
    p = ctx.person(pid)
    if p is None or p.detained_at is not None:
        return NONE
    hours = limit_hours(ctx, p)
    deadline = p.arrived_at + hours * 3600.0
    kind_zh = CASE_ZH.get(p.case_type or "", "办案")
    return ctx.raise_(DT, pid, d, Facts(
        _room(ctx, pid), [pid],
        f"嫌疑人{ctx.label(pid)}到案已满{kind_zh}时限{hours:g}小时（到案{local(ctx, p.arrived_at)}，"
        f"时限{local(ctx, deadline)}），应立即处理",
        f"suspect {ctx.label(pid)} held for the full {hours:g} h limit "
        f"(arrived {local(ctx, p.arrived_at)}, limit {local(ctx, deadline)})",
        {"limit_h": hours, "arrived_at": format_ts(p.arrived_at), "deadline": format_ts(deadline),
         "case_type": p.case_type, "legal_article": ARTICLES.get(p.case_type or "")}), since=deadline)


# ---- custody_transfer_overdue ---------------------------------------------------------------------
def _sync_transfer(ctx, pid, t):
    p = _suspect(ctx, pid)
    if p is None:
        return NONE
    sub = f"transfer:{pid}"
    ctx.disarm(CT, pid)
    ctx.disarm(DW, sub, "transfer")
    if p.left or p.detained_at is None:
        why = "left the center" if p.left else "detention withdrawn"
        return _cat(ctx.clear_because(DW, sub, t, why), ctx.clear_because(CT, pid, t, why))
    s = ctx.settings[CT]
    deadline = p.detained_at + s.limit_h * 3600.0
    out = NONE
    if ctx.alarm(CT, pid) is None:
        ctx.arm(CT, pid, deadline)
    if DW in ctx.enabled and s.warn_before_min > 0 and ctx.alarm(DW, sub) is None:
        ctx.arm(DW, sub, max(p.detained_at, deadline - s.warn_before_min * 60.0), "transfer")
    return out


def _transfer_warn(ctx, sub, d):
    pid = sub.removeprefix("transfer:")
    p = ctx.person(pid)
    if p is None or p.detained_at is None:
        return NONE
    s = ctx.settings[CT]
    deadline = p.detained_at + s.limit_h * 3600.0
    at = max(p.detained_at, deadline - s.warn_before_min * 60.0)
    return ctx.raise_(DW, sub, d, Facts(
        _room(ctx, pid), [pid],
        f"被拘留人{ctx.label(pid)}距送押时限还剩{duration(deadline - at)}"
        f"（拘留{local(ctx, p.detained_at)}，应于{local(ctx, deadline)}前送看守所）",
        f"detained {ctx.label(pid)}: {duration(deadline - at)} left to transfer to the detention house "
        f"(detained {local(ctx, p.detained_at)}, deadline {local(ctx, deadline)})",
        {"kind": "custody_transfer", "detained_at": format_ts(p.detained_at),
         "deadline": format_ts(deadline), "minutes_left": round(max(0.0, deadline - at) / 60.0, 1)}), since=at)


def _ct_timer(ctx, pid, kind, d):
    p = ctx.person(pid)
    if p is None or p.detained_at is None:
        return NONE
    lim = ctx.settings[CT].limit_h
    deadline = p.detained_at + lim * 3600.0
    return ctx.raise_(CT, pid, d, Facts(
        _room(ctx, pid), [pid],
        f"被拘留人{ctx.label(pid)}拘留已满{lim:g}小时仍在办案中心（拘留{local(ctx, p.detained_at)}），应立即送看守所",
        f"detained {ctx.label(pid)} still in the center {lim:g} h after detention "
        f"(detained {local(ctx, p.detained_at)})",
        {"detained_at": format_ts(p.detained_at), "deadline": format_ts(deadline), "limit_h": lim}),
        since=deadline)


@rule(CT, on=EVENTS, timer=_ct_timer)
def custody_transfer_overdue(ctx, ev, t):
    """送押超时: detained (``person.updated`` detained_at) and still in the center
    ``limit_h`` (24) after ``detained_at``. Raised at that deadline; cleared at
    ``person.left`` (transferred) with a reason. Subject: the person."""
    return _sync_transfer(ctx, ev.data.get("person"), t)


# ---- consecutive_summons --------------------------------------------------------------------------
@rule(CS, on=("person.registered", "person.left"))
def consecutive_summons(ctx, ev, t):
    """连续传唤 (no consecutive summons as disguised detention: 刑事诉讼法 art.
    119; 程序规定 art. 200; 行政程序规定 art. 69): a suspect registered for a
    new stay whose arrival is less than ``min_gap_h`` (12) after he left the
    center. Raised at the registration; cleared at ``person.left``. A
    re-registration within the same stay is no new summons. Subject: the person."""
    pid = ev.data.get("person")
    p = _suspect(ctx, pid)
    if p is None:
        return NONE
    if p.left:
        return ctx.clear(CS, pid, t)
    if p.prev_left_at is None:
        return NONE
    gap = p.arrived_at - p.prev_left_at
    lim = ctx.settings[CS].min_gap_h
    if gap >= lim * 3600.0:
        return NONE
    return ctx.raise_(CS, pid, t, Facts(
        _room(ctx, pid), [pid],
        f"嫌疑人{ctx.label(pid)}离开办案中心（{local(ctx, p.prev_left_at)}）后{duration(max(0.0, gap))}"
        f"再次到案（{local(ctx, p.arrived_at)}），间隔不足{lim:g}小时",
        f"suspect {ctx.label(pid)} summoned again {duration(max(0.0, gap))} after leaving "
        f"({local(ctx, p.prev_left_at)}), less than {lim:g} h",
        {"previous_left": format_ts(p.prev_left_at), "arrived_at": format_ts(p.arrived_at),
         "gap_h": round(gap / 3600.0, 3)}))
