"""A synthetic camera: real video files written with cv2.VideoWriter (MJPG in .avi).

A static room (walls, floor, table, door, fixed sensor texture) with, depending on
``scenario``:

* ``still``            empty room, nothing moves
* ``motion``           a faceless figure walks across the room (motion, no face)
* ``face_moving``      a person with a real face (skimage's astronaut) walks to and fro
* ``face_still``       that person sits still (a face, but no motion)
* ``two_faces_moving`` two such persons walking
* ``face_enter_leave`` empty, then the person walks in, then the room is empty again

``grey=True`` writes single-channel frames (an infrared camera). Used by the
tests, ``bench/camera.py`` and ``casegate demo`` (the driver loops a file source).
Identical frames encode to identical JPEGs, so a still scene shows exactly no motion.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

SCENARIOS = ("still", "motion", "face_moving", "face_still", "two_faces_moving", "face_enter_leave")


def astronaut_face(height: int | None = None) -> np.ndarray | None:
    """RGB crop of the one face in ``skimage.data.astronaut()`` (None if scikit-image is missing)."""
    try:
        from skimage import data
    except ImportError:
        return None
    img = data.astronaut()
    crop = np.ascontiguousarray(img[30:220, 120:320])   # face box is about (76,265,166,175)
    if height:
        import cv2
        crop = cv2.resize(crop, (round(crop.shape[1] * height / crop.shape[0]), height),
                          interpolation=cv2.INTER_AREA)
    return crop


def lfw_face(index: int, height: int = 200) -> np.ndarray | None:
    """RGB face ``index`` (0-99) of ``skimage.data.lfw_subset()`` — 25x25 grey crops of
    Labeled Faces in the Wild that scikit-image ships — scaled up to ``height`` px.
    Other people than the astronaut, for telling enrolled persons apart."""
    try:
        from skimage import data
    except ImportError:
        return None
    import cv2
    grey = (data.lfw_subset()[index] * 255).astype(np.uint8)
    big = cv2.resize(grey, (height, height), interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(np.dstack([big] * 3))


def room_background(size: tuple[int, int] = (320, 240), seed: int = 7) -> np.ndarray:
    """A static BGR room."""
    import cv2
    w, h = size
    img = np.zeros((h, w, 3), np.uint8)
    horizon = int(h * 0.62)
    for y in range(horizon):                      # wall: soft vertical gradient
        v = 150 + int(40 * y / max(1, horizon))
        img[y, :] = (v - 10, v, v + 5)
    img[horizon:, :] = (70, 85, 95)                # floor
    cv2.rectangle(img, (int(w * 0.78), int(h * 0.18)), (int(w * 0.93), horizon), (60, 90, 120), -1)  # door
    cv2.rectangle(img, (int(w * 0.05), int(h * 0.15)), (int(w * 0.2), int(h * 0.35)), (200, 200, 190), -1)  # notice
    cv2.rectangle(img, (int(w * 0.3), int(h * 0.68)), (int(w * 0.7), int(h * 0.76)), (40, 60, 80), -1)   # table
    rng = np.random.default_rng(seed)
    noise = rng.integers(-6, 7, size=img.shape, dtype=np.int16)
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def _paste_person(frame: np.ndarray, face_bgr: np.ndarray | None, cx: int, top: int) -> None:
    """A body (shirt) and, if given, a face centred at x=cx with its top at y=top."""
    import cv2
    h, w = frame.shape[:2]
    fh, fw = (face_bgr.shape[:2] if face_bgr is not None else (int(h * 0.35), int(h * 0.3)))
    body_top = top + int(fh * 0.85)
    cv2.rectangle(frame, (cx - fw // 2 - 8, body_top), (cx + fw // 2 + 8, h - 1), (90, 40, 30), -1)
    if face_bgr is None:                             # a faceless head (seen from behind)
        cv2.ellipse(frame, (cx, top + fh // 2), (fw // 3, fh // 2), 0, 0, 360, (30, 30, 40), -1)
        return
    x0 = cx - fw // 2
    x1, y1 = x0 + fw, top + fh
    fx0, fy0 = max(0, -x0), max(0, -top)
    fx1, fy1 = fw - max(0, x1 - w), fh - max(0, y1 - h)
    if fx1 > fx0 and fy1 > fy0:
        frame[top + fy0:top + fy1, x0 + fx0:x0 + fx1] = face_bgr[fy0:fy1, fx0:fx1]


def synthetic_frames(seconds: float, fps: float, scenario: str = "face_moving",
                     size: tuple[int, int] = (320, 240), grey: bool = False,
                     face_height: int | None = None, face: np.ndarray | None = None):
    """Yield the frames of a scenario (BGR, or 2-D grey). ``face``: an RGB photo of
    someone else than the astronaut (e.g. :func:`lfw_face`)."""
    import cv2
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}")
    w, h = size
    bg = room_background(size)
    fh = face_height or max(40, int(h * 0.42))
    if face is not None:
        face_rgb = cv2.resize(face, (round(face.shape[1] * fh / face.shape[0]), fh), interpolation=cv2.INTER_AREA)
    else:
        face_rgb = astronaut_face(fh)
    face = None if face_rgb is None else cv2.cvtColor(face_rgb, cv2.COLOR_RGB2BGR)
    total = max(1, round(seconds * fps))
    top = int(h * 0.12)
    speed = w * 0.25                                 # px per second
    for i in range(total):
        t = i / fps
        frame = bg.copy()
        swing = (w * 0.22) * math.sin(2 * math.pi * t * speed / (w * 0.22 * 4))
        if scenario == "motion":
            _paste_person(frame, None, int(w * 0.5 + swing), top)
        elif scenario == "face_moving":
            _paste_person(frame, face, int(w * 0.5 + swing), top)
        elif scenario == "face_still":
            _paste_person(frame, face, int(w * 0.5), top)
        elif scenario == "two_faces_moving":
            _paste_person(frame, face, int(w * 0.27 + swing * 0.4), top)
            _paste_person(frame, face, int(w * 0.73 - swing * 0.4), top)
        elif scenario == "face_enter_leave":
            phase = t / max(seconds, 1e-9)
            if 1 / 3 <= phase < 2 / 3:
                _paste_person(frame, face, int(w * 0.5 + swing), top)
        if grey:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        yield frame


def write_synthetic_video(path: str | Path, seconds: float = 4.0, fps: float = 10.0,
                          scenario: str = "face_moving", size: tuple[int, int] = (320, 240),
                          grey: bool = False, face_height: int | None = None,
                          face: np.ndarray | None = None) -> Path:
    """Write a scenario as an MJPG .avi that cv2.VideoCapture can read back. Returns the path."""
    import cv2
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), float(fps),
                             tuple(size), not grey)
    if not writer.isOpened():
        raise OSError(f"cv2.VideoWriter cannot write {path} (MJPG)")
    try:
        for frame in synthetic_frames(seconds, fps, scenario, size, grey, face_height, face):
            writer.write(frame)
    finally:
        writer.release()
    return path
