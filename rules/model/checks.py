"""Checking an event against its declaration (rules/model/event_types.py).

Production journals what producers emit, as it always has (a driver's odd field
is a fact worth keeping, and SPEC names a minimum). The test suite turns on
strict mode (tests/conftest.py sets CASEGATE_STRICT_EVENTS=1, which the daemons it
starts inherit): an emit of an undeclared type, or of data its model refuses,
then raises where it is emitted."""
from __future__ import annotations

import os
from typing import Any

from pydantic import ValidationError

from rules.model.event_types import EVENT_TYPES

STRICT_ENV = "CASEGATE_STRICT_EVENTS"

# Known deviations of producers from the contract, accepted by strict mode until the
# contract or the producer changes (each one is behaviour today; neither may change in
# a refactor). (type, field): the field may be null although its model says otherwise.
KNOWN_NULLS = frozenset({
    # drivers/locker: an item the UHF reader cannot place (no label prefix, antennas of
    # several compartments) is added/removed with compartment null; SPEC §2 says int
    ("evidence.added", "compartment"), ("evidence.removed", "compartment"),
})


class UndeclaredEvent(ValueError):
    """An event whose type is not declared, or whose data its model refuses (strict mode)."""


def strict() -> bool:
    return os.environ.get(STRICT_ENV) == "1"


def event_problem(type: str, data: Any) -> str | None:
    """Why an event of ``type`` with ``data`` does not match its declaration; None if it does."""
    declared = EVENT_TYPES.get(type)
    if declared is None:
        return f"{type!r} is not a declared event type (rules/model/event_types.py DECLARED)"
    try:
        declared.data.model_validate(data)
    except ValidationError as e:
        errors = [x for x in e.errors()
                  if not (x["input"] is None and (type, ".".join(map(str, x["loc"]))) in KNOWN_NULLS)]
        if not errors:
            return None
        first = errors[0]
        where = ".".join(str(p) for p in first["loc"]) or "data"
        return f"{type} data does not validate: {where}: {first['msg']} ({len(errors)} error(s))"
    return None


def check_strict(type: str, data: Any) -> None:
    """In strict mode, raise UndeclaredEvent for an event that does not match its declaration."""
    if strict():
        problem = event_problem(type, data)
        if problem is not None:
            raise UndeclaredEvent(problem)
