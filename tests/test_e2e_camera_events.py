"""End to end: each vendor's camera simulator -> the real daemon (camera_events) -> mosquitto.

Motion reaches MQTT as camera.motion; a covered camera raises camera_tamper (critical), which
gets a snapshot (a 0600 JPEG, camera.snapshot with the alarm id); a still room with a suspect
raises suspect_motionless; camera/snapshot over MQTT is answered.
"""
from __future__ import annotations

import os
import stat

import pytest

from helpers.brokers import free_port
from helpers.daemon import DaemonProcess, write_config
from drivers.camera_events.simulator import SIMULATORS
from drivers.zone_reader.simulator import ZoneSite
from helpers.central import Central, P
from helpers.e2e_camera import S1, O1, alarms, people, wait
from helpers.e2e import ROOMS, zone_device


@pytest.mark.parametrize("vendor", sorted(SIMULATORS))
def test_camera_events_through_the_daemon(vendor, tmp_path, mosquitto, subscriber_factory):
    sim = SIMULATORS[vendor](heartbeat_s=1).start()
    pw = tmp_path / "cam.password"
    pw.write_text("cam-secret\n")
    os.chmod(pw, 0o600)
    zport = free_port()
    cfg = write_config(tmp_path, mosquitto.port, ROOMS + zone_device(zport, presence_timeout_s=30) + f"""
[[devices]]
id = "cam-int1"
driver = "camera_events"
vendor = "{vendor}"
url = "{sim.url}"
username = "admin"
password_file = "{pw}"
channels = {{ "1" = "interrogation-1" }}
still_s = 3
active_expiry_s = 2
offline_s = 10
pull_timeout_s = 1

[rules]
legal_disabled_reason = "test: the alarm under test would interleave (approved by the lead)"
[rules.lone_interrogation]
enabled = false
[rules.interrogation_not_recorded]
enabled = false
[rules.suspect_motionless]
after_s = 1
""")
    sub = subscriber_factory(mosquitto.port, [f"{P}/alarms/#", f"{P}/events/camera/#", f"{P}/events/device/#"])
    d = DaemonProcess(cfg).start()
    site = ZoneSite("127.0.0.1", zport, ["ST-WAIT", "ST-INT1"], heartbeat_s=5, report_s=0.5)
    c = None
    try:
        d.wait_status(lambda s: s["uplink"]["connected"])
        assert wait(lambda: sim.connected(), 20), d.log()
        c = Central(mosquitto.port)

        sim.motion(1, True)
        assert wait(lambda: sub.payloads(f"{P}/events/camera/motion"), 10), d.log()
        assert sub.payloads(f"{P}/events/camera/motion")[0]["data"] == {
            "camera": "cam-int1", "room": "interrogation-1", "active": True}
        sim.motion(1, False)

        # covered: camera_tamper (critical, legal) with a snapshot of the room
        sim.tamper(1, True)
        assert wait(lambda: any(a["data"]["snapshot"] for a in alarms(sub, "camera_tamper")), 20), \
            (alarms(sub, "camera_tamper"), d.log())
        raised = [a for a in alarms(sub, "camera_tamper") if a["type"] == "alarm.raised"]
        linked = next(a for a in raised if a["data"]["snapshot"])
        path = linked["data"]["snapshot"]
        assert path.startswith(str(d.state_dir / "snapshots") + os.sep)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert open(path, "rb").read(2) == b"\xff\xd8"
        # the alarm jumps the uplink's queue (gateway/uplink.py): the snapshot's own event,
        # journaled before it, may still be on its way
        assert wait(lambda: sub.payloads(f"{P}/events/camera/snapshot"), 10), d.log()
        snaps = sub.payloads(f"{P}/events/camera/snapshot")
        assert snaps[0]["data"] == {"camera": "cam-int1", "room": "interrogation-1", "file": path,
                                    "reason": "alarm", "alarm_id": raised[0]["data"]["alarm_id"]}
        sim.tamper(1, False)
        assert wait(lambda: [a for a in alarms(sub, "camera_tamper") if a["type"] == "alarm.cleared"], 15)

        # a suspect in a room that shows no motion: camera.still, then suspect_motionless
        people(c)
        site.start()
        assert site.wait_logged_in(10)
        site.move(S1, "ST-INT1")
        site.move(O1, "ST-INT1")
        assert wait(lambda: alarms(sub, "suspect_motionless"), 30), d.log()
        mo = alarms(sub, "suspect_motionless")[0]["data"]
        assert mo["room"] == "interrogation-1" and mo["persons"] == ["s1"]
        assert sub.payloads(f"{P}/events/camera/still")[0]["data"]["seconds"] >= 3

        # camera/snapshot over MQTT
        r = c.request("camera/snapshot", camera="cam-int1", timeout=15)
        assert r["ok"], r
        assert open(r["data"]["file"], "rb").read(2) == b"\xff\xd8"
    finally:
        if c:
            c.c.loop_stop()
        site.stop()
        d.stop()
        sim.stop()
