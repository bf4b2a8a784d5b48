"""Issue 13: the detention clock and the unbroken record.

* a detention spanning a room change, a restart, a reload, a case-type change and a
  re-registration ends at exactly arrived_at + limit;
* reload == restart: a reloaded engine holds the same deadlines as one rebuilt from the
  journal under the new config;
* unbinding a present suspect's band raises suspect_untracked and clears nothing;
* the scenarios through ``casegate replay --input`` (a real subprocess) equal live,
  derived events (person.left) included.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rules.model import format_ts
from helpers.rule_cases import CASES
from helpers.rules_replay import produced, replay_cli
from rules.engine import Engine
from rules.replay import alarm_rows, rebuild, reconcile, replay, replay_input
from helpers.scenario import (H, T0, Scenario, arrive, bind, config_dict, enter, leave, make_config, move, register,
                      status, tag_of, to_toml)

ROOT = Path(__file__).resolve().parents[2]
INT = "interrogation-1"


def rows(events):
    return list(alarm_rows(events))


def upd(t, pid, by="O1", reason="approved", **changes):
    return (t, "person.updated", {"person": pid, "changes": changes, "by": by, "reason": reason})


def restart(s: Scenario, config) -> None:
    """What Core.rebuild does: a fresh engine replays the journal, reconciles, carries on."""
    eng = Engine(config)
    journaled = rebuild(eng, s.journal, config.center.id)
    drafts = reconcile(eng, journaled)
    s.engine, s.config = eng, config
    for d in drafts:
        s._feed(d, eng.now)


def reload(s: Scenario, config, t: float) -> None:
    """What SIGHUP does: Engine.reconfigure; its drafts are journaled."""
    s.until(t)
    for d in s.engine.reconfigure(config):
        s._feed(d, T0 + t)
    s.config = config


# ---- the clock ---------------------------------------------------------------------------------
SPAN_CFG_B = {"detention_timeout": {"administrative_h": 7}}   # a center default ≤ 8 h (DOMAIN v3 bounds)


def span() -> Scenario:
    """Arrived at 00:00, registered at 01:00 (administrative, 8 h default), a room change at
    02:00, restart at 03:00, reload to administrative_h = 7 at 04:00, case type changed to
    criminal with an approved 24 h at 05:00, re-registered at 06:00 (same stay)."""
    s = Scenario(derive=True)
    s.run([register(1 * H, "S1", "suspect", case_type="administrative", arrived_at="2026-11-26T00:00:00Z"),
           bind(1 * H, "S1")] + arrive(1 * H, "O1", "officer") + arrive(1 * H, "O2", "officer") +
          [enter(1 * H + 10, "S1", "waiting-1"), enter(1 * H + 10, "O1", "waiting-1"),
           move(2 * H, "S1", "waiting-1", INT), move(2 * H, "O1", "waiting-1", INT), enter(2 * H, "O2", INT)])
    s.until(3 * H)
    restart(s, s.config)
    assert s.engine.armed("detention_timeout", "S1") == T0 + 8 * H
    reload(s, make_config(SPAN_CFG_B), 4 * H)
    assert s.engine.armed("detention_timeout", "S1") == T0 + 7 * H
    s.run([upd(5 * H, "S1", case_type="criminal", limit_h=24, reason="转为刑事案件，批准延长")])
    s.run([register(6 * H, "S1", "suspect", case_type="criminal", limit_h=24)])
    s.run([move(7 * H, "S1", INT, "waiting-1"), move(7 * H, "O1", INT, "waiting-1")])
    s.until(25 * H)
    return s


def test_detention_spanning_everything_ends_at_arrived_at_plus_limit():
    s = span()
    (dt,) = s.raised("detention_timeout")
    assert dt["since"] == format_ts(T0 + 24 * H)
    assert dt["details"]["arrived_at"] == "2026-11-26T00:00:00.000Z"
    assert dt["details"]["deadline"] == format_ts(T0 + 24 * H) and dt["details"]["case_type"] == "criminal"
    assert "2026-11-27 08:00:00 +08:00" in dt["message"]["zh"]          # local time (Asia/Shanghai)
    (dw,) = s.raised("detention_warning")
    assert dw["since"] == format_ts(T0 + 23 * H)
    assert [(t, e) for t, e, _ in [(x[0], x[1], x[2]) for x in s.events("detention_warning")]] == \
        [("alarm.raised", "detention_warning"), ("alarm.raised", "detention_warning")]
    assert [x[2] for x in s.events("detention_warning")] == [23 * H, 23.5 * H]
    # a restart now, under the final config, agrees with what live holds
    eng = Engine(s.config)
    journaled = rebuild(eng, s.journal, s.config.center.id)
    assert reconcile(eng, journaled) == []
    assert set(eng.active()) == {a["alarm_id"] for a in s.active()}


def test_span_replays_equal_under_the_final_config():
    s = span()
    assert rows(replay(s.journal, s.config)) == rows(s.alarm_events)
    assert [(e.ts, e.type, e.data) for e in replay_input(s.journal, s.config)] == produced(s)


def test_reload_equals_restart_for_deadlines():
    """A limit change by SIGHUP and by restart give the same timers and alarms."""
    steps = [register(0, "S1", "suspect", case_type="criminal"), bind(0, "S1")] + arrive(0, "O1", "officer") + \
        [enter(10, "S1", "waiting-1"), enter(10, "O1", "waiting-1")]
    new = make_config({"detention_timeout": {"criminal_h": 6, "warn_before_min": [45]}})
    live = Scenario()
    live.run(steps)
    reload(live, new, 2 * H)
    restarted = Scenario()
    restarted.run(steps)
    restarted.until(2 * H)
    restart(restarted, new)
    for code, kind in (("detention_timeout", ""), ("detention_warning", "45")):
        assert live.engine.armed(code, "S1", kind) == restarted.engine.armed(code, "S1", kind) is not None
    assert live.engine.armed("detention_timeout", "S1") == T0 + 6 * H
    live.until(7 * H)
    restarted.until(7 * H)
    assert rows(live.alarm_events) == rows(restarted.alarm_events)
    assert [x[2] for x in live.events("detention_timeout")] == [6 * H]


def test_reload_shortening_a_limit_already_passed_raises_at_the_deadline_like_a_restart():
    steps = [register(0, "S1", "suspect", case_type="criminal"), bind(0, "S1")]
    new = make_config({"detention_timeout": {"criminal_h": 2}})
    s = Scenario()
    s.run(steps)
    reload(s, new, 3 * H)
    s.until(3 * H + 1)
    assert [x[2] for x in s.events("detention_timeout")] == [2 * H]
    r = Scenario()
    r.run(steps)
    r.until(3 * H)
    restart(r, new)
    r.until(3 * H + 1)
    assert rows(r.alarm_events) == rows(s.alarm_events)


def test_rest_limit_reload_equals_restart():
    steps = [register(0, "S1", "suspect", case_type="criminal"), bind(0, "S1")] + arrive(0, "O1", "officer") + \
        arrive(0, "O2", "officer") + [enter(100, p, INT) for p in ("S1", "O1", "O2")]
    new = make_config({"rest_overdue": {"limit_h": 2}})
    live = Scenario()
    live.run(steps)
    reload(live, new, 1 * H)
    restarted = Scenario()
    restarted.run(steps)
    restarted.until(1 * H)
    restart(restarted, new)
    assert live.engine.armed("rest_overdue", "S1", "limit") == restarted.engine.armed("rest_overdue", "S1", "limit") \
        == T0 + 100 + 2 * H
    live.until(3 * H)
    restarted.until(3 * H)
    assert rows(live.alarm_events) == rows(restarted.alarm_events)
    assert [x[2] for x in live.events("rest_overdue")] == [100 + 2 * H]


# ---- unbinding never silences ---------------------------------------------------------------------
def test_unbinding_a_present_suspects_band_raises_untracked_and_clears_nothing():
    s = Scenario()
    s.run(arrive(0, "S1", "suspect", case_type="criminal", case_id="C1") + arrive(0, "O1", "officer") +
          [enter(10, "S1", "waiting-1"), status(100, "S1", tamper=True, heart_rate=150)])
    s.until(200)
    before = {a["code"] for a in s.active()}
    assert {"unattended_suspect", "wristband_tamper", "vital_signs_abnormal"} <= before
    n = len(s.conditions())
    s.step(300, "wristband.unbound", {"tag": tag_of("S1"), "person": "S1"})
    assert [e.type for e in s.conditions()[n:]] == [], "unbinding cleared or changed an alarm"
    s.until(400)
    assert [(e.type, e.data["code"]) for e in s.conditions()[n:]] == [("alarm.raised", "suspect_untracked")]
    (su,) = s.active("suspect_untracked")
    assert su["since"] == format_ts(T0 + 360) and su["room"] == "waiting-1"
    assert su["details"]["unbound_tags"] == [tag_of("S1")]
    assert before <= {a["code"] for a in s.active()}
    # he is still judged where he was last seen: an officer walking in ends unattended_suspect
    s.step(500, *enter(500, "O1", "waiting-1")[1:])
    assert not s.active("unattended_suspect")
    # the band in the drawer reports its strap closed: tamper clears; a new band: untracked clears
    s.step(600, *status(600, "S1", tamper=False, heart_rate=80)[1:])
    assert not s.active("wristband_tamper") and not s.active("vital_signs_abnormal")
    s.step(700, "wristband.bound", {"tag": "ABCDEF09", "person": "S1"})
    assert not s.active("suspect_untracked")
    assert rows(replay(s.journal, s.config)) == rows(s.alarm_events)


# ---- exits ---------------------------------------------------------------------------------------
def test_a_later_checkout_never_rewrites_an_escape():
    s = Scenario(derive=True)
    s.run([register(0, "S1", "suspect", case_type="criminal"), bind(0, "S1")] + arrive(0, "O1", "officer") +
          [(100, "door.passed", {"door": "side-door", "room": "corridor", "tag": tag_of("S1"), "person": "S1",
                                 "direction": "out"}),
           (200, "person.checkout_approved", {"person": "S1", "by": "O1"})])
    (raised,) = s.raised("unauthorized_exit")
    assert raised["details"] == {"way": "door_passed_out", "door": "side-door"}
    (cleared,) = s.cleared("unauthorized_exit")
    assert cleared["alarm_id"] == raised["alarm_id"]
    assert cleared["details"]["cleared_reason"] == "checkout approved after the exit"
    assert s.derived == [], "the escape was no checked-out departure"
    # an approved person passing out through the exit door leaves the center (derived person.left)
    s.run([(300, "door.passed", {"door": "side-door", "room": "corridor", "tag": tag_of("S1"), "person": "S1",
                                 "direction": "out"})])
    assert [d.type for d in s.derived] == ["person.left"]
    assert s.engine.state.persons["S1"].left


# ---- replay --input as a real subprocess ------------------------------------------------------
EXIT = [register(0, "S1", "suspect", case_type="criminal"), bind(0, "S1")] + arrive(0, "O1", "officer") + \
    [enter(10, "S1", "exit"), enter(10, "O1", "exit"),
     (100, "person.checkout_approved", {"person": "S1", "by": "O1"}), leave(120, "S1", "exit"),
     register(3 * H, "S1", "suspect", case_type="criminal"), bind(3 * H, "S1"), enter(3 * H + 5, "S1", "corridor")]

ISSUE_CASES = [c for c in CASES if c.code in ("detention_timeout", "detention_warning", "custody_transfer_overdue",
                                              "consecutive_summons", "suspect_untracked", "rest_overdue")]


def test_replay_input_cli_equals_live_for_the_span(tmp_path):
    s = span()
    out = replay_cli(tmp_path, s.journal, SPAN_CFG_B)
    assert [(e["ts"], e["type"], e["data"]) for e in out] == produced(s)


def test_replay_input_cli_regenerates_derived_person_left(tmp_path):
    s = Scenario(derive=True)
    s.run(EXIT)
    s.until(4 * H)
    assert [d.type for d in s.derived] == ["person.left"]
    assert s.raised("consecutive_summons") and s.raised("unauthorized_exit")
    # full envelopes (verified), and bare {ts,type,source,data} lines: the same output
    out = replay_cli(tmp_path, s.journal, None)
    assert [(e["ts"], e["type"], e["data"]) for e in out] == produced(s)
    assert [e["type"] for e in out].count("person.left") == 1
    bare = replay_cli(tmp_path, s.journal, None, bare=True)
    assert [(e["ts"], e["type"], e["data"]) for e in bare] == produced(s)


def test_replay_input_verify_names_the_broken_line(tmp_path):
    s = Scenario()
    s.run(EXIT[:4])
    cfg = tmp_path / "c.toml"
    cfg.write_text(to_toml(config_dict()))
    lines = [e.envelope() for e in s.journal]
    lines[2]["data"] = dict(lines[2]["data"], person="S9")
    inp = tmp_path / "bad.jsonl"
    inp.write_text("".join(json.dumps(x) + "\n" for x in lines))
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "replay", "--input", str(inp), "--config", str(cfg),
                        "--verify"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 1 and "line 3" in r.stderr and f"seq {lines[2]['seq']}" in r.stderr
    inp.write_text('{"ts": "yesterday", "type": "x", "data": {}}\n')
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "replay", "--input", str(inp), "--config", str(cfg)],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and "bad.jsonl:1" in r.stderr


@pytest.mark.parametrize("c", ISSUE_CASES, ids=[c.id for c in ISSUE_CASES])
def test_issue_cases_replay_input_equals_live(c):
    """In process for speed; the subprocess path is covered above with the same function."""
    s = Scenario(make_config(c.rules), derive=True)
    s.run(c.steps)
    s.until(c.until)
    assert [(e.ts, e.type, e.data) for e in replay_input(s.journal, s.config)] == produced(s)


def test_cases_replay_input_cli_equals_live(tmp_path):
    """The first positive scenario of each issue code through the real CLI, one subprocess each
    (all of them run in process above: the CLI adds file parsing, which these cover)."""
    firsts = list({c.code: c for c in reversed(ISSUE_CASES) if c.expected}.values())
    for i, c in enumerate(firsts):
        s = Scenario(make_config(c.rules), derive=True)
        s.run(c.steps)
        s.until(c.until)
        d = tmp_path / str(i)
        d.mkdir()
        out = replay_cli(d, s.journal, c.rules)
        assert [(e["ts"], e["type"], e["data"]) for e in out] == produced(s), c.id
