"""The demo's gateway on a scaled clock (one wall second is ``speed`` demo seconds),
and the error a demo step fails with."""
from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from gateway.daemon import Daemon
from gateway.demo.center import DAY_START_HOUR, TIMEZONE
from rules.model import Event


class DemoError(Exception):
    """A step of the demo could not be done (a refused command, a broker that did not start)."""


# ---- time -------------------------------------------------------------------------------------
class DemoClock:
    """Demo time = start + (wall - wall0) × speed. Callable: the daemon's clock."""

    def __init__(self, speed: float, start: float | None = None):
        self.speed = float(speed)
        self.wall0 = time.time()
        self.start = self.wall0 if start is None else start
        # Start-up (broker, simulators, daemon, devices online) runs at real speed:
        # at --speed 600, 4 s of start-up must not become 40 demo minutes.
        # run() switches to the compressed clock from the demo time reached.
        self.scaled_from: tuple[float, float] | None = None     # (wall, demo) at run() or the last rate change
        self.rate = self.speed              # demo seconds per wall second since scaled_from

    def __call__(self) -> float:
        return self.to_demo(time.time())

    def run(self) -> None:
        self.set_rate(self.speed)

    def set_rate(self, rate: float) -> None:
        """From now on, ``rate`` demo seconds per wall second (time never stops or goes back)."""
        wall = time.time()
        self.scaled_from = (wall, self.to_demo(wall))
        self.rate = rate

    def real_time(self) -> None:
        """While a step acts (moves, commands, the waits for their events) the clock runs at real
        speed: on a loaded machine a step that takes 2 s of wall time must not take 20 demo
        minutes at ×600 — in which suspects stood unattended and limits ran out that the story
        never had (seen in CI). The story's own waits run compressed (:meth:`compressed`)."""
        if self.scaled_from is not None:
            self.set_rate(1.0)

    def compressed(self) -> None:
        if self.scaled_from is not None:
            self.set_rate(self.speed)

    def to_demo(self, wall: float) -> float:
        if self.scaled_from is None:
            return self.start + (wall - self.wall0)
        w, d = self.scaled_from
        return d + (wall - w) * self.rate

    def minutes(self) -> float:
        return (self() - self.start) / 60.0

    def hhmm(self, epoch: float | None = None) -> str:
        t = self() if epoch is None else epoch
        return datetime.fromtimestamp(t, ZoneInfo(TIMEZONE)).strftime("%H:%M")


def day_start(now: float | None = None) -> float:
    """The most recent 08:00 in the center's time zone."""
    tz = ZoneInfo(TIMEZONE)
    n = datetime.fromtimestamp(time.time() if now is None else now, tz)
    s = n.replace(hour=DAY_START_HOUR, minute=0, second=0, microsecond=0)
    if s > n:
        s -= timedelta(days=1)
    return s.timestamp()


# ---- the gateway, instrumented -----------------------------------------------------------------
class DemoDaemon(Daemon):
    """The real daemon; committed events also feed the demo's display.

    Drivers stamp events with the wall clock; ``DeviceContext.emit`` re-expresses
    those stamps on the daemon's (demo) clock, so the journal keeps one time line."""

    def __init__(self, config, config_path, clock, sink: Callable[[list[Event]], None]):
        super().__init__(config, config_path, clock=clock)
        self.extra_listeners.append(lambda events: sink(events) if events else None)
