"""What ``casegate ingest`` checks before a message goes near a database
transaction (issue 29): one hostile or buggy center must not be able to make a
batch fail. Every check here is pure; a failure is a reason (text) that goes to
table ``rejected`` with the raw payload.

The limits are the envelope of SPEC §2 and what the databases can store:
PostgreSQL text and jsonb cannot hold U+0000 ("\\u0000 cannot be converted to
text"), neither database takes an integer above 2**63-1 in a BIGINT, and no
UTF-8 encoder takes a lone surrogate (``"\\ud800"`` is valid JSON).
"""
from __future__ import annotations

import base64
import json
import re

from rules.model import parse_ts

SEQ_MAX = 2 ** 63 - 1
CENTER_RE = re.compile(r"[a-z0-9-]{1,64}\Z")                       # issue 30 item 7
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z")          # UUIDv7 / ULID and friends
ALARM_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}\Z")            # rules/model/event_types.py
HEX64_RE = re.compile(r"[0-9a-f]{64}\Z")
TYPE_RE = re.compile(r"[a-z][a-z0-9_]{0,31}(\.[a-z][a-z0-9_]{0,31}){1,3}\Z")
TS_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)\Z")
SOURCE_MAX = 4096
# Columns of table ``alarms`` that ingest fills from an alarm event's data.
ALARM_TEXT_FIELDS = ("alarm_id", "code", "severity", "room", "since")

REQUIRED = {"id": str, "seq": int, "ts": str, "center": str, "type": str, "source": str, "data": dict,
            "prev": str, "hash": str}

REJECT_KEEP_BYTES = 1 << 20      # a rejected payload is kept up to 1 MiB; payload_bytes says its size


class _NotJson(ValueError):
    pass


def _no_constant(name: str):
    raise _NotJson(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


# Built once: json.loads with a keyword option builds a new decoder on every call.
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def parse_payload(payload: bytes):
    """(value, None) or (None, reason)."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"payload is not UTF-8 (byte {e.start})"
    try:
        return _DECODER.decode(text), None
    except RecursionError:
        return None, "payload is not JSON: nested too deeply"
    except ValueError as e:
        return None, f"payload is not JSON: {_short(str(e))}"


def center_problem(center: str) -> str | None:
    if CENTER_RE.match(center):
        return None
    return f"center id {_short(ascii(center), 80)} is not [a-z0-9-]{{1,64}}"


def envelope_problem(env, topic_center: str | None = None) -> str | None:
    """Why a decoded payload is not an event envelope (SPEC §2), or None. Checks
    what is cheap and needs no state: types, ranges, formats."""
    if not isinstance(env, dict):
        return "payload is not a JSON object"
    for k, t in REQUIRED.items():
        v = env.get(k)
        if not isinstance(v, t) or (t is int and isinstance(v, bool)):
            return f"{k}: missing or not a {'object' if t is dict else t.__name__}"
    if not 1 <= env["seq"] <= SEQ_MAX:
        return f"seq: {_short(str(env['seq']), 40)} is not within 1..2**63-1"
    if not ID_RE.match(env["id"]):
        return f"id: {_short(ascii(env['id']), 80)} is not an event id ([A-Za-z0-9_.:-], at most 128)"
    why = center_problem(env["center"])
    if why:
        return why
    if topic_center is not None and env["center"] != topic_center:
        return f"envelope center {env['center']!r} is not the topic's center {topic_center!r}"
    if not TYPE_RE.match(env["type"]):
        return f"type: {_short(ascii(env['type']), 80)} is not <domain>.<action> in lower snake case"
    if not TS_RE.match(env["ts"]):
        return f"ts: {_short(ascii(env['ts']), 80)} is not RFC 3339 (2026-11-26T20:30:03.123Z)"
    try:
        parse_ts(env["ts"])
    except (ValueError, OverflowError) as e:
        return f"ts: {_short(ascii(env['ts']), 80)} is not a time ({e})"
    s = env["source"]
    # Not stricter than this: a genuine source is "mqtt:<client id>", and an MQTT client id
    # may be long and hold any character; a genuine event refused here would be a gap forever.
    if not s or len(s) > SOURCE_MAX or "\x00" in s or not _encodable(s):
        return f"source: {_short(ascii(s), 80)} is empty, longer than {SOURCE_MAX}, holds U+0000 or a lone surrogate"
    for k in ("prev", "hash"):
        if not HEX64_RE.match(env[k]):
            return f"{k}: not 64 lower-case hex digits"
    if env["type"].startswith("alarm.") and env["data"].get("alarm_id") is not None:
        # One row per alarm_id in table alarms (alarm.shelved / unshelved carry none).
        d = env["data"]
        if not isinstance(d["alarm_id"], str) or not ALARM_ID_RE.match(d["alarm_id"]):
            return "data.alarm_id: must be an alarm id of [A-Za-z0-9_.:-], at most 128"
        for k in ALARM_TEXT_FIELDS:
            v = d.get(k)
            if v is not None and not isinstance(v, str):
                return f"data.{k}: must be a string or null, not {type(v).__name__}"
    return None


def data_problem(data_json: str, nul_ok: bool) -> str | None:
    """What the database cannot store in the canonical data text (computed once
    by the caller for the hash): a lone surrogate anywhere; U+0000 where the
    database refuses it (PostgreSQL)."""
    try:
        data_json.encode("utf-8")
    except UnicodeEncodeError:
        return "data: a string holds a lone UTF-16 surrogate (not encodable as UTF-8)"
    if not nul_ok and "\\u0000" in data_json and _has_nul(json.loads(data_json)):
        return "data: a string holds U+0000, which PostgreSQL cannot store in text or jsonb"
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _has_nul(v) -> bool:
    if isinstance(v, str):
        return "\x00" in v
    if isinstance(v, dict):
        return any("\x00" in k or _has_nul(x) for k, x in v.items())
    if isinstance(v, list):
        return any(_has_nul(x) for x in v)
    return False


def state_problem(value, nul_ok: bool) -> str | None:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (ValueError, RecursionError) as e:
        return f"state payload cannot be stored: {e}"
    return data_problem(text, nul_ok)


def encode_payload(payload: bytes) -> tuple[str, str, int]:
    """(text, encoding, size): the raw bytes as they came, in a form every
    database stores: the text itself when it is UTF-8 without NUL, else base64."""
    size = len(payload)
    kept = payload[:REJECT_KEEP_BYTES]
    try:
        text = kept.decode("utf-8")
        if "\x00" not in text:
            return text, "utf-8", size
    except UnicodeDecodeError:
        pass
    return base64.b64encode(kept).decode("ascii"), "base64", size


def safe_text(text: str, limit: int = 1000) -> str:
    """Reasons and topics as every database stores them: no NUL, no lone surrogate."""
    text = text.replace("\x00", "\\0")
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return _short(text, limit)


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
