"""Invariants over the rules' state: the indexes agree with presence; checkpoint + tail == full replay."""
from __future__ import annotations

import pickle
from collections import Counter

from gateway.checkpoint import engine_state, restore_engine, snapshot
from helpers.scenario import T0, Scenario, flatten
from rules.engine import Engine
from rules.replay import Replayer, alarm_rows, rebuild
from rules.state import State


def check_indexes(s: State) -> None:
    """Every index agrees with the primary presence map."""
    by_room: dict[str, dict] = {}
    for who, rooms in s.presence.items():
        assert rooms, f"empty presence entry for {who}"
        for room, p in rooms.items():
            assert p.room == room
            by_room.setdefault(room, {})[who] = p
    assert {r: dict(o) for r, o in s.rooms.items()} == by_room
    for room, occ in s.rooms.items():
        want = Counter()
        for who, p in occ.items():
            want.update(p.keys)
        assert dict(want) == s.counts.get(room, {}), room
    for room in s.counts:
        if room not in s.rooms:
            assert s.counts[room] == {}
    tags: dict[str, Counter] = {}
    for who, rooms in s.presence.items():
        for room, p in rooms.items():
            for t in p.tags:
                tags.setdefault(t, Counter())[room] += 1
    assert {t: dict(r) for t, r in s.tag_rooms.items()} == {t: dict(c) for t, c in tags.items()}
    for tag, pid in s.tag_owner.items():
        assert tag in s.person_tags[pid]
    for pid, tags_ in s.person_tags.items():
        for t in tags_:
            assert s.tag_owner[t] == pid


def comparable(engine) -> dict:
    st_ = engine_state(engine)
    # the per-rule memo is a defaultdict: an empty entry touched by a read is not state
    st_["memo"] = {k: v for k, v in st_["memo"].items() if v}
    return st_


def restart_from(blob: bytes, journal, config, ckpt_seq: int):
    eng = Engine(config)
    restore_engine(eng, pickle.loads(blob)["engine"])
    r = Replayer(eng, config.center.id)
    journaled = dict(eng.active())
    for ev in journal:
        if ev.seq <= ckpt_seq:
            continue
        if ev.source == "rules":
            if ev.type == "alarm.raised":
                journaled[ev.data["alarm_id"]] = ev.data
            elif ev.type == "alarm.cleared":
                journaled.pop(ev.data["alarm_id"], None)
        r.feed(ev)
    return eng, r.produced, journaled


def full_replay(journal, config):
    eng = Engine(config)
    r = Replayer(eng, config.center.id)
    for ev in journal:
        r.feed(ev)
    return eng, r.produced


def check(steps, cut: int, until_h: float = 5.0, config=None, rules=None):
    steps = flatten(steps)
    s = Scenario(config=config, rules=rules)
    s.run(steps[:cut])
    ckpt_seq = s.seq
    blob = snapshot(s.engine)
    s.run(steps[cut:])
    s.until(max(s.engine.now - T0, 0) + until_h * 3600)
    full, full_out = full_replay(s.journal, s.config)
    assert list(alarm_rows(full_out)) == list(alarm_rows(s.alarm_events))     # replay == live
    part, part_out, part_journaled = restart_from(blob, s.journal, s.config, ckpt_seq)
    assert comparable(part) == comparable(full)
    assert list(alarm_rows(part_out)) == list(alarm_rows(e for e in full_out if e.seq > ckpt_seq))
    # what Core.rebuild hands to reconcile: the journal's active alarms
    assert part_journaled == rebuild(Engine(s.config), s.journal, s.config.center.id)
    # and the pending timers fire identically afterwards
    later = full.now + 48 * 3600
    assert [(d.type, d.data.get("alarm_id"), d.ts) for d in part.advance(later)] == \
        [(d.type, d.data.get("alarm_id"), d.ts) for d in full.advance(later)]
    return s
