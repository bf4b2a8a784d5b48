"""Hikvision ISAPI event stream (SPEC §4.7): ``GET /ISAPI/Event/notification/alertStream``.

A long-lived ``multipart/mixed`` response; each part is an ``<EventNotificationAlert>`` XML
document or a JPEG of the event. ``videoloss`` + ``inactive`` + ``activePostCount`` 0 is the
camera's heartbeat (every ~5-30 s). The camera posts ``active`` again about every second
while a condition holds and often never says ``inactive``: those signals expire.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET

from drivers.camera_events.limits import MAX_XML_PART, parse_xml
from drivers.camera_events.signals import COVERED, HEARTBEAT, IGNORED, MOTION, VIDEO_LOST, Signal

STREAM_PATHS = ("/ISAPI/Event/notification/alertStream", "/Event/notification/alertStream")
DEFAULT_BOUNDARY = "boundary"

# eventType (lower case) -> kind
EVENT_KINDS = {
    "vmd": MOTION, "fielddetection": MOTION, "linedetection": MOTION, "regionentrance": MOTION,
    "regionexiting": MOTION, "facedetection": MOTION,
    "shelteralarm": COVERED, "tamperdetection": COVERED,
    "videoloss": VIDEO_LOST,
}


def snapshot_path(channel: str) -> str:
    """Channel 1 -> /ISAPI/Streaming/channels/101/picture (stream 01 = main)."""
    return f"/ISAPI/Streaming/channels/{int(channel)}01/picture"


def _text(root: ET.Element, name: str) -> str | None:
    for el in root.iter():
        if el.tag.rpartition("}")[2] == name:
            return (el.text or "").strip()
    return None


def parse_alert(xml: bytes) -> list[Signal]:
    """One ``<EventNotificationAlert>`` -> its signal (ValueError if it is not one)."""
    root = parse_xml(xml, "EventNotificationAlert", MAX_XML_PART)     # bounded, no DTD/entities
    if root.tag.rpartition("}")[2] != "EventNotificationAlert":
        raise ValueError(f"not an EventNotificationAlert: <{root.tag.rpartition('}')[2]}>")
    etype = (_text(root, "eventType") or "").lower()
    state = (_text(root, "eventState") or "").lower()
    if not etype or state not in ("active", "inactive"):
        raise ValueError(f"eventType {etype!r} / eventState {state!r}")
    channel = _text(root, "dynChannelID") or _text(root, "channelID") or ""
    posts = _text(root, "activePostCount")
    if etype == "videoloss" and state == "inactive" and posts in ("0", None, ""):
        return [Signal(channel, HEARTBEAT, False, etype)]
    kind = EVENT_KINDS.get(etype, IGNORED)
    return [Signal(channel, kind, state == "active", etype, expires=True)]


def decode_part(headers: dict[str, str], body: bytes) -> list[Signal]:
    ctype = headers.get("content-type", "").lower()
    if ctype.startswith("image/"):
        if not body.startswith(b"\xff\xd8"):
            raise ValueError("image part is not a JPEG")
        return [Signal("", IGNORED, False, "image", image=body)]
    if "xml" in ctype or body.lstrip().startswith(b"<"):
        return parse_alert(body)
    raise ValueError(f"unexpected part {ctype or 'without Content-Type'}")
