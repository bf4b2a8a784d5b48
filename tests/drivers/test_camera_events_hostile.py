"""camera_events against hostile cameras (issues 28.1, 30.1-30.3), each in a child process
(drivers/camera_events/hostile.py), driver through PrintContext: every bound holds, the
device says why, memory stays bounded, credentials never go to another host."""
from __future__ import annotations

import os
import socket
import threading

import pytest

from drivers.base import CommandError, PrintContext
from drivers.camera_events import driver as driver_mod
from drivers.camera_events.config import CameraEventsConfig
from drivers.camera_events.driver import CameraEventsDriver
from drivers.camera_events.hostile import HostileProcess
from drivers.camera_events.signals import Multipart
from helpers.camera_events import events, wait


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def make(cam: HostileProcess, tmp_path, **kw) -> tuple[CameraEventsDriver, PrintContext]:
    opts = dict(active_expiry_s=1.5, offline_s=3, still_s=60, reconnect_step_s=0.5, pull_timeout_s=1,
                connect_timeout_s=2, snapshot_timeout_s=3)
    opts.update(kw)
    cfg = CameraEventsConfig(id="cam1", driver="camera_events", vendor=cam.vendor, url=cam.url, username="admin",
                             password_file=str(tmp_path / "pw"), channels={"1": "int-1"}, **opts)
    ctx = PrintContext("cam1", storage_dir=str(tmp_path / "state"))
    return CameraEventsDriver(cfg, ctx, password="cam-secret"), ctx


def errors(ctx) -> list[str]:
    return [d["error"] for d in events(ctx, "device.error")]


@pytest.mark.parametrize("mode,why", [
    ("lines", "lines outside any part"),
    ("newlines", "a part larger than"),
    ("hugepart", "a part larger than"),
])
def test_stream_that_breaks_a_bound_is_a_device_error(mode, why, tmp_path):
    with HostileProcess(mode) as cam:
        drv, ctx = make(cam, tmp_path)
        before = rss_mb()
        drv.start()
        try:
            assert wait(lambda: any(why in e for e in errors(ctx)), 20), (ctx.events, drv.health)
            assert "reconnecting with backoff" in errors(ctx)[0]
            assert rss_mb() - before < 100
        finally:
            drv.stop(2.0)


def test_a_byte_a_second_is_not_a_heartbeat(tmp_path):
    with HostileProcess("drip") as cam:
        drv, ctx = make(cam, tmp_path, offline_s=2)
        drv.start()
        try:
            assert wait(lambda: events(ctx, "device.offline"), 15), ctx.events
            assert "no heartbeat or event" in events(ctx, "device.offline")[0]["error"]
        finally:
            drv.stop(2.0)


def test_headers_dripped_a_byte_a_second_are_cut_at_the_deadline(tmp_path):
    with HostileProcess("slowhead") as cam:
        drv, ctx = make(cam, tmp_path, connect_timeout_s=1, offline_s=30)
        drv.start()
        try:
            # each attempt is cut after 2 s (connect_timeout_s x 2) instead of lasting ~80 s
            assert wait(lambda: drv.health.counters.get("disconnects", 0) >= 2, 15), drv.health
            assert "within 2 s (status line and headers)" in drv._last_error
        finally:
            drv.stop(2.0)


def test_invented_event_names_share_one_counter_and_the_rate_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(driver_mod, "RATE_CUT_S", 2.0)
    with HostileProcess("names") as cam:
        drv, ctx = make(cam, tmp_path, offline_s=30)
        drv.start()
        try:
            assert wait(lambda: any("events a second" in e for e in errors(ctx)), 20), (ctx.events, drv.health)
            counters = dict(drv.health.counters)
            assert counters.get("ignored_event", 0) > 0 and counters.get("rate_limited", 0) > 0
            assert not [k for k in counters if k.startswith("ignored:")], counters
            assert len(counters) < 10, counters            # a closed set of names
        finally:
            drv.stop(2.0)


def test_xml_bomb_parts_are_dropped_and_the_device_stays_online(tmp_path):
    with HostileProcess("bomb") as cam:
        drv, ctx = make(cam, tmp_path)
        before = rss_mb()
        drv.start()
        try:
            assert wait(lambda: drv.health.counters.get("unparseable_part", 0) >= 20, 15), drv.health
            assert events(ctx, "device.online") and not errors(ctx)
            assert rss_mb() - before < 100
        finally:
            drv.stop(2.0)


def test_a_500_mb_snapshot_is_refused_without_holding_it(tmp_path):
    with HostileProcess("bigsnap") as cam:
        drv, ctx = make(cam, tmp_path, snapshot_max_mb=2, snapshot_timeout_s=20)
        drv.start()
        try:
            assert wait(lambda: events(ctx, "device.online"), 10)
            before = rss_mb()
            with pytest.raises(CommandError) as e:
                drv.command("camera/snapshot", {}, 20)
            assert e.value.code == "device_refused" and "snapshot_max_mb = 2" in e.value.message
            assert rss_mb() - before < 50
            assert os.listdir(tmp_path / "state" / "snapshots") == []       # no half file left
            assert not events(ctx, "camera.snapshot")
        finally:
            drv.stop(2.0)


def test_a_dripping_snapshot_has_one_deadline_and_one_in_flight(tmp_path):
    with HostileProcess("dripsnap") as cam:
        drv, ctx = make(cam, tmp_path, snapshot_timeout_s=3)
        drv.start()
        try:
            assert wait(lambda: events(ctx, "device.online"), 10)
            first: list = []
            t = threading.Thread(target=lambda: first.append(_code(drv)))
            t.start()
            assert wait(lambda: drv._snapshot_busy.locked(), 5)
            assert _code(drv) == "busy"                     # a second one while the first drips
            t.join(10)
            assert first == ["device_timeout"]              # total deadline (a byte every 2 s, reads 3 s)
            assert drv.health.counters.get("snapshot_deadline") == 1
        finally:
            drv.stop(2.0)


def _code(drv) -> str:
    try:
        drv.command("camera/snapshot", {}, 3)
    except CommandError as e:
        return e.code
    return "ok"


def test_onvif_answer_without_end_is_cut(tmp_path):
    with HostileProcess("onvif_flood") as cam:
        drv, ctx = make(cam, tmp_path)
        before = rss_mb()
        drv.start()
        try:
            assert wait(lambda: any("more than 1048576 bytes" in e for e in errors(ctx)), 20), ctx.events
            assert rss_mb() - before < 100
        finally:
            drv.stop(2.0)


@pytest.mark.parametrize("mode,what", [("onvif_elsewhere", "PullPoint subscription address"),
                                       ("onvif_snap_elsewhere", "snapshot URI"),
                                       ("onvif_redirect", None),
                                       ("snapredirect", None)])
def test_addresses_on_another_host_get_no_credentials(mode, what, tmp_path):
    thief = socket.socket()
    thief.bind(("127.0.0.2", 0))
    thief.listen(8)
    thief.settimeout(0.2)
    try:
        with HostileProcess(mode, thief.getsockname()[1]) as cam:
            drv, ctx = make(cam, tmp_path)
            drv.start()
            try:
                if what:
                    assert wait(lambda: any(what in e and "127.0.0.2" in e for e in errors(ctx)), 20), ctx.events
                elif mode == "onvif_redirect":       # setup fails on the 307 (never followed), again and again
                    assert wait(lambda: drv.health.counters.get("disconnects", 0) >= 2, 20), (ctx.events, drv.health)
                else:
                    assert wait(lambda: events(ctx, "device.online"), 10)
                with pytest.raises(CommandError) as e:
                    drv.command("camera/snapshot", {}, 3)
                if mode == "snapredirect":
                    assert e.value.code == "device_refused" and "redirect to" in e.value.message \
                        and "not followed" in e.value.message
            finally:
                drv.stop(2.0)
        with pytest.raises(socket.timeout):
            thief.accept()                          # nobody ever connected to the other host
    finally:
        thief.close()


def test_multipart_newlines_cost_no_python_per_line():
    """30.3: 10 MB of newlines in a part body: the reader's steps do not grow with the lines
    (a per-line or re-scanning reader takes ~10 M steps); the bound cuts it."""
    mp = Multipart("boundary", max_part=16 << 20)
    steps = 0
    real = mp._step

    def counted(out):
        nonlocal steps
        steps += 1
        return real(out)
    mp._step = counted
    mp.feed(b"--boundary\r\nContent-Type: application/xml\r\n\r\n")
    chunk = b"\n" * 65536
    for _ in range(160):                            # 10 MB
        assert mp.feed(chunk) == []
    assert steps < 1000, steps
    assert mp.violation is None and len(mp._buf) <= (10 << 20) + 65536
    got = mp.feed(b"\r\n--boundary\r\n")
    assert len(got) == 1 and got[0][1] == b"\n" * (10 << 20)
    steps = 0
    assert mp.feed(b"\n" * (7 << 20)) == []      # after a delimiter: blank "header" lines, bounded
    assert mp.violation and "header lines" in mp.violation and steps < 100


def test_multipart_lines_between_parts_are_bounded():
    mp = Multipart("boundary")
    assert mp.feed(b"x\r\n" * 2000) == []
    assert mp.violation == "more than 1024 lines outside any part"
    mp = Multipart("boundary")                      # a real camera's blank lines between parts are fine
    part = b"--boundary\r\nContent-Length: 2\r\n\r\nok\r\n\r\n"
    assert len(mp.feed(part * 3000)) == 3000 and mp.violation is None


def test_deadline_shuts_a_blocked_read_and_spares_a_finished_exchange():
    from drivers.camera_events.limits import Deadline, LimitError
    a, b = socket.socketpair()
    c, c2 = socket.socketpair()
    try:
        with Deadline(0.2) as done:              # finished in time: its socket is kept (keep-alive)
            done.watch(c)
        with Deadline(0.4) as dl:
            dl.watch(a)
            a.settimeout(5)
            assert a.recv(10) == b""             # blocked with nothing to read: shut at the deadline
        assert dl.expired and not done.expired
        with pytest.raises(LimitError, match="in all"):
            dl.check("the exchange")
        c2.sendall(b"still")
        c.settimeout(5)
        assert c.recv(10) == b"still"
    finally:
        for s in (a, b, c, c2):
            s.close()
