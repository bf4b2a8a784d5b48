"""What a compromised or buggy gateway publishes (issue 29), as MQTT messages
(topic, payload bytes), each with the reason ingest must give when it rejects it.
Every payload is wrong in one way only: the rest is a well-formed, correctly
hashed envelope, so the check under test is the one that catches it."""
from __future__ import annotations

import json

from rules.model import GENESIS, Draft, canonical, chain_hash, seal, topic_for

T0 = 1_790_000_000.0


def good_chain(center: str, n: int, start: int = 1, prev: str = GENESIS, t0: float = T0) -> list:
    out = []
    for i in range(start, start + n):
        ev = seal(Draft("card.swiped", {"card": f"{i:010X}", "reader": "r", "room": "x", "person": None}, "card-1"),
                  i, center, prev, t0 + i)
        prev = ev.hash
        out.append(ev)
    return out


def message(ev, prefix: str = "casegate") -> tuple[str, bytes]:
    return topic_for(f"{prefix}/{ev.center}", ev), ev.to_json().encode()


def _hashed(env: dict) -> bytes:
    env = dict(env)
    env["hash"] = chain_hash(env["prev"], canonical(env))
    return json.dumps(env, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _env(center: str, seq: int, data: dict, type_: str = "card.swiped", **over) -> dict:
    env = {"id": f"0190f0aa-0000-7000-8000-{seq:012d}", "seq": seq, "ts": "2026-12-06T10:00:00.000Z",
           "center": center, "type": type_, "source": "card-1", "data": data, "prev": GENESIS}
    env.update(over)
    return env


CARD = {"card": "00000000AA", "reader": "r", "room": "x", "person": None}


def hostile(center: str = "c-bad", victim: str = "c-good-a") -> list[tuple[str, str, bytes, str, str]]:
    """(label, topic, payload, reason substring, where) — where: 'both' rejected with
    either database, 'pg' rejected by PostgreSQL only (SQLite stores U+0000)."""
    ev_topic = f"casegate/{center}/events/card/swiped"
    alarm = {"alarm_id": "sos:0000000000000001", "code": "sos", "severity": {"level": "critical"}, "room": "r1",
             "persons": [], "since": "2026-12-06T10:00:00.000Z", "message": {"zh": "求救", "en": "SOS"},
             "details": {}, "legal_basis": [], "snapshot": None}
    nul = seal(Draft("card.swiped", dict(CARD, card="AB\x00CD"), "card-1"), 1, center, GENESIS, T0)
    surrogate = json.dumps(_env(center, 3, dict(CARD, card="\ud800"), hash="0" * 64)).encode()
    return [
        ("seq 2**63", ev_topic, _hashed(_env(center, 2 ** 63, CARD)), "not within 1..2**63-1", "both"),
        ("seq 0", ev_topic, _hashed(_env(center, 0, CARD)), "not within 1..2**63-1", "both"),
        ("seq true", ev_topic, _hashed(_env(center, True, CARD)), "seq: missing or not a int", "both"),
        ("a dict where text is stored", f"casegate/{center}/alarms/sos",
         _hashed(_env(center, 2, alarm, "alarm.raised")), "data.severity: must be a string or null", "both"),
        ("a 10 kB alarm_id (too large for an index row)", f"casegate/{center}/alarms/sos",
         _hashed(_env(center, 8, dict(alarm, severity="critical", alarm_id="sos:" + "f" * 10_000), "alarm.raised")),
         "data.alarm_id", "both"),
        ("U+0000 in data", ev_topic, nul.to_json().encode(), "U+0000", "pg"),
        ("NUL in a text field", ev_topic, _hashed(_env(center, 4, CARD, source="card\x00-1")), "source:", "both"),
        ("not JSON", ev_topic, b"{oops", "payload is not JSON", "both"),
        ("not UTF-8", ev_topic, b'{"seq": 1, "x": "\xff\xfe"}', "payload is not UTF-8", "both"),
        ("NaN", ev_topic, b'{"seq": NaN}', "NaN is not JSON", "both"),
        ("nested 100,000 deep", ev_topic, b"[" * 100_000, "nested too deeply", "both"),
        ("lone surrogate", ev_topic, surrogate, "lone UTF-16 surrogate", "both"),
        ("data a list", ev_topic, _hashed(_env(center, 5, [1, 2])), "data: missing or not a object", "both"),
        ("ts not a time", ev_topic, _hashed(_env(center, 6, CARD, ts="2026-13-45T25:00:00.000Z")),
         "is not a time", "both"),
        ("5000-digit integer", ev_topic, b'{"seq": ' + b"9" * 5000 + b"}", "payload is not JSON", "both"),
        ("another center's envelope", ev_topic, _hashed(_env(victim, 7, CARD)), "is not the topic's center",
         "both"),
        ("invalid center id", "casegate/Bad_Center/events/card/swiped", _hashed(_env("Bad_Center", 1, CARD)),
         "is not [a-z0-9-]{1,64}", "both"),
        ("U+0000 in retained state", f"casegate/{center}/state/gateway", b'{"state":"on\\u0000"}', "U+0000", "pg"),
        ("identity with a bad key", f"casegate/{center}/state/identity",
         json.dumps({"center": center, "key_id": "0" * 16, "public_key": "!!"}).encode(), "identity", "both"),
    ]
