"""A core over a temp storage dir with a year-old center's history, and a retention pass on demand."""
from __future__ import annotations

import time
from pathlib import Path

from gateway.config import parse_config
from gateway.core import Core
from rules.model import Draft
from gateway.journal import Journal
from rules.engine import Engine


DAY = 86400.0


LO = {"locker": "locker-ev1", "compartment": 5}


def make_core(tmp_path, **storage):
    cfg = parse_config({"center": {"id": "t-center"},
                        "rooms": [{"id": "waiting-1", "type": "waiting"}, {"id": "exit", "type": "exit"},
                                  {"id": "evidence", "type": "evidence_store"}],
                        "storage": {"dir": str(tmp_path / "state"), **storage}, "mqtt": {"enabled": False}})
    j = Journal(cfg.journal_path, cfg.storage.synchronous)
    core = Core(cfg, j, Engine(cfg))
    core.start()
    return cfg, j, core


def toml_for(tmp_path, cfg) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(f'[center]\nid = "t-center"\n[storage]\ndir = "{cfg.storage.dir}"\n[mqtt]\nenabled = false\n')
    return p


def submit(core, t, type_, data, source="test"):
    return core.submit(Draft(type_, data, source, ts=t)).result(10)


def alarm(aid, persons=()):
    return {"alarm_id": aid, "code": "test_code", "severity": "major", "room": "waiting-1",
            "persons": list(persons), "since": "2025-01-01T00:00:00.000Z", "details": {}}


def old_center(core, t0):
    """A year-old history: some matters closed since, some still open."""
    e = {}
    # still inside: registered a year ago, never left
    e["s_in"] = submit(core, t0, "person.registered", {"person": "S-IN", "role": "suspect", "case_id": "C1"})
    submit(core, t0 + 1, "wristband.bound", {"tag": "0000AA01", "person": "S-IN"})
    submit(core, t0 + 2, "presence.entered", {"person": "S-IN", "tag": "0000AA01", "room": "waiting-1"})
    # came and went a year ago: archived, still traceable
    submit(core, t0 + 3, "person.registered", {"person": "S-GONE", "role": "suspect", "case_id": "C2"})
    submit(core, t0 + 4, "wristband.bound", {"tag": "0000AA02", "person": "S-GONE"})
    submit(core, t0 + 5, "presence.entered", {"person": "S-GONE", "tag": "0000AA02", "room": "waiting-1"})
    submit(core, t0 + 600, "presence.left", {"person": "S-GONE", "tag": "0000AA02", "room": "waiting-1",
                                             "seconds": 595})
    submit(core, t0 + 601, "person.left", {"person": "S-GONE"}, "gateway")
    # evidence deposited a year ago, still in custody
    submit(core, t0 + 700, "custody.ordered", {"order": "ORD1", "item": "E0001", "action": "deposit",
                                               "case_id": "C1", "by": "O1", "expires": None})
    submit(core, t0 + 710, "locker.unlock_requested", dict(LO, by="O1", order="ORD1"))
    submit(core, t0 + 712, "locker.opened", LO)
    e["added"] = submit(core, t0 + 720, "evidence.added", dict(LO, item="E0001"))
    submit(core, t0 + 730, "locker.closed", LO)
    # evidence deposited and released a year ago: its chain may go to the archive
    submit(core, t0 + 800, "evidence.added", {"locker": "locker-ev1", "compartment": 6, "item": "E0002"})
    submit(core, t0 + 810, "custody.ordered", {"order": "ORD2", "item": "E0002", "action": "release",
                                               "case_id": "C2", "by": "O1", "expires": None})
    submit(core, t0 + 820, "evidence.removed", {"locker": "locker-ev1", "compartment": 6, "item": "E0002"})
    # alarms: one never acknowledged, one acknowledged
    e["unacked"] = submit(core, t0 + 900, "alarm.raised", alarm("test_code:00000000000000aa"), "rules")
    submit(core, t0 + 901, "alarm.raised", alarm("test_code:00000000000000bb"), "rules")
    submit(core, t0 + 940, "alarm.cleared", alarm("test_code:00000000000000bb"), "rules")
    submit(core, t0 + 950, "alarm.acknowledged", dict(alarm("test_code:00000000000000bb"), by="O1", note=""),
           "rules")
    for i in range(50):   # telemetry of people long gone
        submit(core, t0 + 1000 + i, "card.swiped", {"card": f"{i:010X}", "reader": "r", "room": "waiting-1",
                                                    "person": None})
    return e


def prune_now(core, bound=10**12):
    core.checkpoint_seq = lambda: bound
    return core.call(lambda c: (c.prune_retained(time.time(), force=True), [])).result(30).value
