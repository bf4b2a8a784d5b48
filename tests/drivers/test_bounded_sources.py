"""Bounded event sources besides the wristbands (issue 12): camera headcount flapping,
a card held on the reader for minutes, door contacts chattering. Each bound is
counted in the driver's health counters."""
from __future__ import annotations

from helpers.camera import cfg, of_type, storage  # noqa: F401
from drivers.base import PrintContext
from drivers.camera.driver import CameraDriver
from drivers.card_reader.driver import CardReaderDriver
from drivers.card_reader.protocol import encode
from gateway.config import CardReaderConfig


def test_camera_headcount_flapping_is_bounded_and_the_settled_count_goes_out(storage):
    ctx = PrintContext("cam-int1", storage_dir=str(storage))
    drv = CameraDriver(cfg("unused.avi"), ctx, auto_snapshots=False)
    t0 = 1_795_000_000.0
    # 10 minutes at 2 detection frames/s, the detector unsure between 2 and 3 every second
    for i in range(1200):
        drv._update_headcount(2 if (i // 2) % 2 == 0 else 3, t0 + i * 0.5)
    counts = [h["count"] for h in of_type(ctx, "camera.headcount")]
    assert 3 <= len(counts) <= 3 + 10, counts          # the burst, then about one a minute
    assert drv.health.counters["headcount_held"] > 250     # each stable flip held
    # the room settles at 4 people: reported within one interval
    t1 = t0 + 600
    for i in range(130):
        drv._update_headcount(4, t1 + i * 0.5)
        if of_type(ctx, "camera.headcount")[-1]["count"] == 4:
            break
    assert of_type(ctx, "camera.headcount")[-1]["count"] == 4 and i * 0.5 <= 60


def test_camera_headcount_real_changes_pass_at_once(storage):
    ctx = PrintContext("cam-int1", storage_dir=str(storage))
    drv = CameraDriver(cfg("unused.avi"), ctx, auto_snapshots=False)
    t0 = 1_795_000_000.0
    for n, at in ((1, 0), (2, 300), (1, 900), (0, 1500)):     # minutes apart
        drv._update_headcount(n, t0 + at)
        drv._update_headcount(n, t0 + at + 0.5)
    assert [h["count"] for h in of_type(ctx, "camera.headcount")] == [1, 2, 1, 0]
    assert drv.health.counters.get("headcount_held", 0) == 0


def test_card_held_on_the_reader_for_minutes_is_one_swipe():
    """RDM6300-style modules repeat the frame every ~100 ms while the card is held:
    the repeat window slides, so 5 minutes held is one swipe; a second card is its own."""
    ctx = PrintContext("card-int1", bindings={})
    drv = CardReaderDriver(CardReaderConfig(id="card-int1", driver="card_reader", port="/dev/null",
                                            room="interrogation-1", repeat_ms=1000), ctx)
    t = 0.0
    for _ in range(3000):                              # 300 s at 10 frames/s
        drv.handle_bytes(encode("14008EC793"), t, 1_795_000_000.0 + t)
        t += 0.1
    for _ in range(20):                                # another card laid on the reader
        drv.handle_bytes(encode("14008EC793") + encode("0A0B0C0D0E"), t, 1_795_000_000.0 + t)
        t += 0.1
    t += 1.5                                           # taken away, then swiped again
    drv.handle_bytes(encode("14008EC793"), t, 1_795_000_000.0 + t)
    swipes = [d["card"] for d in of_type(ctx, "card.swiped")]
    assert swipes == ["14008EC793", "0A0B0C0D0E", "14008EC793"]
    assert drv.health.counters["repeats"] == 3000 - 1 + 20 + 19


def test_door_contact_chattering_is_bounded_and_settles_right():
    """A contact flipping every 2 polls passes the debounce; past chatter_max_changes per
    chatter_window_s its changes are suppressed (counted) and the settled state is
    reported once the window allows. Real pymodbus server on TCP."""
    from drivers.modbus_doors.simulator import ModbusDiSimulator
    from drivers.modbus_doors.driver import ModbusDoorsDriver
    from gateway.config import ModbusDoorsConfig
    import time as _time
    sim = ModbusDiSimulator("tcp", units=(1,), inputs=16).start()
    ctx = PrintContext("doors-a")
    drv = ModbusDoorsDriver(ModbusDoorsConfig(
        id="doors-a", driver="modbus_doors", url=sim.url, chatter_max_changes=4, chatter_window_s=1.5,
        doors=[{"input": 0, "door": "exit-door", "room": "exit", "closed_when": 1},
               {"input": 1, "door": "int1-door", "room": "interrogation-1", "closed_when": 1}]), ctx)
    drv.open_bus()
    try:
        sim.set_inputs({0: 1, 1: 1})
        assert drv.poll_once()                           # initial states: 2 events
        for k in range(20):                              # exit-door chatters: 10 debounced changes
            sim.set_input(0, 0 if k % 2 == 0 else 1)
            assert drv.poll_once() and drv.poll_once()
        sim.set_input(0, 0)                              # and settles open
        sim.set_input(1, 0)                              # meanwhile a real change of the other door
        assert drv.poll_once() and drv.poll_once()
        exit_events = [t for t, d in ctx.events if d.get("door") == "exit-door"]
        assert len(exit_events) <= 4, exit_events
        assert drv.health.counters["door_chatter_suppressed"] >= 5
        assert [t for t, d in ctx.events if d.get("door") == "int1-door"] == ["door.closed", "door.opened"]
        _time.sleep(1.6)                                 # the window allows again: the settled state
        assert drv.poll_once()
        exit_events = [t for t, d in ctx.events if d.get("door") == "exit-door"]
        assert exit_events[-1] == "door.opened"
        assert all(a != b for a, b in zip(exit_events, exit_events[1:]))   # still alternating
    finally:
        drv.stop()
        sim.close()
