"""The detention clock when the wall clock lies (issue 22, SPEC §7 "v3 time"): a steppable
fake wall clock and a fake sync state through the real Core, journal, timebase and request
handler. Each scenario raises the detention timeout within 60 s of 到案 + limit in TRUE time,
live and through ``casegate replay --input --verify`` of the journal."""
from __future__ import annotations

import json
from pathlib import Path

import pytest


from gateway.core import Core  # noqa: E402
from rules.model import parse_ts  # noqa: E402
from gateway.journal import Journal, iter_events, open_reader  # noqa: E402
from gateway.commands.persons import Register, person_register  # noqa: E402
from gateway.timebase import TimeBase  # noqa: E402
from rules.engine import Engine  # noqa: E402
from rules.replay import alarm_rows, replay_input  # noqa: E402
from helpers.scenario import make_config  # noqa: E402

T0 = parse_ts("2026-12-06T00:00:00Z")
H = 3600.0
DAY = 86400.0
CRIMINAL_H = 12.0


class Clocks:
    """True time, the box's wall clock (which may be wrong or stepped), its sync flag,
    and a monotonic clock. ``true`` never jumps; ``w`` does."""

    def __init__(self, true0: float = T0, wall_error: float = 0.0, synced: bool | None = True):
        self.true = true0
        self.w = true0 + wall_error
        self.m = 1000.0
        self.synced = synced

    def wall(self) -> float:
        return self.w

    def mono(self) -> float:
        return self.m

    def sync(self) -> bool | None:
        return self.synced

    def run(self, s: float) -> None:
        self.true += s
        self.w += s
        self.m += s

    def down(self, s: float, rtc_keeps_time: bool = True) -> None:
        """The box is off for ``s`` (its monotonic clock restarts: a new TimeBase anchors)."""
        self.true += s
        if rtc_keeps_time:
            self.w += s


class Center:
    def __init__(self, tmp: Path, clocks: Clocks, config=None):
        self.clocks = clocks
        self.config = config or make_config()
        self.tb = TimeBase(clocks.wall, clocks.mono, step_s=2.0, synced=clocks.sync)
        self.journal = Journal(tmp / "journal.db", "normal")
        self.core = Core(self.config, self.journal, Engine(self.config), clock=self.tb)
        self.core.rebuild()
        self.seen: dict[int, float] = {}          # seq -> true time it was journaled
        self.pump()

    def pump(self) -> None:
        self.core._process(self.core._q.take(100_000, 0))
        for e in self.events(since=max(self.seen, default=0)):
            self.seen.setdefault(e.seq, self.clocks.true)

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
            self.clocks.run(min(max(wait, 0.001), 600.0))
            self.pump()

    def register(self, pid: str, **kw) -> dict:
        args = Register.model_validate({"request_id": f"r-{pid}", "person": pid, "role": "suspect", "case_type": "criminal",
                                        "gender": "male", **kw})
        r = self.core.call(lambda core: person_register(None, core, args, "test"))
        self.pump()
        return r.result(0).value

    def events(self, since: int = 0):
        conn = open_reader(self.journal.path)
        try:
            return list(iter_events(conn, since_seq=since + 1))
        finally:
            conn.close()

    def alarm(self, code: str, type: str = "alarm.raised"):
        """(true time it was raised, the event) of the first such alarm, or None."""
        for e in self.events():
            if e.source == "rules" and e.type == type and e.data.get("code") == code:
                return self.seen[e.seq], e
        return None

    def stop(self) -> None:
        self.journal.close()


def export(c: Center, path: Path) -> Path:
    """The journal as MQTT would publish it: full envelopes, JSON Lines."""
    with open(path, "w", encoding="utf-8") as fh:
        for e in c.events():
            fh.write(json.dumps(e.envelope(), ensure_ascii=False) + "\n")
    return path


def replayed(c: Center, tmp: Path):
    """``casegate replay --input FILE --verify`` of the journal (the CLI's own reader)."""
    from gateway.cli import read_event_file
    evs = read_event_file(str(export(c, tmp / "journal.jsonl")), c.config.center.id, verify=True)
    return replay_input(evs, c.config)


def assert_replay_equal(c: Center, tmp: Path) -> None:
    """replay --input --verify = live; and journal replay, checkpoint + tail at every
    clock.stepped = full replay (the v2 helper, tests/test_clock_steps.py)."""
    from helpers.clock_steps import check_journal_and_replay
    times = [e.epoch for e in c.events()]
    assert times == sorted(times), "journal ts went backwards"
    live = [r for r in alarm_rows(e for e in c.events() if e.source == "rules")]
    assert list(alarm_rows(replayed(c, tmp))) == live
    check_journal_and_replay(c)


def assert_timeout_on_time(c: Center, arrived_true: float) -> dict:
    raised = c.alarm("detention_timeout")
    assert raised is not None, "no detention_timeout"
    when, ev = raised
    deadline = arrived_true + CRIMINAL_H * H
    assert abs(when - deadline) <= 60, f"timeout {(when - deadline) / H:+.2f} h from the true deadline"
    assert parse_ts(ev.data["details"]["deadline"]) == pytest.approx(deadline, abs=60)
    assert parse_ts(ev.data["details"]["arrived_at"]) == pytest.approx(arrived_true, abs=60)
    return ev.data


def stepped(c: Center):
    return [e.data for e in c.events() if e.type == "clock.stepped"]


def test_power_cut_boot_with_shutdown_time_then_ntp_corrects(tmp_path):
    """Power cut at 10:00 for 10 h; the box boots with its shutdown time (fake-hwclock),
    NTP corrects it 1 min after casegate starts: the 12 h timeout fires at 12 h, not 22 h."""
    clk = Clocks()
    clk.run(9 * H)                               # 09:00
    c = Center(tmp_path, clk)
    c.register("S1")
    arrived = clk.true
    c.run(1 * H)                                 # 10:00: power cut
    c.stop()
    clk.down(10 * H, rtc_keeps_time=False)       # boots at 20:00 thinking it is 10:00
    clk.synced = False
    c = Center(tmp_path, clk)
    c.run(60)
    clk.w = clk.true                             # NTP: 10 h forward, synchronised
    clk.synced = True
    c.run(60)
    (st,) = stepped(c)
    assert st["kind"] == "correction" and st["delta_s"] == pytest.approx(10 * H, abs=1)
    assert c.alarm("detention_timeout") is None
    c.run(2 * H)
    data = assert_timeout_on_time(c, arrived)
    assert data["since"] == data["details"]["deadline"]          # since and deadline agree
    assert_replay_equal(c, tmp_path)


def test_power_cut_then_a_restart_before_ntp_corrects(tmp_path):
    """The same power cut, but casegate is restarted while still unsynchronised (the window
    is rebuilt from the journal), then NTP corrects: still on time."""
    clk = Clocks()
    clk.run(9 * H)
    c = Center(tmp_path, clk)
    c.register("S1")
    arrived = clk.true
    c.run(1 * H)
    c.stop()
    clk.down(10 * H, rtc_keeps_time=False)
    clk.synced = False
    c = Center(tmp_path, clk)
    c.register("S2")                                 # default 到案 on the wrong clock
    arrived2 = clk.true
    c.run(60)
    c.stop()
    clk.down(30)
    c = Center(tmp_path, clk)
    c.run(30)
    clk.w = clk.true
    clk.synced = True
    c.run(2 * H)
    assert_timeout_on_time(c, arrived)
    c.run(12 * H)
    raised = [(c.seen[e.seq], e) for e in c.events() if e.type == "alarm.raised"
              and e.data["code"] == "detention_timeout" and e.data["persons"] == ["S2"]]
    assert raised and abs(raised[0][0] - (arrived2 + CRIMINAL_H * H)) <= 60
    assert_replay_equal(c, tmp_path)


def test_bogus_day_jump_while_synchronised_is_an_error_and_default_arrival_is_true_time(tmp_path):
    """+1 day while synchronised (an error, v2), put right 100 s later; a suspect registered
    meanwhile with the default 到案 is journaled with the true time and timed from it."""
    clk = Clocks()
    c = Center(tmp_path, clk)
    c.run(60)
    clk.w += DAY
    c.run(50)
    out = c.register("S1")
    arrived = clk.true
    assert parse_ts(out["arrived_at"]) == pytest.approx(arrived, abs=1)      # not a day ahead
    c.run(50)
    clk.w -= DAY
    c.run(60)
    kinds = [(round(s["delta_s"]), s["kind"]) for s in stepped(c)]
    assert kinds == [(86400, "error"), (-86400, "error")]
    c.run(13 * H)
    assert_timeout_on_time(c, arrived)
    assert_replay_equal(c, tmp_path)


def test_slow_clock_stepped_by_ntp_then_restart_after_5_hours_down(tmp_path):
    """The box starts 1 h slow and unsynchronised; a suspect registered then (default 到案);
    NTP steps it forward 10 min after start; then casegate is stopped for 5 h. The
    timeout still fires at true 到案 + 12 h."""
    clk = Clocks(wall_error=-1 * H, synced=False)
    c = Center(tmp_path, clk)
    c.run(5 * 60)
    c.register("S1")                           # journaled 1 h early: re-based by the correction
    arrived = clk.true
    c.run(5 * 60)
    clk.w = clk.true
    clk.synced = True
    c.run(60)
    (st,) = stepped(c)
    assert st["kind"] == "correction" and st["delta_s"] == pytest.approx(H, abs=1)
    c.run(2 * H)
    c.stop()
    clk.down(5 * H)                            # RTC keeps time: the downtime counts
    c = Center(tmp_path, clk)
    assert stepped(c) == [st]                  # nothing new to say about the clock
    c.run(6 * H)
    assert_timeout_on_time(c, arrived)
    assert_replay_equal(c, tmp_path)


def test_restart_after_5_hours_down_while_journal_is_ahead_of_the_wall_clock(tmp_path):
    """After a bogus +1 day jump was put right, journal time runs a day ahead of the wall
    clock; a 5 h stop must still count 5 h (v2 lost it: journal time restarted at the
    last ts)."""
    clk = Clocks()
    c = Center(tmp_path, clk)
    c.register("S1")
    arrived = clk.true
    c.run(60)
    clk.w += DAY
    c.run(100)
    clk.w -= DAY
    c.run(2 * H)
    c.stop()
    clk.down(5 * H)
    c = Center(tmp_path, clk)
    c.run(5 * H)
    assert_timeout_on_time(c, arrived)
    assert_replay_equal(c, tmp_path)


def test_without_the_correction_the_power_cut_timeout_is_ten_hours_late(tmp_path):
    """The same power cut with the sync state unknown (so the step can only be an error):
    the v2 behaviour the correction fixes - proves the scenario test can fail."""
    clk = Clocks()
    clk.run(9 * H)
    c = Center(tmp_path, clk)
    c.register("S1")
    arrived = clk.true
    c.run(1 * H)
    c.stop()
    clk.down(10 * H, rtc_keeps_time=False)
    clk.synced = None
    c = Center(tmp_path, clk)
    c.run(60)
    clk.w = clk.true
    c.run(4 * H)
    assert c.alarm("detention_timeout") is None          # due at 21:00 true, now 00:01
    (st,) = stepped(c)
    assert st["kind"] == "error"
    c.run(10 * H)
    when, _ = c.alarm("detention_timeout")
    assert when - (arrived + CRIMINAL_H * H) == pytest.approx(10 * H, abs=120)


def test_unsynchronised_start_raises_clock_unsynchronised(tmp_path):
    clk = Clocks(synced=False)
    c = Center(tmp_path, clk)
    (sync,) = [e.data for e in c.events() if e.type == "clock.sync"]
    assert sync["synchronised"] is False
    c.run(290)
    assert c.alarm("clock_unsynchronised") is None
    c.run(20)
    when, ev = c.alarm("clock_unsynchronised")
    assert when - T0 == pytest.approx(300, abs=1) and ev.data["severity"] == "major"
    clk.synced = True                                      # NTP reached, no step needed
    c.run(15)
    assert c.alarm("clock_unsynchronised", "alarm.cleared") is not None
    assert stepped(c) == []
    assert_replay_equal(c, tmp_path)


def test_synchronised_start_raises_nothing_and_says_so(tmp_path):
    clk = Clocks(synced=True)
    c = Center(tmp_path, clk)
    c.run(3600)
    assert [e.data for e in c.events() if e.type == "clock.sync"] == []     # nothing to say
    assert c.alarm("clock_unsynchronised") is None
    assert c.tb.status()["synchronised"] is True


def test_time_base_tells_a_correction_from_an_error():
    clk = Clocks(synced=False)
    tb = TimeBase(clk.wall, clk.mono, step_s=2.0, synced=clk.sync)
    clk.run(10)
    clk.w += H
    clk.synced = True                     # NTP steps and says synchronised in one go
    assert tb.check_step()["kind"] == "correction"
    clk.run(10)
    clk.w += H
    assert tb.check_step()["kind"] == "error"        # synchronised since: an error

    clk = Clocks(synced=False)
    tb = TimeBase(clk.wall, clk.mono, step_s=2.0, synced=clk.sync)
    clk.synced = True
    clk.run(5)
    assert tb.check_step() is None and tb.synchronised is True     # the flag came first
    clk.run(20)
    clk.w += H                                                      # ... the step 20 s later
    assert tb.check_step()["kind"] == "correction" and tb.corrections == 1

    clk = Clocks(synced=False)
    tb = TimeBase(clk.wall, clk.mono, step_s=2.0, synced=clk.sync)
    clk.synced = True
    clk.run(5)
    assert tb.check_step() is None
    clk.run(120)
    clk.w += H                                                      # 2 min after sync: not its correction
    assert tb.check_step()["kind"] == "error"
