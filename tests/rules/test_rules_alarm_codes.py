"""Every alarm code of the catalog: positive and negative scenarios (rule_cases.py),
asserting the exact raise/update/clear times of that code."""
from __future__ import annotations

import re

import pytest

from rule_cases import CASES
from rules.catalog import CATALOG
from scenario import Scenario, make_config


def run_case(c) -> Scenario:
    s = Scenario(make_config(c.rules))
    s.run(c.steps)
    s.until(c.until)
    return s


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_case(c):
    s = run_case(c)
    assert [(typ, t) for typ, _, t in s.events(c.code)] == [(typ, float(t)) for typ, t in c.expected]
    # every alarm event is well-formed (SPEC §2)
    for e in s.conditions():
        d = e.data
        assert set(d) == {"alarm_id", "code", "severity", "room", "persons", "since", "message",
                          "details", "legal_basis", "snapshot"}
        # cited per case type / person (rules/citations.py), always from the code's catalog list
        assert set(d["legal_basis"]) <= set(CATALOG[d["code"]].legal_basis)
        if CATALOG[d["code"]].legal and d["code"] != "station_impostor":   # DOMAIN v3: it cites nothing
            assert d["legal_basis"], d["code"]
        assert d["severity"] == CATALOG[d["code"]].severity
        assert d["snapshot"] is None
        assert d["message"]["zh"] and d["message"]["en"]
        # people read local time (SPEC §2: messages in the center's timezone), never RFC 3339 UTC
        text = d["message"]["zh"] + d["message"]["en"]
        assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:", text), text
        for stamp in re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d", text):
            assert stamp.endswith("+08:00"), text          # the scenario center is in Asia/Shanghai
        assert e.source == "rules"
    # escalations (unacknowledged critical alarms, rules/alarm_states.py) name their alarm
    for typ, _, d in s.lifecycle("alarm.escalated"):
        assert CATALOG[d["code"]].severity == "critical" and d["level"] >= 1 and d["unacked_s"] > 0
        assert d["alarm_id"].startswith(d["code"] + ":") and set(d["legal_basis"]) <= set(CATALOG[d["code"]].legal_basis)


def test_every_code_has_a_positive_and_a_negative_case():
    pos = {c.code for c in CASES if c.expected}
    neg = {c.code for c in CASES if not c.expected}
    assert set(CATALOG) - pos == set()
    assert set(CATALOG) - neg == set()
