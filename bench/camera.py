"""Camera analysis cost (frames/s suffer from other load; CPU ms/frame much less): `cd /work/main && uv run python bench/camera.py [--seconds 10]`.

1. Frames/s that ``CameraDriver.analyse`` sustains on one core, per frame size, for a
   still scene (motion test only) and a moving scene with an enrolled face (motion ->
   face detection + encoding + matching).
2. CPU per camera at the default ``fps = 2``: a real driver thread reading a looping
   640x480 MJPG file at 15 fps (every frame grabbed/decoded, 2/s analysed), measured as
   process CPU seconds per wall second, for a still and a moving room.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402

from drivers.base import PrintContext  # noqa: E402
from drivers.camera.driver import CameraDriver  # noqa: E402
from drivers.camera.faces import FaceStore, preload  # noqa: E402
from drivers.camera.simulator import astronaut_face, synthetic_frames, write_synthetic_video  # noqa: E402
from gateway.config import CameraConfig  # noqa: E402


def cfg(url: str, fps: float = 2) -> CameraConfig:
    return CameraConfig(id="bench-cam", driver="camera", url=url, room="r", fps=fps,
                        still_s=1e6, offline_s=60)


def analyse_rate(storage: str, size: tuple[int, int], scenario: str, min_s: float) -> tuple[float, float, float]:
    frames = list(synthetic_frames(4, 5, scenario, size=size))
    drv = CameraDriver(cfg("unused.avi"), PrintContext("bench-cam", storage_dir=storage),
                       auto_snapshots=False)
    drv.analyse(frames[0])
    n, t0 = 0, time.perf_counter()
    c0 = time.process_time()
    while time.perf_counter() - t0 < min_s:
        drv.analyse(frames[n % len(frames)])
        n += 1
    wall = time.perf_counter() - t0
    motion = drv.stats.motion_frames / max(1, drv.stats.frames_analysed)
    return n / wall, (time.process_time() - c0) / n * 1000, motion


def cpu_per_camera(storage: str, video: str, seconds: float) -> tuple[float, int, int]:
    drv = CameraDriver(cfg(video, fps=2), PrintContext("bench-cam", storage_dir=storage),
                       auto_snapshots=False)
    drv.start()
    time.sleep(1.0)                                  # warm up: open, first frames
    c0, w0, a0 = time.process_time(), time.perf_counter(), drv.stats.frames_analysed
    d0 = drv.stats.detections
    time.sleep(seconds)
    cpu = (time.process_time() - c0) / (time.perf_counter() - w0)
    analysed, det = drv.stats.frames_analysed - a0, drv.stats.detections - d0
    drv.stop()
    return cpu, analysed, det


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0, help="per CPU measurement (default 10)")
    args = ap.parse_args()
    preload()
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        FaceStore(Path(tmp) / "faces").enroll("p1", cv2.imencode(
            ".png", cv2.cvtColor(astronaut_face(), cv2.COLOR_RGB2BGR))[1].tobytes())
        print(f"camera bench: OpenCV {cv2.__version__}, {os.cpu_count()} cores "
              f"(load {os.getloadavg()[0]:.1f}), dlib HOG faces (upsample 1), detect_width 640")
        print("\n1. analyse() throughput, one thread")
        print(f"   {'frame':>9} {'scene':<12} {'frames/s':>9} {'CPU ms/frame':>13} {'motion':>7}")
        for size in ((320, 240), (640, 480), (1280, 720)):
            for scenario in ("still", "face_moving"):
                rate, cpu_ms, motion = analyse_rate(tmp, size, scenario, 2.0)
                print(f"   {size[0]}x{size[1]:<4} {scenario:<12} {rate:9.1f} {cpu_ms:13.2f} {motion:7.0%}")
        print(f"\n2. CPU per camera at fps 2 (640x480 MJPG file at 15 fps, {args.seconds:g} s each)")
        for scenario in ("still", "face_moving"):
            video = write_synthetic_video(Path(tmp) / f"{scenario}.avi", 8, 15, scenario, size=(640, 480))
            cpu, analysed, det = cpu_per_camera(tmp, str(video), args.seconds)
            print(f"   {scenario:<12} CPU {cpu:6.1%} of one core; analysed {analysed / args.seconds:.1f}/s, "
                  f"detection passes {det / args.seconds:.1f}/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
