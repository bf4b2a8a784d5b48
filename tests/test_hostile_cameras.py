"""Hostile cameras against the real daemon (issues 28.1, 30.2): each attack from a child
process (drivers/camera_events/hostile.py). The daemon's RSS stays under +100 MB, its other
work keeps answering (the control socket's ping through the journal writer within 1 s, a
zone station's presence), the device reports why; a locker/open never waits behind a
camera's dripping snapshots."""
from __future__ import annotations

import json
import os

import pytest

from helpers.brokers import free_port
from helpers.daemon import DaemonProcess, control, write_config
from drivers.camera_events.hostile import HostileProcess
from drivers.zone_reader.simulator import ZoneSite
from helpers.central import Central, P
from helpers.e2e_camera import S1, wait
from helpers.e2e import ROOMS, zone_device


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def ping(d: DaemonProcess, timeout: float = 1.0) -> dict:
    """One request through the control socket and the journal writer, answered within ``timeout``."""
    return control(d.socket, {"cmd": "request", "command": "ping", "args": {}}, timeout=timeout)


def camera_device(cam: HostileProcess, pw, dev_id: str = "cam-int1", **opts) -> str:
    opts = {"offline_s": 3, "pull_timeout_s": 1, "reconnect_step_s": 1, **opts}
    extra = "".join(f"{k} = {v}\n" for k, v in opts.items())
    return f"""
[[devices]]
id = "{dev_id}"
driver = "camera_events"
vendor = "{cam.vendor}"
url = "{cam.url}"
username = "admin"
password_file = "{pw}"
channels = {{ "1" = "interrogation-1" }}
{extra}"""


def password(tmp_path):
    pw = tmp_path / "cam.password"
    pw.write_text("cam-secret\n")
    os.chmod(pw, 0o600)
    return pw


@pytest.mark.parametrize("mode,why", [
    ("lines", "lines outside any part"),
    ("newlines", "a part larger than"),
    ("names", "events a second"),
    ("onvif_flood", "more than 1048576 bytes"),
])
def test_hostile_camera_does_not_blind_the_daemon(mode, why, tmp_path, mosquitto, subscriber_factory):
    zport = free_port()
    with HostileProcess(mode) as cam:
        cfg = write_config(tmp_path, mosquitto.port, ROOMS + zone_device(zport, presence_timeout_s=30)
                           + camera_device(cam, password(tmp_path)))
        sub = subscriber_factory(mosquitto.port, [f"{P}/events/device/#", f"{P}/events/presence/#"])
        d = DaemonProcess(cfg).start()
        site = ZoneSite("127.0.0.1", zport, ["ST-WAIT", "ST-INT1"], heartbeat_s=5, report_s=0.5)
        c = None
        try:
            d.wait_status(lambda s: s["uplink"]["connected"])
            base = rss_mb(d.proc.pid)
            c = Central(mosquitto.port)
            assert c.request("person/register", person="s1", role="suspect", case_id="c1",
                             case_type="criminal", gender="male")["ok"]
            assert c.request("wristband/bind", tag=f"{S1:08X}", person="s1")["ok"]
            site.start()
            assert site.wait_logged_in(10)

            # the device says why (device.error with the bound it broke)
            def errors():
                return [m["data"]["error"] for m in sub.payloads(f"{P}/events/device/error")
                        if m["data"]["device"] == "cam-int1"]
            assert wait(lambda: any(why in e for e in errors()), 40), (errors(), d.log()[-3000:])
            # while it keeps attacking (it reconnects after its backoff), the daemon keeps working
            for room, station in (("interrogation-1", "ST-INT1"), ("waiting-1", "ST-WAIT")):
                site.move(S1, station)
                assert wait(lambda: any(m["data"].get("room") == room and m["data"].get("person") == "s1"
                                        for m in sub.payloads(f"{P}/events/presence/entered")), 5), \
                    sub.payloads(f"{P}/events/presence/entered")
                assert ping(d, 1.0)["ok"]
            assert rss_mb(d.proc.pid) - base < 100, (base, rss_mb(d.proc.pid))
            # counters stay a closed set whatever the camera invents
            devs = d.status()
            counters = json.dumps(devs)
            assert "ignored:" not in counters
        finally:
            if c:
                c.c.loop_stop()
            site.stop()
            d.stop()


def test_locker_open_does_not_wait_behind_dripping_snapshots(tmp_path, mosquitto):
    """30.2: camera snapshots that drip a byte every 2 s (one deadline each, one in flight per
    camera, queued per camera) never hold up a locker/open."""
    from drivers.locker.simulator import LockBoardSimulator
    board = LockBoardSimulator(board=0, compartments=4)
    board.start()
    with HostileProcess("dripsnap") as cam:
        cfg = write_config(tmp_path, mosquitto.port, ROOMS + camera_device(cam, password(tmp_path),
                                                                         snapshot_timeout_s=4, offline_s=10)
                           + f"""
[[rooms]]
id = "evidence"
type = "evidence_store"

[[devices]]
id = "locker-ev1"
driver = "locker"
purpose = "evidence"
port = "{board.port}"
compartments = 4
poll_ms = 100
""")
        d = DaemonProcess(cfg).start()
        c = None
        try:
            d.wait_status(lambda s: s["uplink"]["connected"])
            c = Central(mosquitto.port)
            assert c.request("person/register", person="o1", role="officer")["ok"]
            assert wait(lambda: any(x.get("id") == "cam-int1" and x.get("state") == "online"
                                    for x in d.status().get("devices", [])), 20), d.status()
            rids = [f"snap-{i}" for i in range(6)]
            for rid in rids:                   # more than the old shared pool's 4 workers
                c.send("camera/snapshot", {"request_id": rid, "camera": "cam-int1"})
            # one client, QoS 1: mosquitto keeps the order and the router queues requests in
            # order, so the snapshots hold the camera before the unlock arrives
            r = c.request("locker/open", locker="locker-ev1", compartment=1, by="o1", timeout=5)
            assert r["ok"] and r["data"]["opened"] is True, r
            first = c.wait(rids[0], 10)
            assert first["ok"] is False and first["error"]["code"] == "device_timeout", first
            assert "4 s in all" in first["error"]["message"]
        finally:
            if c:
                c.c.loop_stop()
            d.stop()
            board.stop()


def test_a_500_mb_snapshot_answer_is_refused_without_holding_it(tmp_path, mosquitto):
    """28.1: the red team's 500 MB snapshot answer took the daemon to 640 MB RSS and kept it;
    now it is streamed to disk up to snapshot_max_mb, refused, removed."""
    with HostileProcess("bigsnap") as cam:
        cfg = write_config(tmp_path, mosquitto.port, ROOMS + camera_device(
            cam, password(tmp_path), snapshot_timeout_s=20, offline_s=10))
        d = DaemonProcess(cfg).start()
        c = None
        try:
            d.wait_status(lambda s: s["uplink"]["connected"])
            base = rss_mb(d.proc.pid)
            c = Central(mosquitto.port)
            r = c.request("camera/snapshot", camera="cam-int1", timeout=30)
            assert r["ok"] is False and r["error"]["code"] == "device_refused", r
            assert "snapshot_max_mb = 8" in r["error"]["message"]
            assert rss_mb(d.proc.pid) - base < 100, (base, rss_mb(d.proc.pid))
            assert ping(d, 1.0)["ok"]
            assert not list((d.state_dir / "snapshots").glob("*"))      # nothing half-written left
        finally:
            if c:
                c.c.loop_stop()
            d.stop()
