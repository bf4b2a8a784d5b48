"""The event model, at the bottom of the layers: the envelope (SPEC §2), time as
events carry it, and every event type declared once with its data model.

    drivers ─┐
    rules ───┼──> rules.model      (imports nothing else from casegate)
    gateway ─┘

Everything above imports it as ``from rules.model import ...``; the modules:
envelope (ids, hash chain, topics), timefmt (RFC 3339, local time, durations),
event_types (the declarations and the data models), checks (an event against
its declaration; strict mode for the test suite)."""
from rules.model.checks import STRICT_ENV, UndeclaredEvent, check_strict, event_problem, strict
from rules.model.envelope import (GENESIS, Draft, Event, canonical, canonical_parts, chain_hash, dump_data,
                                  is_suppressed_alarm, seal, topic_for, uuid7, verify_envelope)
from rules.model.event_types import (DECLARED, EVENT_DATA, EVENT_TYPES, FOLDED_TYPES, TELEMETRY_TYPES, Alarm,
                                     CaseType, Data, EventType, Role)
from rules.model.timefmt import format_duration, format_local, format_ts, parse_local_ts, parse_ts, zone

__all__ = [
    "STRICT_ENV", "UndeclaredEvent", "check_strict", "event_problem", "strict",
    "GENESIS", "Draft", "Event", "canonical", "canonical_parts", "chain_hash", "dump_data", "is_suppressed_alarm",
    "seal", "topic_for", "uuid7", "verify_envelope",
    "DECLARED", "EVENT_DATA", "EVENT_TYPES", "FOLDED_TYPES", "TELEMETRY_TYPES", "Alarm", "CaseType", "Data",
    "EventType", "Role",
    "format_duration", "format_local", "format_ts", "parse_local_ts", "parse_ts", "zone",
]
