"""Every alarm code of the catalog: positive and negative scenarios (rule_cases.py),
asserting the exact raise/update/clear times of that code."""
from __future__ import annotations

import re

import pytest

from helpers.rule_cases import CASES
from rules.catalog import CATALOG
from helpers.scenario import Scenario, make_config, run_case


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


def test_signal_lost_of_a_band_never_read_says_so():
    """issue 27: a band never read by any station said "last 03:00:20" — its binding time, which sent
    a technician looking for the station that had heard it. It now says it was never read."""
    from helpers.scenario import arrive, enter, leave
    never = Scenario(make_config())
    never.run(arrive(0, "S1", "suspect", case_id="C1", case_type="criminal"))
    never.until(300)
    assert [typ for typ, _, _ in never.events("tag_signal_lost")] == ["alarm.raised"]
    ev = next(e for e in never.conditions() if e.data["code"] == "tag_signal_lost")
    assert "never read by a base station since it was bound at" in ev.data["message"]["en"]
    assert "从未被基站读到" in ev.data["message"]["zh"]
    assert ev.data["details"]["last_seen"] is None and ev.data["details"]["bound_at"]
    seen = Scenario(make_config())
    seen.run(arrive(0, "S1", "suspect", case_id="C1", case_type="criminal")
             + [enter(10, "S1", "waiting-1"), leave(20, "S1", "waiting-1")])
    seen.until(300)
    ev = next(e for e in seen.conditions() if e.data["code"] == "tag_signal_lost")
    assert "not seen for 1 min (last " in ev.data["message"]["en"] and ev.data["details"]["last_room"] == "waiting-1"
