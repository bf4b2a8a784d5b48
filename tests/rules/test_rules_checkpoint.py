"""Checkpoint + tail == full replay: the complete engine state and the alarm output.

The checkpoint is taken from the *live* engine (as the daemon does), serialised
with gateway.checkpoint (pickle of the plain-data attributes), loaded into a
fresh engine and fed the rest of the journal; a full replay of the whole
journal must agree with it in every attribute and every regenerated alarm.
"""
from __future__ import annotations

import pickle

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.checkpoint import engine_state, restore_engine, snapshot
from rules.engine import Engine
from rules.replay import alarm_rows
from helpers.rule_cases import CASES
from helpers.scenario import T0, Scenario, flatten
from helpers.rules_replay import _setup, _to_events, step
from helpers.rules_checks import check, comparable, full_replay, restart_from


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(step, st.sampled_from([-2.0, 0.0, 0.5, 3.0, 20.0, 45.0, 400.0])), max_size=60),
       st.floats(0.0, 1.0))
def test_property_checkpoint_plus_tail_equals_full_replay(script, frac):
    steps = _setup() + _to_events(script)
    check(steps, int(len(steps) * frac))


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(step, st.sampled_from([0.0, 0.5, 3.0, 20.0, 45.0, 400.0])), max_size=50),
       st.floats(0.0, 1.0),
       st.lists(st.tuples(st.integers(0, 70), st.sampled_from([0.0, 5.0, 3600.0, 86400.0])), max_size=3))
def test_property_with_forward_clock_steps(script, frac, jumps):
    """Journal time jumps forward (clock.stepped, as gateway/timebase.py journals it):
    every later event is stamped that much later; live, replay and checkpoint + tail
    agree, the clock shift being part of the checkpointed state."""
    from rules.model import format_ts
    at = dict(jumps)
    out, shift = [], 0.0
    for i, (t, typ, data) in enumerate(flatten(_setup() + _to_events(script))):
        if i in at:
            jump = at[i]
            out.append((t + shift, "clock.stepped", {"from": format_ts(T0 + t + shift), "delta_s": jump,
                                                     "to": format_ts(T0 + t + shift + jump),
                                                     "journal_jump_s": jump}))
            shift += jump
        out.append((t + shift, typ, data))
    s = check(out, int(len(out) * frac))
    assert s.engine.clock_shift == shift


def test_every_rule_case_survives_a_checkpoint_in_the_middle():
    for c in CASES:
        steps = flatten(c.steps)
        for cut in {1, len(steps) // 2, len(steps) - 1}:
            if 0 < cut < len(steps):
                check(steps, cut, until_h=0, rules=c.rules)


def test_checkpoint_differs_when_the_state_differs():
    """The comparison can fail: a checkpoint taken one event early is not the full state."""
    steps = flatten(_setup())
    s = Scenario()
    s.run(steps[:-1])
    blob = snapshot(s.engine)
    s.run(steps[-1:])
    eng = Engine(s.config)
    restore_engine(eng, pickle.loads(blob)["engine"])
    assert comparable(eng) != comparable(s.engine)


def test_config_derived_attributes_are_not_checkpointed():
    s = Scenario()
    st_ = engine_state(s.engine)
    for k in ("config", "settings", "dispatch", "room_types", "enabled", "_heap", "event"):
        assert k not in st_
    for k in ("state", "alarms", "by_id", "_last_id", "timers", "memo", "now", "_n"):
        assert k in st_


def _bench_rules():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "bench" / "rules.py"
    spec = importlib.util.spec_from_file_location("bench_rules", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_busy_center_checkpoint_plus_tail_equals_full_replay():
    """The bench's synthetic busy center (200 persons, 50 rooms), 30,000 events,
    checkpointed live twice; each checkpoint + its tail equals the full replay."""
    b = _bench_rules()
    cfg = b.center()
    steps = [(t - T0, typ, data, src) for t, typ, data, src in b.synthetic(30_000)]
    s = Scenario(config=cfg)
    blobs = []
    for i, st_ in enumerate(steps):
        s.step(*st_)
        if i in (7_000, 21_000):
            blobs.append((s.seq, snapshot(s.engine)))
    assert len(s.alarm_events) > 50             # a center where things happen
    full, full_out = full_replay(s.journal, cfg)
    for seq, blob in blobs:
        part, part_out, _ = restart_from(blob, s.journal, cfg, seq)
        assert comparable(part) == comparable(full)
        assert list(alarm_rows(part_out)) == list(alarm_rows(e for e in full_out if e.seq > seq))
