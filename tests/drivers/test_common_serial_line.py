"""drivers/common/serial_line.py, the loop every serial driver shares, on real ptys.

A toy line protocol (a frame is bytes up to b"\\n") keeps these tests about the
base itself: open, online/offline events, reopen after the pty goes away and comes
back, a frame cut by the unplug counted, a bug in the bytes handler, stop."""
from __future__ import annotations

import os
import tty

import pytest

from drivers.base import Driver, PrintContext
from drivers.common.serial_line import SerialLine
from helpers import polling


class LineParser:
    """Frames end with a newline; ``pending`` is the partial frame's length."""

    def __init__(self):
        self.buf = b""

    @property
    def pending(self) -> int:
        return len(self.buf)

    def reset(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        *frames, self.buf = (self.buf + data).split(b"\n")
        return frames


class Cfg:
    def __init__(self, port: str):
        self.id = "line-1"
        self.port = port


class ToyLine(SerialLine):
    def __init__(self, drv: "ToyDriver"):
        super().__init__(drv, drv.cfg.port, 9600, read_timeout=0.05, backoff_first=0.05, backoff_cap=0.2,
                         parser=drv.parser, thread_name="toy-line")
        self.drv = drv

    def on_bytes(self, data: bytes, now: float, wall: float) -> None:
        for frame in self.drv.parser.feed(data):
            if frame == b"boom":
                raise ValueError("a bug in the bytes handler")
            self.drv.frame_ok()
            self.drv.frames.append(frame)


class ToyDriver(Driver):
    kind = "toy_serial"

    def __init__(self, port: str):
        self.ctx_events = PrintContext("line-1")
        super().__init__(Cfg(port), self.ctx_events)
        self.parser = LineParser()
        self.frames: list[bytes] = []
        self.line: ToyLine | None = None

    def start(self) -> None:
        self.stop_event.clear()
        self.line = ToyLine(self)
        self.line.start()

    def stop(self, timeout: float = 2.0) -> None:
        super().stop(timeout)
        assert self.line is not None
        self.line.join(timeout)


class Pty:
    """A pty behind a stable link, which can be unplugged and plugged back in."""

    def __init__(self, link: str):
        self.link = link
        self.master: int | None = None
        self.slave: int | None = None
        self.plug()

    def plug(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tmp = self.link + ".tmp"
        os.symlink(os.ttyname(self.slave), tmp)
        os.replace(tmp, self.link)

    def unplug(self) -> None:
        os.unlink(self.link)
        for fd in (self.master, self.slave):
            if fd is not None:
                os.close(fd)
        self.master = self.slave = None

    def write(self, data: bytes) -> None:
        assert self.master is not None
        os.write(self.master, data)


def wait_for(what: str, pred, timeout: float = 5.0):
    return polling.wait_for(pred, timeout, what, 0.01)


def device_events(drv: ToyDriver) -> list[str]:
    with drv.ctx_events._lock:
        return [t for t, _ in drv.ctx_events.events if t.startswith("device.")]


@pytest.fixture
def pty(tmp_path):
    p = Pty(str(tmp_path / "ttyTOY"))
    yield p
    if p.master is not None:
        p.unplug()


@pytest.fixture
def drivers():
    made: list[ToyDriver] = []
    yield made
    for d in made:
        d.stop()


def started(drivers, port: str) -> ToyDriver:
    d = ToyDriver(port)
    drivers.append(d)
    d.start()
    return d


def test_online_reads_then_offline_on_unplug_and_online_again_on_replug(pty, drivers):
    d = started(drivers, pty.link)
    wait_for("online", lambda: device_events(d) == ["device.online"])
    pty.write(b"one\n")
    wait_for("first frame", lambda: d.frames == [b"one"])
    pty.unplug()
    wait_for("offline", lambda: device_events(d) == ["device.online", "device.offline"])
    offline = [data for t, data in d.ctx_events.events if t == "device.offline"][0]
    assert offline["device"] == "line-1" and pty.link in offline["error"]
    assert d.health.state == "offline" and d.line is not None and not d.line.is_open
    pty.plug()
    wait_for("online again", lambda: device_events(d) == ["device.online", "device.offline", "device.online"])
    assert d.health.reconnects == 1
    pty.write(b"two\n")
    wait_for("frame after the reconnect", lambda: d.frames == [b"one", b"two"])
    assert d.health.frames_ok == 2


def test_port_missing_at_start_is_offline_once_with_the_reason_then_online(tmp_path, drivers):
    link = str(tmp_path / "ttyLATER")
    d = started(drivers, link)
    wait_for("offline", lambda: device_events(d) == ["device.offline"])
    assert "no such device" in d.health.error
    # retried with backoff: still offline, and still one event for it
    wait_for("a second failed open", lambda: d.line is not None and d.line.backoff.delay > 0.1)
    assert device_events(d) == ["device.offline"]
    p = Pty(link)
    try:
        wait_for("online", lambda: device_events(d) == ["device.offline", "device.online"])
        p.write(b"late\n")
        wait_for("frame", lambda: d.frames == [b"late"])
    finally:
        p.unplug()


def test_frame_cut_by_the_unplug_is_counted_and_not_glued_to_the_next(pty, drivers):
    d = started(drivers, pty.link)
    wait_for("online", lambda: d.health.state == "online")
    pty.write(b"hal")
    wait_for("partial frame read", lambda: d.parser.pending == 3)
    pty.unplug()
    wait_for("offline", lambda: d.health.state == "offline")
    assert d.health.counters.get("partial_frame_dropped") == 1
    assert d.parser.pending == 0
    pty.plug()
    wait_for("online again", lambda: d.health.state == "online")
    pty.write(b"whole\n")
    wait_for("next frame", lambda: d.frames == [b"whole"])     # not b"halwhole"
    assert d.health.counters.get("partial_frame_dropped") == 1


def test_bug_in_the_bytes_handler_is_counted_and_the_line_reopens(pty, drivers):
    d = started(drivers, pty.link)
    wait_for("online", lambda: d.health.state == "online")
    pty.write(b"boom\n")
    wait_for("error state", lambda: d.health.state == "error")
    assert d.health.counters.get("internal_error") == 1
    assert "ValueError" in d.health.error
    wait_for("reopened", lambda: d.health.state == "online")   # the same pty, opened again
    pty.write(b"fine\n")
    wait_for("frame", lambda: d.frames == [b"fine"])
    assert device_events(d) == ["device.online", "device.error", "device.online"]


def test_stop_closes_the_port_without_an_offline_event(pty, drivers):
    d = started(drivers, pty.link)
    wait_for("online", lambda: d.health.state == "online")
    assert d.line is not None and d.line.is_open
    d.stop()
    assert d.line.thread is not None and not d.line.thread.is_alive()
    assert not d.line.is_open
    assert device_events(d) == ["device.online"]
