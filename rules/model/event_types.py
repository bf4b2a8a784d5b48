"""Every event type (SPEC §2), declared once at the bottom of this file: its name,
the pydantic model of its ``data`` (the source of the JSON Schemas in
docs/asyncapi.yaml, gateway/contract.py), telemetry or not, folded or not. A new
event type = its model here + one DECLARED row (+ its fold in rules/state, or
NOT_FOLDED); tests/rules/test_event_model.py checks folds, emits and drivers'
manifests against DECLARED.

Strict where SPEC is exact (enums, types, nullability of the fields it names,
the ids every event of a type carries); open where it is not: every model
allows additional properties, because producers may add fields (SPEC names a
minimum) and other teams add v2 fields in parallel. Fields SPEC lists that a
producer may leave out today are optional, typed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

Ts = str          # RFC 3339 (UTC in envelopes; a time the user gave may carry an offset)
Str = Optional[str]


class Data(BaseModel):
    model_config = ConfigDict(extra="allow")


# ---- gateway ---------------------------------------------------------------------
class GatewayStarted(Data):
    version: str
    config_hash: str


class GatewayStopped(Data):
    reason: str


class ConfigLegalDisabled(Data):                 # v3: legal alarms the config switches off (DOMAIN v3)
    codes: list[str]
    reason: str                                  # [rules] legal_disabled_reason
    trigger: Literal["start", "reload"]
    legal_basis: dict[str, list[str]] = {}
    config_hash: Optional[str] = None


# ---- persons -------------------------------------------------------------------------
Role = Literal["suspect", "officer", "staff", "visitor"]
CaseType = Literal["criminal", "administrative", "inquiry"]


class PersonRegistered(Data):
    person: str
    role: Role
    name: Optional[str] = None
    gender: Optional[Literal["male", "female"]] = None
    minor: Optional[bool] = None
    age: Optional[int] = None
    vulnerable: Optional[bool] = None
    case_id: Str = None
    case_type: Optional[CaseType] = None
    limit_h: Optional[float] = None
    arrived_at: Optional[Ts] = None
    visitor_kind: Optional[Literal["lawyer", "guardian", "doctor", "other"]] = None
    for_: Str = Field(default=None, alias="for")
    approver: Optional[bool] = None            # v3: an officer who approves (办案部门负责人)
    identity: Str = None                       # v3: hash of the ID-card number
    approved_by: Str = None                    # v3: a first limit above the base one
    reason: Str = None


class PersonChanges(Data):
    case_type: Optional[CaseType] = None
    limit_h: Optional[float] = None
    case_id: Str = None
    detained_at: Optional[Ts] = None
    vulnerable: Optional[bool] = None


class PersonUpdated(Data):                     # v2
    person: str
    changes: PersonChanges
    by: str
    reason: str
    approved_by: Str = None                    # v3: lengthening a limit, correcting detained_at


class PersonRest(Data):                        # v2
    person: str
    kind: Literal["meal", "rest"]
    from_: Ts = Field(alias="from")
    to: Optional[Ts] = None
    by: Str = None


class PersonCheckoutApproved(Data):
    person: str
    by: str


class PersonLeft(Data):
    person: str


class Wristband(Data):
    tag: str
    person: Str


# ---- presence, tags, cards, doors --------------------------------------------------------
class PresenceEntered(Data):
    person: Str
    tag: str
    room: str


class PresenceLeft(PresenceEntered):
    seconds: float


class TagStatus(Data):
    tag: str
    person: Str = None
    battery: int | Literal["low"] | None = None
    tamper: Optional[bool] = None
    sos: Optional[bool] = None
    heart_rate: Optional[int | float] = None


class CardSwiped(Data):
    card: str
    reader: str
    room: Str
    person: Str = None


class Door(Data):
    door: str
    room: Str


class DoorPassed(Door):                        # v2
    tag: Str = None
    person: Str = None
    direction: Optional[Literal["in", "out"]] = None


# ---- lockers, evidence, custody ------------------------------------------------------------
class Locker(Data):
    locker: str
    compartment: int


class LockerUnlockRequested(Locker):
    by: Str = None
    order: Str = None


class Evidence(Locker):
    item: str


class CustodyOrdered(Data):
    order: str
    item: str
    action: Literal["deposit", "withdraw", "return", "release", "dispose"]
    case_id: str
    by: str
    expires: Optional[Ts] = None
    due: Optional[Ts] = None
    approved_by: Str = None                    # v3: release / dispose


class BelongingsAssigned(Locker):
    person: str


# ---- cameras ---------------------------------------------------------------------------------
class Camera(Data):
    camera: str
    room: Str


class CameraHeadcount(Camera):
    count: int


class CameraFaceRecognized(Camera):
    person: str
    distance: float


class CameraStill(Camera):
    seconds: float


class CameraSnapshot(Camera):
    file: str
    reason: Str = None
    alarm_id: Str = None


class CameraMotion(Camera):                    # v2
    active: bool


class CameraTampered(Camera):                  # v2
    kind: Literal["covered", "moved", "video_lost"]
    active: bool


class FaceEnrolled(Data):
    person: str


# ---- recording, identification (v2) -------------------------------------------------------------
class Recording(Data):
    room: str
    source: Str = None
    recorder: Optional[bool] = None            # v3: the room's configured recorder said so (evidence)
    by: Str = None                             # v3: the officer who reported it by hand


class Identification(Data):
    room: str
    case_id: Str = None
    by: Str = None
    reason: Str = None                         # v3 identification.ended: "max_s" when it ended by itself


# ---- devices, clock, journal -----------------------------------------------------------------
class Device(Data):
    device: str
    error: Str = None


class DeviceMaintenance(Data):                 # v2
    device: str
    until: Ts
    reason: Str = None
    by: Str = None


class DeviceMaintenanceEnded(Data):            # v2
    device: str


class ClockStepped(Data):                      # v2
    from_: Any = Field(alias="from")
    to: Any
    delta_s: float
    # v3 (SPEC §7): "correction" = an unsynchronised clock brought to synchronised
    # time, "error" = a step while synchronised; absent in v2 journals (= error)
    kind: Optional[Literal["correction", "error"]] = None
    journal_jump_s: Optional[float] = None
    journal_ahead_s: Optional[float] = None


class ClockSync(Data):                         # v3
    # the system clock's sync state changed (kernel / time-sync service), SPEC §7
    synchronised: Optional[bool]
    source: Str = None


class JournalShed(Data):
    count: int
    from_seq: int
    to_seq: int


class ChainSigned(Data):                       # v3 (SPEC §8)
    seq: int = Field(description="seq of the head covered: the event right before this one")
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$", description="first 16 hex of sha256 of the raw public key")
    sig: str = Field(description="base64 Ed25519 signature over UTF-8 '<center>|<seq>|<hash>'")


# ---- alarms ---------------------------------------------------------------------------------
class Message(Data):
    zh: str
    en: str


class Alarm(Data):
    alarm_id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")    # <code>:<16 hex>, deterministic
    code: str
    severity: Literal["critical", "major", "minor", "warning"]
    room: Str = None
    persons: list[str] = []
    since: Ts
    message: Message
    details: dict[str, Any] = {}
    legal_basis: list[str] = []
    snapshot: Str = None


class AlarmAcknowledged(Alarm):
    by: str
    note: Str = None


class AlarmEscalated(Data):                    # v2
    alarm_id: str
    code: str
    level: int
    unacked_s: float


class AlarmShelved(Data):                      # v2
    code: str
    scope: Str = None
    until: Ts
    reason: str
    by: str


class AlarmUnshelved(Data):                    # v2
    code: str
    scope: Str = None
    by: Str = None


class RequestRefused(Data):                     # v3 (SPEC §3): a legal request refused, or a request_id conflict
    command: str
    code: Literal["forbidden", "bad_request", "conflict"]
    by: Str = None
    person: Str = None
    room: Str = None
    order: Str = None
    approved_by: Str = None
    request_id: Any = None
    client: Str = None
    message: Str = None


@dataclass(frozen=True)
class EventType:
    """One event type, declared once: its name (``<domain>.<action>``), the model of its
    ``data``, whether it is telemetry (may be shed under the disk cap, SPEC §2
    journal.shed: everything else is a record of the case and is never shed), and
    whether the center model folds it (rules/state; False = journaled and published,
    read by no fold - gateway lifecycle, the alarm-state and clock modules' own inputs,
    refusals)."""
    name: str
    data: type[Data]
    telemetry: bool = False
    folded: bool = True


TELEMETRY, NOT_FOLDED = {"telemetry": True}, {"folded": False}

# The order is the contract's (docs/asyncapi.yaml lists messages in it).
DECLARED: tuple[EventType, ...] = tuple(EventType(name, model, **flags) for name, model, flags in (
    ("gateway.started", GatewayStarted, NOT_FOLDED),
    ("gateway.stopped", GatewayStopped, NOT_FOLDED),
    ("config.legal_disabled", ConfigLegalDisabled, NOT_FOLDED),
    ("person.registered", PersonRegistered, {}),
    ("person.updated", PersonUpdated, {}),
    ("person.rest", PersonRest, {}),
    ("person.checkout_approved", PersonCheckoutApproved, {}),
    ("person.left", PersonLeft, {}),
    ("wristband.bound", Wristband, {}),
    ("wristband.unbound", Wristband, {}),
    ("presence.entered", PresenceEntered, {}),
    ("presence.left", PresenceLeft, {}),
    ("tag.status", TagStatus, TELEMETRY),
    ("card.swiped", CardSwiped, TELEMETRY),
    ("door.opened", Door, {}),
    ("door.closed", Door, {}),
    ("door.passed", DoorPassed, {}),
    ("locker.opened", Locker, {}),
    ("locker.closed", Locker, {}),
    ("locker.unlock_requested", LockerUnlockRequested, {}),
    ("evidence.added", Evidence, {}),
    ("evidence.removed", Evidence, {}),
    ("custody.ordered", CustodyOrdered, {}),
    ("belongings.assigned", BelongingsAssigned, {}),
    ("camera.headcount", CameraHeadcount, TELEMETRY),
    ("camera.face_recognized", CameraFaceRecognized, TELEMETRY),
    ("camera.face_unknown", Camera, TELEMETRY),
    ("camera.still", CameraStill, TELEMETRY),
    ("camera.snapshot", CameraSnapshot, {**TELEMETRY, **NOT_FOLDED}),
    ("camera.motion", CameraMotion, NOT_FOLDED),
    ("camera.tampered", CameraTampered, {}),
    ("face.enrolled", FaceEnrolled, NOT_FOLDED),
    ("recording.started", Recording, {}),
    ("recording.stopped", Recording, {}),
    ("identification.started", Identification, {}),
    ("identification.ended", Identification, {}),
    ("device.online", Device, TELEMETRY),
    ("device.offline", Device, TELEMETRY),
    ("device.error", Device, TELEMETRY),
    ("device.maintenance", DeviceMaintenance, NOT_FOLDED),          # rules/alarm_states.py
    ("device.maintenance_ended", DeviceMaintenanceEnded, NOT_FOLDED),
    ("clock.stepped", ClockStepped, NOT_FOLDED),                    # the rules' clock (rules/clock.py)
    ("clock.sync", ClockSync, NOT_FOLDED),
    ("journal.shed", JournalShed, NOT_FOLDED),
    ("chain.signed", ChainSigned, NOT_FOLDED),
    ("alarm.raised", Alarm, {}),
    ("alarm.cleared", Alarm, {}),
    ("alarm.acknowledged", AlarmAcknowledged, {}),
    ("alarm.escalated", AlarmEscalated, NOT_FOLDED),
    ("alarm.shelved", AlarmShelved, NOT_FOLDED),                    # rules/alarm_states.py
    ("alarm.unshelved", AlarmUnshelved, NOT_FOLDED),
    ("request.refused", RequestRefused, NOT_FOLDED),
))

# Derived from DECLARED, never listed by hand:
EVENT_TYPES: dict[str, EventType] = {t.name: t for t in DECLARED}
EVENT_DATA: dict[str, type[Data]] = {t.name: t.data for t in DECLARED}      # the contract's schema table
TELEMETRY_TYPES = frozenset(t.name for t in DECLARED if t.telemetry)
FOLDED_TYPES = frozenset(t.name for t in DECLARED if t.folded)
