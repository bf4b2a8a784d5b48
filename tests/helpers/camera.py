"""Helpers and fixtures shared by the camera tests (in-process driver and camera process)."""
from __future__ import annotations

import os
import stat

import cv2
import numpy as np
import pytest

from drivers.camera.faces import FaceStore
from drivers.camera.simulator import astronaut_face
from gateway.config import CameraConfig
from helpers.polling import poll

ROOM = "interrogation-1"


def png_bytes(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def jpeg_bytes(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def cfg(url, **kw) -> CameraConfig:
    base = dict(id="cam-int1", driver="camera", url=str(url), room=ROOM, fps=5, face_frames=3,
                still_s=300, offline_s=30, face_repeat_s=60)
    base.update(kw)
    return CameraConfig(**base)


def wait_for(pred, timeout: float, step: float = 0.05) -> bool:
    """Whether pred() came true within ``timeout`` s (the tests assert it)."""
    return bool(poll(pred, timeout, step))


def more_detections(drv, n: int, timeout: float = 10.0) -> None:
    """Until the driver has made ``n`` more detection passes: the positive signal that it went
    on looking at the scene (at fps=5, 5 passes are about a second of a moving picture)."""
    k = drv.stats.detections
    assert wait_for(lambda: drv.stats.detections >= k + n, timeout), f"{n} more detection passes"


def of_type(ctx, type_):
    return [d for t, d in list(ctx.events) if t == type_]


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def storage(tmp_path):
    d = tmp_path / "state"
    d.mkdir()
    return d


@pytest.fixture
def enrolled(storage):
    FaceStore(storage / "faces").enroll("suspect-7", png_bytes(astronaut_face()))
    return storage
