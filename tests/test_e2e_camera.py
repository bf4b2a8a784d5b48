"""End to end: a camera on a real video file + zone stations -> the real daemon -> mosquitto.

Covers 视频联动 (a critical alarm in a camera's room gets a JPEG, re-sent with
the same alarm id), suspect_motionless from a still room, headcount_mismatch
and face recognition after enrolment over MQTT (face/enroll).
"""
from __future__ import annotations

import base64
import json
import os
import stat

import cv2
import numpy as np

from helpers.brokers import free_port
from helpers.daemon import DaemonProcess, cli, write_config
from drivers.camera.simulator import astronaut_face, write_synthetic_video
from drivers.zone_reader.simulator import ZoneSite
from helpers.central import Central, P
from helpers.e2e_camera import O1, S1, alarms, people, wait
from helpers.e2e import ROOMS, zone_device

def config(tmp_path, port, zport, video, rules: str):
    extra = ROOMS + zone_device(zport, presence_timeout_s=30) + f"""
[[devices]]
id = "cam-int1"
driver = "camera"
url = "{video}"
room = "interrogation-1"
fps = 5
still_s = 1
face_frames = 2
""" + rules
    return write_config(tmp_path, port, extra)


def test_critical_alarm_gets_a_snapshot_and_still_room_raises_motionless(tmp_path, mosquitto,
                                                                         subscriber_factory):
    video = write_synthetic_video(tmp_path / "int1.avi", 2, 10, "face_still")
    zport = free_port()
    cfg = config(tmp_path, mosquitto.port, zport, video, """
[rules.lone_interrogation]
grace_s = 0
[rules.suspect_motionless]
after_s = 2
[rules.interrogation_not_recorded]
enabled = false     # no recorder here: its (critical) alarm would take a second snapshot
[rules]
legal_disabled_reason = "test: the alarm under test would interleave (approved by the lead)"
""")
    sub = subscriber_factory(mosquitto.port, [f"{P}/alarms/#", f"{P}/events/camera/#"])
    d = DaemonProcess(cfg).start()
    site = ZoneSite("127.0.0.1", zport, ["ST-WAIT", "ST-INT1"], heartbeat_s=5, report_s=0.5)
    c = None
    try:
        d.wait_status(lambda s: s["uplink"]["connected"])
        c = Central(mosquitto.port)
        people(c)
        site.start()
        assert site.wait_logged_in(10)
        site.move(S1, "ST-INT1")
        site.move(O1, "ST-INT1")      # one investigator with a suspect: 单人讯问, critical

        # The alarm goes out at once, then again with the same id and its snapshot.
        assert wait(lambda: any(a["data"]["snapshot"] for a in alarms(sub, "lone_interrogation")), 20), \
            alarms(sub, "lone_interrogation")
        raised = [a for a in alarms(sub, "lone_interrogation") if a["type"] == "alarm.raised"]
        first, linked = raised[0], next(a for a in raised if a["data"]["snapshot"])
        assert first["data"]["snapshot"] is None
        assert linked["data"]["alarm_id"] == first["data"]["alarm_id"]
        assert linked["data"]["since"] == first["data"]["since"] and linked["seq"] > first["seq"]
        path = linked["data"]["snapshot"]
        assert path.startswith(str(d.state_dir / "snapshots") + os.sep)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert cv2.imread(path) is not None             # a real JPEG of the room
        # the alarm jumps the uplink's queue: the snapshot's own event may still be on its way
        assert wait(lambda: sub.payloads(f"{P}/events/camera/snapshot"), 10), d.log()
        snaps = sub.payloads(f"{P}/events/camera/snapshot")
        assert [s["data"] for s in snaps] == [{"camera": "cam-int1", "room": "interrogation-1",
                                               "file": path, "reason": "alarm",
                                               "alarm_id": first["data"]["alarm_id"]}]

        # The room shows no motion: camera.still, then suspect_motionless for s1.
        assert wait(lambda: alarms(sub, "suspect_motionless"), 20)
        mo = alarms(sub, "suspect_motionless")[0]["data"]
        assert mo["room"] == "interrogation-1" and mo["persons"] == ["s1"]
        assert mo["severity"] == "major" and mo["snapshot"] is None   # only critical alarms get one
        still = sub.payloads(f"{P}/events/camera/still")
        assert still and still[0]["data"]["seconds"] >= 1

        # Restart = replay: the same alarm, still with its snapshot, and no second picture.
        assert d.terminate() == 0
        d.start()
        d.wait_status(lambda s: s["uplink"]["connected"])
        active = {a["alarm_id"]: a for a in json.loads(cli("alarms", "--json", config=cfg).stdout)}
        assert active[first["data"]["alarm_id"]]["snapshot"] == path
        assert cli("journal", "verify", config=cfg).returncode == 0
    finally:
        if c:
            c.c.loop_stop()
        site.stop()
        d.stop()


def test_face_enrolled_over_mqtt_is_recognised_and_headcount_mismatch(tmp_path, mosquitto,
                                                                      subscriber_factory):
    video = write_synthetic_video(tmp_path / "int1.avi", 4, 10, "face_moving")
    zport = free_port()
    cfg = config(tmp_path, mosquitto.port, zport, video, """
[rules]
legal_disabled_reason = "test: the alarm under test would interleave (approved by the lead)"
[rules.lone_interrogation]
enabled = false
[rules.headcount_mismatch]
grace_s = 1
""")
    sub = subscriber_factory(mosquitto.port, [f"{P}/alarms/#", f"{P}/events/camera/#",
                                              f"{P}/events/face/#"])
    d = DaemonProcess(cfg).start()
    site = ZoneSite("127.0.0.1", zport, ["ST-WAIT", "ST-INT1"], heartbeat_s=5, report_s=0.5)
    c = None
    try:
        d.wait_status(lambda s: s["uplink"]["connected"])
        c = Central(mosquitto.port)
        people(c)
        ok, png = cv2.imencode(".png", cv2.cvtColor(astronaut_face(), cv2.COLOR_RGB2BGR))
        r = c.request("face/enroll", person="s1", image=base64.b64encode(png.tobytes()).decode(), timeout=30)
        assert r["ok"], r
        faces = d.state_dir / "faces"
        assert [stat.S_IMODE(os.stat(f).st_mode) for f in faces.iterdir()] == [0o600]
        nobody = cv2.imencode(".png", np.full((200, 200, 3), 128, np.uint8))[1]   # a wall, no face
        bad = c.request("face/enroll", person="o1", image=base64.b64encode(nobody.tobytes()).decode(),
                        timeout=30)
        assert not bad["ok"] and bad["error"]["code"] == "no_face", bad
        assert len(list(faces.iterdir())) == 1

        assert wait(lambda: sub.payloads(f"{P}/events/camera/face_recognized"), 20)
        rec = sub.payloads(f"{P}/events/camera/face_recognized")[0]["data"]
        assert rec["person"] == "s1" and rec["room"] == "interrogation-1" and rec["distance"] < 0.5

        site.start()
        assert site.wait_logged_in(10)
        site.move(S1, "ST-INT1")
        site.move(O1, "ST-INT1")      # two tags, the camera sees one person
        # Before the tags arrived the camera already saw one untagged person (1 vs 0);
        # that alarm clears when s1's tag matches the count, and 2 tags vs 1 raises again.
        def raised(tags):
            return [a["data"] for a in alarms(sub, "headcount_mismatch")
                    if a["type"] == "alarm.raised" and a["data"]["details"]["tag_count"] == tags]
        assert wait(lambda: raised(2), 20), alarms(sub, "headcount_mismatch")
        hm = raised(2)[0]
        assert hm["room"] == "interrogation-1" and hm["details"]["camera_count"] == 1
        assert hm["severity"] == "minor" and hm["snapshot"] is None
    finally:
        if c:
            c.c.loop_stop()
        site.stop()
        d.stop()
