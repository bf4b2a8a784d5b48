"""A rule in one file (issue 26 item 2): each rule declares its alarm and the equipment its
alarms concern beside its function (rules/declare.py), rule families are found by a scan of
rules/families/, and the catalog is derived from the declarations.

* Every alarm the rule cases and the rule day raise names only equipment its rule declares
  (maintenance and shelving find a device through that declaration, rules/alarm_states.py).
* A new rule from a temp folder (one module + its cases) is found, listed by
  ``casegate config check``, raises its alarm, obeys ``enabled = false`` and, declaring its
  equipment, is suppressed while that device is under maintenance.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import pytest
from helpers import rule_day as day
from helpers.daemon import ROOT
from helpers.rule_cases import CASES
from rules.catalog import CATALOG
from rules.declare import EQUIPMENT_KEYS, NO_EQUIPMENT
from helpers.scenario import DEVICES, H, Scenario, make_config


def equipment_ids(devices: list[dict]) -> set[str]:
    """Every device and door id of a config (what an alarm may concern)."""
    out = set()
    for d in devices:
        out.add(d["id"])
        out.update(x["door"] for x in d.get("doors") or () if x.get("door"))
    return out


def equipment_problems(raised, catalog, ids: set[str]) -> list[str]:
    """For alarms ``(code, subject, data)``: where an alarm names equipment its rule's
    ``alarm(..., equipment=...)`` does not declare (so maintenance would never suppress it)."""
    out: set[str] = set()
    for code, subject, data in raised:
        eq = catalog[code].equipment
        det = data.get("details") or {}
        for k in EQUIPMENT_KEYS:
            if isinstance(det.get(k), str) and k not in eq.details:
                out.add(f"{code}: its alarms name a {k} (details.{k}) but its alarm(...) does not declare it: "
                        f"equipment=Equipment(details=({k!r},)) in {catalog[code].module}")
        if subject in ids and not (eq.subject or eq.door_of):
            out.add(f"{code}: its alarms' subject is a device or door ({subject!r}) but its alarm(...) does not "
                    f"say so: equipment=Equipment(subject=True) (or door_of=<capability>) in {catalog[code].module}")
        named = {v for v in det.values() if isinstance(v, str)} & ids
        if named and not eq.declared:
            out.add(f"{code}: its alarms name equipment {sorted(named)} but it declares none "
                    f"(equipment=... in {catalog[code].module})")
    return sorted(out)


def spy(s: Scenario) -> list[tuple[str, str, dict]]:
    """Record (code, subject, data) of every alarm the engine raises."""
    seen: list[tuple[str, str, dict]] = []
    eng = s.engine
    real = eng._raise

    def raise_(key, t, facts, since_epoch=None):
        d = real(key, t, facts, since_epoch)
        seen.append((key[0], key[1], d.data))
        return d
    eng._raise = raise_
    return seen


def all_raised() -> list[tuple[str, str, dict]]:
    out = []
    for c in CASES:
        s = Scenario(make_config(c.rules))
        seen = spy(s)
        s.run(c.steps)
        s.until(c.until)
        out += seen
    s = Scenario(day.config())
    seen = spy(s)
    s.run(day.steps())
    s.until(24 * H)
    return out + seen


def test_every_alarm_names_only_equipment_its_rule_declares():
    raised = all_raised()
    assert {c for c, _, _ in raised} == set(CATALOG)
    assert equipment_problems(raised, CATALOG, equipment_ids(DEVICES)) == []


def test_an_undeclared_equipment_is_caught():
    """The check can fail: device_offline and door_held_open with their equipment taken away."""
    raised = [r for r in all_raised() if r[0] in ("device_offline", "door_held_open")]
    bare = {c: dataclasses.replace(s, equipment=NO_EQUIPMENT) for c, s in CATALOG.items()}
    problems = equipment_problems(raised, bare, equipment_ids(DEVICES))
    assert any(p.startswith("device_offline: its alarms name a device (details.device)") for p in problems)
    assert any(p.startswith("device_offline: its alarms' subject is a device") for p in problems)
    assert any(p.startswith("door_held_open: its alarms name a door (details.door)") for p in problems)


def test_a_rule_without_its_declaration_is_named():
    from rules.base import RULES, Rule
    from rules.catalog import declared
    RULES["undeclared_x"] = Rule("undeclared_x", ("door.opened",), lambda ctx, ev, t: ())
    try:
        with pytest.raises(ValueError, match=r"rule 'undeclared_x' has no alarm\(\.\.\.\) declaration"):
            declared()
    finally:
        del RULES["undeclared_x"]
    assert list(declared()) == list(CATALOG)


def test_catalog_order_is_the_declared_order():
    """Catalog order = evaluation order = journal order of one event's alarms: kept from the
    former hand-kept catalog by each declaration's ``order``."""
    assert [s.order for s in CATALOG.values()] == sorted(s.order for s in CATALOG.values())
    assert list(CATALOG)[:3] == ["lone_interrogation", "unattended_suspect", "officer_left_interrogation"]
    assert list(CATALOG)[-3:] == ["device_offline", "station_impostor", "clock_unsynchronised"]


# ---- a new rule from a temp folder --------------------------------------------------------------------
RULE = '''
"""A reader reports a jammed antenna: reader_jammed. Subject: the device."""
from pydantic import Field

from rules.base import Facts, rule
from rules.declare import Equipment, RuleSettings, alarm


class Jammed(RuleSettings):
    grace_s: float = Field(default=20, ge=0)      # a jam shorter than this clears itself


CODE = alarm("reader_jammed", "minor", "读卡器受干扰", "Reader jammed", Jammed,
             equipment=Equipment(details=("device",), subject=True))


def _check(ctx, device, t):
    if not ctx.mem(CODE).get(device):
        return None
    return Facts(None, [], f"读卡器{device}受干扰", f"reader {device} jammed", {"device": device})


@rule(CODE, on=("device.error", "device.online"), check=_check)
def reader_jammed(ctx, ev, t):
    dev = ev.data.get("device")
    ctx.mem(CODE)[dev] = ev.type == "device.error" and bool(ev.data.get("jammed"))
    return ctx.hold(CODE, dev, t, _check(ctx, dev, t))
'''

CASES_FILE = '''
from helpers.rule_cases import case, R, C
JAM = (10, "device.error", {"device": "cam-wait1", "jammed": True, "error": "jammed"})
OK = (100, "device.online", {"device": "cam-wait1"})
case("reader_jammed", "jammed 90 s", [JAM, OK], 300, [(R, 30), (C, 100)])
case("reader_jammed", "jammed 10 s", [JAM, (20, "device.online", {"device": "cam-wait1"})], 300, [])
'''

SCRIPT = '''
import contextlib, io, json, sys
sys.path[:0] = [{tests!r}, {rules_tests!r}, {tmp!r}]
import rules.families
rules.families.__path__.append({plugins!r})      # as if the module were in rules/families/
from rules.catalog import CATALOG
from rules.engine import Engine
from gateway.cli import main
from rules.model import format_ts
from helpers import rule_cases
import jammed_cases                    # the rule's cases, as they would be in rule_cases.py
from helpers.scenario import Scenario, make_config, run_case

out = {{"families": rules.families.load(), "last": list(CATALOG)[-1],
        "spec": [CATALOG["reader_jammed"].severity, CATALOG["reader_jammed"].zh, CATALOG["reader_jammed"].legal]}}
mine = [c for c in rule_cases.CASES if c.code == "reader_jammed"]
out["cases"] = {{c.name: [[typ, t] for typ, _, t in run_case(c).events("reader_jammed")] == [[a, float(b)] for a, b in c.expected]
                 for c in mine}}
for name in ("on", "off"):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["config", "check", "--json", "--config", {tmp!r} + f"/{{name}}.toml"])
    check = json.loads(buf.getvalue())
    out[name] = {{"rc": rc, "enabled": "reader_jammed" in check["rules_enabled"],
                  "disabled": "reader_jammed" in check["rules_disabled"], "settings": check["rules"].get("reader_jammed")}}
    s = Scenario(make_config({{"reader_jammed": {{"enabled": name == "on"}}}}))
    s.run([(10, "device.error", {{"device": "cam-wait1", "jammed": True, "error": "jammed"}})])
    s.until(60)
    out[name]["raised"] = [e.data["code"] for e in s.conditions()]
    if name == "on":
        s.step(70, "device.maintenance", {{"device": "cam-wait1", "until": format_ts(s.t0 + 600), "reason": "antenna", "by": "O1"}})
        s.until(80)
        out["flags"] = [(e.data.get("shelved"), e.data.get("suppressed_by")) for e in s.conditions() if e.data["code"] == "reader_jammed"]
import test_reference_config as ref               # reference.toml is checked against the declarations
try:
    ref.test_every_config_key_is_in_the_reference_with_its_default()
    out["reference"] = "complete"
except AssertionError as e:
    out["reference"] = str(e)
print(json.dumps(out))
'''


def test_a_new_rule_needs_only_its_module_and_its_cases(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "jammed.py").write_text(textwrap.dedent(RULE))
    (tmp_path / "jammed_cases.py").write_text(textwrap.dedent(CASES_FILE))
    base = f'[center]\nid = "t"\n[storage]\ndir = "{tmp_path}/state"\n[mqtt]\nenabled = false\n' \
           '[[rooms]]\nid = "waiting-1"\ntype = "waiting"\n'
    (tmp_path / "on.toml").write_text(base + "[rules.reader_jammed]\ngrace_s = 5\n")
    (tmp_path / "off.toml").write_text(base + "[rules.reader_jammed]\nenabled = false\n")
    script = SCRIPT.format(tests=str(ROOT / "tests"), rules_tests=str(ROOT / "tests" / "rules"), tmp=str(tmp_path),
                           plugins=str(plugins))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout.splitlines()[-1])
    assert "jammed" in got["families"] and got["last"] == "reader_jammed"      # found; new codes sort last
    assert got["spec"] == ["minor", "读卡器受干扰", False]
    assert got["cases"] == {"jammed 90 s": True, "jammed 10 s": True}
    assert got["on"] == {"rc": 0, "enabled": True, "disabled": False, "settings": {"enabled": True, "grace_s": 5.0},
                         "raised": ["reader_jammed"]}
    assert got["off"] == {"rc": 0, "enabled": False, "disabled": True, "settings": {"enabled": False, "grace_s": 20.0},
                          "raised": []}
    # its declared equipment: maintenance of its device suppresses it (re-sent flagged, not published)
    assert got["flags"] == [[None, None], [True, "maintenance"]]
    # config/reference.toml lacks its table until it is added: the check says so, with the table to paste
    assert "[rules.reader_jammed]" in got["reference"]
    assert "[rules.reader_jammed]\nenabled = true   # <what enabled does>\ngrace_s = 20   # <what grace_s does>" in got["reference"]
