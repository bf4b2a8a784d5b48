"""Restart after an upgrade or a config change from a checkpoint (issue 24 item 3).

Every rule case (rule_cases.CASES: every rule family) runs live into a journal; a
checkpoint is written midway through gateway.checkpoint's real file format by
"the old release", and loaded by "the upgraded one":

* other code, same state shape: the checkpoint is used; checkpoint + tail equals a
  full replay (every engine attribute and every regenerated alarm);
* a state class that moved module: it loads by name;
* a changed state class: migrated when a migration is registered, else refused;
* another config: restored under the config it was written under, the tail replayed
  under it, then reloaded to the new config -- equal to what a live daemon has
  (replay under the old config, then ``Engine.reconfigure`` to the new one), including
  the alarm events the reload produces.
"""
from __future__ import annotations

import copyreg
import logging
import sys
import types

import pytest

from gateway.checkpoint import MIGRATIONS, CheckpointStore, fields_of, migration, restore_engine, snapshot
from rules.catalog import CATALOG
from rules.engine import Engine
from rules.replay import Replayer, alarm_rows
from rules.state import Person
from helpers.rule_cases import CASES
from helpers.scenario import ROOMS, Scenario, flatten, make_config
from helpers.rules_checks import comparable, full_replay


def _store(tmp_path, config, source: str | None = None) -> CheckpointStore:
    store = CheckpointStore(tmp_path / "checkpoints", config, keep=1)
    if source is not None:
        store.source = source
    return store


def _hashes(journal):
    by_seq = {e.seq: e.hash for e in journal}
    return by_seq.get


def _live(case, cut: int, config):
    """The case live under ``config``, checkpointed (by the old release) after ``cut`` steps."""
    steps = flatten(case.steps)
    s = Scenario(config=config)
    s.run(steps[:cut])
    return s, steps


def _restart(store: CheckpointStore, journal, config):
    """What Core.rebuild does with the newest checkpoint: restore (under the config it was
    written under), replay the tail, then reload to ``config``."""
    loaded = store.load_newest(_hashes(journal))
    assert loaded is not None
    eng = Engine(config)
    if loaded.config_changed:
        eng.configure(loaded.config)
    restore_engine(eng, loaded.state)
    r = Replayer(eng, config.center.id)
    for ev in journal:
        if ev.seq > loaded.seq:
            r.feed(ev)
    reload_out = eng.reconfigure(config) if loaded.config_changed else []
    return eng, r.produced, reload_out, loaded


def _cuts(steps) -> list[int]:
    return sorted(c for c in {1, len(steps) // 2, len(steps) - 1} if 0 < c < len(steps))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_after_an_upgrade_checkpoint_plus_tail_equals_full_replay(case, tmp_path):
    config = make_config(case.rules)
    for cut in _cuts(flatten(case.steps)):
        s, steps = _live(case, cut, config)
        _store(tmp_path, config, source="0ld-release-code").write(snapshot(s.engine), s.seq, s.prev)
        s.run(steps[cut:])
        s.until(max(s.engine.now - s.t0, 0) + 5 * 3600)
        eng, out, _, loaded = _restart(_store(tmp_path, config), s.journal, config)
        assert not loaded.config_changed
        full, full_out = full_replay(s.journal, config)
        assert comparable(eng) == comparable(full)
        assert list(alarm_rows(out)) == list(alarm_rows(e for e in full_out if e.seq > loaded.seq))


def _new_rules(case) -> list[dict]:
    """Config changes a reload may bring for the case's rule: disabled, or every number
    in its settings half as large again."""
    spec = CATALOG[case.code]
    mine = dict(case.rules.get(case.code) or {})
    scaled = dict(mine)
    for name, f in spec.settings.model_fields.items():
        v = mine.get(name, f.default)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v:
            scaled[name] = type(v)(v * 1.5) if isinstance(v, float) else v + max(1, v // 2)
    # a legal alarm is disabled only with a reason on record (gateway/legal_disabled.py)
    disabled = {**case.rules, case.code: {**mine, "enabled": False}, "legal_disabled_reason": "test: approved"}
    return [disabled, {**case.rules, case.code: scaled}]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_after_a_config_change_restart_equals_live_reload(case, tmp_path, caplog):
    old = make_config(case.rules)
    steps = flatten(case.steps)
    cut = len(steps) // 2 or 1
    for i, rules in enumerate(_new_rules(case)):
        # the second change also adds a room (configure's room tables)
        rooms = ROOMS if i == 0 else ROOMS + [{"id": "annex-1", "type": "waiting", "name": "候问室9"}]
        try:
            new = make_config(rules, rooms=rooms)
        except Exception:           # a scaled setting out of its bounds: not a config anyone runs
            continue
        if new.rules_config_hash() == old.rules_config_hash():     # the case disables it already
            continue
        s, _ = _live(case, cut, old)
        folder = tmp_path / f"change{i}"
        _store(folder, old).write(snapshot(s.engine), s.seq, s.prev)
        s.run(steps[cut:])
        s.until(max(s.engine.now - s.t0, 0) + 5 * 3600)
        with caplog.at_level(logging.INFO, logger="casegate.checkpoint"):
            eng, out, reload_out, loaded = _restart(_store(folder, new), s.journal, new)
        assert loaded.config_changed and "written under another config" in caplog.text
        # what the live daemon has: everything under the old config, then a reload to the new
        live_eng, live_out = full_replay(s.journal, old)
        live_reload = live_eng.reconfigure(new)
        assert comparable(eng) == comparable(live_eng)
        assert list(alarm_rows(out)) == list(alarm_rows(e for e in live_out if e.seq > loaded.seq))
        assert [(d.type, d.data, d.ts) for d in reload_out] == [(d.type, d.data, d.ts) for d in live_reload]
        assert eng.enabled == live_eng.enabled and eng.room_types == live_eng.room_types
        later = live_eng.now + 48 * 3600
        assert [(d.type, d.data.get("alarm_id"), d.ts) for d in eng.advance(later)] == \
            [(d.type, d.data.get("alarm_id"), d.ts) for d in live_eng.advance(later)]


def test_the_comparison_can_fail_a_full_replay_under_the_new_config_differs(tmp_path):
    """A restart that replayed everything under the new config would not be what the live
    daemon has: the config-change test above can tell them apart."""
    case = next(c for c in CASES if c.code == "unattended_suspect" and c.expected)
    old = make_config(case.rules)
    new = make_config(_new_rules(case)[0])
    steps = flatten(case.steps)
    s, _ = _live(case, len(steps) // 2, old)
    s.run(steps[len(steps) // 2:])
    s.until(max(s.engine.now - s.t0, 0) + 5 * 3600)
    live_eng, _ = full_replay(s.journal, old)
    live_eng.reconfigure(new)
    under_new, _ = full_replay(s.journal, new)
    assert comparable(under_new) != comparable(live_eng)


# ---- classes by name; changed classes migrate or refuse -----------------------------------
def _moved_snapshot(engine, monkeypatch):
    """A snapshot whose Person instances are pickled under another module path (as the
    release before a move would have written them): a stand-in module, gone at load."""
    old_mod = types.ModuleType("rules.old_home")
    stand_in = type("Person", (), {"__module__": "rules.old_home"})
    old_mod.Person = stand_in
    monkeypatch.setitem(sys.modules, "rules.old_home", old_mod)
    from gateway import checkpoint

    class Moved(checkpoint._ShapePickler):
        def reducer_override(self, obj):
            if type(obj) is Person:
                self.classes.add(Person)
                return copyreg._reconstructor, (stand_in, object, None), obj.__reduce_ex__(5)[2]
            if obj is stand_in:              # the old release knew it as Person, with Person's fields
                return NotImplemented
            return super().reducer_override(obj)
    monkeypatch.setattr(checkpoint, "_ShapePickler", Moved)
    blob = snapshot(engine)
    monkeypatch.undo()
    blob.meta["modules"]["Person"] = "rules.old_home"
    assert b"rules.old_home" in blob and "rules.old_home" not in sys.modules
    return blob


def _with_people():
    case = next(c for c in CASES if c.code == "unattended_suspect" and c.expected)
    s = Scenario(config=make_config(case.rules))
    s.run(flatten(case.steps))
    assert s.engine.state.persons
    return s


def test_a_state_class_that_moved_module_loads_by_name(tmp_path, monkeypatch):
    s = _with_people()
    blob = _moved_snapshot(s.engine, monkeypatch)
    store = _store(tmp_path, s.config)
    store.write(blob, s.seq, s.prev)
    loaded = store.load_newest(_hashes(s.journal))
    assert loaded is not None
    assert all(type(p) is Person for p in loaded.state["state"].persons.values())
    eng = Engine(s.config)
    restore_engine(eng, loaded.state)
    assert comparable(eng) == comparable(s.engine)


def test_a_changed_state_class_migrates_when_a_migration_is_registered(tmp_path, monkeypatch, caplog):
    """The checkpoint says Person had no ``identity`` but a ``nickname``: refused (full
    replay, saying why) until a migration from exactly those fields is registered."""
    s = _with_people()
    now = fields_of(Person)
    old = [f for f in now if f != "identity"] + ["nickname"]
    assert all(p.identity is None for p in s.engine.state.persons.values())
    # the old release's pickle of each Person: no identity, a nickname
    old_state = {pid: {k: getattr(s.engine.state.persons[pid], k) for k in now if k != "identity"}
                 | {"nickname": "n-" + pid} for pid in s.engine.state.persons}
    store = _store(tmp_path, s.config)
    from gateway import checkpoint

    class OldShape(checkpoint._ShapePickler):
        def reducer_override(self, obj):
            if type(obj) is Person:
                self.classes.add(Person)
                return copyreg.__newobj__, (Person,), (None, old_state[obj.id])
            return super().reducer_override(obj)
    monkeypatch.setattr(checkpoint, "_ShapePickler", OldShape)
    old_blob = snapshot(s.engine)
    monkeypatch.undo()
    old_blob.meta = {**old_blob.meta, "shape": {**old_blob.meta["shape"], "Person": old}}
    old_blob.meta["code"] = checkpoint.shape_code(old_blob.meta["shape"])
    store.write(old_blob, s.seq, s.prev)
    with caplog.at_level(logging.INFO, logger="casegate.checkpoint"):
        assert store.load_newest(_hashes(s.journal)) is None
    assert "Person's fields changed: added ['identity'], removed ['nickname']" in caplog.text
    assert "full replay" in caplog.text

    seen = []

    @migration("Person", old)
    def drop_nickname(values):
        seen.append(values.pop("nickname"))
        return values                                 # identity: its default (None)
    try:
        with caplog.at_level(logging.INFO, logger="casegate.checkpoint"):
            loaded = store.load_newest(_hashes(s.journal))
        assert loaded is not None and "migrated Person" in caplog.text
        assert sorted(seen) == sorted("n-" + pid for pid in s.engine.state.persons)
        persons = loaded.state["state"].persons
        assert all(type(p) is Person and p.identity is None for p in persons.values())
        eng = Engine(s.config)
        restore_engine(eng, loaded.state)
        assert comparable(eng) == comparable(s.engine)
    finally:
        MIGRATIONS.pop(("Person", tuple(old)), None)


def test_a_name_two_modules_define_resolves_by_module_then_by_fields():
    """In the daemon gateway.event_schemas also defines a ``Door`` (an event's data model):
    the state's Door is found where it was, or, moved, by its recorded fields."""
    from gateway.checkpoint import resolve, state_classes
    from rules.state import Door
    classes = state_classes()
    other = type("Door", (), {"__module__": "gateway.event_schemas"})
    classes["Door"] = [other, *classes.get("Door", [])]
    assert resolve("Door", "rules.state", fields_of(Door), classes) is Door
    assert resolve("Door", "rules.gone", fields_of(Door), classes) is Door
    with pytest.raises(ValueError, match="each define one"):
        resolve("Door", "rules.gone", ["no", "such"], classes)
