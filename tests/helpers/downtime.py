"""A center's journal as it was when the gateway went down days ago: standing SOS alarms and legal
deadlines falling due in the gap (tests/test_start_after_downtime.py, bench/start_after_downtime.py)."""
from __future__ import annotations

import time

from gateway.config import load_config
from gateway.core import Core
from rules.model import Draft
from gateway.journal import Journal
from rules.engine import Engine

ALARMS = 1000
SUSPECTS = 12

# No cap on the level here: with the default cap (3, tests/rules/test_alarm_states.py) the first
# timer in the gap already reaches it, and "once per alarm" would hold however it was computed.
ROOMS = """
[alarms]
escalate_max_level = 0

[[rooms]]
id = "waiting-1"
type = "waiting"
"""


def build(cfg_path, days: float = 3.0) -> int:
    """The center as it was when it went down: ALARMS officers whose SOS button is pressed
    (critical, unacknowledged), and suspects registered hours apart, whose legal deadlines
    fall due one after another while the gateway is down. Written by a real Core driven
    synchronously on a clock ``days`` back, so the alarms are journaled as live."""
    cfg = load_config(cfg_path)
    t = [time.time() - days * 86400 - SUSPECTS * 7200 - ALARMS * 0.03]
    j = Journal(cfg.journal_path, "normal")
    core = Core(cfg, j, Engine(cfg), clock=lambda: t[0])
    core.rebuild()

    def emit(typ, data, source="test", dt=0.01):
        t[0] += dt
        core.submit(Draft(typ, data, source))
        core._process(core._q.take(100_000, 0))

    for i in range(SUSPECTS):          # 12 h criminal limits, 2 h apart: their timers fall in the gap
        emit("person.registered", {"person": f"s{i}", "role": "suspect", "name": "", "gender": "male",
                                   "case_id": f"c{i}", "case_type": "criminal", "limit_h": 12.0},
             dt=7200)
    for i in range(ALARMS):            # then, just before the gateway went down: 1,000 SOS alarms
        tag = f"{0xE3000000 + i:08X}"
        emit("person.registered", {"person": f"o{i}", "role": "officer", "name": ""})
        emit("wristband.bound", {"tag": tag, "person": f"o{i}"})
        emit("tag.status", {"tag": tag, "person": f"o{i}", "battery": None, "tamper": False, "sos": True,
                            "heart_rate": None}, source="zone")
    last = j.last_seq
    j.close()
    return last
