"""locker driver against the lock-board and UHF-reader simulators on ptys."""
from __future__ import annotations

import argparse
import io

import pytest

from drivers.base import CommandError, PrintContext
from drivers.locker import protocol as p
from drivers.locker.driver import LockerDriver
from drivers.locker.probe import add_arguments, run as probe_run
from drivers.locker.simulator import LockBoardSimulator, UhfReaderSimulator
from gateway.config import LockerConfig
from helpers.polling import poll

EPC = ["E2000017221101441890AB%02X" % i for i in range(10)]


def wait_for(pred, timeout: float = 5.0, step: float = 0.02):
    """pred()'s value once truthy, else its last value at the bound (the tests assert it)."""
    return poll(pred, timeout, step)


def polled(drv, n: int = 3, timeout: float = 5.0) -> None:
    """Until the board has answered ``n`` more status polls: a poll already on the wire may
    carry the state from before the call, the next one is read after it and handled (its
    events emitted) before the one after it counts. The positive signal that "nothing
    more happens" for a state the test set up."""
    k = drv.health.frames_ok
    assert poll(lambda: drv.health.frames_ok >= k + n, timeout), f"{n} more status polls answered"


def inventoried(drv, n: int = 2, timeout: float = 5.0) -> None:
    """Until ``n`` more complete inventories are processed (the first may have been in
    flight at the call)."""
    k = drv.inventories
    assert poll(lambda: drv.inventories >= k + n, timeout), f"{n} more inventories"


def evs(ctx, prefix):
    return [(t, d) for t, d in list(ctx.events) if t.startswith(prefix)]


@pytest.fixture
def board():
    sim = LockBoardSimulator(board=0).start()
    yield sim
    sim.stop()


@pytest.fixture
def uhf():
    sim = UhfReaderSimulator(max_frame_tags=2).start()
    yield sim
    sim.stop()


@pytest.fixture
def make():
    started = []

    def _make(port, inventory=None, start=True, **kw):
        kw.setdefault("poll_ms", 40)
        cfg = LockerConfig(id="locker-ev1", driver="locker", port=port, inventory=inventory, **kw)
        ctx = PrintContext("locker-ev1")
        drv = LockerDriver(cfg, ctx)
        if start:
            drv.start()
            started.append(drv)
        return drv, ctx
    yield _make
    for d in started:
        d.stop()


def open_req(comp, by="officer-7", order="ord-1"):
    return {"locker": "locker-ev1", "compartment": comp, "by": by, "order": order}


# ---------------------------------------------------------------- lock board
def test_initial_state_then_changes(board, make):
    board.set_door(2, True)
    drv, ctx = make(board.port, compartments=4)
    assert wait_for(lambda: len(evs(ctx, "locker.")) == 4)
    assert sorted((t, d["compartment"]) for t, d in evs(ctx, "locker.")) == [
        ("locker.closed", 1), ("locker.closed", 3), ("locker.closed", 4), ("locker.opened", 2)]
    assert wait_for(lambda: drv.health.state == "online")
    board.set_door(2, False)
    board.set_door(4, True)
    assert wait_for(lambda: len(evs(ctx, "locker.")) == 6)
    polled(drv)
    assert evs(ctx, "locker.")[4:] in (
        [("locker.closed", {"locker": "locker-ev1", "compartment": 2}),
         ("locker.opened", {"locker": "locker-ev1", "compartment": 4})],)
    board.set_occupied(4, True)
    assert wait_for(lambda: drv.sensors == 0b1000)
    assert len(evs(ctx, "locker.")) == 6          # occupancy is not a door event


def test_unlock_ok_requested_then_opened(board, make):
    drv, ctx = make(board.port)
    sent_before_journal = []
    ctx._on_event = lambda t, d: t == "locker.unlock_requested" and sent_before_journal.append(len(board.unlocks))
    assert wait_for(lambda: drv.health.state == "online")
    n0 = len(ctx.events)
    res = drv.command("locker/open", open_req(3), timeout=5)
    assert res == {"locker": "locker-ev1", "compartment": 3, "opened": True}
    assert board.unlocks == [(0, 3)]
    assert wait_for(lambda: ("locker.opened", {"locker": "locker-ev1", "compartment": 3}) in ctx.events, 3)
    new = [t for t, _ in ctx.events[n0:]]
    assert new[0] == "locker.unlock_requested"
    assert ctx.events[n0][1] == {"locker": "locker-ev1", "compartment": 3, "by": "officer-7", "order": "ord-1"}
    assert new.index("locker.unlock_requested") < new.index("locker.opened")
    assert sent_before_journal == [0]          # journaled before the board got 0x31
    board.set_door(3, False)
    assert wait_for(lambda: ctx.events[-1] == ("locker.closed", {"locker": "locker-ev1", "compartment": 3}))


def test_unlock_refused(board, make):
    drv, ctx = make(board.port)
    assert wait_for(lambda: drv.health.state == "online")
    board.refuse_unlocks = True
    with pytest.raises(CommandError) as ei:
        drv.command("locker/open", open_req(5, order=None), timeout=5)
    assert ei.value.code == "device_refused"
    assert board.unlocks == [(0, 5)]
    assert ("locker.unlock_requested", {"locker": "locker-ev1", "compartment": 5, "by": "officer-7",
                                        "order": None}) in ctx.events
    polled(drv)                                 # the door read after the refusal: still closed
    assert not [e for e in evs(ctx, "locker.opened")]


def test_unlock_no_reply_times_out(board, make):
    drv, ctx = make(board.port, unlock_timeout_ms=300)
    assert wait_for(lambda: drv.health.state == "online")
    board.ignore_unlocks = True
    with pytest.raises(CommandError) as ei:
        drv.command("locker/open", open_req(1), timeout=5)
    assert ei.value.code == "device_timeout"
    assert drv.health.counters["unlock_timeout"] == 1     # the board's 300 ms timeout ended it, not our 5 s
    # the board keeps being polled afterwards
    board.ignore_unlocks = False
    assert drv.command("locker/open", open_req(1), timeout=5)["opened"] is True


def test_unlock_bad_request_sends_nothing(board, make):
    drv, ctx = make(board.port, compartments=8)
    assert wait_for(lambda: drv.health.state == "online")
    for bad in (open_req(9), open_req(0), open_req("3"), open_req(True),
                {**open_req(2), "locker": "other"}, {**open_req(2), "by": ""}):
        with pytest.raises(CommandError) as ei:
            drv.command("locker/open", bad, timeout=2)
        assert ei.value.code == "bad_request", bad
    assert board.unlocks == []
    assert not evs(ctx, "locker.unlock_requested")
    with pytest.raises(CommandError) as ei:
        drv.command("locker/close", open_req(1), timeout=1)
    assert ei.value.code == "unknown_command"


def test_unlock_while_port_missing_is_device_timeout(make, tmp_path):
    drv, ctx = make(str(tmp_path / "ttyNOPE"))
    assert wait_for(lambda: drv.health.state == "offline")
    assert "no such device" in drv.health.error
    with pytest.raises(CommandError) as ei:      # known-closed port: fail at once, not at the deadline
        drv.command("locker/open", open_req(1), timeout=3600)     # (waiting it out: pytest's timeout fails)
    assert ei.value.code == "device_timeout"


def test_board_garbage_counted_and_skipped(board, make):
    drv, ctx = make(board.port, compartments=2)
    assert wait_for(lambda: drv.health.state == "online")
    ok0 = drv.health.frames_ok
    for _ in range(5):
        k = drv.health.frames_ok
        board.inject(b"\x55\xAA\x02\x00\x35\x01")           # noise and a truncated reply ...
        assert wait_for(lambda: drv.health.frames_ok > k)    # ... between good replies
    board.inject(p.status_reply(0, 0, 0)[:-1] + b"\x00")    # wrong SUM
    assert wait_for(lambda: drv.health.frames_bad >= 3)
    assert wait_for(lambda: drv.health.frames_ok > ok0 + 5)
    assert drv.health.state == "online"
    assert len(evs(ctx, "locker.")) == 2                    # no state invented from junk
    assert set(drv.health.counters) & {"board_garbage", "board_bad_sum", "board_bad_etx", "board_truncated"}


def test_board_unplug_offline_replug_online(make, tmp_path):
    link = str(tmp_path / "ttyLOCK")
    sim = LockBoardSimulator(board=0, link=link).start()
    try:
        sim.set_door(1, True)
        drv, ctx = make(link, compartments=2)
        assert wait_for(lambda: drv.health.state == "online")
        sim.stop()                                           # USB adapter pulled
        assert wait_for(lambda: drv.health.state == "offline", 5)
        assert wait_for(lambda: not drv._board_port_open, 5)  # the driver let go of the dead port
        sim.start()                                          # plugged back, door still open
        assert wait_for(lambda: drv.health.state == "online", 6)
        polled(drv)
        assert evs(ctx, "locker.") == [("locker.opened", {"locker": "locker-ev1", "compartment": 1}),
                                       ("locker.closed", {"locker": "locker-ev1", "compartment": 2})]
        assert [t for t, _ in evs(ctx, "device.")] == ["device.online", "device.offline", "device.online"]
        assert drv.health.reconnects == 1
    finally:
        sim.stop()


def test_board_silent_goes_offline_without_events(board, make):
    drv, ctx = make(board.port, compartments=2)
    assert wait_for(lambda: drv.health.state == "online")
    board.mute = True
    assert wait_for(lambda: drv.health.state == "offline", 3)
    assert "no reply" in drv.health.error
    board.set_door(1, True)
    board.mute = False
    assert wait_for(lambda: drv.health.state == "online", 3)
    assert wait_for(lambda: evs(ctx, "locker.opened"))
    assert len(evs(ctx, "locker.")) == 3


# ---------------------------------------------------------------- inventory
def inv_cfg(port, **kw):
    d = {"port": port, "poll_ms": 60, "missing_after": 2}
    d.update(kw)
    return d


def test_inventory_added_then_removed_after_missing_after(board, uhf, make):
    for e in EPC[:3]:
        uhf.add_tag(e)
    drv, ctx = make(board.port, inventory=inv_cfg(uhf.port, missing_after=3, labels={EPC[0]: 7}))
    assert wait_for(lambda: len(evs(ctx, "evidence.")) == 3)
    assert sorted((d["item"], d["compartment"]) for _, d in evs(ctx, "evidence.added")) == [
        (EPC[0], 7), (EPC[1], None), (EPC[2], None)]
    uhf.remove_tag(EPC[0])
    n = drv.inventories
    assert wait_for(lambda: evs(ctx, "evidence.removed"), 5)
    assert evs(ctx, "evidence.removed") == [("evidence.removed", {"locker": "locker-ev1", "compartment": 7,
                                                                   "item": EPC[0]})]
    # removed on the 3rd inventory without it, not earlier (a round may have been in flight)
    assert drv.inventories - n in (3, 4)
    inventoried(drv, 3)                         # missing_after more rounds: nothing else
    assert len(evs(ctx, "evidence.")) == 4


def test_missing_after_counts_complete_inventories(make, tmp_path):
    drv, ctx = make(str(tmp_path / "x"), start=False,
                    inventory=inv_cfg(str(tmp_path / "y"), missing_after=2, labels={"E2": 3}))
    a, b = EPC[0], "AA" + EPC[1]
    drv.on_inventory({a: (), b: ()})
    assert [(t, d["item"], d["compartment"]) for t, d in ctx.events] == [
        ("evidence.added", a, 3), ("evidence.added", b, None)]
    drv.on_inventory({b: ()})                   # a missing once
    assert len(ctx.events) == 2
    drv.on_inventory({a: (), b: ()})            # back: the count starts again
    drv.on_inventory({b: ()})
    assert len(ctx.events) == 2
    drv.on_inventory({})                        # a missing twice in a row, b once
    assert ctx.events[2:] == [("evidence.removed", {"locker": "locker-ev1", "compartment": 3, "item": a})]
    drv.on_inventory({})
    assert ctx.events[3:] == [("evidence.removed", {"locker": "locker-ev1", "compartment": None, "item": b})]
    drv.on_inventory({})
    assert len(ctx.events) == 4 and drv.items == {}


def test_item_back_before_missing_after_is_not_removed(board, uhf, make):
    uhf.add_tag(EPC[0])
    drv, ctx = make(board.port, inventory=inv_cfg(uhf.port, missing_after=5, poll_ms=50))
    assert wait_for(lambda: evs(ctx, "evidence.added"))
    uhf.remove_tag(EPC[0])
    n = drv.inventories
    assert wait_for(lambda: drv.inventories >= n + 2)
    uhf.add_tag(EPC[0])
    m = drv.inventories
    assert wait_for(lambda: drv.inventories >= m + 6)
    assert [t for t, _ in evs(ctx, "evidence.")] == ["evidence.added"]


def test_multi_frame_inventory(board, uhf, make):
    for e in EPC[:7]:
        uhf.add_tag(e)                        # 2 tags a frame: 4 frames, 0x03 0x03 0x03 0x01
    assert len(uhf.responses()) == 4
    drv, ctx = make(board.port, inventory=inv_cfg(uhf.port))
    assert wait_for(lambda: len(evs(ctx, "evidence.added")) == 7)
    assert sorted(d["item"] for _, d in evs(ctx, "evidence.added")) == sorted(EPC[:7])
    ok = drv.health.frames_ok
    assert wait_for(lambda: drv.health.frames_ok >= ok + 8)
    assert drv.health.frames_bad == 0


def test_corrupted_frame_discards_the_round(board, uhf, make):
    for e in EPC[:5]:
        uhf.add_tag(e)
    drv, ctx = make(board.port, inventory=inv_cfg(uhf.port, missing_after=1, poll_ms=50))
    assert wait_for(lambda: len(evs(ctx, "evidence.added")) == 5)
    for _ in range(3):
        uhf.corrupt_next(1)                   # the first of 3 frames of the next round is lost
        c = drv.health.counters.get("inventory_discarded", 0)
        assert wait_for(lambda: drv.health.counters.get("inventory_discarded", 0) > c, 3)
    # with missing_after=1 a round read without that frame would have removed 2 items
    inventoried(drv)
    assert not evs(ctx, "evidence.removed")
    assert drv.health.counters.get("uhf_bad_crc", 0) >= 3


def test_uhf_garbage_skipped(board, uhf, make):
    uhf.add_tag(EPC[0])
    drv, ctx = make(board.port, inventory=inv_cfg(uhf.port, missing_after=1, poll_ms=50))
    assert wait_for(lambda: evs(ctx, "evidence.added"))
    for _ in range(4):
        k = drv.inventories + drv.health.counters.get("inventory_discarded", 0)
        uhf.inject(b"\x01\x02\x03\xFE\x99")                # garbage, then a round ends (whole or not)
        assert wait_for(lambda: drv.inventories + drv.health.counters.get("inventory_discarded", 0) > k)
    assert wait_for(lambda: drv.health.frames_bad >= 1)
    n = drv.inventories
    assert wait_for(lambda: drv.inventories >= n + 3)
    assert not evs(ctx, "evidence.removed")


def test_antenna_map_with_ant_byte(board, make):
    uhf = UhfReaderSimulator(ant_byte=True).start()
    try:
        uhf.add_tag(EPC[0], antenna=1)
        uhf.add_tag(EPC[1], antenna=2)
        uhf.add_tag(EPC[2], antenna=3)
        drv, ctx = make(board.port, inventory=inv_cfg(uhf.port, ant_byte=True,
                                                      antennas={"1": [1], "2": [5], "3": [6, 7]}))
        assert wait_for(lambda: len(evs(ctx, "evidence.added")) == 3)
        assert {d["item"]: d["compartment"] for _, d in evs(ctx, "evidence.added")} == {
            EPC[0]: 1, EPC[1]: 5, EPC[2]: None}
        uhf.add_tag(EPC[0], antenna=2)            # moved to compartment 5
        assert wait_for(lambda: len(evs(ctx, "evidence.")) == 5)
        assert evs(ctx, "evidence.")[3:] == [
            ("evidence.removed", {"locker": "locker-ev1", "compartment": 1, "item": EPC[0]}),
            ("evidence.added", {"locker": "locker-ev1", "compartment": 5, "item": EPC[0]})]
    finally:
        uhf.stop()


def test_single_antenna_single_compartment_without_ant_byte(board, uhf, make):
    uhf.add_tag(EPC[4])
    drv, ctx = make(board.port, inventory=inv_cfg(uhf.port, antennas={"1": [9]}))
    assert wait_for(lambda: evs(ctx, "evidence.added"))
    assert evs(ctx, "evidence.added")[0][1]["compartment"] == 9


def test_inventory_reader_missing_is_error_not_offline(board, make, tmp_path):
    drv, ctx = make(board.port, inventory=inv_cfg(str(tmp_path / "ttyNOUHF")))
    assert wait_for(lambda: drv.health.state == "error")
    assert "inventory reader" in drv.health.error
    assert drv.command("locker/open", open_req(2), timeout=5)["opened"]   # the locks still work


# ---------------------------------------------------------------- probe
def _args(argv):
    ap = argparse.ArgumentParser()
    add_arguments(ap)
    return ap.parse_args(argv)


def test_probe_reads_board_and_inventory(board, uhf):
    board.set_door(2, True)
    board.set_occupied(2, True)
    uhf.add_tag(EPC[0])
    out = io.StringIO()
    rc = probe_run(_args(["--port", board.port, "--inventory-port", uhf.port, "--seconds", "0"]), out)
    text = out.getvalue()
    assert rc == 0, text
    assert " 2: OPEN   occupied" in text and " 1: closed empty" in text
    assert EPC[0] in text
    assert board.unlocks == []                  # a probe never unlocks


def test_probe_port_errors(tmp_path, capsys):
    rc = probe_run(_args(["--port", str(tmp_path / "nope"), "--seconds", "0"]))
    assert rc == 1
    assert "no such device" in capsys.readouterr().err


def test_probe_silent_board_fails(board):
    board.mute = True
    out = io.StringIO()
    assert probe_run(_args(["--port", board.port, "--seconds", "0"]), out) == 1
    assert "no status reply" in out.getvalue()

