"""``casegate probe --driver camera --url <url> --seconds 10``.

Opens the source without the daemon, analyses frames as the driver would and
prints what it saw: frames read, resolution, source fps, motion, headcount and
recognised faces (against ``<storage-dir>/faces`` if given). Exit 1 with a clear
message when the source cannot be opened or yields no frame. Writes nothing.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def _free(parser: argparse.ArgumentParser, *names: str) -> list[str]:
    """Option strings not yet taken (the CLI may share --port/--seconds between drivers)."""
    taken = getattr(parser, "_option_string_actions", {})
    return [n for n in names if n not in taken]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    opts = _free(parser, "--url", "--port")
    if opts:
        parser.add_argument(*opts, dest="url", default=None,
                            help="camera source: rtsp://…, http://… (MJPEG), a video file, or a device index")
    if _free(parser, "--seconds"):
        parser.add_argument("--seconds", type=float, default=10.0, help="how long to watch (default 10)")
    if _free(parser, "--fps"):
        parser.add_argument("--fps", type=float, default=2.0, help="frames analysed per second (default 2)")
    if _free(parser, "--storage-dir"):
        parser.add_argument("--storage-dir", default=None,
                            help="state dir whose faces/ holds enrolled persons (read only)")
    if _free(parser, "--tolerance"):
        parser.add_argument("--tolerance", type=float, default=0.5, help="face distance (default 0.5)")
    if _free(parser, "--motion-threshold"):
        parser.add_argument("--motion-threshold", type=float, default=0.01,
                            help="fraction of changed pixels that is motion (default 0.01)")
    if _free(parser, "--face-frames"):
        parser.add_argument("--face-frames", type=int, default=3,
                            help="consecutive frames a face must match (default 3)")


def _source(args) -> str | None:
    for name in ("url", "port", "device_url"):
        v = getattr(args, name, None)
        if v not in (None, ""):
            return str(v)
    return None


def run(args) -> int:
    from drivers.base import PrintContext
    from drivers.camera.driver import CameraDriver, CameraStats, redact_url
    from drivers.camera.faces import FaceStore
    from drivers.camera.config import CameraConfig

    url = _source(args)
    if not url:
        print("casegate probe: camera needs --url (rtsp://…, http://…, a file or a device index)",
              file=sys.stderr)
        return 2
    seconds = float(getattr(args, "seconds", None) or 10.0)
    as_json = bool(getattr(args, "json", False))
    try:
        cfg = CameraConfig(id=getattr(args, "device", None) or "probe", driver="camera", url=url,
                           room="probe", fps=float(getattr(args, "fps", None) or 2.0),
                           tolerance=float(getattr(args, "tolerance", None) or 0.5),
                           motion_threshold=float(getattr(args, "motion_threshold", None) or 0.01),
                           face_frames=int(getattr(args, "face_frames", None) or 3),
                           still_s=max(seconds * 2, 1.0), offline_s=max(seconds * 2, 1.0))
    except Exception as e:
        print(f"casegate probe: bad camera settings: {e}", file=sys.stderr)
        return 2

    lines: list[str] = []

    def on_event(type_: str, data: dict) -> None:
        if not as_json and not type_.startswith("device."):
            print(f"  {type_} {json.dumps(data, ensure_ascii=False)}", flush=True)
            lines.append(type_)

    with tempfile.TemporaryDirectory(prefix="casegate-probe-") as tmp:
        storage = getattr(args, "storage_dir", None)
        faces = FaceStore(Path(storage) / "faces") if storage else FaceStore(Path(tmp) / "faces")
        ctx = PrintContext(cfg.id, on_event=on_event, storage_dir=tmp)
        drv = CameraDriver(cfg, ctx, faces=faces, auto_snapshots=False)

        cap = drv._open()
        if cap is None:
            print(f"casegate probe: cannot open camera source {redact_url(url)}: {drv._last_error}",
                  file=sys.stderr)
            return 1
        ok = cap.grab()
        cap.release()
        if not ok:
            print(f"casegate probe: {redact_url(url)} opened but delivered no frame", file=sys.stderr)
            return 1
        drv.stats = CameraStats()          # count only what the run itself does
        from drivers.camera.faces import preload
        preload()                          # ~2 s of model loading, not counted in the watch time

        if not as_json:
            print(f"probing {redact_url(url)} for {seconds:g} s at {cfg.fps:g} fps "
                  f"({len(faces)} enrolled faces)", flush=True)
        t0 = time.monotonic()
        drv.start()
        try:
            drv.stop_event.wait(seconds)
        except KeyboardInterrupt:
            pass
        finally:
            drv.stop()
        elapsed = time.monotonic() - t0

    s = drv.stats
    summary = {
        "url": redact_url(url),
        "seconds": round(elapsed, 1),
        "frames_read": s.frames_read,
        "frames_analysed": s.frames_analysed,
        "resolution": f"{s.width}x{s.height}" if s.width else None,
        "channels": s.channels,
        "source_fps": round(s.source_fps, 2),
        "motion_frames": s.motion_frames,
        "detections": s.detections,
        "headcount": s.headcount,
        "people_detector": s.people_detector,
        "recognized": sorted(set(s.recognized)),
        "reopens": max(0, s.opens - 1),
        "errors": {k: v for k, v in drv.health.counters.items()},
    }
    if as_json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        print(f"frames read {s.frames_read}, analysed {s.frames_analysed} "
              f"({s.frames_analysed / max(elapsed, 1e-9):.1f}/s)")
        print(f"resolution {summary['resolution']} ({'grey' if s.channels == 1 else f'{s.channels} channels'}), "
              f"source fps {summary['source_fps'] or 'unknown'}")
        print(f"motion in {s.motion_frames} of {s.frames_analysed} analysed frames; "
              f"{s.detections} detection passes")
        print(f"headcount {s.headcount if s.headcount is not None else 'not established (no motion)'}"
              f"{'' if s.people_detector else ' (faces only: this OpenCV has no HOG people detector)'}")
        print(f"recognised: {', '.join(summary['recognized']) or 'nobody'}")
        if summary["reopens"] or summary["errors"]:
            print(f"reopened {summary['reopens']} times; counters {summary['errors']}")
    if s.frames_read == 0:
        print(f"casegate probe: no frames from {redact_url(url)}", file=sys.stderr)
        return 1
    return 0


def args_from_config(dev, storage_dir: str) -> list[str]:
    """`casegate probe <device-id>`: this device's options from the config; the daemon's
    storage dir holds the enrolled faces the probe should recognise."""
    return ["--url", dev.url, "--fps", str(dev.fps), "--tolerance", str(dev.tolerance),
            "--motion-threshold", str(dev.motion_threshold), "--face-frames", str(dev.face_frames),
            "--storage-dir", storage_dir]
