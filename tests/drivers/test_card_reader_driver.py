"""Simulator -> CardReaderDriver over real pseudo-terminals (SPEC §4.2)."""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from drivers.base import PrintContext
from drivers.common import serial_line
from drivers.card_reader.driver import CardReaderDriver
from drivers.card_reader.protocol import encode
from drivers.card_reader.simulator import CardReaderSimulator
from gateway.config import CardReaderConfig
from helpers.polling import poll, wait_for

CARD = "14008EC793"


class Rig:
    def __init__(self, port: str, repeat_ms: int = 1000, bindings=None):
        self.ctx = PrintContext("card-int1", bindings=bindings if bindings is not None else {CARD: "officer-7"})
        cfg = CardReaderConfig(id="card-int1", driver="card_reader", port=port, room="interrogation-1",
                               repeat_ms=repeat_ms, reconnect_max_s=0.5)
        self.drv = CardReaderDriver(cfg, self.ctx)

    def events(self, type_=None):
        with self.ctx._lock:
            return [(t, d) for t, d in self.ctx.events if type_ is None or t == type_]

    def wait(self, pred, timeout=5.0):
        found = poll(lambda: next(((t, d) for t, d in self.events() if pred(t, d)), None), timeout, 0.01)
        if found is None:
            raise AssertionError(f"no matching event in {timeout}s; got {self.events()}")
        return found

    def wait_state(self, state, timeout=5.0):
        wait_for(lambda: self.drv.health.state == state, timeout, f"state {state}", 0.01)


@pytest.fixture
def sim(tmp_path):
    s = CardReaderSimulator(link=str(tmp_path / "ttyCARD"))
    yield s
    s.close()


@pytest.fixture
def rigs():
    made = []
    yield made
    for r in made:
        r.drv.stop()


def start(rigs, port, **kw) -> Rig:
    r = Rig(port, **kw)
    rigs.append(r)
    r.drv.start()
    r.wait_state("online")
    return r


def test_swipes_with_person_room_reader(sim, rigs):
    r = start(rigs, sim.slave_name)                 # the plain /dev/pts/N name
    sim.swipe(CARD)
    _, d = r.wait(lambda t, d: t == "card.swiped")
    assert d == {"card": CARD, "reader": "card-int1", "room": "interrogation-1", "person": "officer-7"}
    sim.swipe("0102030405")
    _, d = r.wait(lambda t, d: t == "card.swiped" and d["card"] == "0102030405")
    assert d["person"] is None
    assert r.drv.health.frames_ok == 2


def test_held_card_is_one_swipe(sim, rigs):
    r = start(rigs, sim.port, repeat_ms=400)
    sim.start()
    sim.swipe(CARD, repeats=8)                      # 8 frames 0.1 s apart: one swipe
    assert sim.flush()
    wait_for(lambda: r.drv.health.frames_ok == 8, 5, "all 8 frames read")
    assert len(r.events("card.swiped")) == 1
    assert r.drv.health.counters.get("repeats") == 7
    # card removed > repeat_ms (by the filter's own clock: its last frame is older than the window) ...
    rf = r.drv.repeat
    wait_for(lambda: time.monotonic() - rf.last[CARD] > rf.window, 5, "the repeat window past")
    sim.swipe(CARD)                                 # ... and presented again
    r.wait(lambda t, d: len(r.events("card.swiped")) == 2)


def test_garbage_and_bad_frames_counted(sim, rigs):
    r = start(rigs, sim.port)
    sim.write(b"\r\n\x00noise")
    sim.bad_checksum(CARD)
    sim.write(b"\x02" + b"14008EC7Z3" + b"CE" + b"\x03")
    for b in encode("0102030405"):                  # byte by byte
        sim.write(bytes([b]))
        time.sleep(0.002)                           # the behaviour: bytes reaching the port one at a time
    r.wait(lambda t, d: t == "card.swiped" and d["card"] == "0102030405")
    h = r.drv.health
    assert h.counters.get("bad_checksum") == 1 and h.counters.get("non_hex") == 1
    # the junk, plus the rest of the frame after the non-hex 'Z' ("3CE" 03)
    assert h.counters.get("noise_bytes") == len(b"\r\n\x00noise") + 4
    assert h.frames_bad == 2 and h.frames_ok == 1
    assert [d["card"] for _, d in r.events("card.swiped")] == ["0102030405"]


def test_random_injection_still_decodes_every_card(rigs, tmp_path):
    sim = CardReaderSimulator(link=str(tmp_path / "tty"), garbage_rate=0.5, bad_checksum_rate=0.3, seed=3)
    try:
        r = start(rigs, sim.port, repeat_ms=0)
        cards = [f"{i:010X}" for i in range(1, 21)]
        for c in cards:
            sim.swipe(c)
        poll(lambda: len(r.events("card.swiped")) >= 20, 5)
        assert [d["card"] for _, d in r.events("card.swiped")] == cards
        assert r.drv.health.counters.get("bad_checksum") == sim.stats["bad_checksum"] > 0
        assert r.drv.health.counters.get("noise_bytes") == sim.stats["garbage_bytes"] > 0
    finally:
        sim.close()


def test_unplug_offline_then_replug_online(sim, rigs, monkeypatch):
    failed = []                                     # reopen attempts that found no port
    real = serial_line.open_serial

    def counting(*a, **kw):
        try:
            return real(*a, **kw)
        except Exception:
            failed.append(time.monotonic())
            raise
    monkeypatch.setattr(serial_line, "open_serial", counting)
    r = start(rigs, sim.port)
    sim.swipe(CARD)
    r.wait(lambda t, d: t == "card.swiped")
    sim.unplug()
    _, d = r.wait(lambda t, d: t == "device.offline", timeout=3)
    assert d["device"] == "card-int1" and d["error"]
    # gone for a while (two reopen attempts found no port, backoff 0.5 s): still one offline event
    wait_for(lambda: len(failed) >= 2, 5, "two failed reopen attempts")
    assert len(r.events("device.offline")) == 1
    sim.replug()
    r.wait(lambda t, d: t == "device.online" and len(r.events("device.online")) == 2, timeout=5)
    assert r.drv.health.reconnects == 1
    sim.swipe("0102030405")
    r.wait(lambda t, d: t == "card.swiped" and d["card"] == "0102030405")
    assert [t for t, _ in r.events() if t.startswith("device.")] == ["device.online", "device.offline",
                                                                       "device.online"]


def test_missing_port_retries_with_backoff_not_busy(rigs, tmp_path, monkeypatch):
    calls = []
    real = serial_line.open_serial

    def counting(*a, **kw):
        calls.append(time.monotonic())
        return real(*a, **kw)
    monkeypatch.setattr(serial_line, "open_serial", counting)
    link = str(tmp_path / "ttyLATER")
    r = Rig(link)
    rigs.append(r)
    r.drv.start()
    _, d = r.wait(lambda t, d: t == "device.offline")
    assert "no such device" in d["error"]
    wait_for(lambda: len(calls) >= 2, 5, "a reopen attempt")           # it keeps trying ...
    assert calls[1] - calls[0] >= 0.4, calls        # ... not before the backoff (0.5 s capped at 0.5 s): no busy loop
    sim = CardReaderSimulator(link=link)            # plugged in later
    try:
        r.wait(lambda t, d: t == "device.online", timeout=3)
        sim.swipe(CARD)
        r.wait(lambda t, d: t == "card.swiped")
    finally:
        sim.close()


def test_stop_is_prompt(sim):
    r = Rig(sim.port)
    r.drv.start()
    r.wait_state("online")
    r.drv.stop(timeout=2)
    assert not r.drv._thread.is_alive()    # stopped within stop's own bound (figures: bench/stop_latency.py)
    assert r.drv.health.state == "stopped"


def test_any_pyserial_url_socat_pty_pair(rigs, tmp_path):
    socat = shutil.which("socat") or "/usr/bin/socat"
    a, b = tmp_path / "ttyA", tmp_path / "ttyB"
    proc = subprocess.Popen([socat, f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: a.exists() and b.exists(), 5, "socat's two pty links")
        sim = CardReaderSimulator(url=str(a))       # writes through pyserial to one end
        try:
            r = start(rigs, str(b))                 # the driver reads the other
            sim.swipe(CARD)
            _, d = r.wait(lambda t, d: t == "card.swiped")
            assert d["card"] == CARD
        finally:
            sim.close()
    finally:
        proc.terminate()
        proc.wait(5)


def test_pty_from_openpty_directly(rigs):
    """The plain os.openpty() + os.ttyname path, without the simulator."""
    master, slave = os.openpty()
    try:
        import tty
        tty.setraw(slave)
        r = start(rigs, os.ttyname(slave))
        os.write(master, b"junk" + encode(CARD))
        r.wait(lambda t, d: t == "card.swiped")
        assert r.drv.health.counters.get("noise_bytes") == 4
    finally:
        os.close(master)
        os.close(slave)
