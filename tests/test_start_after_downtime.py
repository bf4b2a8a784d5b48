"""A start after days down can never hang or drop (issue 28 item 3): a journal with 1,000
unacknowledged critical alarms, its last event 3 days ago, and rule timers spread over the
gap. The real daemon sends READY=1 (received on our own NOTIFY_SOCKET; how soon: bench/start_after_downtime.py), extends
its start timeout in every phase before it, escalates each alarm at most once (to the level due
after the whole downtime), and drops nothing."""
from __future__ import annotations

import json
import socket
import sqlite3
import time
from collections import Counter

from helpers.daemon import DaemonProcess, cli, write_config
from gateway.config import load_config
from gateway.core import Core
from gateway.events import Draft
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


READY_GUARD_S = 120.0      # a hang guard, not a speed claim (speed: bench/start_after_downtime.py)


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


def journal_types(state_dir) -> Counter:
    conn = sqlite3.connect(state_dir / "journal.db")
    try:
        return Counter(dict(conn.execute("SELECT type, COUNT(*) FROM events GROUP BY type").fetchall()))
    finally:
        conn.close()


def test_ready_after_3_days_down_with_1000_standing_alarms(tmp_path):
    """READY=1 comes after the catch-up, with EXTEND_TIMEOUT_USEC before it so that systemd waits;
    how long it takes (~2 s idle, the 10 s a unit may take) is bench/start_after_downtime.py's
    figure: under a loaded CI a wall-clock bound here only measured the load."""
    cfg = write_config(tmp_path, None, ROOMS)
    before_seq = build(cfg)
    conn = sqlite3.connect(tmp_path / "state" / "journal.db")
    raised_before = conn.execute("SELECT COUNT(*) FROM events WHERE type = 'alarm.raised' "
                                 "AND data LIKE '%\"severity\":\"critical\"%'").fetchone()[0]
    conn.close()
    assert raised_before >= ALARMS

    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    d = DaemonProcess(cfg, env={"NOTIFY_SOCKET": str(notify)})
    t0 = time.monotonic()
    d.start(wait=False)
    try:
        messages: list[str] = []
        deadline = t0 + READY_GUARD_S
        while not any("READY=1" in m for m in messages):
            left = deadline - time.monotonic()
            assert left > 0, f"no READY=1 within {READY_GUARD_S} s; got {messages}\n{d.log()[-3000:]}"
            sock.settimeout(left)
            try:
                messages.append(sock.recv(4096).decode())
            except socket.timeout:
                continue
        ready_after = time.monotonic() - t0
        before_ready = messages[:-1]
        assert any(m.startswith("EXTEND_TIMEOUT_USEC=") and "catching up" in m for m in before_ready), messages

        d.wait_ready()
        # the catch-up is committed: every standing critical alarm escalated once, capped at 3
        d.wait_status(lambda s: s["journal"]["last_seq"] > before_seq + ALARMS, timeout=30)
        conn = sqlite3.connect(d.state_dir / "journal.db")
        esc = [json.loads(x) for (x,) in conn.execute(
            "SELECT data FROM events WHERE type = 'alarm.escalated' AND seq > ?", (before_seq,))]
        conn.close()
        per_alarm = Counter(e["alarm_id"] for e in esc)
        assert len(per_alarm) >= ALARMS and max(per_alarm.values()) == 1, per_alarm.most_common(3)
        # the SOS alarms: the level due after 3 days (escalate_after_s 120, then every 300 s), in
        # one event; alarms the legal timers raised during the gap escalate once too (fewer levels)
        sos = [e["level"] for e in esc if e["code"] == "sos"]
        assert len(sos) == ALARMS and min(sos) >= 3 * 86400 // 300 - 1, min(sos)
        # nothing dropped: no "queue full", the chain is whole, a second look finds no more
        log = d.log()
        assert "queue full" not in log and "busy" not in log, log[-2000:]
        assert cli("journal", "verify", config=cfg).returncode == 0
        print(f"\nREADY after {ready_after:.2f} s; {len(esc)} catch-up escalations for "
              f"{len(per_alarm)} alarms; journal {dict(journal_types(d.state_dir))}")
    finally:
        d.stop()
        sock.close()
