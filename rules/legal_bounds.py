"""What a center may tune of a legal alarm (DOMAIN v3 "Tuning bounds of legal alarms").

A legal alarm may be made stricter, never looser than the law: outside these bounds
``casegate config check`` fails (exit 2) and ``casegate run`` refuses the config, each
problem naming the key and the article it rests on. The bounds:

* ``lone_interrogation.min_investigators`` = 2 (刑事诉讼法 art. 118; 程序规定 art. 202;
  治安管理处罚法 2025 art. 108);
* ``lone_interrogation.relaxed_case_types`` ⊆ [administrative] (治安管理处罚法 2025 art. 108:
  one officer only in a regulated 执法办案场所, and only in 治安 cases);
* every ``grace_s`` ≤ 300 s, and ``suspect_motionless.after_s`` (its grace) too;
* ``window_s`` ≥ ``grace_s`` (spells must be able to add up to the grace: DOMAIN v3
  "Flapping"); ``min_absence_s`` ≤ 10 s (it filters a tag flapping between two stations,
  which takes seconds; a larger value would drop the 5-s returns of a flapping pattern
  and with them the spells before it);
* ``interrogation_not_recorded.stale_s`` in (0, 300]: a recorder silent longer is not
  recording (0 would let a dead recorder pass for a running one);
* ``rest_overdue.limit_h`` ≤ 4 and ``break_min`` ≥ 30 (DOMAIN: > 4 h without a recorded
  rest or a break ≥ 30 min);
* ``detention_timeout`` defaults ≤ the law's base limits: criminal 12, administrative 8,
  inquiry 12, vulnerable inquiry 4 (longer limits only per person, approved);
* ``custody_transfer_overdue.limit_h`` ≤ 24 (刑事诉讼法 art. 85); ``consecutive_summons.min_gap_h``
  ≥ 12 (刑事诉讼法 art. 119: no consecutive summons as disguised detention);
* ``evidence_handover_overdue.limit_h`` ≤ 24 (行政程序规定 art. 190);
* ``minor_without_guardian.guardian_kinds`` ⊆ [guardian] (法定代理人/合适成年人; a lawyer
  is none);
* ``camera_tamper.room_types`` ⊇ [interrogation, waiting];
* ``enabled = false`` on a legal code only with ``[rules] legal_disabled_reason``.

Pure: settings in, problems out. rules.catalog.validate_rules_config calls it.
"""
from __future__ import annotations

from typing import Any, Callable

MAX_GRACE_S = 300.0
MAX_MIN_ABSENCE_S = 10.0
REASON_KEY = "legal_disabled_reason"

CRIM = "刑事诉讼法"
PROC = "公安机关办理刑事案件程序规定"
ADMIN = "公安机关办理行政案件程序规定"
PSAL = "治安管理处罚法(2025)"
INQ = "公安机关适用继续盘问规定"

# code.key -> (the law's bound, its articles)
DETENTION_BASE = {
    "criminal_h": (12.0, (f"{CRIM} 第119条", f"{PROC} 第200条")),
    "administrative_h": (8.0, (f"{PSAL} 第97条",)),
    "inquiry_h": (12.0, (f"{INQ} 第11条",)),
    "vulnerable_inquiry_h": (4.0, (f"{INQ} 第10条",)),
}


def _cite(basis) -> str:
    return "、".join(basis) if basis else "DOMAIN v3 tuning bounds"


Problem = tuple[str, str]          # (key path, reason naming the article)


def violations(raw: dict[str, Any], settings: dict[str, Any]) -> list[Problem]:
    """(key path, reason naming the article) for every legal setting outside the law's bounds.
    ``raw``: the ``[rules]`` table as written; ``settings``: its validated tables by code."""
    from rules.catalog import CATALOG
    reason = raw.get(REASON_KEY)
    has_reason = isinstance(reason, str) and reason.strip() != ""
    out: list[Problem] = []
    for code, s in settings.items():
        spec = CATALOG[code]
        if spec.legal:
            out += _common_bounds(code, s, _cite(spec.legal_basis), has_reason)
    for code, check in CODE_BOUNDS.items():
        s = settings.get(code)
        if s is not None:
            out += check(s, _cite(CATALOG[code].legal_basis))
    return out


def _common_bounds(code: str, s, law: str, has_reason: bool) -> list[Problem]:
    """What every legal alarm shares: enabled (or a reason), grace_s, and the flapping window."""
    out: list[Problem] = []
    p = f"rules.{code}"
    if not s.enabled and not has_reason:
        out.append((f"{p}.enabled", f"{code} is a legal alarm ({law}); disabling it needs "
                                    f"[rules] {REASON_KEY} = \"...\" (who approved it and why)"))
    grace = getattr(s, "grace_s", None)
    if grace is None:
        return out
    if grace > MAX_GRACE_S:
        out.append((f"{p}.grace_s", f"at most {MAX_GRACE_S:g} s for a legal alarm, got {grace:g} ({law})"))
        return out
    fields = type(s).model_fields
    if "window_s" in fields and "min_absence_s" in fields:
        if s.window_s < grace:
            out.append((f"{p}.window_s", f"must be at least grace_s ({grace:g} s) so that spells add up "
                                         f"(DOMAIN v3 flapping), got {s.window_s:g} ({law})"))
        if s.min_absence_s > MAX_MIN_ABSENCE_S:
            out.append((f"{p}.min_absence_s", f"at most {MAX_MIN_ABSENCE_S:g} s (it filters tag flapping, "
                                              f"not absences), got {s.min_absence_s:g} ({law})"))
    return out


def _lone_interrogation(s, law: str) -> list[Problem]:
    out: list[Problem] = []
    if s.min_investigators != 2:
        out.append(("rules.lone_interrogation.min_investigators",
                    f"must be 2 (讯问的时候，侦查人员不得少于二人: {CRIM} 第118条、{PROC} 第202条、"
                    f"{PSAL} 第108条), got {s.min_investigators}"))
    bad = [x for x in s.relaxed_case_types if x != "administrative"]
    if bad:
        out.append(("rules.lone_interrogation.relaxed_case_types",
                    f"only \"administrative\" may be relaxed to one officer while recording ({PSAL} 第108条; "
                    f"criminal questioning always needs two: {CRIM} 第118条), got {bad}"))
    return out


def _suspect_motionless(s, law: str) -> list[Problem]:
    if s.after_s <= MAX_GRACE_S:
        return []
    return [("rules.suspect_motionless.after_s",
             f"at most {MAX_GRACE_S:g} s for a legal alarm, got {s.after_s:g} ({law})")]


def _interrogation_not_recorded(s, law: str) -> list[Problem]:
    if 0 < s.stale_s <= MAX_GRACE_S:
        return []
    return [("rules.interrogation_not_recorded.stale_s",
             f"must be more than 0 and at most {MAX_GRACE_S:g} s (a silent recorder is not recording: "
             f"{PROC} 第208条 全程不间断), got {s.stale_s:g}")]


def _rest_overdue(s, law: str) -> list[Problem]:
    out: list[Problem] = []
    if s.limit_h > 4:
        out.append(("rules.rest_overdue.limit_h", f"at most 4 h of continuous questioning ({law}), "
                                                  f"got {s.limit_h:g}"))
    if s.break_min < 30:
        out.append(("rules.rest_overdue.break_min", f"a break must last at least 30 min to count as rest "
                                                    f"({law}), got {s.break_min:g}"))
    return out


def _detention_timeout(s, law: str) -> list[Problem]:
    out: list[Problem] = []
    for key, (limit, basis) in DETENTION_BASE.items():
        v = getattr(s, key)
        if v > limit:
            out.append((f"rules.detention_timeout.{key}",
                        f"a center default may not exceed the law's base limit of {limit:g} h "
                        f"({_cite(basis)}; longer limits only per person with an approver), got {v:g}"))
    return out


def _custody_transfer_overdue(s, law: str) -> list[Problem]:
    if s.limit_h <= 24:
        return []
    return [("rules.custody_transfer_overdue.limit_h",
             f"at most 24 h from detention to the detention house ({CRIM} 第85条、{PROC} 第126条), "
             f"got {s.limit_h:g}")]


def _consecutive_summons(s, law: str) -> list[Problem]:
    if s.min_gap_h >= 12:
        return []
    return [("rules.consecutive_summons.min_gap_h",
             f"at least 12 h (不得以连续传唤的形式变相拘禁: {CRIM} 第119条、{PROC} 第200条), "
             f"got {s.min_gap_h:g}")]


def _evidence_handover_overdue(s, law: str) -> list[Problem]:
    if s.limit_h <= 24:
        return []
    return [("rules.evidence_handover_overdue.limit_h", f"at most 24 h ({ADMIN} 第190条), got {s.limit_h:g}")]


def _minor_without_guardian(s, law: str) -> list[Problem]:
    bad = [k for k in s.guardian_kinds if k != "guardian"]
    if not bad:
        return []
    return [("rules.minor_without_guardian.guardian_kinds",
             f"only \"guardian\" (法定代理人/合适成年人) counts ({CRIM} 第281条、{PSAL} 第98条), got {bad}")]


def _camera_tamper(s, law: str) -> list[Problem]:
    missing = [t for t in ("interrogation", "waiting") if t not in s.room_types]
    if not missing:
        return []
    return [("rules.camera_tamper.room_types",
             f"must include {missing} (questioning recorded: {CRIM} 第123条、{PROC} 第208条、"
             f"{PSAL} 第97条; waiting rooms watched: {INQ} 第29条)")]


# code -> the bounds the law sets on that code's own settings (beyond the common ones)
CODE_BOUNDS: dict[str, Callable[[Any, str], list[Problem]]] = {
    "lone_interrogation": _lone_interrogation,
    "suspect_motionless": _suspect_motionless,
    "interrogation_not_recorded": _interrogation_not_recorded,
    "rest_overdue": _rest_overdue,
    "detention_timeout": _detention_timeout,
    "custody_transfer_overdue": _custody_transfer_overdue,
    "consecutive_summons": _consecutive_summons,
    "evidence_handover_overdue": _evidence_handover_overdue,
    "minor_without_guardian": _minor_without_guardian,
    "camera_tamper": _camera_tamper,
}


def disabled_legal(raw: dict[str, Any]) -> tuple[list[str], str | None]:
    """(legal codes the config disables, [rules] legal_disabled_reason)."""
    from rules.catalog import CATALOG
    codes = sorted(code for code, table in raw.items()
                   if code in CATALOG and CATALOG[code].legal and isinstance(table, dict)
                   and table.get("enabled") is False)
    reason = raw.get(REASON_KEY)
    return codes, reason if isinstance(reason, str) and reason.strip() else None
