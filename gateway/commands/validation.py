"""Pure validation of a request before anything changes: bad JSON, a non-object, an unknown
command (or one not offered on the path it came by), too deep, a missing or wrong-typed field
each get a SPEC §3 error code; and the idempotency keys a request is known by."""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from pydantic import ValidationError

from gateway.commands.table import COMMANDS, ID, Args
from gateway.core import RequestError

MAX_DEPTH = 8
_RID_PEEK = re.compile(rb'"request_id"\s*:\s*"([^"\\]{1,128})"')


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


def request_id_of(value: Any) -> str | None:
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


def parse_request(command: str, payload: bytes, max_bytes: int, correlation: bytes | None = None,
                  path: str = "mqtt") -> tuple[Args | None, Any, RequestError | None]:
    """Pure validation: (args, request_id, error). With MQTT 5 Correlation Data
    and no ``request_id`` in the body, the correlation data is the request_id.
    A command the table does not offer on ``path`` is as unknown as a typo."""
    spec = COMMANDS.get(command)
    if spec is not None and spec.max_bytes:
        max_bytes = max(max_bytes, spec.max_bytes)
    if len(payload) > max_bytes:
        # Not parsed (that is the point of the cap), but a request_id near the
        # start still lets the requester match the refusal to its request.
        m = _RID_PEEK.search(payload, 0, 1024)
        rid = request_id_of(m.group(1).decode("ascii", "replace") if m else None) or correlation_key(correlation)
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
    rid = request_id_of(obj.get("request_id"))
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
