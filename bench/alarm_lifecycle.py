"""Cost of the alarm lifecycle (rules/alarm_states.py) inside the rule engine.

    uv run python bench/alarm_lifecycle.py [--standing 1000] [--n 20000]

Prints, CPU time per event:
  (a) presence events through Engine.apply with no alarms standing (the hot path's
      extra checks for the lifecycle)
  (b) alarm.raised + alarm.cleared pairs folded with ``--standing`` cleared-unacknowledged
      critical alarms already standing (each fold recomputes the next deadline: O(standing))
  (c) one escalation round over ``--standing`` unacknowledged critical alarms (Engine.advance)
  (d) a shelve that re-flags ``--standing`` active facility alarms
Figures, not assertions; every loop is bounded in count.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from rules.model import GENESIS, Draft, format_ts, seal  # noqa: E402
from rules.engine import Engine  # noqa: E402
from helpers.scenario import T0, make_config  # noqa: E402


class Feeder:
    def __init__(self, engine):
        self.e = engine
        self.seq = 0
        self.prev = GENESIS

    def feed(self, d: Draft, t: float) -> int:
        n = 0
        pending = [d]
        while pending:
            x = pending.pop(0)
            self.seq += 1
            ev = seal(x, self.seq, "bench", self.prev, t)
            self.prev = ev.hash
            pending.extend(self.e.apply(ev))
            n += 1
        return n


def alarm(code, i, t, severity):
    return {"alarm_id": f"{code}:{i:016x}", "code": code, "severity": severity, "room": "exit", "persons": [],
            "since": format_ts(t), "message": {"zh": "x", "en": "x"}, "details": {"door": f"d{i}"},
            "legal_basis": [], "snapshot": None}


def cpu(fn) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--standing", type=int, default=1000)
    ap.add_argument("--n", type=int, default=20000)
    a = ap.parse_args()
    cfg = make_config()

    # (a) presence with nothing standing
    eng = Engine(cfg)
    f = Feeder(eng)
    steps = [Draft("presence.entered" if i % 2 == 0 else "presence.left",
                   {"person": None, "tag": f"{i % 50:08X}", "room": "corridor", "seconds": 0}, "zone")
             for i in range(a.n)]
    s = cpu(lambda: [f.feed(d, T0 + i * 0.01) for i, d in enumerate(steps)])
    print(f"(a) presence events, nothing standing: {s / a.n * 1e6:.1f} µs/event")

    # (b) raise/clear pairs with `standing` cleared-unacked critical alarms
    eng = Engine(cfg)
    f = Feeder(eng)
    t = T0
    for i in range(a.standing):
        d = alarm("sos", i, t, "critical")
        f.feed(Draft("alarm.raised", d, "rules", t), t)
        f.feed(Draft("alarm.cleared", d, "rules", t), t)
    assert len(eng.book.standing) == min(a.standing, 1000)
    pairs = min(a.n, 5000)

    def pairs_run():
        for i in range(pairs):
            d = alarm("door_held_open", 10_000_000 + i, t + 1, "warning")
            f.feed(Draft("alarm.raised", d, "rules", t + 1), t + 1)
            f.feed(Draft("alarm.acknowledged", dict(d, by="O1", note=None), "cli", t + 1), t + 1)
            f.feed(Draft("alarm.cleared", d, "rules", t + 1), t + 1)
    s = cpu(pairs_run)
    print(f"(b) raise+ack+clear with {len(eng.book.standing)} standing: {s / (3 * pairs) * 1e6:.1f} µs/event")

    # (c) one escalation round: every standing alarm escalates
    s = cpu(lambda: eng.advance(t + 121))
    lv = sum(1 for r in eng.book.standing.values() if r["level"] >= 1)
    print(f"(c) escalation round over {lv} unacked critical alarms: {s * 1e3:.1f} ms "
          f"({s / max(lv, 1) * 1e6:.1f} µs/alarm)")

    # (d) a shelve re-flagging `standing` active facility alarms
    eng = Engine(cfg)
    f = Feeder(eng)
    for i in range(a.standing):
        eng.alarms[("door_held_open", f"d{i}")] = alarm("door_held_open", i, t, "warning")
    n = {"v": 0}
    s = cpu(lambda: n.__setitem__("v", f.feed(Draft("alarm.shelved", {
        "code": "door_held_open", "scope": None, "until": format_ts(t + 60), "reason": "bench", "by": "O1"},
        "cli", t), t)))
    print(f"(d) shelve re-flagging {a.standing} active alarms: {s * 1e3:.1f} ms ({n['v'] - 1} updates journaled)")


if __name__ == "__main__":
    main()
