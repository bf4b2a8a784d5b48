"""Legal alarms switched off by the config (DOMAIN v3): allowed only with ``[rules]
legal_disabled_reason``, and then said out loud everywhere - ``config check`` and ``doctor``
(WARN), ``status`` (``legal_disabled``), the log, and the journal: a ``config.legal_disabled``
event at every start and reload, so the oversight department (法制部门) reading the record sees
which legal alarms could not fire, since when, and who said why."""
from __future__ import annotations

from typing import Any

from rules.model import Draft


def legal_disabled(cfg) -> dict[str, Any] | None:
    """{codes, reason, legal_basis} of the legal alarms the config disables; None if none."""
    from rules.catalog import CATALOG
    from rules.legal_bounds import disabled_legal
    codes, reason = disabled_legal(getattr(cfg, "rules", {}) or {})
    if not codes:
        return None
    return {"codes": codes, "reason": reason or "",
            "legal_basis": {c: list(CATALOG[c].legal_basis) for c in codes}}


def legal_disabled_draft(cfg, trigger: str) -> Draft | None:
    """The journal's record of it, at ``trigger`` = "start" | "reload" (None: nothing disabled)."""
    info = legal_disabled(cfg)
    if info is None:
        return None
    return Draft("config.legal_disabled", {**info, "trigger": trigger, "config_hash": cfg.config_hash()})
