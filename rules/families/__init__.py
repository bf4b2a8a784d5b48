"""Rule families: every module in this package declares its alarms (rules.declare.alarm) and
registers its rules (rules.base.rule and friends). Found by scanning the package, not listed:
adding a rule is one module here (or one more rule in a family's module) plus its cases in
tests/rules/rule_cases.py. tests/rules/test_rules_declared.py adds one from a temp folder.
"""
from __future__ import annotations

import importlib
import pkgutil

_loaded: set[str] = set()


def load() -> list[str]:
    """Import every family module on this package's path (idempotent; a folder appended to
    ``__path__`` is scanned on the next call). Returns the module names, in scan order."""
    names = sorted({m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")})
    for name in names:
        if name not in _loaded:
            importlib.import_module(f"{__name__}.{name}")
            _loaded.add(name)
    return names
