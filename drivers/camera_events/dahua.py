"""Dahua event stream (SPEC §4.7): ``GET /cgi-bin/eventManager.cgi?action=attach&codes=[All]&heartbeat=5``.

``multipart/x-mixed-replace; boundary=myboundary``; ``text/plain`` parts such as
``Code=VideoMotion;action=Start;index=0;data={...}`` (index is 0-based: index 0 = channel 1),
and the body ``Heartbeat`` every ``heartbeat`` seconds. Start/Stop bracket a condition;
``Pulse`` is a one-off (it expires like Hikvision's active-only posts).
"""
from __future__ import annotations

import re

from drivers.camera_events.limits import MAX_XML_PART
from drivers.camera_events.signals import COVERED, HEARTBEAT, IGNORED, MOTION, MOVED, VIDEO_LOST, Signal

STREAM_PATHS = ("/cgi-bin/eventManager.cgi?action=attach&codes=[All]&heartbeat=5",)
DEFAULT_BOUNDARY = "myboundary"

CODE_KINDS = {
    "VideoMotion": MOTION, "CrossRegionDetection": MOTION, "CrossLineDetection": MOTION,
    "FaceDetection": MOTION, "SmartMotionHuman": MOTION, "SmartMotionVehicle": MOTION,
    "VideoBlind": COVERED, "SceneChange": MOVED, "VideoLoss": VIDEO_LOST,
}
_RECORD = re.compile(r"(?m)^\s*Code=")


def snapshot_path(channel: str) -> str:
    return f"/cgi-bin/snapshot.cgi?channel={int(channel)}"


def parse_record(rec: str) -> Signal:
    """``Code=X;action=Y;index=N[;data={json}]`` -> its signal."""
    head, _, _data = rec.partition(";data=")      # the JSON may hold ';' itself
    fields = {}
    for item in head.strip().split(";"):
        k, sep, v = item.partition("=")
        if sep:
            fields[k.strip()] = v.strip()
    code, action, index = fields.get("Code"), fields.get("action"), fields.get("index", "0")
    if not code or action not in ("Start", "Stop", "Pulse") or not index.lstrip("-").isdigit():
        raise ValueError(f"bad event record {head[:80]!r}")
    channel = str(int(index) + 1)
    kind = CODE_KINDS.get(code, IGNORED)
    return Signal(channel, kind, action != "Stop", code, expires=action == "Pulse")


def parse_text(text: str) -> list[Signal]:
    t = text.strip()
    if t == "Heartbeat":
        return [Signal("", HEARTBEAT, False, "Heartbeat")]
    starts = [m.start() for m in _RECORD.finditer(t)]
    if not starts or t[:starts[0]].strip():
        raise ValueError(f"not an event: {t[:80]!r}")
    return [parse_record(t[a:b]) for a, b in zip(starts, starts[1:] + [len(t)])]


def decode_part(headers: dict[str, str], body: bytes) -> list[Signal]:
    ctype = headers.get("content-type", "text/plain").lower()
    if ctype.startswith("image/"):
        return [Signal("", IGNORED, False, "image", image=body)]
    if len(body) > MAX_XML_PART:                 # an event record is a few hundred bytes
        raise ValueError(f"event part of {len(body)} bytes, more than {MAX_XML_PART}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("event part is not UTF-8 text") from None
    return parse_text(text)
