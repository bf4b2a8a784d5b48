"""The alarm catalog of DOMAIN.md: code, severity, messages, config schema, equipment.

Derived, not kept: every rule family module under rules/families/ declares its alarms
beside its rules (rules.declare.alarm); importing this module scans that package
(rules.families.load) and orders the declarations by their ``order`` (= evaluation order).
Each ``[rules.<code>]`` table is validated against its settings model; unknown keys are
errors, named with their full path.
"""
from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from rules import families
from rules.base import RULES
from rules.declare import DECLARED, AlarmSpec, RuleSettings, Severity  # noqa: F401  (the catalog's vocabulary)


def declared() -> dict[str, AlarmSpec]:
    """Every declared alarm of the rule families on rules.families' path, catalog order
    (``order``, then code). Raises if a declared alarm has no rule or a rule no declaration."""
    families.load()
    specs = sorted(DECLARED.values(), key=lambda s: (s.order, s.code))
    undeclared = sorted(set(RULES) - set(DECLARED))
    ruleless = sorted(set(DECLARED) - set(RULES))
    if undeclared or ruleless:
        raise ValueError("every rule declares its alarm and every alarm has its rule: "
                         + "; ".join([f"rule {c!r} has no alarm(...) declaration" for c in undeclared]
                                     + [f"alarm {c!r} ({DECLARED[c].module}) has no @rule" for c in ruleless]))
    return {s.code: s for s in specs}


CATALOG: dict[str, AlarmSpec] = declared()


def spell_windows(settings: dict[str, RuleSettings]) -> dict[str, tuple[float, float]]:
    """Codes whose grace periods add up (rules.declare.Spells; Engine._spell_start):
    code -> (window_s, min_absence_s), for the codes whose window is on."""
    return {c: (s.window_s, s.min_absence_s) for c, s in settings.items()
            if "min_absence_s" in type(s).model_fields and s.window_s > 0}


def validate_rules_config(raw: dict[str, Any]) -> dict[str, RuleSettings]:
    """Validate ``[rules.*]``; raise ValueError naming ``rules.<code>.<key>``."""
    from rules.validation import KeyPathError as _KeyError
    from rules.validation import format_validation_error
    from rules.legal_bounds import REASON_KEY, violations
    out: dict[str, RuleSettings] = {}
    for code, table in raw.items():
        if code == REASON_KEY:          # [rules] legal_disabled_reason (DOMAIN v3), not an alarm code
            if not isinstance(table, str):
                raise _KeyError(f"rules.{code}", "must be a string (who approved disabling a legal alarm, and why)")
            continue
        spec = CATALOG.get(code)
        if spec is None:
            from rules.validation import did_you_mean
            raise _KeyError(f"rules.{code}", "unknown alarm code" + did_you_mean(code, set(CATALOG)))
        if not isinstance(table, dict):
            raise _KeyError(f"rules.{code}", "must be a table")
        try:
            out[code] = spec.settings.model_validate(table)
        except ValidationError as e:
            first = format_validation_error("", e, model=spec.settings)[0].removeprefix(": ")
            path, _, reason = first.partition(": ")
            raise _KeyError(f"rules.{code}.{path}", reason) from None
    # legal alarms within the law's bounds (DOMAIN v3): every problem named, with its article
    problems = violations(raw, {**{c: s.settings() for c, s in CATALOG.items()}, **out})
    if problems:
        err = _KeyError(*problems[0])
        err.more = [_KeyError(path, reason) for path, reason in problems[1:]]
        raise err
    return out


def rule_settings(raw: dict[str, Any]) -> dict[str, RuleSettings]:
    """Settings for every code, defaults filled in."""
    given = validate_rules_config(raw)
    return {code: given.get(code) or spec.settings() for code, spec in CATALOG.items()}
