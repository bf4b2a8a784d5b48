"""camera_tamper from analysed video (issue 14): covered, moved, video lost, on
real frames of the synthetic room (and a real video file through
cv2.VideoCapture), then through the rule as a scenario."""
from __future__ import annotations

import os
import time

import cv2
import numpy as np

from drivers.base import PrintContext
from drivers.camera.driver import CameraDriver
from drivers.camera.simulator import room_background, synthetic_frames, write_synthetic_video

from helpers.camera import ROOM, cfg, of_type, storage, wait_for  # noqa: F401,I001

from helpers.scenario import Scenario  # noqa: E402
from drivers.camera.faces import preload  # noqa: E402

preload()      # dlib's models once (the change of view is motion: detection runs, ~0.1 s a frame)


def feed(drv, frames, seconds: float, step: float = 0.04, at_least: int = 4) -> None:
    """Show the frames (cycled) for ``seconds`` of real time and at least
    ``at_least`` frames, as a camera would."""
    frames = list(frames)
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end or i < at_least:
        drv.analyse(frames[i % len(frames)])
        i += 1
        time.sleep(step)


def tampered(ctx):
    return [(d["kind"], d["active"]) for d in of_type(ctx, "camera.tampered")]


def room_view():
    """The room as the camera normally sees it (a still scene: no costly detection)."""
    return list(synthetic_frames(0.3, 10, "still"))


def test_covered_lens_then_uncovered(storage):
    ctx = PrintContext("cam-int1", storage_dir=str(storage))
    drv = CameraDriver(cfg("unused.avi", tamper_s=1.0), ctx, auto_snapshots=False)
    feed(drv, room_view(), 1.3)
    # the first decision after a start is announced: nothing is wrong
    assert sorted(tampered(ctx)) == [("covered", False), ("moved", False)]
    black = np.zeros((240, 320, 3), np.uint8)
    paper = np.full((240, 320, 3), 215, np.uint8)           # a sheet of paper over the lens
    feed(drv, [black], 0.0, step=0, at_least=2)               # a moment (shorter than tamper_s): nothing
    feed(drv, room_view(), 1.3)
    assert tampered(ctx)[2:] == []
    feed(drv, [black, paper], 1.3)
    assert tampered(ctx)[2:] == [("covered", True)]
    assert drv.stats.scene_std < 6
    assert of_type(ctx, "camera.tampered")[-1]["room"] == ROOM
    feed(drv, room_view(), 1.3)
    assert tampered(ctx)[2:] == [("covered", True), ("covered", False)]   # and never "moved"


def test_camera_turned_away_is_moved_but_light_changes_are_not(storage):
    ctx = PrintContext("cam-int1", storage_dir=str(storage))
    drv = CameraDriver(cfg("unused.avi", tamper_s=0.3), ctx, auto_snapshots=False)
    room = room_background()
    feed(drv, room_view(), 0.6)
    # lights dimmed, then the IR mode: every pixel changes, the view does not
    dim = cv2.convertScaleAbs(room, alpha=0.45, beta=10)
    ir = cv2.cvtColor(cv2.cvtColor(room, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    feed(drv, [dim, ir], 0.6)
    assert tampered(ctx)[2:] == []
    assert drv.stats.scene_correlation > 0.8
    # turned towards the ceiling/wall: another view (the room flipped and shifted)
    away = np.ascontiguousarray(np.roll(room[::-1, ::-1], 120, axis=1))
    feed(drv, [away], 0.6)
    assert tampered(ctx)[2:] == [("moved", True)]
    assert drv.stats.scene_correlation < 0.4
    feed(drv, room_view(), 0.6)                               # turned back
    assert tampered(ctx)[2:] == [("moved", True), ("moved", False)]


def test_a_person_close_to_the_lens_for_a_moment_is_no_tamper(storage):
    ctx = PrintContext("cam-int1", storage_dir=str(storage))
    drv = CameraDriver(cfg("unused.avi", tamper_s=1.0), ctx, auto_snapshots=False)
    feed(drv, room_view(), 1.3)
    close = room_background().copy()
    cv2.rectangle(close, (40, 0), (280, 239), (90, 40, 30), -1)   # a shirt filling most of the frame
    feed(drv, [close], 0.0, step=0, at_least=3)
    feed(drv, room_view(), 1.3)
    assert tampered(ctx)[2:] == []


def test_video_lost_and_back_through_videocapture(storage, tmp_path):
    path = tmp_path / "late.avi"
    ctx = PrintContext("cam-int1", storage_dir=str(storage))
    drv = CameraDriver(cfg(path, offline_s=0.3, tamper_s=0.2), ctx, auto_snapshots=False)
    drv.start()
    try:
        assert wait_for(lambda: ("video_lost", True) in tampered(ctx), 3)
        write_synthetic_video(tmp_path / "tmp.avi", 2, 10, "motion")
        os.replace(tmp_path / "tmp.avi", path)
        assert wait_for(lambda: ("video_lost", False) in tampered(ctx), 6)
        assert wait_for(lambda: ("covered", False) in tampered(ctx), 4)
    finally:
        drv.stop(timeout=3)
    kinds = tampered(ctx)
    assert kinds.index(("video_lost", True)) < kinds.index(("video_lost", False))
    assert ("covered", True) not in kinds and ("moved", True) not in kinds


def test_driver_events_raise_and_clear_camera_tamper_through_the_rules(storage):
    """The driver's own events, fed to the rules on their clock: one alarm, cleared."""
    ctx = PrintContext("cam-int1", storage_dir=str(storage))
    drv = CameraDriver(cfg("unused.avi", tamper_s=0.3), ctx, auto_snapshots=False)
    feed(drv, room_view(), 0.5)
    feed(drv, [np.zeros((240, 320), np.uint8)], 0.5)          # grey (IR) frames, covered
    feed(drv, room_view(), 0.5)
    s = Scenario()
    for i, (typ, data) in enumerate(ctx.events):
        if typ == "camera.tampered":
            s.step(100 + i, typ, data)
    assert [(t, c) for t, c, _ in s.events()] == [("alarm.raised", "camera_tamper"),
                                                  ("alarm.cleared", "camera_tamper")]
    (a,) = s.raised("camera_tamper")
    assert a["room"] == ROOM and a["details"] == {"camera": "cam-int1", "kinds": ["covered"]}
    assert a["legal_basis"] and a["severity"] == "critical"
