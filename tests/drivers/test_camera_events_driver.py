"""drivers/camera_events against its simulators (real HTTP on 127.0.0.1, digest auth), via PrintContext."""
from __future__ import annotations

import os
import stat
import threading
import time

import httpx
import pytest

from drivers.base import CommandError, PrintContext
from drivers.camera_events.config import CameraEventsConfig
from drivers.camera_events.driver import CameraEventsDriver
from drivers.camera_events.simulator import DahuaSimulator, HikvisionSimulator, OnvifSimulator

from helpers.camera_events import events, wait

SIMS = {"hikvision": HikvisionSimulator, "dahua": DahuaSimulator, "onvif": OnvifSimulator}


def make(vendor, sim, tmp_path, password="cam-secret", **kw):
    opts = dict(active_expiry_s=1.5, offline_s=3, still_s=30, reconnect_step_s=0.2, pull_timeout_s=1)
    two = kw.pop("two", False)
    opts.update(kw)
    cfg = CameraEventsConfig(id="cam1", driver="camera_events", vendor=vendor, url=sim.url, username="admin",
                             password_file=str(tmp_path / "pw"),
                             channels={"1": "int-1", "2": "wait-1"} if two else {"1": "int-1"}, **opts)
    ctx = PrintContext("cam1", storage_dir=str(tmp_path / "state"))
    return CameraEventsDriver(cfg, ctx, password=password), ctx


@pytest.mark.parametrize("vendor", sorted(SIMS))
def test_motion_on_off_tamper_snapshot(vendor, tmp_path):
    with SIMS[vendor](heartbeat_s=0.5) as sim:
        drv, ctx = make(vendor, sim, tmp_path)
        drv.start()
        try:
            assert wait(lambda: events(ctx, "device.online"), 15)
            assert wait(lambda: sim.connected(), 5)
            sim.motion(1, True)
            assert wait(lambda: events(ctx, "camera.motion"), 5)
            assert events(ctx, "camera.motion")[0] == {"camera": "cam1", "room": "int-1", "active": True}
            time.sleep(2)         # Hikvision re-posts active every second: still one event
            assert len(events(ctx, "camera.motion")) == 1
            sim.motion(1, False)
            assert wait(lambda: len(events(ctx, "camera.motion")) == 2, 5)
            assert events(ctx, "camera.motion")[1]["active"] is False
            sim.tamper(1, True)
            assert wait(lambda: events(ctx, "camera.tampered"), 5)
            assert events(ctx, "camera.tampered")[0] == {"camera": "cam1", "room": "int-1", "kind": "covered",
                                                         "active": True}
            r = drv.command("camera/snapshot", {"camera": "cam1", "alarm_id": "camera_tamper:0123"}, 5)
            assert r["file"].startswith(str(tmp_path / "state" / "snapshots"))
            assert open(r["file"], "rb").read(2) == b"\xff\xd8"
            assert stat.S_IMODE(os.stat(r["file"]).st_mode) == 0o600
            assert stat.S_IMODE(os.stat(tmp_path / "state" / "snapshots").st_mode) == 0o700
            assert events(ctx, "camera.snapshot") == [{"camera": "cam1", "room": "int-1", "file": r["file"],
                                                       "reason": "alarm", "alarm_id": "camera_tamper:0123"}]
            assert sim.snapshots == 1
            assert drv.health.counters.get("unparseable_part", 0) == 0
        finally:
            drv.stop(2.0)
            assert not [th for th in threading.enumerate() if th.name.startswith("camera_events-cam1")]
        if vendor == "onvif":
            assert sim.unsubscribed == 1


@pytest.mark.parametrize("vendor", ["hikvision", "dahua"])
def test_active_only_events_expire(vendor, tmp_path):
    with SIMS[vendor](heartbeat_s=0.3) as sim:
        drv, ctx = make(vendor, sim, tmp_path, active_expiry_s=0.8)
        drv.start()
        try:
            assert wait(lambda: sim.connected(), 10)
            if vendor == "hikvision":
                sim.motion(1, True, repost=False)      # one "active" post, never "inactive"
            else:
                sim.pulse("CrossLineDetection", 1)
            assert wait(lambda: events(ctx, "camera.motion"), 5)
            t0 = time.monotonic()
            assert wait(lambda: len(events(ctx, "camera.motion")) == 2, 5)
            assert time.monotonic() - t0 > 0.5          # expired by its timer, not at once
            assert events(ctx, "camera.motion")[1]["active"] is False
        finally:
            drv.stop(2.0)


def test_still_and_motion_again(tmp_path):
    with HikvisionSimulator(heartbeat_s=0.3) as sim:
        drv, ctx = make("hikvision", sim, tmp_path, still_s=1.0)
        drv.start()
        try:
            assert wait(lambda: events(ctx, "camera.still"), 5)
            assert events(ctx, "camera.still")[0]["seconds"] >= 1
            assert events(ctx, "camera.still")[0]["camera"] == "cam1"
            sim.motion(1, True)
            assert wait(lambda: len(events(ctx, "camera.still")) == 2, 5)
            assert events(ctx, "camera.still")[1]["seconds"] == 0
        finally:
            drv.stop(2.0)


def test_two_channels_name_their_cameras(tmp_path):
    with HikvisionSimulator(heartbeat_s=0.3, channels=2, model="nvr") as sim:
        drv, ctx = make("hikvision", sim, tmp_path, two=True)
        drv.start()
        try:
            assert wait(lambda: sim.connected(), 10)
            sim.tamper(2, True)
            assert wait(lambda: events(ctx, "camera.tampered"), 5)
            assert events(ctx, "camera.tampered")[0]["camera"] == "cam1:2"
            assert events(ctx, "camera.tampered")[0]["room"] == "wait-1"
            r = drv.command("camera/snapshot", {"camera": "cam1", "room": "wait-1", "alarm_id": "a:1"}, 5)
            assert events(ctx, "camera.snapshot")[0]["camera"] == "cam1:2"
            assert "cam1-ch2-" in r["file"]
            r = drv.command("camera/snapshot", {"camera": "cam1", "channel": "2"}, 5)     # by channel
            assert "cam1-ch2-" in r["file"] and events(ctx, "camera.snapshot")[1]["room"] == "wait-1"
            r = drv.command("camera/snapshot", {"camera": "cam1"}, 5)                    # default: first
            assert "cam1-ch1-" in r["file"] and events(ctx, "camera.snapshot")[2]["room"] == "int-1"
            for bad in ({"channel": "3"}, {"room": "lobby"}):
                with pytest.raises(CommandError) as e:
                    drv.command("camera/snapshot", {"camera": "cam1", **bad}, 5)
                assert e.value.code == "bad_request"
        finally:
            drv.stop(2.0)


def test_legacy_path_and_lf_only_model(tmp_path):
    with HikvisionSimulator(heartbeat_s=0.3, model="legacy", legacy_path_only=True) as sim:
        drv, ctx = make("hikvision", sim, tmp_path)
        drv.start()
        try:
            assert wait(lambda: sim.connected(), 10)
            sim.motion(1, True)
            assert wait(lambda: events(ctx, "camera.motion"), 5)
            assert drv.stats["heartbeats"] >= 1 or wait(lambda: drv.stats["heartbeats"] >= 1, 3)
        finally:
            drv.stop(2.0)


@pytest.mark.parametrize("vendor", sorted(SIMS))
def test_wrong_password_is_a_clear_device_error(vendor, tmp_path):
    with SIMS[vendor](heartbeat_s=0.5) as sim:
        drv, ctx = make(vendor, sim, tmp_path, password="wrong")
        drv.start()
        try:
            assert wait(lambda: events(ctx, "device.error"), 15)
            assert "wrong user/password" in events(ctx, "device.error")[0]["error"]
            assert not events(ctx, "device.online")
        finally:
            drv.stop(2.0)


def test_basic_is_refused_both_ways(tmp_path):
    with HikvisionSimulator() as sim:     # the simulator refuses a Basic client ...
        r = httpx.get(sim.url + "/ISAPI/Event/notification/alertStream", auth=("admin", "cam-secret"))
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Digest")
        assert sim.basic_refused == 1
    with HikvisionSimulator(auth="basic") as sim:     # ... and the driver never sends the password in clear
        drv, ctx = make("hikvision", sim, tmp_path)
        drv.start()
        try:
            assert wait(lambda: events(ctx, "device.error"), 10)
            assert "only Basic" in events(ctx, "device.error")[0]["error"]
            assert not events(ctx, "device.online")
        finally:
            drv.stop(2.0)


@pytest.mark.parametrize("vendor", sorted(SIMS))
def test_silence_and_drop_go_offline_then_online(vendor, tmp_path):
    with SIMS[vendor](heartbeat_s=0.3) as sim:
        drv, ctx = make(vendor, sim, tmp_path, offline_s=1.5)
        drv.start()
        try:
            assert wait(lambda: events(ctx, "device.online") and sim.connected(), 15)
            sim.go_silent()                                  # open, but nothing flows
            assert wait(lambda: events(ctx, "device.offline"), 5)
            sim.resume()
            assert wait(lambda: len(events(ctx, "device.online")) == 2, 10)
            sim.drop()                                       # the stream closes; it reconnects
            assert wait(lambda: sim.streams_opened >= 3 and sim.connected(), 10)
            if vendor != "onvif":
                sim.heartbeats = False                       # heartbeats stop: offline again
                assert wait(lambda: len(events(ctx, "device.offline")) == 2, 6)
        finally:
            drv.stop(2.0)


@pytest.mark.parametrize("vendor", ["hikvision", "dahua"])
def test_unparseable_parts_are_counted_not_fatal(vendor, tmp_path):
    with SIMS[vendor](heartbeat_s=0.3) as sim:
        drv, ctx = make(vendor, sim, tmp_path)
        drv.start()
        try:
            assert wait(lambda: sim.connected(), 10)
            if vendor == "hikvision":
                sim.send_raw(sim.part("application/xml", b"<EventNotificationAlert><eventType>VMD"))
            else:
                sim.send_raw(sim.part("Code=VideoMotion;action=Sideways;index=0"))
            assert wait(lambda: drv.health.counters.get("unparseable_part") == 1, 5)
            sim.motion(1, True)
            assert wait(lambda: events(ctx, "camera.motion"), 5)
            assert not events(ctx, "device.offline")
        finally:
            drv.stop(2.0)


def test_stop_returns_within_timeout_while_the_camera_is_silent(tmp_path):
    with HikvisionSimulator(heartbeat_s=0.3) as sim:
        drv, ctx = make("hikvision", sim, tmp_path, offline_s=60)
        drv.start()
        assert wait(lambda: sim.connected(), 10)
        sim.go_silent()
        time.sleep(0.5)
        drv.stop(1.0)                           # every thread joined within the stop's timeout:
        assert not [th for th in threading.enumerate() if th.name.startswith("camera_events-cam1")]


def test_missing_password_file_is_a_clear_error(tmp_path):
    cfg = CameraEventsConfig(id="cam1", driver="camera_events", vendor="dahua", url="http://127.0.0.1:9",
                             password_file=str(tmp_path / "nope"), channels={"1": "r"})
    drv = CameraEventsDriver(cfg, PrintContext("cam1"))
    with pytest.raises(ValueError, match="cannot read password_file .*nope"):
        drv.start()


def test_connection_refused_is_worded(tmp_path):
    from helpers.brokers import free_port
    cfg = CameraEventsConfig(id="cam1", driver="camera_events", vendor="hikvision",
                             url=f"http://127.0.0.1:{free_port()}", password_file="x", channels={"1": "r"},
                             offline_s=0.5, reconnect_step_s=0.2)
    ctx = PrintContext("cam1")
    drv = CameraEventsDriver(cfg, ctx, password="p")
    drv.start()
    try:
        assert wait(lambda: events(ctx, "device.offline"), 5)
        assert "connection refused" in events(ctx, "device.offline")[0]["error"]
    finally:
        drv.stop(2.0)
