"""Helpers and fixtures shared by the camera tests (in-process driver and camera process)."""
from __future__ import annotations

import os
import stat
import time

import cv2
import numpy as np
import pytest

from drivers.camera.faces import FaceStore
from drivers.camera.simulator import astronaut_face
from gateway.config import CameraConfig

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
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


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
