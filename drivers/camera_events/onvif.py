"""ONVIF Profile S/T events through a PullPoint subscription (SPEC §4.7), with onvif-zeep-async.

CreatePullPointSubscription, then PullMessages (Timeout, MessageLimit) in a long-poll loop,
Renew before the TerminationTime the device gave, Unsubscribe on stop. WS-Security
UsernameToken (password digest) is done by zeep. The parsers below are pure and read
the ``tt:Message`` XML, so byte-exact samples test them without a device.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import re
import xml.etree.ElementTree as ET
from typing import Callable

from drivers.camera_events.signals import COVERED, IGNORED, MOTION, Signal

NS = {"tt": "http://www.onvif.org/ver10/schema", "wsnt": "http://docs.oasis-open.org/wsn/b-2",
      "s": "http://www.w3.org/2003/05/soap-envelope"}
PULLPOINT_NS = "http://www.onvif.org/ver10/events/wsdl/PullPointSubscription"

# topic (without its prefix) -> (kind, the Data item holding the state, expires)
TOPICS = {
    "RuleEngine/CellMotionDetector/Motion": (MOTION, "IsMotion", False),
    "VideoSource/MotionAlarm": (MOTION, "State", False),
    "RuleEngine/FieldDetector/ObjectsInside": (MOTION, "IsInside", False),
    "RuleEngine/LineDetector/Crossed": (MOTION, None, True),         # an event, no state
    "VideoSource/GlobalSceneChange/ImagingService": (COVERED, "State", False),
    "VideoSource/GlobalSceneChange/AnalyticsService": (COVERED, "State", False),
    "VideoSource/ImageTooDark/ImagingService": (COVERED, "State", False),
    "VideoSource/ImageTooBlurry/ImagingService": (COVERED, "State", False),
}
SOURCE_ITEMS = ("VideoSourceConfigurationToken", "VideoSourceToken", "Source", "InputToken")


def topic_path(topic: str) -> str:
    """``tns1:RuleEngine/CellMotionDetector/Motion`` -> ``RuleEngine/CellMotionDetector/Motion``."""
    t = topic.strip()
    first, sep, rest = t.partition("/")
    return (first.rpartition(":")[2] + sep + rest) if sep else t.rpartition(":")[2]


def _items(el: ET.Element | None) -> dict[str, str]:
    if el is None:
        return {}
    return {i.get("Name", ""): i.get("Value", "") for i in el if i.tag.rpartition("}")[2] == "SimpleItem"}


def parse_message(topic: str, message: ET.Element | bytes) -> list[Signal]:
    """One notification (its topic and its ``tt:Message``) -> its signal."""
    if isinstance(message, (bytes, str)):
        try:
            message = ET.fromstring(message)
        except ET.ParseError as e:
            raise ValueError(f"bad tt:Message XML: {e}") from None
    if message.tag.rpartition("}")[2] != "Message":
        found = message.find(".//tt:Message", NS)
        if found is None:
            raise ValueError("no tt:Message in the notification")
        message = found
    path = topic_path(topic)
    source = _items(message.find("tt:Source", NS))
    data = _items(message.find("tt:Data", NS))
    channel = next((source[k] for k in SOURCE_ITEMS if source.get(k)), "")
    rule = TOPICS.get(path)
    if rule is None:
        return [Signal(channel, IGNORED, False, path)]
    kind, item, expires = rule
    if item is None:
        return [Signal(channel, kind, True, path, expires=True)]
    value = data.get(item, "").strip().lower()
    if value not in ("true", "false", "1", "0"):
        raise ValueError(f"{path}: {item} = {value!r}")
    return [Signal(channel, kind, value in ("true", "1"), path, expires=expires)]


def parse_pull_response(xml: bytes) -> list[Signal]:
    """A whole PullMessagesResponse envelope -> the signals of its notifications."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as e:
        raise ValueError(f"bad SOAP XML: {e}") from None
    out: list[Signal] = []
    for nm in root.iter(f"{{{NS['wsnt']}}}NotificationMessage"):
        topic = nm.find("wsnt:Topic", NS)
        msg = nm.find("wsnt:Message/tt:Message", NS)
        if topic is None or msg is None:
            raise ValueError("NotificationMessage without Topic or tt:Message")
        out += parse_message(topic.text or "", msg)
    return out


def _duration_s(d) -> float | None:
    """Seconds between a response's CurrentTime and TerminationTime (device clock)."""
    cur, term = getattr(d, "CurrentTime", None), getattr(d, "TerminationTime", None)
    if isinstance(cur, dt.datetime) and isinstance(term, dt.datetime):
        return (term - cur).total_seconds()
    return None


class PullPointSession:
    """One subscription's life, run in the driver's own event loop (one thread per device)."""

    def __init__(self, host: str, port: int, username: str, password: str, *, pull_timeout_s: float,
                 subscription_s: float, connect_timeout_s: float,
                 on_bytes: Callable[[], None], on_connected: Callable[[], None],
                 on_signals: Callable[[list[Signal]], None], on_bad: Callable[[str], None]):
        self.host, self.port, self.username, self.password = host, port, username, password
        self.pull_timeout_s = pull_timeout_s
        self.subscription_s = subscription_s
        self.connect_timeout_s = connect_timeout_s
        self.on_bytes, self.on_connected, self.on_signals, self.on_bad = on_bytes, on_connected, on_signals, on_bad
        self.cam = None
        self.subscription = None
        self.snapshot_uris: dict[str, str] = {}     # video source token -> URI
        self.renewals = 0

    async def run(self) -> None:
        from onvif import ONVIFCamera
        self.cam = cam = ONVIFCamera(self.host, self.port, self.username, self.password, no_cache=True)
        try:
            await asyncio.wait_for(cam.update_xaddrs(), self.connect_timeout_s * 3)
            events = await cam.create_events_service()
            term = f"PT{int(self.subscription_s)}S"
            res = await asyncio.wait_for(events.CreatePullPointSubscription({"InitialTerminationTime": term}),
                                         self.connect_timeout_s * 2)
            cam.xaddrs[PULLPOINT_NS] = res.SubscriptionReference.Address._value_1
            pullpoint = await cam.create_pullpoint_service()
            self.subscription = sub = await cam.create_subscription_service("PullPointSubscription")
            left = _duration_s(res) or self.subscription_s
            renew_at = asyncio.get_running_loop().time() + left
            self.on_bytes()
            self.on_connected()
            try:
                await self._snapshot_uris(cam)
            except Exception:          # snapshots are asked again on demand
                pass
            loop = asyncio.get_running_loop()
            while True:
                # Renew while more than one long-poll is left (the device may drop us at TerminationTime)
                if renew_at - loop.time() < self.pull_timeout_s + self.connect_timeout_s:
                    r = await asyncio.wait_for(sub.Renew(term), self.connect_timeout_s * 2)
                    self.renewals += 1
                    renew_at = loop.time() + (_duration_s(r) or self.subscription_s)
                pulled = await asyncio.wait_for(
                    pullpoint.PullMessages({"Timeout": f"PT{int(self.pull_timeout_s)}S", "MessageLimit": 100}),
                    self.pull_timeout_s + self.connect_timeout_s * 2)
                self.on_bytes()
                left = _duration_s(pulled)
                if left is not None:
                    renew_at = loop.time() + left
                signals: list[Signal] = []
                for nm in pulled.NotificationMessage or []:
                    try:
                        signals += parse_message(nm.Topic._value_1 or "", _element(nm.Message._value_1))
                    except (ValueError, AttributeError, TypeError) as e:
                        self.on_bad(f"unreadable notification: {e!r}")
                if signals:
                    self.on_signals(signals)
        finally:
            await self.close()

    async def close(self) -> None:
        cam, sub, self.subscription, self.cam = self.cam, self.subscription, None, None
        if sub is not None:
            try:
                await asyncio.wait_for(sub.Unsubscribe(), 1.0)
            except BaseException:      # the device may be gone; stop anyway
                pass
        if cam is not None:
            try:
                await asyncio.wait_for(cam.close(), 1.0)
            except BaseException:
                pass

    async def _snapshot_uris(self, cam) -> None:
        media = await cam.create_media_service()
        for p in await media.GetProfiles() or []:
            src = getattr(getattr(p, "VideoSourceConfiguration", None), "SourceToken", None)
            if src and src not in self.snapshot_uris:
                uri = await cam.get_snapshot_uri(p.token)
                if uri:
                    self.snapshot_uris[src] = uri


def _element(value) -> ET.Element:
    """zeep hands ``tt:Message`` as a typed object (or, for unknown content, an lxml element):
    rebuild the stdlib element the parser reads."""
    if isinstance(value, ET.Element):
        return value
    if hasattr(value, "Source") or hasattr(value, "Data"):
        tt = NS["tt"]
        msg = ET.Element(f"{{{tt}}}Message")
        for part in ("Source", "Data"):
            el = ET.SubElement(msg, f"{{{tt}}}{part}")
            for item in getattr(getattr(value, part, None), "SimpleItem", None) or []:
                ET.SubElement(el, f"{{{tt}}}SimpleItem", Name=str(item.Name), Value=str(item.Value))
        return msg
    from lxml import etree
    return ET.fromstring(etree.tostring(value))


def channel_number(token: str) -> str | None:
    """``VideoSource_1`` / ``VideoSourceToken1`` -> ``1`` (the digits a token ends with)."""
    m = re.search(r"(\d+)\s*$", token or "")
    return str(int(m.group(1))) if m else None
