"""Persons: registration, updates, rests and meals, checkout, wristbands and cards, faces."""
from __future__ import annotations

import base64
import binascii
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr

from gateway.commands.checks import (check_limit, cli_time, drop_unset, law, norm_tag, officer, person, refusal,
                                     time_arg, true_now)
from gateway.commands.services import Services, WriterView
from gateway.commands.table import ID, Args, UsageError, Verb, arg, command
from rules.model import Draft, format_ts

CaseType = Literal["criminal", "administrative", "inquiry"]
CASE_TYPES = typing.get_args(CaseType)
ROLES = ["suspect", "officer", "staff", "visitor"]


class Register(Args):
    person: str = Field(pattern=ID)
    role: Literal["suspect", "officer", "staff", "visitor"]
    name: StrictStr | None = Field(default=None, max_length=200)
    gender: Literal["male", "female"] | None = None
    minor: StrictBool = False
    case_id: str | None = Field(default=None, pattern=ID)
    case_type: CaseType | None = None
    limit_h: float | None = Field(default=None, gt=0, le=48)
    visitor_kind: str | None = Field(default=None, pattern=ID)
    # DOMAIN v2
    age: StrictInt | None = Field(default=None, ge=0, le=150)
    vulnerable: StrictBool = False
    arrived_at: StrictStr | None = Field(default=None, max_length=64)   # 到案时间; no offset = center's timezone
    for_: str | None = Field(default=None, pattern=ID, alias="for")     # a guardian's minor
    # DOMAIN v3 (gateway/legal.py)
    approver: StrictBool = False          # an officer who is a 办案部门负责人
    identity: str | None = Field(default=None, pattern=r"^[0-9a-f]{32,128}$")   # hash of the ID-card number
    approved_by: str | None = Field(default=None, pattern=ID)    # a first limit above the base one
    reason: StrictStr | None = Field(default=None, min_length=1, max_length=1000)


class PersonUpdate(Args):
    person: str = Field(pattern=ID)
    by: str = Field(pattern=ID)
    reason: StrictStr = Field(min_length=1, max_length=1000)
    case_type: CaseType | None = None
    limit_h: float | None = Field(default=None, gt=0, le=48)
    case_id: str | None = Field(default=None, pattern=ID)
    detained_at: StrictStr | None = Field(default=None, max_length=64)
    vulnerable: StrictBool | None = None
    approved_by: str | None = Field(default=None, pattern=ID)    # v3: lengthening, detained_at corrections


class PersonRest(Args):
    person: str = Field(pattern=ID)
    kind: Literal["meal", "rest"]
    from_: StrictStr = Field(alias="from", max_length=64)
    to: StrictStr | None = Field(default=None, max_length=64)
    by: str = Field(pattern=ID)


class Checkout(Args):
    person: str = Field(pattern=ID)
    by: str = Field(pattern=ID)


class Bind(Args):
    tag: str
    person: str = Field(pattern=ID)


class Unbind(Args):
    tag: str


class FaceEnroll(Args):
    person: str = Field(pattern=ID)
    image: StrictStr = Field(max_length=8_000_000)


PERSON_GROUP = "register, update, check out persons (through the daemon)"
BAND_GROUP = "bind or unbind wristbands and cards (through the daemon)"


# face/enroll carries a base64 photo (FaceEnroll.image), far above the
# ``max_request_bytes`` that suits every other command.
FACE_ENROLL_MAX_BYTES = 8_001_024
_PNG_1PX = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGBgAAAABQABpfZFQAAAAABJRU5ErkJggg==")


def _enroll_request(a, tz: str | None) -> dict:
    """Through the daemon: the same face/enroll as over MQTT (registered-person check,
    face.enrolled journaled, cameras reload their faces)."""
    try:
        image = Path(a.image).read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{a.image}: no such file")
    except OSError as e:
        raise UsageError(f"{a.image}: cannot read: {e.strerror}")
    return {"person": a.person, "image": base64.b64encode(image).decode("ascii")}


@command("face/enroll", FaceEnroll, pool=True, limit="heavy", max_bytes=FACE_ENROLL_MAX_BYTES, example={"person": "s1", "image": _PNG_1PX},
         cli=(Verb(("face", "enroll"), "enrol a person's face from a JPEG/PNG photo", _enroll_request,
                   lambda a, d: f"enrolled face of {d.get('person', a.person)} (event {d.get('event_id', '?')})",
                   group_help="face commands", arguments=(arg("person"), arg("image"))),))
def face_enroll(s: Services, a: FaceEnroll, src: str) -> dict:
    try:
        image = base64.b64decode(a.image, validate=True)
    except (binascii.Error, ValueError):
        raise refusal("bad_request", "image is not valid base64")
    return s.enroll_face(a.person, image, src)


def _register_request(a, tz: str | None) -> dict:
    return drop_unset({"person": a.person, "role": a.role, "name": a.name, "gender": a.gender,
                       "minor": a.minor or None, "age": a.age, "vulnerable": a.vulnerable,
                       "case_id": a.case_id, "case_type": a.case_type, "limit_h": a.limit_h,
                       "arrived_at": cli_time(a.arrived_at, tz), "visitor_kind": a.visitor_kind,
                       "for": a.for_person, "approver": a.approver or None, "identity": a.identity,
                       "approved_by": a.approved_by, "reason": a.reason})


@command("person/register", Register,
         example={"person": "s1", "role": "suspect", "name": "张三", "gender": "male", "case_id": "c-1",
                  "case_type": "criminal", "limit_h": 12.0},
         cli=(Verb(("person", "add"), "register a person (same as MQTT person/register)", _register_request,
                   lambda a, d: f"registered {a.person} as {a.role}", group_help=PERSON_GROUP, arguments=(
                       arg("person", help="person id, e.g. an officer's badge number"),
                       arg("--role", required=True, choices=ROLES),
                       arg("--name"),
                       arg("--gender", choices=["male", "female"]),
                       arg("--minor", action="store_true", help="under 18"),
                       arg("--age", type=int),
                       arg("--vulnerable", action="store_true", help="needs special protection (DOMAIN)"),
                       arg("--case-id"),
                       arg("--case-type", choices=CASE_TYPES),
                       arg("--limit-h", type=float, help="detention limit in hours, if not the law's default"),
                       arg("--arrived-at", help="到案时间, RFC 3339; without an offset the center's local time "
                                                "(default: now)"),
                       arg("--visitor-kind", help="e.g. lawyer, guardian, interpreter"),
                       arg("--for", dest="for_person", help="the person a visitor is here for"),
                       arg("--approver", action="store_true", help="an officer who approves (办案部门负责人)"),
                       arg("--identity", help="hash (hex) of the ID-card number, never the number"),
                       arg("--approved-by", help="the approver of a limit above the base one"),
                       arg("--reason", help="the grounds of that approval"))),))
def person_register(s: Services, core: WriterView, a: Register, src: str):
    p = core.state.persons.get(a.person)
    again = p is not None and not p.left
    if again and p.role != a.role:
        raise refusal("conflict", f"person {a.person} is already registered as {p.role}")
    if a.role == "suspect" and a.case_type is None:
        raise refusal("bad_request", "a suspect needs case_type: criminal | administrative | inquiry "
                                          "(it decides the legal time limit)")
    tz = core.config.center.timezone
    now = true_now(core)
    arrived = time_arg("arrived_at", a.arrived_at, tz, now) if a.arrived_at else None
    _, vulnerable = law().derive_protection(a.role, a.age, a.minor if "minor" in a.model_fields_set else None,
                                            a.case_type, a.vulnerable)
    check_limit(a.case_type, a.limit_h, vulnerable)
    derived = law().check_register(core, a, p if again and a.role == "suspect" else None, now, arrived)
    data = {"person": a.person, "role": a.role, "name": a.name or "", "gender": a.gender,
            "minor": derived["minor"], "case_id": a.case_id, "case_type": a.case_type,
            "limit_h": derived.get("limit_h", a.limit_h),
            "age": a.age, "vulnerable": derived["vulnerable"],
            "arrived_at": format_ts(arrived if arrived is not None else now),
            "visitor_kind": a.visitor_kind, "for": a.for_}
    if "case_type" in derived:
        data["case_type"] = derived["case_type"]
    for k in ("approver", "identity", "approved_by", "reason"):
        if getattr(a, k):
            data[k] = getattr(a, k)
    if a.approver and a.role != "officer":
        raise refusal("bad_request", "approver: only an officer (办案部门负责人) approves")
    if a.approved_by:
        law().approver(core, a.approved_by, "an approval")
    if again:
        # Re-registration in the same stay (not yet left) is an update of the
        # same person: the clock keeps the first arrival (rules.state).
        data["arrived_at"] = format_ts(min(p.arrived_at, arrived) if arrived is not None else p.arrived_at)
    d = Draft("person.registered", data, src)
    out = {"person": a.person, "event_id": d.id, "arrived_at": data["arrived_at"]}
    if again:
        out["reregistered"] = True
    return out, [d]


def _update_request(a, tz: str | None) -> dict:
    return drop_unset({"person": a.person, "by": a.by, "reason": a.reason,
                       "case_type": a.case_type, "limit_h": a.limit_h, "case_id": a.case_id,
                       "detained_at": cli_time(a.detained_at, tz), "vulnerable": a.vulnerable or None,
                       "approved_by": a.approved_by})


@command("person/update", PersonUpdate,
         example={"person": "s1", "by": "o1", "reason": "case re-classified", "case_type": "administrative"},
         cli=(Verb(("person", "update"), "correct a registration (same as MQTT person/update)", _update_request,
                   lambda a, d: f"updated {a.person}", arguments=(
                       arg("person"),
                       arg("--by", required=True, help="the officer making the change"),
                       arg("--reason", required=True, help="why (journaled)"),
                       arg("--case-type", choices=CASE_TYPES),
                       arg("--limit-h", type=float),
                       arg("--case-id"),
                       arg("--detained-at", help="RFC 3339; without an offset the center's local time"),
                       arg("--vulnerable", action="store_true"),
                       arg("--approved-by", help="an approver: lengthening a limit, correcting detained_at"))),))
def person_update(s: Services, core: WriterView, a: PersonUpdate, src: str):
    p = person(core, a.person)
    officer(core, a.by, "a person update")
    given = a.model_fields_set
    changes: dict[str, Any] = {}
    for k in ("case_type", "limit_h", "case_id", "vulnerable"):
        if k in given:
            changes[k] = getattr(a, k)
    detained = None
    if "detained_at" in given:
        tz = core.config.center.timezone
        detained = time_arg("detained_at", a.detained_at, tz, true_now(core)) if a.detained_at else None
        changes["detained_at"] = format_ts(detained) if detained is not None else None
    if not changes:
        raise refusal("bad_request", "nothing to update: give case_type, limit_h, case_id, "
                                          "detained_at or vulnerable")
    if p.role == "suspect":
        case_type = changes.get("case_type", p.case_type)
        if case_type is None:
            raise refusal("bad_request", "a suspect needs case_type: criminal | administrative | inquiry")
        # a limit given must be one the law allows (gateway/legal.py: how it may move)
        check_limit(case_type, changes.get("limit_h"), changes.get("vulnerable", p.vulnerable))
    law().check_update(core, p, a, changes, core.clock(), detained)
    data = {"person": a.person, "changes": changes, "by": a.by, "reason": a.reason}
    if a.approved_by:
        law().approver(core, a.approved_by, "an approval")     # SPEC §3 v3: every approved_by checked
        data["approved_by"] = a.approved_by
    d = Draft("person.updated", data, src)
    return {"person": a.person, "changes": changes, "event_id": d.id}, [d]


@command("person/checkout", Checkout, example={"person": "s1", "by": "o1"},
         cli=(Verb(("person", "checkout"), "approve a person's leaving (same as MQTT person/checkout)",
                   lambda a, tz: {"person": a.person, "by": a.by},
                   lambda a, d: f"checkout of {a.person} approved by {a.by}", arguments=(
                       arg("person"),
                       arg("--by", required=True, help="the approving officer"))),))
def person_checkout(s: Services, core: WriterView, a: Checkout, src: str):
    person(core, a.person)
    officer(core, a.by, "a checkout")
    d = Draft("person.checkout_approved", {"person": a.person, "by": a.by}, src)
    return {"person": a.person, "event_id": d.id}, [d]


@command("person/rest", PersonRest,
         example={"person": "s1", "kind": "meal", "from": "2026-11-28T12:00:00+08:00", "by": "o1"})
def person_rest(s: Services, core: WriterView, a: PersonRest, src: str):
    p = person(core, a.person)
    officer(core, a.by, "recording a rest or meal")
    tz = core.config.center.timezone
    now = true_now(core)
    start = time_arg("from", a.from_, tz, now)
    end = time_arg("to", a.to, tz, now) if a.to else None
    if end is not None and end < start:
        raise refusal("bad_request", "to is before from")
    law().check_rest(core, p, start, end, now)
    d = Draft("person.rest", {"person": a.person, "kind": a.kind, "from": format_ts(start),
                              "to": format_ts(end) if end is not None else None, "by": a.by}, src)
    return {"person": a.person, "event_id": d.id}, [d]


@command("wristband/bind", Bind, example={"tag": "E3AF2232", "person": "s1"},
         cli=(Verb(("band", "bind"), "bind a wristband (8 hex) or card (10 hex) to a person",
                   lambda a, tz: {"tag": a.tag, "person": a.person},
                   lambda a, d: f"tag {d.get('tag', a.tag)} bound to {a.person}", group_help=BAND_GROUP,
                   arguments=(arg("tag"), arg("person"))),))
def wristband_bind(s: Services, core: WriterView, a: Bind, src: str):
    tag = norm_tag(a.tag)
    person(core, a.person)
    owner = core.state.tag_owner.get(tag)
    if owner == a.person:
        return {"tag": tag, "person": a.person, "unchanged": True}, []
    if owner is not None:
        raise refusal("conflict", f"tag {tag} is already bound to {owner}")
    d = Draft("wristband.bound", {"tag": tag, "person": a.person}, src)
    return {"tag": tag, "person": a.person, "event_id": d.id}, [d]


@command("wristband/unbind", Unbind, example={"tag": "E3AF2232"},
         cli=(Verb(("band", "unbind"), "unbind a wristband or card", lambda a, tz: {"tag": a.tag},
                   lambda a, d: f"tag {d.get('tag', a.tag)} unbound from {d.get('person', '?')}",
                   arguments=(arg("tag"),)),))
def wristband_unbind(s: Services, core: WriterView, a: Unbind, src: str):
    tag = norm_tag(a.tag)
    owner = core.state.tag_owner.get(tag)
    if owner is None:
        raise refusal("not_found", f"tag {tag} is not bound")
    d = Draft("wristband.unbound", {"tag": tag, "person": owner}, src)
    return {"tag": tag, "person": owner, "event_id": d.id}, [d]
