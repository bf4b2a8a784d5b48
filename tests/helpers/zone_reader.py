"""A zone reader driver on a free loopback port with station simulators (the rig of tests/drivers)."""
from __future__ import annotations

import socket
import time

from drivers.base import PrintContext
from drivers.zone_reader import protocol as P
from drivers.zone_reader.driver import ZoneReaderDriver
from drivers.zone_reader.simulator import StationSimulator
from gateway.config import ZoneReaderConfig


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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, d in self.events():
                if pred(t, d):
                    return t, d
            time.sleep(0.01)
        raise AssertionError(f"no {what} within {timeout}s; got {self.events()}")

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
