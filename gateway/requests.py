"""Requests: ``P/request/<command>`` -> ``P/response/<command>``, and the same commands
from the control socket (``casegate ack``, ``person add``, ...) and the demo's desk.

:data:`COMMANDS` is the one table of commands (argument model, handler, writer thread or
device pool, rate-limit class, idempotency, the paths that offer it) and
:meth:`RequestRouter.dispatch` the one function every path calls.

Every request is checked before anything changes: bad JSON, a non-object,
an unknown command, a missing or wrong-typed field, an unknown person, a tag
already bound: each gets ``ok:false`` with a SPEC §3 error code and leaves
the journal untouched. A request that acts is answered only after its events
are committed, and its response is stored with them under its
``request_id``: a re-sent request gets the same answer and acts once.

State-changing commands run in order on one worker thread (a bind right
behind a register must see the registration); device commands (an unlock
waiting for the board) run on a small pool so they never hold the others up.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import queue
import re
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from drivers.registry import has
from gateway import legal
from gateway.core import CommitResult, Core, RequestError
from gateway.device_pools import KeyedPools
from rules.model import Draft, format_ts

log = logging.getLogger("casegate.requests")

# Ids name files (a person's face, a camera's snapshots, a device's state topic): never
# ".", "..", a hidden name or one a command line reads as an option (issue 28 item 4).
ID = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
# An MQTT account named in P/client/<account>/request/...: a topic level the broker's ACL
# ties to the account's user name (docs/security.md §3a).
CLIENT_ID = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$"
TAG = re.compile(r"^([0-9A-Fa-f]{8}|[0-9A-Fa-f]{10})$")
MAX_DEPTH = 8


class Args(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)
    request_id: str = Field(pattern=ID)


class Ping(Args):
    pass


CaseType = Literal["criminal", "administrative", "inquiry"]


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


class Belongings(Args):
    person: str = Field(pattern=ID)
    locker: str = Field(pattern=ID)
    compartment: StrictInt = Field(ge=1, le=256)


class Ack(Args):
    alarm_id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")
    by: str = Field(pattern=ID)
    note: StrictStr | None = Field(default=None, max_length=1000)


class Shelve(Args):
    code: str = Field(pattern=r"^[a-z_]{1,64}$")
    scope: str | None = Field(default=None, pattern=ID)
    for_s: float = Field(gt=0)
    reason: StrictStr = Field(min_length=1, max_length=500)
    by: str = Field(pattern=ID)


class Unshelve(Args):
    code: str = Field(pattern=r"^[a-z_]{1,64}$")
    scope: str | None = Field(default=None, pattern=ID)
    by: str = Field(pattern=ID)


class Maintenance(Args):
    device: str = Field(pattern=ID)
    for_s: float = Field(ge=0)          # 0 = end the maintenance now
    reason: StrictStr | None = Field(default=None, max_length=500)
    by: str = Field(pattern=ID)


class LockerOpen(Args):
    locker: str = Field(pattern=ID)
    compartment: StrictInt = Field(ge=1, le=16)
    by: str = Field(pattern=ID)
    order: str | None = Field(default=None, pattern=ID)


class CustodyOrder(Args):
    order: str = Field(pattern=ID)
    item: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    action: Literal["deposit", "withdraw", "return", "release", "dispose"]
    case_id: str = Field(pattern=ID)
    by: str = Field(pattern=ID)
    expires: StrictStr | None = None
    due: StrictStr | None = None          # withdraw: when the item is to be back
    approved_by: str | None = Field(default=None, pattern=ID)    # v3: release / dispose


class RecordingState(Args):
    room: str = Field(pattern=ID)
    recording: StrictBool
    source: str = Field(pattern=ID)
    by: str | None = Field(default=None, pattern=ID)    # v3: an officer, unless the room's recorder reports


class Identification(Args):
    room: str = Field(pattern=ID)
    case_id: str = Field(pattern=ID)
    by: str = Field(pattern=ID)


class FaceEnroll(Args):
    person: str = Field(pattern=ID)
    image: StrictStr = Field(max_length=8_000_000)


class Snapshot(Args):
    camera: str = Field(pattern=ID)
    room: str | None = Field(default=None, pattern=ID)   # a multi-channel device: the channel watching it


class Resend(Args):
    from_seq: StrictInt = Field(ge=1)
    to_seq: StrictInt = Field(ge=1)


class Reload(Args):
    pass


class Republish(Args):
    """state/republish: every retained state topic again (as after a reconnect)."""
    pass


def _depth(obj: Any, limit: int = MAX_DEPTH) -> int:
    stack = [(obj, 1)]
    deepest = 1
    while stack:
        o, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        if isinstance(o, dict):
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, list):
            stack.extend((v, d + 1) for v in o)
    return deepest


def _describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:3]:
        loc = ".".join(str(x) for x in e["loc"]) or "payload"
        msg = "required" if e["type"] == "missing" else e["msg"]
        if e["type"] == "string_pattern_mismatch":
            # Operators type these ids by hand (casegate ack --by ...): say what an id is.
            msg = f"not a valid id {e.get('input')!r} (letters, digits, '_', '.', '-')"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


@dataclass
class Request:
    command: str
    args: Args | None
    request_id: Any
    response_topic: str | None = None
    correlation: bytes | None = None
    source: str = "mqtt"                 # the journal's source of what it causes (SPEC §2)
    path: str = "mqtt"                   # how it arrived: one of PATHS
    # Who asked, for idempotency (asked_key): the broker-proven MQTT account, the control
    # socket's peer user, the demo's desk; "" = the source.
    client: str = ""
    # Where its answer goes; None = the router's own respond (P/response/<command>).
    reply: Callable[["Request", dict], None] | None = None


# face/enroll carries a base64 photo (FaceEnroll.image), far above the
# ``max_request_bytes`` that suits every other command.
FACE_ENROLL_MAX_BYTES = 8_001_024
_RID_PEEK = re.compile(rb'"request_id"\s*:\s*"([^"\\]{1,128})"')


def _request_id(value: Any) -> str | None:
    """A request_id worth echoing in the response, or None."""
    return value if isinstance(value, str) and re.fullmatch(ID, value) else None


def correlation_key(correlation: bytes | None) -> str | None:
    """The idempotency key of an MQTT 5 request that has Correlation Data and no
    ``request_id`` (SPEC §3 v2): the correlation data itself when it is already
    a valid request_id (mosquitto_rr -D publish correlation-data req-1), else
    ``cd-`` + 40 hex digits of its sha256 (binary data, UUID bytes, long keys)."""
    if not correlation:
        return None
    try:
        text = bytes(correlation).decode("ascii")
    except UnicodeDecodeError:
        text = None
    if text is not None and re.fullmatch(ID, text):
        return text
    return "cd-" + hashlib.sha256(bytes(correlation)).hexdigest()[:40]


def asked_key(client: str, command: str, args: Args) -> str:
    """What a request asked, as the idempotency key of its ``request_id`` (issue 28 item 2):
    who asked, the command and a hash of its validated arguments (request_id left out; the
    model's field order and defaults make it canonical, so a re-send with the keys in another
    order or a field the model ignores is the same request). The stored answer is returned
    only for the same key; the same request_id with another key is ``conflict``."""
    body = json.dumps(args.model_dump(mode="json", by_alias=True, exclude={"request_id"}),
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    h = hashlib.sha256(f"{client}\0{command}\0{body}".encode()).hexdigest()[:32]
    return f"{command}|{h}"


class Conflict:
    """A request_id already answered for another request: refused, never stored."""

    def __init__(self, error: RequestError):
        self.error = error


def parse_request(command: str, payload: bytes, max_bytes: int, correlation: bytes | None = None,
                  path: str = "mqtt") -> tuple[Args | None, Any, RequestError | None]:
    """Pure validation: (args, request_id, error). With MQTT 5 Correlation Data
    and no ``request_id`` in the body, the correlation data is the request_id.
    A command the table does not offer on ``path`` is as unknown as a typo."""
    if command == "face/enroll":
        max_bytes = max(max_bytes, FACE_ENROLL_MAX_BYTES)
    if len(payload) > max_bytes:
        # Not parsed (that is the point of the cap), but a request_id near the
        # start still lets the requester match the refusal to its request.
        m = _RID_PEEK.search(payload, 0, 1024)
        rid = _request_id(m.group(1).decode("ascii", "replace") if m else None) or correlation_key(correlation)
        return None, rid, RequestError("bad_request", f"payload of {len(payload)} bytes exceeds {max_bytes}")
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, None, RequestError("bad_request", "payload is not valid UTF-8 JSON")
    if not isinstance(obj, dict):
        return None, None, RequestError("bad_request", "payload must be a JSON object")
    ckey = correlation_key(correlation)
    if "request_id" not in obj and ckey is not None:
        obj = dict(obj, request_id=ckey)
    rid = _request_id(obj.get("request_id"))
    spec = COMMANDS.get(command)
    if spec is None:
        return None, rid, RequestError("unknown_command", f"unknown command {command!r}")
    if path not in spec.paths:
        return None, rid, RequestError("unknown_command", f"{command} is not offered on the {path} path "
                                                          f"(only {', '.join(sorted(spec.paths))})")
    if _depth(obj) > MAX_DEPTH:
        return None, rid, RequestError("bad_request", "payload nested too deeply")
    try:
        return spec.model.model_validate(obj), rid, None
    except ValidationError as e:
        msg = _describe(e)
        if "request_id" not in obj:
            msg += " (or send MQTT 5 Correlation Data, which then serves as the request_id)"
        return None, rid, RequestError("bad_request", msg)


def refused_data(req: Request, err: RequestError) -> dict:
    """``request.refused`` [command, code, by?] (SPEC §3 v3), plus the request_id, who
    asked and why."""
    data: dict[str, Any] = {"command": req.command, "code": err.code}
    for k in ("by", "person", "room", "order", "approved_by"):      # who, and which matter
        v = getattr(req.args, k, None)
        if isinstance(v, str):
            data[k] = v
    data.update({"request_id": req.request_id, "client": req.client or req.source, "message": err.message[:500]})
    return data


def ok(rid: str, data: dict) -> str:
    return json.dumps({"request_id": rid, "ok": True, "data": data}, ensure_ascii=False,
                      separators=(",", ":"))


def fail(rid: Any, err: RequestError) -> dict:
    return {"request_id": rid, "ok": False, "error": {"code": err.code, "message": err.message}}


def _time_arg(name: str, text: str, tz: str | None, now: float) -> float:
    """An RFC 3339 time from a request; without an offset it is the center's
    local time (SPEC §2). A time more than 5 min ahead of the gateway's clock
    is refused (a typo in the date would silently shorten a legal limit)."""
    from gateway.localtime import parse_given
    try:
        epoch = parse_given(text, tz)
    except ValueError as e:
        raise RequestError("bad_request", f"{name}: {e}")
    if epoch > now + 300:
        raise RequestError("bad_request", f"{name}: {text} is in the future")
    return epoch


def _true_now(core: Core) -> float:
    """The best estimate of true time now (SPEC §7 v3): journal time less the
    wall-clock errors the rules know of; a default 到案 is stamped with it."""
    fn = getattr(core.engine, "true_now", None)
    return fn(core.clock()) if fn is not None else core.clock()


def _check_limit(case_type: str | None, limit_h: float | None, vulnerable: bool) -> None:
    """limit_h must be one of the values the law allows for the case type (DOMAIN v2)."""
    from rules.families.custody_time import ARTICLES, allowed_limits
    if limit_h is None:
        return
    if case_type is None:
        raise RequestError("bad_request", "limit_h needs case_type: criminal | administrative | inquiry")
    allowed = allowed_limits(case_type, vulnerable)
    if limit_h not in allowed:
        who = "a vulnerable person in continued inquiry" if case_type == "inquiry" and vulnerable \
            else f"case_type {case_type}"
        raise RequestError("bad_request", f"limit_h {limit_h:g} is not allowed for {who}: allowed "
                                          f"{' | '.join(f'{x:g}' for x in allowed)} h ({ARTICLES[case_type]})")


def norm_tag(tag: str) -> str:
    if not TAG.fullmatch(tag):
        raise RequestError("bad_request", "tag must be 8 (wristband) or 10 (card) hex digits")
    return tag.upper()


class Handlers:
    """Command implementations, named by :data:`COMMANDS`. Most run in the core's writer
    thread: ``(core, args, source) -> (data, drafts)``, reading the folded state; the
    ``pool`` ones talk to a driver: ``(args, source) -> data``."""

    def __init__(self, daemon):
        self.d = daemon

    # ---- in the writer thread ------------------------------------------------
    def person_register(self, core: Core, a: Register, src: str):
        p = core.state.persons.get(a.person)
        again = p is not None and not p.left
        if again and p.role != a.role:
            raise RequestError("conflict", f"person {a.person} is already registered as {p.role}")
        if a.role == "suspect" and a.case_type is None:
            raise RequestError("bad_request", "a suspect needs case_type: criminal | administrative | inquiry "
                                              "(it decides the legal time limit)")
        tz = core.config.center.timezone
        now = _true_now(core)
        arrived = _time_arg("arrived_at", a.arrived_at, tz, now) if a.arrived_at else None
        _, vulnerable = legal.derive_protection(a.role, a.age, a.minor if "minor" in a.model_fields_set else None,
                                                a.case_type, a.vulnerable)
        _check_limit(a.case_type, a.limit_h, vulnerable)
        derived = legal.check_register(core, a, p if again and a.role == "suspect" else None, now, arrived)
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
            raise RequestError("bad_request", "approver: only an officer (办案部门负责人) approves")
        if a.approved_by:
            legal.approver(core, a.approved_by, "an approval")
        if again:
            # Re-registration in the same stay (not yet left) is an update of the
            # same person: the clock keeps the first arrival (rules.state).
            data["arrived_at"] = format_ts(min(p.arrived_at, arrived) if arrived is not None else p.arrived_at)
        d = Draft("person.registered", data, src)
        out = {"person": a.person, "event_id": d.id, "arrived_at": data["arrived_at"]}
        if again:
            out["reregistered"] = True
        return out, [d]

    def _person(self, core: Core, pid: str, present: bool = True):
        p = core.state.persons.get(pid)
        if p is None or (present and p.left):
            raise RequestError("not_found", f"no registered person {pid}")
        return p

    def _officer(self, core: Core, pid: str, what: str, roles: tuple[str, ...] = ("officer",),
                 present: bool = True):
        """``by`` of an approval must be a registered officer (SPEC v2): in the
        center for approvals (``present``); for alarm handling also one who has
        left (the duty officer acknowledging from the central room)."""
        p = core.state.persons.get(pid)
        if p is None or (present and p.left) or p.role not in roles:
            who = "not registered" if p is None or (present and p.left) else f"a {p.role}"
            raise RequestError("forbidden", f"{what} needs a registered {' or '.join(roles)} as by; "
                                            f"{pid} is {who} (person/register with role {roles[0]})")
        return p

    def person_checkout(self, core: Core, a: Checkout, src: str):
        self._person(core, a.person)
        self._officer(core, a.by, "a checkout")
        d = Draft("person.checkout_approved", {"person": a.person, "by": a.by}, src)
        return {"person": a.person, "event_id": d.id}, [d]

    def person_update(self, core: Core, a: PersonUpdate, src: str):
        p = self._person(core, a.person)
        self._officer(core, a.by, "a person update")
        given = a.model_fields_set
        changes: dict[str, Any] = {}
        for k in ("case_type", "limit_h", "case_id", "vulnerable"):
            if k in given:
                changes[k] = getattr(a, k)
        detained = None
        if "detained_at" in given:
            tz = core.config.center.timezone
            detained = _time_arg("detained_at", a.detained_at, tz, _true_now(core)) if a.detained_at else None
            changes["detained_at"] = format_ts(detained) if detained is not None else None
        if not changes:
            raise RequestError("bad_request", "nothing to update: give case_type, limit_h, case_id, "
                                              "detained_at or vulnerable")
        if p.role == "suspect":
            case_type = changes.get("case_type", p.case_type)
            if case_type is None:
                raise RequestError("bad_request", "a suspect needs case_type: criminal | administrative | inquiry")
            # a limit given must be one the law allows (gateway/legal.py: how it may move)
            _check_limit(case_type, changes.get("limit_h"), changes.get("vulnerable", p.vulnerable))
        legal.check_update(core, p, a, changes, core.clock(), detained)
        data = {"person": a.person, "changes": changes, "by": a.by, "reason": a.reason}
        if a.approved_by:
            legal.approver(core, a.approved_by, "an approval")     # SPEC §3 v3: every approved_by checked
            data["approved_by"] = a.approved_by
        d = Draft("person.updated", data, src)
        return {"person": a.person, "changes": changes, "event_id": d.id}, [d]

    def person_rest(self, core: Core, a: PersonRest, src: str):
        p = self._person(core, a.person)
        self._officer(core, a.by, "recording a rest or meal")
        tz = core.config.center.timezone
        now = _true_now(core)
        start = _time_arg("from", a.from_, tz, now)
        end = _time_arg("to", a.to, tz, now) if a.to else None
        if end is not None and end < start:
            raise RequestError("bad_request", "to is before from")
        legal.check_rest(core, p, start, end, now)
        d = Draft("person.rest", {"person": a.person, "kind": a.kind, "from": format_ts(start),
                                  "to": format_ts(end) if end is not None else None, "by": a.by}, src)
        return {"person": a.person, "event_id": d.id}, [d]

    def wristband_bind(self, core: Core, a: Bind, src: str):
        tag = norm_tag(a.tag)
        self._person(core, a.person)
        owner = core.state.tag_owner.get(tag)
        if owner == a.person:
            return {"tag": tag, "person": a.person, "unchanged": True}, []
        if owner is not None:
            raise RequestError("conflict", f"tag {tag} is already bound to {owner}")
        d = Draft("wristband.bound", {"tag": tag, "person": a.person}, src)
        return {"tag": tag, "person": a.person, "event_id": d.id}, [d]

    def wristband_unbind(self, core: Core, a: Unbind, src: str):
        tag = norm_tag(a.tag)
        owner = core.state.tag_owner.get(tag)
        if owner is None:
            raise RequestError("not_found", f"tag {tag} is not bound")
        d = Draft("wristband.unbound", {"tag": tag, "person": owner}, src)
        return {"tag": tag, "person": owner, "event_id": d.id}, [d]

    def belongings_assign(self, core: Core, a: Belongings, src: str):
        self._person(core, a.person)
        dev = self.d.device_config(a.locker)
        if dev is None or not has(dev, "locker"):
            raise RequestError("not_found", f"no locker {a.locker}")
        if dev.purpose != "belongings":
            raise RequestError("bad_request", f"locker {a.locker} is for {dev.purpose}, not belongings")
        if a.compartment > dev.compartments:
            raise RequestError("bad_request", f"locker {a.locker} has {dev.compartments} compartments")
        d = Draft("belongings.assigned", {"person": a.person, "locker": a.locker,
                                          "compartment": a.compartment}, src)
        return {"event_id": d.id}, [d]

    def alarm_ack(self, core: Core, a: Ack, src: str):
        """ISA-18.2: an alarm is acknowledged once, while active or after it
        cleared (return-to-normal-unacknowledged), by a registered officer."""
        book = core.engine.book
        rec = book.standing.get(a.alarm_id)
        if rec is None:
            who = book.recent_acked.get(a.alarm_id)
            if who is not None:
                raise RequestError("conflict", f"alarm {a.alarm_id} was already acknowledged by {who}")
            raise RequestError("not_found", f"no active or unacknowledged alarm {a.alarm_id}")
        self._officer(core, a.by, "acknowledging an alarm", present=False)
        if rec["ack"] is not None:
            raise RequestError("conflict", f"alarm {a.alarm_id} was already acknowledged by "
                                           f"{rec['ack'].get('by')} at {rec['ack'].get('ts')}")
        data = {k: v for k, v in rec["data"].items() if k not in ("acknowledged", "shelved", "suppressed_by")}
        data.update({"by": a.by, "note": a.note, "active": rec["active"]})
        d = Draft("alarm.acknowledged", data, src)
        return {"alarm_id": a.alarm_id, "active": rec["active"], "event_id": d.id}, [d]

    def _scope_known(self, scope: str) -> bool:
        cfg = self.d.config
        if any(r.id == scope for r in cfg.rooms) or any(dv.id == scope for dv in cfg.devices):
            return True
        return any(door.door == scope for dv in cfg.devices for door in (getattr(dv, "doors", None) or []))

    def alarm_shelve(self, core: Core, a: Shelve, src: str):
        from rules.catalog import CATALOG
        spec = CATALOG.get(a.code)
        if spec is None:
            raise RequestError("bad_request", f"code: unknown alarm code {a.code!r}")
        if spec.legal:
            basis = "; ".join(spec.legal_basis) or "DOMAIN v3"      # station_impostor cites no article
            raise RequestError("forbidden", f"{a.code} is a legal alarm ({basis}) and can never be shelved")
        self._officer(core, a.by, "shelving an alarm", present=False)
        max_h = self.d.config.alarms.max_shelve_h
        if a.for_s > max_h * 3600:
            raise RequestError("bad_request", f"for_s: at most {max_h * 3600:g} s ([alarms] max_shelve_h = {max_h:g})")
        if a.scope is not None and not self._scope_known(a.scope):
            raise RequestError("bad_request", f"scope: no room, device or door {a.scope!r} in the config")
        until = format_ts(core.clock() + a.for_s)
        d = Draft("alarm.shelved", {"code": a.code, "scope": a.scope, "until": until, "reason": a.reason,
                                    "by": a.by}, src)
        return {"code": a.code, "scope": a.scope, "until": until, "event_id": d.id}, [d]

    def alarm_unshelve(self, core: Core, a: Unshelve, src: str):
        book = core.engine.book
        if book.shelf_key(a.code, a.scope) not in book.shelves:
            where = f" for {a.scope}" if a.scope else ""
            raise RequestError("not_found", f"{a.code} is not shelved{where}")
        self._officer(core, a.by, "unshelving an alarm", present=False)
        d = Draft("alarm.unshelved", {"code": a.code, "scope": a.scope, "by": a.by}, src)
        return {"code": a.code, "scope": a.scope, "event_id": d.id}, [d]

    def device_maintenance(self, core: Core, a: Maintenance, src: str):
        if self.d.device_config(a.device) is None:
            raise RequestError("not_found", f"no device {a.device} in the config")
        self._officer(core, a.by, "maintenance", ("officer", "staff"), present=False)
        book = core.engine.book
        if a.for_s == 0:
            if a.device not in book.maintenance:
                raise RequestError("not_found", f"device {a.device} is not in maintenance")
            d = Draft("device.maintenance_ended", {"device": a.device, "by": a.by, "reason": a.reason}, src)
            return {"device": a.device, "ended": True, "event_id": d.id}, [d]
        max_h = self.d.config.alarms.max_maintenance_h
        if a.for_s > max_h * 3600:
            raise RequestError("bad_request", f"for_s: at most {max_h * 3600:g} s ([alarms] max_maintenance_h = {max_h:g})")
        until = format_ts(core.clock() + a.for_s)
        d = Draft("device.maintenance", {"device": a.device, "until": until, "reason": a.reason, "by": a.by}, src)
        return {"device": a.device, "until": until, "event_id": d.id}, [d]

    def custody_order(self, core: Core, a: CustodyOrder, src: str):
        # SPEC §2: a time without an offset is in the center's timezone; the
        # event carries it as RFC 3339 UTC so no consumer has to guess.
        from gateway.localtime import parse_given
        tz = core.state.timezone
        times = {}
        for name in ("expires", "due"):
            text = getattr(a, name)
            if text is None:
                continue
            try:
                times[name] = format_ts(parse_given(text, tz))
            except ValueError:
                raise RequestError("bad_request", f"{name}: not an RFC 3339 time (e.g. 2026-11-28T18:00:00, "
                                                  f"read in {tz}, or with an offset)")
        if "due" in times and a.action != "withdraw":
            raise RequestError("bad_request", "due: only a withdraw order has a return deadline")
        self._officer(core, a.by, "a custody order")
        if a.action in ("release", "dispose") or a.approved_by:
            legal.approver(core, a.approved_by, f"a {a.action} order")
        data = {"order": a.order, "item": a.item.upper(), "action": a.action, "case_id": a.case_id,
                "by": a.by, "expires": times.get("expires")}
        if a.approved_by:
            data["approved_by"] = a.approved_by
        if "due" in times:
            data["due"] = times["due"]
        d = Draft("custody.ordered", data, src)
        return {"order": a.order, "event_id": d.id}, [d]

    def _room(self, core: Core, room: str) -> str:
        for r in core.engine.config.rooms:
            if r.id == room:
                return r.type
        raise RequestError("not_found", f"no room {room} in the config")

    def recording_state(self, core: Core, a: RecordingState, src: str):
        """The recorder system (or an operator) reports a room's recording. A
        "recording" report is journaled when it changes the state, and as a
        heartbeat at most every stale_s/3 (rules.protections: a recorder silent
        for stale_s counts as not recording); other repeats change nothing."""
        self._room(core, a.room)
        recorder = legal.recorder_report(core, a.room, a.source, src)
        if not recorder:
            # v3: by hand, attributable to an officer; never recorder evidence
            if a.by is None:
                raise RequestError("forbidden", f"recording/state for {a.room} from {a.source} ({src}) is not its "
                                                f"configured recorder: an operator's report needs by = an officer")
            self._officer(core, a.by, "a recording report by hand")
        cur = core.state.recording.get(a.room)
        if cur is not None and cur.recording == a.recording:
            stale = core.engine.settings["interrogation_not_recorded"].stale_s
            # the wall clock (the core's), not the engine's: on a quiet night no
            # other event moves the engine clock, and skipped heartbeats would go stale
            if cur.evidence == recorder and (not a.recording or (stale > 0 and core.clock() - cur.seen < stale / 3)):
                return {"room": a.room, "recording": a.recording, "unchanged": True}, []
        data = {"room": a.room, "source": a.source, "recorder": recorder}
        if not recorder:
            data["by"] = a.by
        d = Draft("recording.started" if a.recording else "recording.stopped", data, src)
        return {"room": a.room, "recording": a.recording, "event_id": d.id}, [d]

    def identification_start(self, core: Core, a: Identification, src: str):
        if self._room(core, a.room) != "identification":
            raise RequestError("bad_request", f"{a.room} is not an identification room (type identification): "
                                              f"co-suspects meet only there, for the session (程序规定(刑) 第259条)")
        self._officer(core, a.by, "an identification session")
        if a.case_id in core.state.identifications.get(a.room, {}):
            raise RequestError("conflict", f"an identification session for case {a.case_id} is already "
                                           f"running in {a.room}")
        d = Draft("identification.started", {"room": a.room, "case_id": a.case_id, "by": a.by}, src)
        return {"room": a.room, "case_id": a.case_id, "event_id": d.id}, [d]

    def identification_end(self, core: Core, a: Identification, src: str):
        self._room(core, a.room)
        self._officer(core, a.by, "an identification session")
        if a.case_id not in core.state.identifications.get(a.room, {}):
            raise RequestError("not_found", f"no identification session for case {a.case_id} in {a.room}")
        d = Draft("identification.ended", {"room": a.room, "case_id": a.case_id, "by": a.by}, src)
        return {"room": a.room, "case_id": a.case_id, "event_id": d.id}, [d]

    def ping(self, core: Core, a: Ping, src: str):
        return self.d.ping_data(), []

    def events_resend(self, core: Core, a: Resend, src: str):
        if a.to_seq < a.from_seq:
            raise RequestError("bad_request", "to_seq is before from_seq")
        if a.from_seq > core.journal.last_seq:
            raise RequestError("not_found", f"seq {a.from_seq} not journaled yet (last {core.journal.last_seq})")
        n = self.d.resend(a.from_seq, a.to_seq)
        return {"from_seq": a.from_seq, "to_seq": min(a.to_seq, core.journal.last_seq), "count": n}, []

    def state_republish(self, core: Core, a: Republish, src: str):
        # Only hands the uplink a note: the publishing happens on its side.
        return {"topics": self.d.republish_state()}, []

    def config_reload(self, a: Reload, src: str) -> dict:
        # Not in the writer thread: reloading calls into the core itself.
        problems = self.d.request_reload()
        if problems:
            raise RequestError("bad_request", problems)
        return {"reloaded": True}

    # ---- device commands (pool) -------------------------------------------------
    def locker_open(self, a: LockerOpen, src: str) -> dict:
        # Only an officer may have a compartment opened (chain of custody): checked
        # in the writer thread against the folded state, before the board is told.
        self.d.core.call(lambda core: (self._officer(core, a.by, "opening a locker") and None, [])).result(timeout=30)
        drv = self.d.driver(a.locker, "locker", "locker device")
        return drv.command("locker/open", {"locker": a.locker, "compartment": a.compartment,
                                           "by": a.by, "order": a.order}, timeout=5.0)

    def camera_snapshot(self, a: Snapshot, src: str) -> dict:
        drv = self.d.driver(a.camera, "snapshot", "camera device")
        return drv.command("camera/snapshot", {"room": a.room} if a.room else {}, timeout=10.0)

    def face_enroll(self, a: FaceEnroll, src: str) -> dict:
        try:
            image = base64.b64decode(a.image, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError("bad_request", "image is not valid base64")
        return self.d.enroll_face(a.person, image, src)


# ---- the command table ----------------------------------------------------------------
# How a request arrives. Every path goes through RequestRouter.dispatch, so a command's
# validation, idempotency, journal events and answer are the same on each.
PATHS = ("mqtt",       # P/request/<command> from central systems (the uplink)
         "control",    # the daemon's control socket: casegate ack / person add / band bind / face enroll ...
         "demo")       # casegate demo's desk in-process, when it runs without a broker
# Rate limits keep a central client from making the gateway publish millions of messages;
# the control socket is 0660 root:casegate (an operator at the console) and the demo is
# the gateway's own process, so neither is limited (a commissioning script may enrol a
# whole shift's photos at once).
RATE_LIMITED_PATHS = frozenset({"mqtt"})


@dataclass(frozen=True)
class Command:
    """One request command, defined once for every path (SPEC §3)."""
    name: str
    model: type[Args]
    handler: str                  # the Handlers method that carries it out
    # Device commands (an unlock waiting for the board, a photo, a reload) run on a small
    # pool so they never hold up the state changes, which run in order in the writer thread
    # (a bind right behind a register must see the registration).
    pool: bool = False
    # "heavy": one token of [mqtt] heavy_requests_per_min; "resend": one token of
    # resend_events_per_min per event re-published; None: not limited.
    limit: Literal["heavy", "resend"] | None = None
    # The answer is kept under its request_id: a re-sent request gets it again and acts once.
    # Commands that change nothing (or only re-publish) act again instead.
    stored: bool = True
    paths: frozenset[str] = frozenset(PATHS)      # who may call it
    example: dict[str, Any] = field(default_factory=dict)   # valid args (tests, bench/fuzz_requests.py)


_PNG_1PX = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGBgAAAABQABpfZFQAAAAABJRU5ErkJggg==")

COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("ping", Ping, "ping", stored=False),
    Command("person/register", Register, "person_register",
            example={"person": "s1", "role": "suspect", "name": "张三", "gender": "male", "case_id": "c-1",
                     "case_type": "criminal", "limit_h": 12.0}),
    Command("person/checkout", Checkout, "person_checkout", example={"person": "s1", "by": "o1"}),
    Command("person/update", PersonUpdate, "person_update",
            example={"person": "s1", "by": "o1", "reason": "case re-classified", "case_type": "administrative"}),
    Command("person/rest", PersonRest, "person_rest",
            example={"person": "s1", "kind": "meal", "from": "2026-11-28T12:00:00+08:00", "by": "o1"}),
    Command("wristband/bind", Bind, "wristband_bind", example={"tag": "E3AF2232", "person": "s1"}),
    Command("wristband/unbind", Unbind, "wristband_unbind", example={"tag": "E3AF2232"}),
    Command("belongings/assign", Belongings, "belongings_assign",
            example={"person": "s1", "locker": "locker-b1", "compartment": 3}),
    Command("alarm/ack", Ack, "alarm_ack",
            example={"alarm_id": "lone_interrogation:int-1:1", "by": "o1", "note": "seen"}),
    Command("alarm/shelve", Shelve, "alarm_shelve",
            example={"code": "tag_low_battery", "scope": "waiting-1", "for_s": 3600.0,
                     "reason": "new batteries ordered", "by": "o1"}),
    Command("alarm/unshelve", Unshelve, "alarm_unshelve",
            example={"code": "tag_low_battery", "scope": "waiting-1", "by": "o1"}),
    Command("device/maintenance", Maintenance, "device_maintenance",
            example={"device": "doors-a", "for_s": 1800.0, "reason": "contact replaced", "by": "o1"}),
    Command("locker/open", LockerOpen, "locker_open", pool=True,
            example={"locker": "locker-ev1", "compartment": 5, "by": "o1", "order": "ord-1"}),
    Command("custody/order", CustodyOrder, "custody_order",
            example={"order": "ord-1", "item": "E2000017221101441890ABCD", "action": "withdraw",
                     "case_id": "c-1", "by": "o1", "due": "2026-11-28T18:00:00+08:00"}),
    Command("face/enroll", FaceEnroll, "face_enroll", pool=True, limit="heavy",
            example={"person": "s1", "image": _PNG_1PX}),
    Command("camera/snapshot", Snapshot, "camera_snapshot", pool=True, limit="heavy",
            example={"camera": "cam-int1"}),
    Command("events/resend", Resend, "events_resend", limit="resend", stored=False,
            example={"from_seq": 1, "to_seq": 100}),
    # Not in the writer thread: reloading calls into the core itself.
    Command("config/reload", Reload, "config_reload", pool=True, limit="heavy"),
    Command("state/republish", Republish, "state_republish", limit="heavy", stored=False),
    Command("recording/state", RecordingState, "recording_state",
            example={"room": "interrogation-1", "recording": True, "source": "recorder-1"}),
    Command("identification/start", Identification, "identification_start",
            example={"room": "identification-1", "case_id": "c-1", "by": "o1"}),
    Command("identification/end", Identification, "identification_end",
            example={"room": "identification-1", "case_id": "c-1", "by": "o1"}),
)}


class TokenBuckets:
    """Token buckets by key (``per_min`` tokens a minute, as many in store), plus one
    shared bucket of twice that for all keys together: a client that names itself
    anew for every request still cannot exceed the total. Keys are bounded."""

    MAX_KEYS = 1024
    exhausted = ""        # after a refused take(): "own" (the key's bucket) or "total" (the shared one)

    def __init__(self, per_min: float, clock: Callable[[], float] | None = None):
        import time as _time
        self.per_min = float(per_min)
        self.clock = clock or _time.monotonic
        self.buckets: dict[str, list[float]] = {}      # key -> [tokens, last refill]
        self.total = [2 * self.per_min, self.clock()]

    def _refill(self, b: list[float], cap: float, now: float) -> None:
        b[0] = min(cap, b[0] + (now - b[1]) * cap / 60.0)
        b[1] = now

    def left(self, key: str) -> float:
        """Tokens left in ``key``'s bucket (as of its last refill), rounded down."""
        b = self.buckets.get(key)
        return float(int(b[0])) if b is not None else self.per_min

    def take(self, key: str, cost: float) -> float:
        """Take ``cost`` tokens for ``key``: 0.0 if granted, else the seconds to wait."""
        now = self.clock()
        cost = min(float(cost), self.per_min)           # one maximal request always fits eventually
        b = self.buckets.get(key)
        if b is None:
            if len(self.buckets) >= self.MAX_KEYS:     # forget the fullest (idlest) bucket
                del self.buckets[max(self.buckets, key=lambda k: self.buckets[k][0])]
            b = self.buckets[key] = [self.per_min, now]
        self._refill(b, self.per_min, now)
        self._refill(self.total, 2 * self.per_min, now)
        own = (cost - b[0]) * 60.0 / self.per_min
        total = (cost - self.total[0]) * 60.0 / (2 * self.per_min)
        wait = max(own, total)
        if wait > 0:
            self.exhausted = "own" if own > 0 else "total"
            return wait
        b[0] -= cost
        self.total[0] -= cost
        return 0.0


RESEND_MAX = 100_000       # SPEC §3: at most 100,000 events per events/resend


class RequestRouter:
    """The one dispatch of requests (:meth:`dispatch`): MQTT messages (:meth:`on_message`),
    the control socket and the demo's desk (:meth:`call`) all go through it, so each
    command of :data:`COMMANDS` validates, rate-limits, acts and answers one way."""

    def __init__(self, daemon, core: Core, respond: Callable[[Request, dict], None],
                 max_bytes: int):
        self.d = daemon
        self.core = core
        self.respond = respond          # MQTT answers: P/response/<command> (+ MQTT 5 response topic)
        self.max_bytes = max_bytes
        self.handlers = Handlers(daemon)
        self._q: "queue.Queue[tuple[Request, Args] | None]" = queue.Queue(maxsize=10_000)
        # per device: a slow camera never holds up a locker/open (gateway/device_pools.py)
        self._pool = KeyedPools("device-cmd", workers=1, max_queued=8)
        self._inflight: dict[str, str] = {}      # request_id -> asked key, of device commands running
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._run, name="requests", daemon=True)
        self._worker.start()
        self.counts = {"ok": 0, "failed": 0, "duplicate": 0}
        mq = getattr(getattr(daemon, "config", None), "mqtt", None)
        self.resend_limit = TokenBuckets(getattr(mq, "resend_events_per_min", 200_000))
        self.heavy_limit = TokenBuckets(getattr(mq, "heavy_requests_per_min", 20))
        self.counts["rate_limited"] = 0

    def stop(self) -> None:
        self._q.put(None)
        self._worker.join(3)
        self._pool.shutdown()

    def dispatch(self, command: str, payload: bytes, *, path: str, source: str,
                 reply: Callable[[Request, dict], None] | None = None,
                 response_topic: str | None = None, correlation: bytes | None = None,
                 client: str | None = None) -> None:
        """Validate, rate-limit (RATE_LIMITED_PATHS) and queue one request; ``reply``
        (default: :attr:`respond`) gets its answer once. Never blocks: paho's network
        thread calls this. ``client``: who asked, for idempotency (default: ``source``)."""
        args, rid, err = parse_request(command, payload, self.max_bytes, correlation, path)
        req = Request(command if command in COMMANDS else command[:100], args, rid, response_topic,
                      correlation, source=source, path=path, reply=reply, client=client or source)
        if err is None and path in RATE_LIMITED_PATHS:
            err = self._rate_limit(req)
        if err is not None:
            self.counts["failed"] += 1
            log.info("request %r rejected: %s %s", req.command, err.code, err.message)
            self._reply(req, fail(rid, err))
            return
        self.submit(req)

    def call(self, command: str, args: dict, *, path: str, source: str, timeout: float,
             client: str | None = None) -> dict:
        """dispatch() and wait for the answer: for callers that answer their own caller
        (the control socket, the demo's desk) rather than a response topic."""
        answer: Future = Future()
        payload = json.dumps(args, ensure_ascii=False).encode()
        self.dispatch(command, payload, path=path, source=source, client=client,
                      reply=lambda req, body: answer.set_result(body))
        try:
            return answer.result(timeout=timeout)
        except TimeoutError:
            return fail(_request_id(args.get("request_id")),
                        RequestError("busy", f"no answer within {timeout:g} s"))

    def on_message(self, prefix: str, msg) -> None:
        """An MQTT message on P/request/<command> or P/client/<account>/request/<command>
        (paho's network thread).

        SPEC §2: source is mqtt:<client>. MQTT does not tell a subscriber who published, so
        the identity comes from the topic, which the broker's ACL binds to the account
        (docs/security.md §3a: an account may publish only under client/<its name>/) —
        never from what the client says about itself (an MQTT 5 user property is ignored).
        The SPEC form P/request/<command> carries no identity: its source is
        ``mqtt:central``, and the ACL grants it to the central platform's account only."""
        rest = msg.topic[len(prefix) + 1:]
        client = "central"
        if rest.startswith("client/"):
            name, _, rest = rest[len("client/"):].partition("/")
            if not re.fullmatch(CLIENT_ID, name) or not rest.startswith("request/"):
                log.info("request on %r ignored: not client/<account>/request/<command>", msg.topic[:200])
                return
            client = name
        if not rest.startswith("request/"):
            return
        command = rest[len("request/"):]
        props = getattr(msg, "properties", None)
        self.dispatch(command, msg.payload, path="mqtt", source=f"mqtt:{client}",
                      response_topic=getattr(props, "ResponseTopic", None) if props else None,
                      correlation=getattr(props, "CorrelationData", None) if props else None)

    def _reply(self, req: Request, payload: dict) -> None:
        (req.reply or self.respond)(req, payload)

    def _rate_limit(self, req: Request) -> RequestError | None:
        """``busy`` for a client over its share of re-published events or heavy requests,
        so that no central client can make the gateway publish millions of messages."""
        # A broker-proven account (P/client/<account>/...) is one budget whatever its response
        # topics; the anonymous SPEC form is told apart by its response topic as before.
        key = req.source if req.source != "mqtt:central" else f"{req.source}|{req.response_topic or ''}"
        limit = COMMANDS[req.command].limit
        if limit == "resend" and isinstance(req.args, Resend):
            a = req.args
            last = getattr(getattr(self.core, "journal", None), "last_seq", None)
            hi = min(a.to_seq, a.from_seq + RESEND_MAX - 1)
            if isinstance(last, int):
                hi = min(hi, last)
            cost, limiter, what = max(1, hi - a.from_seq + 1), self.resend_limit, "events re-published"
        elif limit == "heavy":
            cost, limiter, what = 1, self.heavy_limit, "heavy requests"
        else:
            return None
        wait = limiter.take(key, cost)
        if wait <= 0:
            return None
        self.counts["rate_limited"] += 1
        retry = f"; retry in {max(1, round(wait + 0.5))} s" + (" (or ask for a smaller range)" if cost > 1 else "")
        if limiter.exhausted == "total":
            # Whose budget is spent matters: a client refused because others used up the
            # shared total must not read it as its own excess.
            return RequestError("busy", f"{req.command} from {req.source}: all clients together are over their "
                                        f"shared limit of {2 * limiter.per_min:g} {what} per minute (not "
                                        f"{req.source}'s own limit of {limiter.per_min:g}; "
                                        f"{limiter.left(key):g} of it left){retry}")
        return RequestError("busy", f"{req.command} from {req.source}: over {req.source}'s own limit of "
                                    f"{limiter.per_min:g} {what} per minute{retry}")

    def submit(self, req: Request) -> None:
        try:
            self._q.put_nowait((req, req.args))
        except queue.Full:
            self._reply(req, fail(req.request_id, RequestError("busy", "too many pending requests")))

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            req, args = item
            try:
                self._handle(req, args)
            except Exception:
                log.exception("request %s failed", req.command)

    def _asked(self, req: Request, args: Args) -> str:
        return asked_key(req.client or req.source, req.command, args)

    @staticmethod
    def _conflict(core: Core, rid: str, asked: str) -> RequestError | None:
        """``conflict`` if ``rid`` was answered for another request (another client,
        command or payload). Rows of an earlier release know only their command."""
        stored = core.requests_asked.get(rid)
        if stored is None:
            return None
        cmd, key = stored
        if key == asked or (key is None and asked.startswith(cmd + "|")):
            return None
        return RequestError("conflict", f"request_id {rid} was already used for another request (another "
                                        f"client, command or payload) and is answered only to that one; "
                                        f"send this request with a new request_id")

    def _refuse(self, req: Request, err: RequestError) -> None:
        """Answer ``conflict`` and journal it (request.refused, SPEC §3 v3): a request
        that reused someone else's request_id is on the record, and nothing else changes."""
        self.counts["failed"] += 1
        self.counts["conflict"] = self.counts.get("conflict", 0) + 1
        log.warning("request %s %s from %s refused: %s", req.command, req.request_id, req.client or req.source,
                    err.message)
        data = refused_data(req, err)
        try:    # answered after COMMIT, like every request that journals something
            self.core.submit(Draft("request.refused", data, req.source), timeout=None).result(timeout=30)
        except Exception as e:
            log.error("could not journal request.refused: %r", e)
        self._reply(req, fail(req.request_id, err))

    def _handle(self, req: Request, args: Args) -> None:
        rid = args.request_id
        asked = self._asked(req, args)
        text = self.core.requests_done.get(rid)
        if text is not None:
            err = self._conflict(self.core, rid, asked)
            if err is not None:
                self._refuse(req, err)
                return
            self.counts["duplicate"] += 1
            self._reply(req, json.loads(text))
            return
        src = req.source
        spec = COMMANDS[req.command]
        if spec.pool:
            with self._lock:
                other = self._inflight.get(rid)
                if other is None:
                    self._inflight[rid] = asked
            if other == asked:
                return  # the first copy will answer
            if other is not None:
                self._refuse(req, RequestError("conflict", f"request_id {rid} is in use by another request "
                                                           f"being carried out; send this one with a new "
                                                           f"request_id"))
                return
            key = getattr(args, "locker", None) or getattr(args, "camera", None) or req.command
            if not self._pool.submit(str(key), self._device, req, args):
                with self._lock:
                    self._inflight.pop(rid, None)
                self.counts["failed"] += 1
                self._reply(req, fail(rid, RequestError("busy", f"{key} has too many commands waiting; "
                                                               "retry when they are done")))
            return
        fn = getattr(self.handlers, spec.handler)
        self.answer(req, lambda core: fn(core, args, src), store=spec.stored, asked=asked)

    def answer(self, req: Request, fn, store: bool = True, asked: str | None = None) -> dict:
        """Run fn(core) in the writer thread; respond after COMMIT."""
        rid = req.request_id
        if asked is None and req.args is not None:
            asked = self._asked(req, req.args)

        def call(core: Core):
            # Checked again inside the writer: two copies racing in the queue act once,
            # and a copy of another request with the same id is refused there too.
            if store and rid in core.requests_done:
                err = self._conflict(core, rid, asked) if asked is not None else None
                if err is not None:
                    return Conflict(err), [Draft("request.refused", refused_data(req, err), req.source)]
                return core.requests_done[rid], []
            try:
                value, drafts = fn(core)
            except RequestError as e:
                # SPEC §3 v3: a refused legal request is journaled (request.refused); the
                # error as value is not stored under the request_id (core stores only str)
                if not legal.refusal_journaled(req.command, req.args, e):
                    raise
                return e, [Draft("request.refused", refused_data(req, e), req.source)]
            return ok(rid, value), drafts

        fut = self.core.call(call, request=(rid, req.command, asked) if store else None)
        try:
            res: CommitResult = fut.result(timeout=30)
            if isinstance(res.value, Conflict):
                raise res.value.error
            if isinstance(res.value, RequestError):
                raise res.value
            payload = json.loads(res.value)
            self.counts["ok"] += 1
        except RequestError as e:
            payload = fail(rid, e)
            self.counts["failed"] += 1
        except TimeoutError:
            payload = fail(rid, RequestError("busy", "journal did not commit within 30 s"))
            self.counts["failed"] += 1
        self._reply(req, payload)
        return payload

    def _device(self, req: Request, args: Args) -> None:
        rid = args.request_id
        try:
            spec = COMMANDS[req.command]
            fn = getattr(self.handlers, spec.handler)
            try:
                data = fn(args, req.source)
            except RequestError as e:
                payload = fail(rid, e)
            except Exception as e:
                code = getattr(e, "code", None)
                if code:
                    payload = fail(rid, RequestError(code, getattr(e, "message", str(e))))
                else:
                    log.exception("%s failed", req.command)
                    payload = fail(rid, RequestError("device_refused", str(e)))
            else:
                payload = json.loads(ok(rid, data))
            if payload["ok"] and spec.stored:
                # Remember the answer durably so a re-sent unlock does not unlock twice.
                text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
                asked = self._asked(req, args)
                self.core.call(lambda core: (text, []), request=(rid, req.command, asked)).result(timeout=30)
            self.counts["ok" if payload["ok"] else "failed"] += 1
            self._reply(req, payload)
        finally:
            with self._lock:
                self._inflight.pop(rid, None)
