"""modbus_doors driver against a real pymodbus server (TCP on 127.0.0.1, RTU on ptys)."""
from __future__ import annotations

import argparse
import io

import pytest

from drivers.base import PrintContext
from drivers.modbus_doors import driver as md
from drivers.modbus_doors.driver import DoorDebounce, ModbusDoorsDriver, parse_url
from drivers.modbus_doors.probe import add_arguments, run as probe_run
from drivers.modbus_doors.simulator import ModbusDiSimulator
from gateway.config import ModbusDoorsConfig
from helpers.polling import poll


def wait_for(pred, timeout: float = 5.0, step: float = 0.02):
    """pred()'s value once truthy, else its last value at the bound (the tests assert it)."""
    return poll(pred, timeout, step)


def answered_polls(drv, n: int = 3, timeout: float = 5.0) -> None:
    """Until the module has answered ``n`` more polls: the one in flight may predate the call,
    and a change needs the debounce's 2 polls; so nothing more is on its way after 3."""
    k = drv.health.frames_ok
    assert wait_for(lambda: drv.health.frames_ok >= k + n, timeout), f"{n} more answered polls"


def failed_polls(drv, n: int = 1, timeout: float = 5.0) -> None:
    """Until ``n`` more polls have failed (each counted under its reason): the driver tried
    again while the module was gone."""
    def failures():
        return sum(drv.health.counters.values())
    k = failures()
    assert wait_for(lambda: failures() >= k + n, timeout), f"{n} more failed polls"


def door_events(ctx: PrintContext, door: str | None = None):
    return [(t, d) for t, d in list(ctx.events)
            if t.startswith("door.") and (door is None or d["door"] == door)]


def state_events(ctx: PrintContext):
    return [t for t, _ in list(ctx.events) if t.startswith("device.")]


def make(url: str, doors=None, dev_id="doors-a", **kw):
    doors = doors if doors is not None else [{"input": 0, "door": "exit-door", "room": "exit", "closed_when": 1}]
    cfg = ModbusDoorsConfig(id=dev_id, driver="modbus_doors", url=url, doors=doors, **kw)
    ctx = PrintContext(dev_id)
    return ModbusDoorsDriver(cfg, ctx), ctx


@pytest.fixture
def tcp_sim():
    sim = ModbusDiSimulator("tcp", units=(1,), inputs=16).start()
    yield sim
    sim.close()


@pytest.fixture
def rtu_sim():
    sim = ModbusDiSimulator("rtu", units=(1, 2), inputs=16).start()
    yield sim
    sim.close()


# ---------------------------------------------------------------- pure parts
def test_parse_url():
    ep = parse_url("rtu:///dev/ttyUSB1?baudrate=9600")
    assert (ep.scheme, ep.device, ep.baudrate, ep.parity) == ("rtu", "/dev/ttyUSB1", 9600, "N")
    ep = parse_url("tcp://10.0.0.5:1502")
    assert (ep.scheme, ep.host, ep.port) == ("tcp", "10.0.0.5", 1502)
    assert parse_url("tcp://10.0.0.5").port == 502
    with pytest.raises(ValueError):
        parse_url("rtu:///dev/ttyUSB1?speed=9600")
    with pytest.raises(ValueError):
        parse_url("udp://x")


def test_debounce_two_polls():
    db = DoorDebounce()
    assert db.feed(True, 1.0) == (True, 1.0)     # first read reports the state once
    assert db.feed(True, 2.0) is None
    assert db.feed(False, 3.0) is None           # seen once: not yet
    assert db.feed(True, 4.0) is None            # bounce back: forgotten
    assert db.feed(False, 5.0) is None
    assert db.feed(False, 6.0) == (False, 5.0)   # twice in a row: reported, with the first time
    assert db.feed(False, 7.0) is None


def test_default_count_covers_highest_input():
    drv, _ = make("tcp://127.0.0.1:1", doors=[{"input": 2, "door": "a", "room": "r"},
                                               {"input": 5, "door": "b", "room": "r"}])
    assert drv.read_count == 6
    drv, _ = make("tcp://127.0.0.1:1", doors=[{"input": 9, "door": "a", "room": "r"}], first_input=8)
    assert drv.read_count == 2


# ---------------------------------------------------------------- TCP
def test_tcp_initial_state_once_then_debounced_change(tcp_sim):
    tcp_sim.set_input(0, 1)          # closed_when = 1 -> closed
    drv, ctx = make(tcp_sim.url)
    drv.open_bus()
    try:
        assert drv.poll_once()
        assert door_events(ctx) == [("door.closed", {"door": "exit-door", "room": "exit"})]
        assert drv.poll_once()
        assert len(door_events(ctx)) == 1            # unchanged: nothing new
        tcp_sim.set_input(0, 0)
        assert drv.poll_once()
        assert len(door_events(ctx)) == 1            # one poll is not enough
        assert drv.poll_once()
        assert door_events(ctx)[1:] == [("door.opened", {"door": "exit-door", "room": "exit"})]
        for _ in range(3):
            assert drv.poll_once()
        assert len(door_events(ctx)) == 2            # exactly one event for the change
        assert drv.health.frames_ok == 7
        assert drv.health.state == "online"
    finally:
        drv.stop()


def test_tcp_bounce_shorter_than_debounce_is_ignored(tcp_sim):
    tcp_sim.set_input(0, 1)
    drv, ctx = make(tcp_sim.url)
    drv.open_bus()
    try:
        assert drv.poll_once()
        for _ in range(3):
            tcp_sim.set_input(0, 0)      # open for one poll only
            assert drv.poll_once()
            tcp_sim.set_input(0, 1)
            assert drv.poll_once()
        assert door_events(ctx) == [("door.closed", {"door": "exit-door", "room": "exit"})]
    finally:
        drv.stop()


def test_tcp_failed_poll_breaks_the_debounce(tcp_sim):
    tcp_sim.set_input(0, 1)
    drv, ctx = make(tcp_sim.url)
    drv.open_bus()
    try:
        assert drv.poll_once()
        tcp_sim.set_input(0, 0)
        assert drv.poll_once()                       # seen once
        tcp_sim.set_exception(1, 4)
        assert not drv.poll_once()                   # failed poll: not consecutive any more
        tcp_sim.set_exception(1, None)
        assert drv.poll_once()                       # seen once again
        assert len(door_events(ctx)) == 1
        assert drv.poll_once()
        assert door_events(ctx)[1:] == [("door.opened", {"door": "exit-door", "room": "exit"})]
    finally:
        drv.stop()


def test_tcp_closed_when_zero_and_offset_inputs(tcp_sim):
    tcp_sim.set_inputs({8: 0, 9: 1})
    drv, ctx = make(tcp_sim.url, first_input=8, doors=[
        {"input": 8, "door": "d8", "room": "r", "closed_when": 0},
        {"input": 9, "door": "d9", "room": "r", "closed_when": 0}])
    drv.open_bus()
    try:
        assert drv.poll_once()
        assert sorted(door_events(ctx)) == [("door.closed", {"door": "d8", "room": "r"}),
                                            ("door.opened", {"door": "d9", "room": "r"})]
    finally:
        drv.stop()


def test_tcp_exception_response_is_error_state(tcp_sim):
    # inputs 100.. do not exist on a 16-input module: exception 2, illegal data address
    drv, ctx = make(tcp_sim.url, first_input=100, doors=[{"input": 100, "door": "d", "room": "r"}])
    drv.open_bus()
    try:
        assert not drv.poll_once()
        assert drv.health.state == "error"
        assert "illegal data address" in drv.health.error
        assert ("device.error", {"device": "doors-a", "error": drv.health.error}) in ctx.events
        assert drv.health.frames_bad == 1 and drv.health.counters["exception"] == 1
        assert door_events(ctx) == []
    finally:
        drv.stop()


def test_tcp_device_failure_exception_then_recovers(tcp_sim):
    tcp_sim.set_input(0, 1)
    drv, ctx = make(tcp_sim.url)
    drv.open_bus()
    try:
        assert drv.poll_once()
        tcp_sim.set_exception(1, 4)
        assert not drv.poll_once()
        assert drv.health.state == "error" and "exception 4" in drv.health.error
        tcp_sim.set_exception(1, None)
        assert drv.poll_once()
        assert drv.health.state == "online"
        assert state_events(ctx) == ["device.online", "device.error", "device.online"]
        assert len(door_events(ctx)) == 1
    finally:
        drv.stop()


def test_tcp_server_restart_offline_online_no_invented_events(tcp_sim):
    tcp_sim.set_input(0, 1)
    tcp_sim.set_input(1, 0)
    drv, ctx = make(tcp_sim.url, poll_ms=50, timeout_ms=200, doors=[
        {"input": 0, "door": "d0", "room": "r"}, {"input": 1, "door": "d1", "room": "r"}])
    drv.start()
    try:
        assert wait_for(lambda: len(door_events(ctx)) == 2, 5)
        tcp_sim.stop()
        assert wait_for(lambda: drv.health.state == "offline", 5)
        tcp_sim.set_input(1, 1)          # d1 closes while nobody can see it
        failed_polls(drv)                                # polled again, in vain
        assert len(door_events(ctx)) == 2                # nothing while offline
        tcp_sim.start()
        assert wait_for(lambda: drv.health.state == "online", 6)
        assert wait_for(lambda: len(door_events(ctx)) == 3, 3)
        answered_polls(drv)
        evs = door_events(ctx)
        # d0 unchanged: not re-reported; d1 changed: reported once after the outage
        assert evs[2:] == [("door.closed", {"door": "d1", "room": "r"})]
        assert "device.offline" in state_events(ctx)
        assert state_events(ctx)[-1] == "device.online"
        assert drv.health.reconnects == 1
    finally:
        drv.stop()


def test_dead_tcp_unit_times_out_in_timeout_ms(tcp_sim):
    tcp_sim.set_dead(1)
    drv, ctx = make(tcp_sim.url, timeout_ms=150)
    drv.open_bus()
    try:
        assert not drv.poll_once()              # the poll gave up (timeout_ms) instead of hanging
        assert drv.health.state == "offline" and "no response" in drv.health.error
        assert door_events(ctx) == []
    finally:
        drv.stop()


# ---------------------------------------------------------------- RTU
def test_rtu_reads_and_debounces(rtu_sim):
    rtu_sim.set_input(0, 0)
    drv, ctx = make(rtu_sim.url, timeout_ms=300)
    drv.open_bus()
    try:
        assert drv.poll_once()
        assert door_events(ctx) == [("door.opened", {"door": "exit-door", "room": "exit"})]
        rtu_sim.set_input(0, 1)
        assert drv.poll_once() and drv.poll_once()
        assert door_events(ctx)[1:] == [("door.closed", {"door": "exit-door", "room": "exit"})]
    finally:
        drv.stop()


def test_rtu_two_modules_one_bus_and_a_dead_one(rtu_sim):
    url = rtu_sim.url
    a, ctx_a = make(url, dev_id="mod-1", unit=1, poll_ms=30, timeout_ms=150)
    b, ctx_b = make(url, dev_id="mod-2", unit=2, poll_ms=30, timeout_ms=150,
                    doors=[{"input": 3, "door": "d2", "room": "r2"}])
    dead, ctx_d = make(url, dev_id="mod-9", unit=9, poll_ms=30, timeout_ms=150)
    rtu_sim.set_input(0, 1, unit=1)
    rtu_sim.set_input(3, 0, unit=2)
    drivers = [a, b, dead]
    for d in drivers:
        d.start()
    try:
        assert a._bus is b._bus is dead._bus              # one client, one lock per port
        assert md._BUSES[a._bus.endpoint.key].refs == 3
        assert wait_for(lambda: door_events(ctx_a) and door_events(ctx_b), 5)
        assert door_events(ctx_a) == [("door.closed", {"door": "exit-door", "room": "exit"})]
        assert door_events(ctx_b) == [("door.opened", {"door": "d2", "room": "r2"})]
        assert wait_for(lambda: dead.health.state == "offline", 5)
        # the dead module does not stall its neighbours
        for i in range(3):
            rtu_sim.set_input(0, i % 2 == 1, unit=1)
            rtu_sim.set_input(3, i % 2 == 0, unit=2)
            assert wait_for(lambda: len(door_events(ctx_a)) == i + 2 and len(door_events(ctx_b)) == i + 2, 3), i
        assert a.health.frames_bad == b.health.frames_bad == 0   # no collision ever garbled a frame
        assert door_events(ctx_d) == []
        assert a.health.state == b.health.state == "online"
    finally:
        for d in drivers:
            d.stop()
    assert md._BUSES == {}


def test_rtu_module_power_cycle(rtu_sim):
    rtu_sim.set_input(0, 1)
    drv, ctx = make(rtu_sim.url, poll_ms=50, timeout_ms=150)
    drv.start()
    try:
        assert wait_for(lambda: door_events(ctx), 5)
        rtu_sim.stop()
        assert wait_for(lambda: drv.health.state == "offline", 5)
        failed_polls(drv)                                # off while polled again
        rtu_sim.start()
        assert wait_for(lambda: drv.health.state == "online", 6)
        answered_polls(drv)
        assert door_events(ctx) == [("door.closed", {"door": "exit-door", "room": "exit"})]
        assert state_events(ctx) == ["device.online", "device.offline", "device.online"]
    finally:
        drv.stop()


# ---------------------------------------------------------------- probe
def _probe_args(argv):
    ap = argparse.ArgumentParser()
    add_arguments(ap)
    return ap.parse_args(argv)


def test_probe_reads_tcp(tcp_sim):
    tcp_sim.set_inputs({0: 1, 2: 1})
    out = io.StringIO()
    rc = probe_run(_probe_args(["--url", tcp_sim.url, "--unit", "1", "--count", "4", "--seconds", "0"]), out)
    assert rc == 0, out.getvalue()
    assert "inputs: 0=1 1=0 2=1 3=0" in out.getvalue()


def test_probe_reports_modbus_error_and_fails(tcp_sim):
    out = io.StringIO()
    rc = probe_run(_probe_args(["--url", tcp_sim.url, "--first", "200", "--seconds", "0"]), out)
    assert rc == 1
    assert "illegal data address" in out.getvalue()


def test_probe_missing_serial_port(capsys):
    rc = probe_run(_probe_args(["--url", "rtu:///dev/does-not-exist-casegate?baudrate=9600", "--seconds", "0"]))
    assert rc == 1
    assert "no such device" in capsys.readouterr().err


def test_probe_add_arguments_tolerates_shared_options():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port")
    ap.add_argument("--seconds", type=float, default=3)
    add_arguments(ap)                     # must not raise on the CLI's own --port/--seconds
    ns = ap.parse_args(["--port", "tcp://127.0.0.1:1502"])
    assert ns.unit == 1 and ns.seconds == 3
