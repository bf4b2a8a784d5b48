"""person/register, person/update, person/rest, person/checkout as the law sees them (DOMAIN v2/v3,
SPEC §3 v2/v3), against the real daemon and a real mosquitto. (v3 approvals and their refusals in
detail: tests/test_legal_requests.py.)"""
from __future__ import annotations

import json
import time

from helpers.daemon import cli
from rules.model import format_local, format_ts, parse_ts
from helpers.central import Central


def journaled(d, typ):
    r = cli("events", "--json", "--type", typ, config=d.config, check=True)
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def err(r):
    assert r["ok"] is False, r
    return r["error"]["code"], r["error"]["message"]


def test_register_update_rest_checkout(daemon, mosquitto):
    c = Central(mosquitto.port)
    try:
        assert c.request("person/register", person="o1", role="officer")["ok"]
        assert c.request("person/register", person="st1", role="staff")["ok"]
        assert c.request("person/register", person="chief", role="officer", approver=True)["ok"]
        # a suspect needs a case type; limits are the law's values only, named in the refusal
        code, msg = err(c.request("person/register", person="s1", role="suspect"))
        assert code == "bad_request" and "case_type" in msg
        code, msg = err(c.request("person/register", person="s1", role="suspect", gender="male", case_type="criminal", limit_h=48))
        assert code == "bad_request" and "12 | 24" in msg and "第119条" in msg
        code, msg = err(c.request("person/register", person="s1", role="suspect", gender="male", case_type="administrative",
                                  limit_h=10))
        assert code == "bad_request" and "8 | 12 | 24" in msg
        code, msg = err(c.request("person/register", person="s1", role="suspect", gender="male", case_type="inquiry",
                                  vulnerable=True, limit_h=12))
        assert code == "bad_request" and "allowed 4 h" in msg
        code, msg = err(c.request("person/register", person="s1", role="suspect", gender="male", case_type="criminal",
                                  arrived_at="2099-01-01T00:00:00Z"))
        assert code == "bad_request" and "future" in msg
        assert journaled(daemon, "person.registered") and all(
            e["data"]["person"] != "s1" for e in journaled(daemon, "person.registered"))

        # arrived_at without an offset is the center's local time (Asia/Shanghai by default)
        arrived = time.time() - 3 * 3600
        local = format_local(arrived, "Asia/Shanghai", offset=False).replace(" ", "T")
        r = c.request("person/register", person="s1", role="suspect", gender="male", case_type="administrative",
                      limit_h=12, arrived_at=local, age=17, vulnerable=False, approved_by="chief",
                      reason="涉案人数众多，负责人批准12小时")
        assert r["ok"], r
        want = format_ts(int(arrived))
        assert r["data"]["arrived_at"] == want
        (reg,) = [e for e in journaled(daemon, "person.registered") if e["data"]["person"] == "s1"]
        assert reg["data"]["arrived_at"] == want and reg["data"]["age"] == 17 and reg["data"]["limit_h"] == 12

        # re-registration in the same stay never resets the clock, and changes no limit (DOMAIN v3)
        r = c.request("person/register", person="s1", role="suspect", gender="male", case_type="administrative")
        assert r["ok"] and r["data"]["reregistered"] is True and r["data"]["arrived_at"] == want
        code, _ = err(c.request("person/register", person="s1", role="suspect", gender="male", case_type="criminal"))
        assert code == "bad_request"
        code, _ = err(c.request("person/register", person="s1", role="officer"))
        assert code == "conflict"

        # person/update: by must be a registered officer; limits checked after the change
        code, msg = err(c.request("person/update", person="s1", by="st1", reason="x", limit_h=24))
        assert code == "forbidden" and "officer" in msg
        code, _ = err(c.request("person/update", person="s1", by="nobody", reason="x", limit_h=24))
        assert code == "forbidden"
        code, msg = err(c.request("person/update", person="s1", by="o1", reason="x", case_type="inquiry",
                                  limit_h=8))
        assert code == "bad_request" and "12 | 24 | 48" in msg
        code, _ = err(c.request("person/update", person="s1", by="o1", reason="nothing"))
        assert code == "bad_request"
        code, _ = err(c.request("person/update", person="s1", by="o1", reason="承办人批准延长", limit_h=24))
        assert code == "forbidden"             # lengthening needs an approver (DOMAIN v3)
        r = c.request("person/update", person="s1", by="o1", reason="负责人批准延长", limit_h=24, approved_by="chief")
        assert r["ok"], r
        (upd,) = journaled(daemon, "person.updated")
        assert upd["data"] == {"person": "s1", "changes": {"limit_h": 24}, "by": "o1", "reason": "负责人批准延长",
                               "approved_by": "chief"}

        # person/rest
        start = format_ts(time.time() - 600)
        r = c.request("person/rest", person="s1", kind="meal", **{"from": start}, by="o1")
        assert r["ok"], r
        (rest,) = journaled(daemon, "person.rest")
        assert rest["data"]["from"] == start and rest["data"]["to"] is None and rest["data"]["kind"] == "meal"

        # checkout: only a registered officer approves
        for by in ("st1", "s1", "ghost"):
            code, _ = err(c.request("person/checkout", person="s1", by=by))
            assert code == "forbidden"
        assert journaled(daemon, "person.checkout_approved") == []
        assert c.request("person/checkout", person="s1", by="o1")["ok"]
        assert parse_ts(want) == int(arrived)
    finally:
        c.close()
