"""Wall-clock steps (SPEC §7) through the real Core and journal, on a fake wall clock:
journal ts never goes backwards, ``clock.stepped`` is journaled, rule timers count real
elapsed time (a 10-min backward step does not delay a 30 s alarm, a 1-day forward step
raises no false detention timeout), replay and checkpoint+tail agree with live."""
from __future__ import annotations

from pathlib import Path

import pytest


from gateway.core import Core  # noqa: E402
from rules.model import Draft, parse_ts  # noqa: E402
from gateway.journal import Journal, iter_events, open_reader  # noqa: E402
from gateway.timebase import TimeBase, clock_synchronised  # noqa: E402
from rules.engine import Engine  # noqa: E402
from helpers.scenario import make_config, tag_of  # noqa: E402
from helpers.clock_steps import check_journal_and_replay

T0 = parse_ts("2026-11-26T08:00:00Z")
INT = "interrogation-1"
DAY = 86400.0


class Clocks:
    """A wall clock the test can step, and the monotonic clock that never is."""

    def __init__(self, t0: float = T0):
        self.w = t0
        self.m = 5000.0

    def wall(self) -> float:
        return self.w

    def mono(self) -> float:
        return self.m

    def run(self, s: float) -> None:
        self.w += s
        self.m += s

    def step(self, s: float) -> None:
        self.w += s


class Center:
    """A Core on a journal in tmp, driven synchronously: the test is the writer thread."""

    def __init__(self, tmp: Path, clocks: Clocks, config=None):
        self.clocks = clocks
        self.config = config or make_config()
        # synchronised throughout: every step here is an error (v2), whatever this host's clock says
        self.tb = TimeBase(clocks.wall, clocks.mono, step_s=2.0, synced=lambda: True)
        self.journal = Journal(tmp / "journal.db", "normal")
        self.core = Core(self.config, self.journal, Engine(self.config), clock=self.tb)
        self.core.rebuild()
        self.pump()

    def pump(self) -> None:
        self.core._process(self.core._q.take(100_000, 0))

    def emit(self, type: str, data: dict) -> None:
        self.core.submit(Draft(type, data, "test"))
        self.pump()

    def run(self, seconds: float, lag: float = 0.2) -> None:
        """Let real time pass; the core's timer wakes ``lag`` after each deadline, as live."""
        end = self.clocks.m + seconds
        while True:
            nd = self.core.engine.next_deadline()
            wait = None if nd is None else nd - self.tb() + lag
            if wait is None or self.clocks.m + max(wait, 0) > end:
                self.clocks.run(end - self.clocks.m)
                self.pump()
                return
            self.clocks.run(max(wait, 0.001))
            self.pump()

    def events(self):
        conn = open_reader(self.journal.path)
        try:
            return list(iter_events(conn))
        finally:
            conn.close()

    def alarms(self, code: str):
        return [(e.type, e.epoch) for e in self.events()
                if e.source == "rules" and e.data.get("code") == code]


def arrive(c: Center, pid: str, role: str, **kw) -> None:
    c.emit("person.registered", {"person": pid, "role": role, "name": "", **kw})
    c.emit("wristband.bound", {"tag": tag_of(pid), "person": pid})


def enter(c: Center, pid: str, room: str) -> float:
    c.emit("presence.entered", {"person": pid, "tag": tag_of(pid), "room": room})
    return c.events()[-1].epoch


def stepped(c: Center):
    return [e.data for e in c.events() if e.type == "clock.stepped"]


@pytest.mark.parametrize("step_s", [-600.0, DAY])
def test_lone_interrogation_alarm_after_30_real_seconds_across_a_step(tmp_path, step_s):
    clk = Clocks()
    c = Center(tmp_path, clk)
    arrive(c, "S1", "suspect", case_type="criminal")
    arrive(c, "O1", "officer")
    c.run(100)
    entered = enter(c, "S1", INT)
    enter(c, "O1", INT)
    c.run(10)
    clk.step(step_s)
    c.run(5)                                       # nothing yet: 15 s of 30 have passed
    assert c.alarms("lone_interrogation") == []
    (st,) = stepped(c)
    assert st["delta_s"] == pytest.approx(step_s, abs=0.01)
    assert st["journal_jump_s"] == pytest.approx(max(step_s, 0), abs=0.01)
    c.run(60)
    (raised,) = c.alarms("lone_interrogation")
    jump = max(step_s, 0)
    assert raised[0] == "alarm.raised"
    assert raised[1] - jump - entered == pytest.approx(30.0, abs=0.5)    # real elapsed: 30 s
    check_journal_and_replay(c)


def test_without_the_time_base_a_backward_step_would_delay_the_alarm(tmp_path):
    """The same scenario stamped straight from the (stepped) wall clock: the alarm
    comes 10 minutes late - what the time base prevents (so the test above can fail)."""
    clk = Clocks()
    cfg = make_config()
    j = Journal(tmp_path / "journal.db", "normal")
    core = Core(cfg, j, Engine(cfg), clock=clk.wall)
    core.rebuild()
    pump = lambda: core._process(core._q.take(100_000, 0))  # noqa: E731
    for d in [Draft("person.registered", {"person": "S1", "role": "suspect", "name": ""}, "test"),
              Draft("person.registered", {"person": "O1", "role": "officer", "name": ""}, "test"),
              Draft("presence.entered", {"person": "S1", "tag": tag_of("S1"), "room": INT}, "test"),
              Draft("presence.entered", {"person": "O1", "tag": tag_of("O1"), "room": INT}, "test")]:
        core.submit(d)
    pump()
    clk.run(10)
    clk.step(-600)
    for _ in range(60):
        clk.run(1)
        pump()
    conn = open_reader(j.path)
    lone = [e for e in iter_events(conn) if e.source == "rules" and e.data["code"] == "lone_interrogation"]
    assert lone == []                                  # 60 real s later: still nothing
    conn.close()


def test_detention_clock_counts_real_time_across_steps_both_ways(tmp_path):
    clk = Clocks()
    c = Center(tmp_path, clk)
    arrive(c, "S1", "suspect", case_type="administrative")      # 8 h
    registered = c.events()[-2].epoch
    c.run(3600)
    clk.step(DAY)                                               # NTP jumps a day ahead
    c.run(60)
    assert c.alarms("detention_timeout") == [] and c.alarms("detention_warning") == []
    c.run(3600)
    clk.step(-600)                                              # an operator sets it back 10 min
    c.run(5 * 3600)                                             # 7 h 01 min real elapsed
    warn = c.alarms("detention_warning")
    assert warn and warn[0][1] - DAY - registered == pytest.approx(7 * 3600, abs=1)
    assert c.alarms("detention_timeout") == []
    c.run(3600)                                                 # 8 h 01 min
    (timeout,) = c.alarms("detention_timeout")
    assert timeout[1] - DAY - registered == pytest.approx(8 * 3600, abs=1)
    steps = stepped(c)
    assert [round(s["delta_s"]) for s in steps] == [86400, -600]
    assert [round(s["journal_jump_s"]) for s in steps] == [86400, 0]
    check_journal_and_replay(c)


def test_clock_set_back_while_down_is_journaled_at_start(tmp_path):
    clk = Clocks()
    c = Center(tmp_path, clk)
    arrive(c, "S1", "suspect")
    last = c.events()[-1].epoch
    c.journal.close()
    clk.run(30)
    clk.step(-3600)                           # the RTC lost an hour while the box was off
    c2 = Center(tmp_path, clk)
    arrive(c2, "O1", "officer")
    evs = c2.events()
    (st,) = [e for e in evs if e.type == "clock.stepped"]
    assert st.data["delta_s"] == pytest.approx(-3570, abs=1) and st.data["journal_jump_s"] == 0
    assert all(e.epoch >= last for e in evs if e.seq > st.seq)
    assert [e.epoch for e in evs] == sorted(e.epoch for e in evs)


def test_time_base_unit():
    clk = Clocks()
    tb = TimeBase(clk.wall, clk.mono, step_s=2.0, synced=lambda: True)
    clk.run(5)
    assert tb() == T0 + 5 and tb.check_step() is None
    clk.step(1.5)                              # within the threshold: no step
    assert tb.check_step() is None
    clk.step(-30)                              # net -28.5 s since journal time was set
    s = tb.check_step()
    assert s["delta_s"] == pytest.approx(-28.5) and s["journal_jump_s"] == 0 and tb() == T0 + 5
    assert tb.check_step() is None             # reported once
    clk.step(40)                               # corrected: the wall clock is 11.5 s ahead again
    s = tb.check_step()
    assert s["delta_s"] == pytest.approx(40) and s["journal_jump_s"] == pytest.approx(11.5)
    assert tb() == pytest.approx(clk.w)


def test_clock_synchronised_answers_or_says_unknown():
    r = clock_synchronised()
    assert r["synchronised"] in (True, False, None)
    assert r["source"] in ("timedatectl", "adjtimex", "unknown")
    assert (r["synchronised"] is None) == (r["source"] == "unknown")


def test_steps_while_synchronised_are_errors():
    """v3 names the v2 behaviour: a step of a synchronised clock is kind "error"."""
    clk = Clocks()
    tb = TimeBase(clk.wall, clk.mono, step_s=2.0, synced=lambda: True)
    clk.step(DAY)
    assert tb.check_step()["kind"] == "error"
    clk.step(-DAY)
    assert tb.check_step()["kind"] == "error"
