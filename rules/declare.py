"""What a rule declares beside its function: its alarm (code, severity, labels, settings
model, articles) and the equipment its alarms concern.

A rule family module (rules/families/<name>.py) declares each of its alarms with
``alarm(...)`` next to the rule's ``@rule`` function; the catalog (rules/catalog.py) is
the set of declarations, found by scanning rules/families/, not a list kept elsewhere.
The law texts stay in rules/citations.py; a declaration names the articles it enforces.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


# A rule's ``[rules.<code>]`` table; unknown keys are errors (named with their path). (A
# comment, not a docstring: a docstring would become every model's JSON-schema description.)
class RuleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = True


class Grace(RuleSettings):
    grace_s: float = Field(default=30, ge=0)


class Spells(RuleSettings):
    """A grace-timed legal rule's flapping window (DOMAIN v3 "Flapping"): spells of the
    condition within ``window_s`` add up to ``grace_s`` (rules.engine.Engine.hold), so a
    condition broken off for a few seconds at a time (a band unbound 55 s / bound 5 s, a
    recorder stopped 55 s of every 60 s) still raises."""
    window_s: float = Field(default=300, ge=0)      # spells within this window add up to grace_s
    min_absence_s: float = Field(default=5, ge=0)   # shorter spells (tag flapping between stations) do not count


Severity = Literal["critical", "major", "minor", "warning"]

# Detail keys that name a piece of equipment (a device, camera, door or locker id): the
# vocabulary an Equipment declaration picks from, and what tests/rules/test_rules_declared.py
# looks for in every alarm a rule raises.
EQUIPMENT_KEYS = ("device", "camera", "door", "locker")


@dataclass(frozen=True)
class Equipment:
    """Which equipment an alarm concerns: how maintenance (``device.maintenance``) and a
    shelve scoped to a device/door/locker find the device of an alarm
    (rules/alarm_states.py). A rule whose alarms concern none declares ``NO_EQUIPMENT``;
    one that does and declares nothing would never be suppressed while its device is
    worked on, which tests/rules/test_rules_declared.py catches from the alarms it raises."""
    details: tuple[str, ...] = ()      # details keys (EQUIPMENT_KEYS) naming the equipment
    subject: bool = False              # the alarm's subject is a device id (or "<device>:<part>")
    room_of: str | None = None         # a device with this capability covering the alarm's room
    door_of: str | None = None         # a device with this capability owning the door that is the subject

    @property
    def declared(self) -> bool:
        return bool(self.details or self.subject or self.room_of or self.door_of)


NO_EQUIPMENT = Equipment()
# New rules sort after the existing ones (then by code) unless they say where.
LAST = 10_000


@dataclass(frozen=True)
class AlarmSpec:
    code: str
    severity: Severity
    zh: str
    en: str
    settings: type[RuleSettings]
    # The statutes' articles this alarm enforces (DOMAIN v2), carried on every
    # alarm event as ``legal_basis``; empty for facility alarms.
    legal_basis: tuple[str, ...] = ()
    # Legal alarms (DOMAIN "L") can never be shelved or disabled at run time.
    legal: bool = False
    equipment: Equipment = NO_EQUIPMENT
    # Catalog order = evaluation order: the rules one event wakes draft their alarms in
    # this order, which is journal order (replay and the day test's exact alarm list
    # depend on it). Existing codes keep the order of the former hand-kept catalog.
    order: int = LAST
    module: str = ""                   # the family module that declared it (for messages)


# code -> declaration, filled as family modules are imported (rules.families.load)
DECLARED: dict[str, AlarmSpec] = {}


def alarm(code: str, severity: Severity, zh: str, en: str, settings: type[RuleSettings] = RuleSettings, *,
          legal: bool = False, basis: tuple[str, ...] = (), equipment: Equipment = NO_EQUIPMENT,
          order: int = LAST) -> str:
    """Declare the alarm ``code``; returns the code (for ``@rule(...)`` and ``ctx.hold``).
    ``legal``: a DOMAIN "L" alarm, citing ``basis`` (one article per entry, from
    rules/citations.py's law names)."""
    import inspect
    frame = inspect.currentframe()
    caller = frame.f_back.f_globals.get("__name__", "") if frame is not None and frame.f_back else ""
    old = DECLARED.get(code)
    if old is not None and old.module != caller:
        raise ValueError(f"alarm {code!r} declared twice: in {old.module} and in {caller}")
    DECLARED[code] = AlarmSpec(code, severity, zh, en, settings, tuple(basis), legal, equipment, order, caller)
    return code
