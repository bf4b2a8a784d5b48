"""Growth of the folded state over months (issue 24 item 4): bench/soak.py's center,
folded through the rule engine alone (rules.replay.Replayer, as `casegate replay
--input` does: no SQLite, no threads), so 90 days take minutes instead of hours.

    uv run python bench/state_growth.py [--days 90] [--scale 1.0] [--top 8] [--keep-departed]

Per day: persons in the state, the checkpoint's pickled size (what a restart loads),
RSS, and the attributes of State and Engine that grew most since day 7. The
figure the issue asks for: RSS flat within 5 MB after day 7.
"""
from __future__ import annotations

import argparse
import gc
import pickle
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.soak import DAY, T0, Center, center_dict, rss_mb  # noqa: E402
from gateway.checkpoint import engine_state  # noqa: E402
from gateway.config import parse_config  # noqa: E402
from rules.model import GENESIS, Draft, seal  # noqa: E402
from rules.engine import Engine  # noqa: E402
from rules.replay import Replayer  # noqa: E402


def sizes(engine) -> dict[str, int]:
    out = {}
    for k, v in engine_state(engine).items():
        if k == "state":
            for sk, sv in vars(v).items():
                out[f"state.{sk}"] = len(pickle.dumps(sv, protocol=pickle.HIGHEST_PROTOCOL))
        else:
            out[k] = len(pickle.dumps(v, protocol=pickle.HIGHEST_PROTOCOL))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--top", type=int, default=8)
    ap.add_argument("--base-day", type=int, default=7, help="growth is measured from the end of this day")
    ap.add_argument("--keep-departed", action="store_true",
                    help="disable rules/departed.py's sweep (the growth before issue 24)")
    a = ap.parse_args()
    if a.keep_departed:
        from rules import departed
        departed.sweep = lambda engine, now: 0
    cfg = parse_config(center_dict("/nonexistent"))
    engine = Engine(cfg)
    rep = Replayer(engine, "soak", derive=True)
    sim = Center(a.scale)
    seq = 0
    prev = GENESIS

    def feed(items):
        nonlocal seq, prev
        for t, ty, d, src in sorted(items, key=lambda x: x[0]):
            rep.tick(t)
            seq += 1
            ev = seal(Draft(ty, d, src, t), seq, "soak", prev, t)
            prev = ev.hash
            rep.feed(ev)
            rep.produced.clear()
    feed(sim.setup(T0))
    base = None
    rss7 = None
    rss_max_after7 = 0.0
    wall = time.perf_counter()
    for day in range(a.days):
        start = T0 + day * DAY
        sim.schedule_day(start)
        feed(list(sim.run_until(start + DAY)))
        rep.tick(start + DAY)
        rep.produced.clear()
        gc.collect()
        rss = rss_mb()
        ck = len(pickle.dumps(engine_state(engine), protocol=pickle.HIGHEST_PROTOCOL))
        print(f"day {day + 1:3d}: {seq:9,} inputs · persons {len(engine.state.persons):5,} · "
              f"checkpoint {ck / 1e6:6.2f} MB · RSS {rss:6.1f} MB", flush=True)
        if day + 1 == a.base_day:
            base = sizes(engine)
            rss7 = rss
        elif base is not None:
            rss_max_after7 = max(rss_max_after7, rss)
    if base is not None:
        now = sizes(engine)
        grown = sorted(((now.get(k, 0) - base.get(k, 0), k) for k in now), reverse=True)[:a.top]
        print(f"\ngrew most since day {a.base_day} (pickled bytes): "
              + ", ".join(f"{k} {d / 1e3:+.0f} kB" for d, k in grown))
        print(f"RSS day {a.base_day} {rss7:.1f} MB, max after {rss_max_after7:.1f} MB: "
              f"{rss_max_after7 - rss7:+.1f} MB over {a.days - a.base_day} days")
    print(f"run took {time.perf_counter() - wall:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
