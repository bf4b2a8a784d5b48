"""The MQTT contract as data: an AsyncAPI 3.0 document generated from the
code's own models (SPEC §2-§3), for code generators and validators. Prose in
SPEC.md stays the reference for people.

    python -m gateway.contract > docs/asyncapi.yaml

Sources: the envelope and event data models (rules/model/event_types.py),
the request models (gateway/commands/ COMMANDS), and the state and response
models below. tests/central/test_contract.py fails when docs/asyncapi.yaml is
stale, and validates real published messages against it.
"""
from __future__ import annotations

import sys
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from gateway import __version__
from rules.model import EVENT_DATA, Alarm

REF = "#/components/schemas/{model}"
ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"


class Envelope(BaseModel):
    """SPEC §2: every event, on P/events/<domain>/<action> and P/alarms/<code>."""
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, description="globally unique (UUIDv7), identical on every re-send")
    seq: int = Field(ge=1, description="the journal's sequence: +1 per event, never reused")
    ts: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$",
                    description="RFC 3339 UTC with milliseconds")
    center: str = Field(pattern=r"^[a-z0-9-]+$")
    type: str = Field(pattern=r"^[a-z0-9_]+\.[a-z0-9_]+$")
    source: str = Field(description="device id, gateway, rules, or mqtt:<client>")
    data: dict[str, Any]
    prev: str = Field(pattern=r"^[0-9a-f]{64}$", description="hash of seq-1; 64 zeros for seq 1")
    hash: str = Field(pattern=r"^[0-9a-f]{64}$",
                      description="sha256(utf8(prev + canonical JSON of the envelope without prev and hash))")


class StateGateway(BaseModel):
    model_config = ConfigDict(extra="allow")
    state: Literal["online", "offline", "error"]
    version: Optional[str] = None
    started: Optional[str] = None
    error: Optional[str] = None
    # v3 (SPEC §7): the system clock's sync state (null = cannot tell)
    clock_synchronised: Optional[bool] = None


class StateDevice(BaseModel):
    model_config = ConfigDict(extra="allow")
    state: str = Field(description="online | offline | error (device.<action> of its last event)")
    last_seen: Optional[str] = None
    error: Optional[str] = None


class Occupant(BaseModel):
    model_config = ConfigDict(extra="allow")
    person: str
    role: Optional[str] = None
    since: str


class StateOccupancy(BaseModel):
    model_config = ConfigDict(extra="allow")
    ts: str
    rooms: dict[str, list[Occupant]]


class AlarmState(Alarm):
    active: Optional[bool] = None
    acknowledged: Optional[bool] = None
    shelved: Optional[bool] = None


class StateAlarms(BaseModel):
    model_config = ConfigDict(extra="allow")
    ts: str
    active: list[AlarmState]


class StateIdentity(BaseModel):
    """P/state/identity (v3, SPEC §8): the center's public key for verifying chain.signed."""
    model_config = ConfigDict(extra="allow")
    center: str
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    public_key: str = Field(description="base64 of the raw 32-byte Ed25519 public key")


ErrorCode = Literal["bad_request", "unknown_command", "not_found", "conflict", "forbidden", "busy",
                    "device_timeout", "device_refused", "no_face", "several_faces"]


class ResponseError(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: ErrorCode
    message: str


class Response(BaseModel):
    """P/response/<command> and a request's MQTT 5 Response Topic (Correlation Data echoed)."""
    model_config = ConfigDict(extra="forbid")
    request_id: Optional[str] = Field(description="the request's request_id (or the key its Correlation "
                                                  "Data gave it); null when the request was unreadable")
    ok: bool
    data: Optional[dict[str, Any]] = None
    error: Optional[ResponseError] = None


class _ContractKeys(GenerateJsonSchema):
    """Schema keys as the contract has always spelt them: a published contract's keys do not
    follow a move. Pydantic qualifies a name two modules share (Identification, PersonRest:
    an event's data and a request) by module path; the event data models moved from
    gateway/event_schemas.py to rules/model/event_types.py, and the request models from
    gateway/requests.py to the modules of gateway/commands/ (docs/asyncapi.yaml byte-stable)."""

    def get_defs_ref(self, core_mode_ref):
        ref, mode = core_mode_ref
        if ref.startswith("gateway.commands."):
            ref = "gateway.requests." + ref.rsplit(".", 1)[1]
        return super().get_defs_ref((ref, mode))

    def normalize_name(self, name: str) -> str:
        return super().normalize_name(name).replace("rules__model__event_types__", "gateway__event_schemas__")


def _type_key(t: str) -> str:
    return "Event." + t


def _schemas() -> dict[str, Any]:
    from gateway.commands import COMMANDS
    models: list[tuple[type[BaseModel], str]] = [(Envelope, "validation"), (StateGateway, "validation"),
                                                 (StateDevice, "validation"), (StateOccupancy, "validation"),
                                                 (StateAlarms, "validation"), (StateIdentity, "validation"),
                                                 (Response, "validation")]
    models += [(m, "validation") for m in dict.fromkeys(EVENT_DATA.values())]
    models += [(c.model, "validation") for c in COMMANDS.values()]
    keys, top = models_json_schema(models, ref_template=REF, by_alias=True, schema_generator=_ContractKeys)
    schemas: dict[str, Any] = dict(sorted(top["$defs"].items()))

    def key_of(model) -> str:      # pydantic's key (it qualifies a name two modules share)
        return keys[(model, "validation")]["$ref"].rsplit("/", 1)[-1]
    for name, m in list(schemas.items()):
        m.pop("title", None)
    # Requests: request_id may be left out when MQTT 5 Correlation Data is present (SPEC §3 v2).
    for model in (c.model for c in COMMANDS.values()):
        s = schemas[key_of(model)]
        s["required"] = [r for r in s.get("required", []) if r != "request_id"]
        if not s["required"]:
            del s["required"]
        s["properties"]["request_id"]["description"] = (
            "idempotency key; optional when the MQTT 5 Correlation Data is set (it is then the key)")
    # One schema per event type: the envelope with its type fixed and its data typed.
    for t, model in EVENT_DATA.items():
        schemas[_type_key(t)] = {"allOf": [{"$ref": REF.format(model="Envelope")}, {
            "type": "object", "properties": {"type": {"const": t}, "data": {"$ref": REF.format(model=key_of(model))}}}]}
    return schemas


def _msg(name: str, schema_ref: str, summary: str, title: str | None = None) -> dict:
    return {"name": name, "title": title or name, "summary": summary, "contentType": "application/json",
            "payload": {"$ref": REF.format(model=schema_ref)}}


def build() -> dict[str, Any]:
    from gateway.commands import COMMANDS
    schemas = _schemas()
    center = {"description": "[center] id, [a-z0-9-]+"}
    messages: dict[str, Any] = {}
    event_msgs, alarm_msgs = {}, {}
    for t in EVENT_DATA:
        key = t.replace(".", "_")
        messages[key] = _msg(t, _type_key(t), f"a {t} event (SPEC §2)")
        (alarm_msgs if t.startswith("alarm.") else event_msgs)[key] = {"$ref": f"#/components/messages/{key}"}
    for name, model in (("StateGateway", StateGateway), ("StateDevice", StateDevice),
                        ("StateOccupancy", StateOccupancy), ("StateAlarms", StateAlarms),
                        ("StateIdentity", StateIdentity), ("Response", Response)):
        messages[name] = _msg(name, name, (model.__doc__ or name).strip().splitlines()[0])
    channels: dict[str, Any] = {
        "events": {"address": "casegate/{center}/events/{domain}/{action}",
                   "description": "every non-alarm event, QoS 1, in seq order; duplicates carry the same id",
                   "parameters": {"center": center, "domain": {"description": "type before the dot"},
                                  "action": {"description": "type after the dot"}},
                   "messages": event_msgs},
        "alarms": {"address": "casegate/{center}/alarms/{code}", "description": "alarm.* events, QoS 1",
                   "parameters": {"center": center, "code": {"description": "alarm code (DOMAIN.md)"}},
                   "messages": alarm_msgs},
        "stateGateway": {"address": "casegate/{center}/state/gateway", "parameters": {"center": center},
                         "description": "retained; Last Will {\"state\":\"offline\"}",
                         "messages": {"StateGateway": {"$ref": "#/components/messages/StateGateway"}}},
        "stateDevice": {"address": "casegate/{center}/state/devices/{device}", "description": "retained",
                        "parameters": {"center": center, "device": {"description": "device id"}},
                        "messages": {"StateDevice": {"$ref": "#/components/messages/StateDevice"}}},
        "stateOccupancy": {"address": "casegate/{center}/state/occupancy", "parameters": {"center": center},
                           "description": "retained",
                           "messages": {"StateOccupancy": {"$ref": "#/components/messages/StateOccupancy"}}},
        "stateAlarms": {"address": "casegate/{center}/state/alarms", "parameters": {"center": center},
                        "description": "retained; active and cleared-unacknowledged alarms",
                        "messages": {"StateAlarms": {"$ref": "#/components/messages/StateAlarms"}}},
        "stateIdentity": {"address": "casegate/{center}/state/identity", "parameters": {"center": center},
                          "description": "retained; the key that signs chain.signed (SPEC §8)",
                          "messages": {"StateIdentity": {"$ref": "#/components/messages/StateIdentity"}}},
    }
    operations: dict[str, Any] = {
        "publishEvents": {"action": "send", "channel": {"$ref": "#/channels/events"}},
        "publishAlarms": {"action": "send", "channel": {"$ref": "#/channels/alarms"}},
        "publishStateGateway": {"action": "send", "channel": {"$ref": "#/channels/stateGateway"}},
        "publishStateDevice": {"action": "send", "channel": {"$ref": "#/channels/stateDevice"}},
        "publishStateOccupancy": {"action": "send", "channel": {"$ref": "#/channels/stateOccupancy"}},
        "publishStateAlarms": {"action": "send", "channel": {"$ref": "#/channels/stateAlarms"}},
        "publishStateIdentity": {"action": "send", "channel": {"$ref": "#/channels/stateIdentity"}},
    }
    for command, model in ((name, c.model) for name, c in COMMANDS.items()):
        cid = "".join(w.capitalize() for w in command.replace("/", "_").split("_"))
        rkey, mkey = f"request{cid}", f"Request.{command}"
        messages[mkey.replace("/", "_")] = _msg(command, model.__name__, f"{command} request", mkey)
        channels[rkey] = {"address": f"casegate/{{center}}/request/{command}", "parameters": {"center": center},
                          "description": (f"journaled as source mqtt:central; the same request under "
                                          f"casegate/{{center}}/client/{{account}}/request/{command} is journaled "
                                          f"as mqtt:<account>, the broker ACL letting each account publish only "
                                          f"under its own name (docs/security.md §3a)"),
                          "messages": {"request": {"$ref": f"#/components/messages/{mkey.replace('/', '_')}"}}}
        channels[f"response{cid}"] = {"address": f"casegate/{{center}}/response/{command}",
                                      "parameters": {"center": center},
                                      "messages": {"response": {"$ref": "#/components/messages/Response"}}}
        operations[f"handle{cid}"] = {
            "action": "receive", "channel": {"$ref": f"#/channels/{rkey}"},
            "bindings": {"mqtt": {"qos": 1}},
            "reply": {"channel": {"$ref": f"#/channels/response{cid}"},
                      "messages": [{"$ref": f"#/channels/response{cid}/messages/response"}]}}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "casegate gateway MQTT API", "version": __version__,
                 "description": ("Generated by `python -m gateway.contract` from the code's models; do not edit. "
                                 "The topic prefix is `casegate` by default ([mqtt] topic_prefix). QoS 1 everywhere; "
                                 "state topics are retained. A request's MQTT 5 Response Topic and Correlation Data "
                                 "are honoured: the response goes there too with the Correlation Data echoed. "
                                 "SPEC.md §2-§3 is the reference for people.")},
        "defaultContentType": "application/json",
        "servers": {"central": {"host": "broker.example:8883", "protocol": "secure-mqtt", "protocolVersion": "5",
                                "description": "the central broker (or a center broker bridged to it)"}},
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def schema_name_for(topic: str, payload: Any, prefix: str = "casegate") -> str | None:
    """The components.schemas key a message on ``topic`` must match (tests, validators)."""
    parts = topic.split("/")
    n = len(prefix.split("/"))
    if parts[:n] != prefix.split("/") or len(parts) < n + 2:
        return None
    kind, rest = parts[n + 1], parts[n + 2:]
    if kind == "client" and len(rest) >= 3 and rest[1] == "request":    # client/<account>/request/<command>
        kind, rest = "request", rest[2:]
    if kind in ("events", "alarms"):
        t = payload.get("type") if isinstance(payload, dict) else None
        return _type_key(t) if t in EVENT_DATA else "Envelope"
    if kind == "state":
        return {"gateway": "StateGateway", "occupancy": "StateOccupancy", "alarms": "StateAlarms",
                "identity": "StateIdentity"}.get(
            rest[0] if rest else "", "StateDevice" if rest and rest[0] == "devices" else None)
    if kind == "response":
        return "Response"
    if kind == "request":
        from gateway.commands import COMMANDS
        m = COMMANDS.get("/".join(rest))
        return m.model.__name__ if m else None
    return None


def dump() -> str:
    return yaml.safe_dump(build(), sort_keys=False, allow_unicode=True, width=110)


if __name__ == "__main__":
    sys.stdout.write(dump())
