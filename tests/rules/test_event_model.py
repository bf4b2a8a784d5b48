"""The event model (rules/model) is the one list of event types: every fold, every emit in
the sources and every driver manifest is checked against its declarations, and data
emitted under the test suite's strict mode must validate.

The source scan reads gateway/, rules/ and drivers/ (AST, no import): the first argument
of emit/_emit/submit/Draft calls (a literal, both arms of a conditional, a local name
through its assignments, an f-string as a pattern) and strings compared with an event's
``type``. A type string no declaration knows is a typo (or a missing declaration)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from drivers.registry import specs
from rules.model import (DECLARED, EVENT_DATA, EVENT_TYPES, FOLDED_TYPES, TELEMETRY_TYPES, UndeclaredEvent,
                         check_strict, event_problem)
from rules.state import FOLDS, folds

ROOT = Path(__file__).resolve().parent.parent.parent
EMITTERS = {"emit", "_emit", "submit", "Draft"}
TYPE_RE = re.compile(r"[a-z_]+\.[a-z_]+\Z")


def _strings(node: ast.AST, fn: ast.AST | None):
    """The type strings an expression can be; an f-string yields a regex (its holes as [a-z_]+)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, ast.IfExp):
        yield from _strings(node.body, fn)
        yield from _strings(node.orelse, fn)
    elif isinstance(node, ast.JoinedStr):
        yield "re:" + "".join(re.escape(v.value) if isinstance(v, ast.Constant) else "[a-z_]+" for v in node.values)
    elif isinstance(node, ast.Name) and fn is not None:
        for a in ast.walk(fn):
            if isinstance(a, ast.Assign) and any(isinstance(t, ast.Name) and t.id == node.id for t in a.targets):
                yield from _strings(a.value, None)


def emitted_types(source: str) -> list[tuple[str, int]]:
    """(type or "re:<pattern>", line) of every emit-like call in ``source``."""
    out: list[tuple[str, int]] = []

    def visit(node: ast.AST, fn: ast.AST | None) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else fn
            if isinstance(child, ast.Call):
                f = child.func
                name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
                arg = child.args[0] if child.args else next((k.value for k in child.keywords if k.arg == "type"), None)
                if name in EMITTERS and arg is not None:
                    out.extend((s, child.lineno) for s in _strings(arg, fn)
                               if s.startswith("re:") or TYPE_RE.match(s))
            visit(child, inner)
    visit(ast.parse(source), None)
    return out


def compared_types(source: str) -> list[tuple[str, int]]:
    """Type strings compared with an event's type: ``ev.type == "x.y"``, ``e["type"] in ("x.y", ...)``."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        if not any((isinstance(s, ast.Attribute) and s.attr == "type")
                   or (isinstance(s, ast.Subscript) and isinstance(s.slice, ast.Constant) and s.slice.value == "type")
                   for s in sides):
            continue
        for s in sides:
            for e in (s.elts if isinstance(s, (ast.Tuple, ast.List, ast.Set)) else [s]):
                if isinstance(e, ast.Constant) and isinstance(e.value, str) and TYPE_RE.match(e.value):
                    out.append((e.value, node.lineno))
    return out


def undeclared(found: list[tuple[str, int]], known=EVENT_TYPES) -> list[tuple[str, int]]:
    return [(s, line) for s, line in found
            if not (any(re.fullmatch(s[3:], t) for t in known) if s.startswith("re:") else s in known)]


def sources(*tops: str) -> list[Path]:
    return sorted(p for top in tops for p in (ROOT / top).rglob("*.py"))


# ---- the declarations ---------------------------------------------------------------------
def test_each_type_is_declared_once_and_the_tables_derive_from_the_declarations():
    names = [t.name for t in DECLARED]
    assert len(names) == len(set(names)), "an event type declared twice"
    assert all(TYPE_RE.match(n) for n in names)
    assert list(EVENT_DATA) == names and all(EVENT_DATA[t.name] is t.data for t in DECLARED)
    assert TELEMETRY_TYPES == {t.name for t in DECLARED if t.telemetry}
    # what journal.shed may drop (SPEC §2): never a record of the case
    assert not {t for t in TELEMETRY_TYPES if t.split(".")[0] in
                ("alarm", "person", "wristband", "presence", "custody", "evidence", "locker", "door")}


def test_every_declared_type_is_folded_or_declared_not_folded_and_every_fold_is_declared():
    assert set(FOLDS) <= set(EVENT_TYPES), f"folds of undeclared types: {set(FOLDS) - set(EVENT_TYPES)}"
    missing = sorted(FOLDED_TYPES - set(FOLDS))
    assert not missing, f"declared as folded but no @folds in rules/state: {missing}"
    extra = sorted(set(FOLDS) - FOLDED_TYPES)
    assert not extra, f"folded but declared NOT_FOLDED: {extra}"


def test_a_fold_of_an_undeclared_type_or_a_second_fold_is_refused():
    with pytest.raises(ValueError, match="no event type declares"):
        folds("presense.entered")(lambda s, ev: None)
    with pytest.raises(ValueError, match="folded twice"):
        folds("presence.entered")(lambda s, ev: None)
    assert "presense.entered" not in FOLDS


# ---- the sources --------------------------------------------------------------------------
def test_every_emitted_or_compared_type_in_the_sources_is_declared():
    found, bad = 0, []
    for p in sources("gateway", "rules", "drivers"):
        text = p.read_text()
        hits = emitted_types(text) + compared_types(text)
        found += len(hits)
        bad += [f"{p.relative_to(ROOT)}:{line}: {s}" for s, line in undeclared(hits)]
    assert found > 100, f"the scan found only {found} type strings: it no longer reads the emit calls"
    assert not bad, "undeclared event types (a typo, or a missing DECLARED row):\n" + "\n".join(bad)


def test_the_source_scan_catches_a_typo():
    src = '''
def step(self, hooks):
    self.ctx.emit("presense.entered", {})
    typ = "locker.opened" if hooks else "locker.clsoed"
    self.ctx.emit(typ, {})
    core.submit(Draft(f"devise.{state}", {}))
    if ev.type == "alarm.raisd":
        pass
    self.ctx.emit("presence.left", {})
'''
    hits = emitted_types(src) + compared_types(src)
    assert sorted(s for s, _ in undeclared(hits)) == ["alarm.raisd", "locker.clsoed", "presense.entered",
                                                     "re:devise\\.[a-z_]+"]


def test_each_driver_manifest_declares_what_its_folder_emits():
    base = [hit for p in sources("drivers") if p.parent.name in ("drivers", "common")
            for hit in emitted_types(p.read_text())]
    assert base, "drivers/base.py's device.<state> emit was not found"
    for kind, spec in specs().items():
        assert spec.emits, f"drivers/{kind}/manifest.py declares no emits"
        assert not undeclared([(t, 0) for t in spec.emits]), f"{kind} emits undeclared types"
        own = [hit for p in sources(f"drivers/{kind}") for hit in emitted_types(p.read_text())]
        missing = undeclared(own + base, known=set(spec.emits))
        assert not missing, f"drivers/{kind} emits types its manifest does not list: {missing}"


# ---- the data ------------------------------------------------------------------------------
def test_strict_mode_refuses_an_undeclared_type_and_data_that_does_not_validate(monkeypatch):
    assert event_problem("presence.entered", {"person": None, "tag": "E3AF2232", "room": "r1"}) is None
    assert "not a declared event type" in event_problem("presense.entered", {})
    assert "room" in event_problem("presence.entered", {"person": None, "tag": "E3AF2232"})
    with pytest.raises(UndeclaredEvent):               # the suite runs strict (tests/conftest.py)
        check_strict("presence.entered", {"tag": 7})
    monkeypatch.delenv("CASEGATE_STRICT_EVENTS")       # production: journaled as emitted
    check_strict("presence.entered", {"tag": 7})


def test_a_driver_under_test_is_held_to_the_declarations():
    from drivers.base import PrintContext
    ctx = PrintContext("card-x")
    ctx.emit("card.swiped", {"card": "AA", "reader": "card-x", "room": None})
    with pytest.raises(UndeclaredEvent):
        ctx.emit("card.swipe", {"card": "AA", "reader": "card-x", "room": None})
    with pytest.raises(UndeclaredEvent):
        ctx.emit("card.swiped", {"card": "AA"})


def test_a_command_whose_events_do_not_match_their_declarations_is_refused_in_strict_mode(tmp_path):
    from gateway.config import parse_config
    from gateway.core import Core, RequestError
    from gateway.journal import Journal
    from rules.engine import Engine
    from rules.model import Draft
    cfg = parse_config({"center": {"id": "t-center"}, "storage": {"dir": str(tmp_path / "state")},
                        "mqtt": {"enabled": False}})
    core = Core(cfg, Journal(cfg.journal_path, cfg.storage.synchronous), Engine(cfg))
    core.start()
    try:
        ok = core.call(lambda c: (None, [Draft("door.opened", {"door": "d1", "room": "r1"})])).result(10)
        assert [e.type for e in ok.events] == ["door.opened"]
        for bad in (Draft("door.opend", {"door": "d1", "room": "r1"}), Draft("door.opened", {"room": "r1"})):
            with pytest.raises(RequestError) as e:
                core.call(lambda c, bad=bad: (None, [bad])).result(10)
            assert e.value.code == "internal" and bad.type in str(e.value)
    finally:
        core.stop()
    assert core.journal.last_seq == 1, "a refused command journaled its events"
