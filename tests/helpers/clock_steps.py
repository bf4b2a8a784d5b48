"""A center whose clock steps: its journal stays ordered and replays (whole, and from a checkpoint at each step)."""
from __future__ import annotations

import pickle

from gateway.checkpoint import engine_state, restore_engine, snapshot
from rules.engine import Engine
from rules.replay import Replayer, alarm_rows, replay


def check_journal_and_replay(c) -> None:
    """c: a Center of tests/test_clock_steps.py (its events() and config)."""
    evs = c.events()
    times = [e.epoch for e in evs]
    assert times == sorted(times), "journal ts went backwards"
    live = [r for r in alarm_rows(e for e in evs if e.source == "rules")]
    assert list(alarm_rows(replay(evs, c.config))) == live
    # and checkpoint + tail at every clock.stepped (state carries the shift)
    for cut in [e.seq for e in evs if e.type == "clock.stepped"]:
        eng = Engine(c.config)
        r = Replayer(eng, c.config.center.id)
        for e in evs[:cut]:
            r.feed(e)
        part = Engine(c.config)
        restore_engine(part, pickle.loads(snapshot(eng))["engine"])
        r2 = Replayer(part, c.config.center.id)
        for e in evs[cut:]:
            r2.feed(e)
        full = Engine(c.config)
        r3 = Replayer(full, c.config.center.id)
        for e in evs:
            r3.feed(e)
        a, b = engine_state(part), engine_state(full)
        a["memo"] = {k: v for k, v in a["memo"].items() if v}
        b["memo"] = {k: v for k, v in b["memo"].items() if v}
        assert a == b
