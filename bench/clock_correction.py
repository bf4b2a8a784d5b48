"""Cost of a clock correction (issue 22, rules/engine.py ``_rebase``) and of the sync probe.

    uv run python bench/clock_correction.py [--persons 1000]

Prints:
  (a) the writer's pause when NTP corrects an unsynchronised clock: the engine re-bases what it
      timed in the unsynchronised window (state, memo, alarm book, timers) and re-derives the
      detention deadlines, for ``--persons`` persons registered, banded and in a room (half of
      them suspects) during the window;
  (b) one read of the kernel's sync flag (adjtimex, what the writer polls at most once a second)
      and one ``timedatectl`` probe (what ``casegate status`` may use).
Figures, not assertions; every loop is bounded in count.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "rules")]

from rules.model import Draft  # noqa: E402
from gateway.timebase import _clock_synchronised, _system_synced  # noqa: E402
from helpers.scenario import tag_of  # noqa: E402
from test_clock_truth import Center, Clocks  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=1000)
    a = ap.parse_args()
    clk = Clocks(synced=False)
    c = Center(Path(tempfile.mkdtemp()), clk)
    for i in range(a.persons):
        pid = f"P{i}"
        c.core.submit(Draft("person.registered", {"person": pid, "role": "suspect" if i % 2 else "officer",
                                                  "name": "", "case_type": "criminal"}, "bench"))
        c.core.submit(Draft("wristband.bound", {"tag": tag_of(pid), "person": pid}, "bench"))
        c.core.submit(Draft("presence.entered", {"person": pid, "tag": tag_of(pid), "room": "corridor"}, "bench"))
    c.pump()
    c.run(60)
    eng = c.core.engine
    orig = eng._rebase
    took: list[float] = []

    def timed(by, ev):
        t0 = time.perf_counter()
        try:
            return orig(by, ev)
        finally:
            took.append(time.perf_counter() - t0)

    eng._rebase = timed
    clk.w += 3600
    clk.synced = True
    c.run(5)
    print(f"(a) correction re-base: {took[0] * 1000:.1f} ms for {a.persons} persons, {len(eng.timers)} timers")
    n = 2000
    print(f"(b) adjtimex sync read: {timeit.timeit(_system_synced, number=n) / n * 1e6:.1f} µs; "
          f"full probe ({_clock_synchronised()['source']}): "
          f"{timeit.timeit(_clock_synchronised, number=5) / 5 * 1000:.1f} ms")


if __name__ == "__main__":
    main()
