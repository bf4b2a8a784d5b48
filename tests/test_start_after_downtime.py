"""A start after days down can never hang or drop (issue 28 item 3): a journal with 1,000
unacknowledged critical alarms, its last event 3 days ago, and rule timers spread over the
gap. The real daemon sends READY=1 (received on our own NOTIFY_SOCKET; how soon:
bench/start_after_downtime.py), extends its start timeout in every phase before it, escalates each alarm at most once (to the level due
after the whole downtime), and drops nothing."""
from __future__ import annotations

import json
import socket
import sqlite3
import time
from collections import Counter

from helpers.daemon import DaemonProcess, cli, write_config
from helpers.downtime import ALARMS, ROOMS, build
from helpers.polling import poll

READY_GUARD_S = 120.0      # a hang guard, not a speed claim (speed: bench/start_after_downtime.py)


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
        # the catch-up is committed: every standing critical alarm escalated once, capped at 3.
        # Waited for on the escalations themselves: "last_seq > before + ALARMS" also counts the
        # start's own events and the legal alarms of the gap, so it held one escalation early once
        # the status was read without a CLI child per poll (999 of 1,000).
        def escalations() -> list[dict]:
            conn = sqlite3.connect(d.state_dir / "journal.db")
            try:
                return [json.loads(x) for (x,) in conn.execute(
                    "SELECT data FROM events WHERE type = 'alarm.escalated' AND seq > ?", (before_seq,))]
            finally:
                conn.close()
        poll(lambda: sum(e["code"] == "sos" for e in escalations()) >= ALARMS, 30, interval=0.2)
        esc = escalations()
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
