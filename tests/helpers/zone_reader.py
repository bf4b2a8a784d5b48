"""A zone reader driver on a free loopback port with station simulators (the rig of tests/drivers)."""
from __future__ import annotations

import socket
import threading
import time

from drivers.base import PrintContext
from drivers.zone_reader import protocol as P
from drivers.zone_reader.driver import ZoneReaderDriver
from drivers.zone_reader.simulator import StationSimulator
from gateway.config import ZoneReaderConfig

from helpers.polling import poll, wait_for


TAG = "E3AF2232"


S1, S2 = "861694034205896", "861694034205897"


def make_cfg(**kw) -> ZoneReaderConfig:
    base = dict(id="zone-stations", driver="zone_reader", listen="127.0.0.1:0",
                stations={S1: "interrogation-1", S2: "waiting-1"}, exciters={"12": "exit"},
                presence_timeout_s=10, heartbeat_s=30)
    base.update(kw)
    return ZoneReaderConfig(**base)


class Rig:
    def __init__(self, cfg=None, bindings=None, timezone="Asia/Shanghai"):
        self.ctx = PrintContext("zone-stations", bindings=bindings or {TAG: "suspect-1"}, timezone=timezone)
        self.drv = ZoneReaderDriver(cfg or make_cfg(), self.ctx)
        self.drv.start()
        assert self.drv.listening.wait(5), self.drv.listen_error
        self.port = self.drv.address[1]
        self.sims: list = []

    def station(self, dev_id=S1, start=True, **kw) -> StationSimulator:
        kw.setdefault("report_s", 0.1)
        kw.setdefault("reply_timeout_s", 0.5)
        s = StationSimulator("127.0.0.1", self.port, dev_id, **kw)
        self.sims.append(s)
        if start:
            s.start()
            assert s.logged_in.wait(5)
        return s

    def events(self, type_=None):
        with self.ctx._lock:
            evs = list(self.ctx.events)
        return [(t, d) for t, d in evs if type_ is None or t == type_]

    def wait(self, pred, timeout=5.0, what="event"):
        found = poll(lambda: next(((t, d) for t, d in self.events() if pred(t, d)), None), timeout, 0.01)
        if found is None:
            raise AssertionError(f"no {what} within {timeout}s; got {self.events()}")
        return found

    def settle(self, *sims: StationSimulator, reports: int = 2, nudge: bool = True, timeout: float = 5.0) -> None:
        """Until each of ``sims`` has had ``reports`` more data frames answered: the positive signal
        that the driver has taken in everything the simulators were told before the call. The driver
        answers a frame only after handling its records, and a report that was already on its
        way when the test changed a tag is the one before the next, so 2 cover the change
        (more: several reports of the same state). Counts frames, so one report per frame
        (tlvs_per_frame is 20 by default). ``nudge`` asks the simulators to report now rather
        than at their next report_s (a burst of changes pushes that a second away); a test
        that counts reports as the time passing (report_s apart) passes nudge=False."""
        n = [(s, s.stats["reports"]) for s in sims]

        def done() -> bool:
            if all(s.stats["reports"] >= k + reports for s, k in n):
                return True
            if nudge:
                for s in sims:
                    s.send_now()
            return False
        wait_for(done, timeout,
                 f"{reports} more answered reports from station(s) {', '.join(s.dev_id for s in sims)}")

    def handled(self, counter: str, at_least: int, timeout: float = 5.0) -> None:
        """Until the driver's ``counter`` is ``at_least`` and the frame that counted it has been
        handled to its end (the counter goes up as a record begins: a no-op queued on the
        driver's loop after that runs once the whole frame is through). For one-shot records
        (door passes) that no later report repeats, where :meth:`settle` has nothing to count."""
        wait_for(lambda: self.drv.health.counters.get(counter, 0) >= at_least, timeout,
                 f"{counter} >= {at_least}")
        done = threading.Event()
        self.drv._loop.call_soon_threadsafe(done.set)
        assert done.wait(timeout), "the driver's loop did not run"

    def close(self):
        for s in self.sims:
            s.stop()
        self.drv.stop()


def raw_client(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_frames(sock, n, timeout=2.0):
    p = P.FrameParser()
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(4096)
        except socket.timeout:
            break
        if not data:
            break
        out += p.feed(data)
    return out
