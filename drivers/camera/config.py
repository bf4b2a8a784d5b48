"""[[devices]] driver = "camera" (SPEC §1a, §4.6)."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from drivers.common.config import ID_PATTERN, DeviceBase, Strict, url_endpoint  # noqa: F401


class CameraConfig(DeviceBase):
    driver: Literal["camera"]
    url: str
    room: str
    fps: float = Field(default=2, gt=0, le=30)
    tolerance: float = Field(default=0.5, gt=0, le=1)
    still_s: float = Field(default=300, gt=0)
    offline_s: float = Field(default=30, gt=0)
    motion_threshold: float = Field(default=0.01, gt=0, le=1)
    face_frames: int = Field(default=3, ge=1)
    face_repeat_s: float = Field(default=60, ge=0)    # re-report a person unseen this long; face_unknown rate limit
    detect_width: int = Field(default=640, ge=64, le=4096)  # frames are downscaled to this for detection
    face_upsample: int = Field(default=1, ge=0, le=3)  # dlib HOG upsampling: 1 finds faces down to ~40 px
    tamper_s: float = Field(default=10, ge=-1)  # covered/moved must hold this long (camera_tamper); -1: off
    headcount_burst: int = Field(default=3, ge=1)               # camera.headcount changes sent at once...
    headcount_min_interval_s: float = Field(default=60, ge=0)   # ...then at most one per this (flapping bound)

    capabilities: ClassVar[frozenset[str]] = frozenset({"snapshot", "faces", "headcount", "motion", "tamper"})

    def endpoint(self) -> tuple[str, int] | None:
        return url_endpoint(self.url, {"rtsp": 554, "http": 80, "https": 443})
