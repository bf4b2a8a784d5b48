"""ONVIF Profile S/T events through a PullPoint subscription (SPEC §4.7).

The setup calls (GetServices/GetCapabilities, CreatePullPointSubscription, GetProfiles,
GetSnapshotUri), Renew and Unsubscribe go through onvif-zeep-async. The hot path,
PullMessages in a long-poll loop, is a fixed SOAP envelope POSTed with a synchronous keep-alive
``httpx.Client`` in the device's thread (the async client cost ~4 ms CPU a POST) and read with
the stdlib XML parser (:func:`read_pull_response`): zeep's parse of every answer cost
~0.6 % of a core per camera at one event a second (bench/camera.py section 6). WS-Security
UsernameToken (password digest) is built here (:func:`wsse_header`) for those requests and
by zeep for the others. The parsers are pure, so byte-exact samples test them without a device.

TLS: onvif-zeep-async builds its aiohttp connectors with a context that verifies nothing;
:func:`tls_context` makes the connectors built inside one session's task use that
session's context (a context variable, so devices with different CAs do not mix).
"""
from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextvars
import datetime as dt
import hashlib
import os
import re
import socket
import ssl
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Callable
from xml.sax.saxutils import escape

from drivers.camera_events.limits import (
    MAX_SOAP, Deadline, LimitError, check_origin, parse_xml, read_capped, trace_into)
from drivers.camera_events.signals import COVERED, IGNORED, MOTION, Signal

NS = {"tt": "http://www.onvif.org/ver10/schema", "wsnt": "http://docs.oasis-open.org/wsn/b-2",
      "s": "http://www.w3.org/2003/05/soap-envelope"}
PULLPOINT_NS = "http://www.onvif.org/ver10/events/wsdl/PullPointSubscription"
WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
WSS_PROFILE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
WSA_NS = "http://www.w3.org/2005/08/addressing"
PULL_ACTION = "http://www.onvif.org/ver10/events/wsdl/PullPointSubscription/PullMessagesRequest"

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
        message = parse_xml(message if isinstance(message, bytes) else message.encode(), "tt:Message")
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
    root = parse_xml(xml, "SOAP answer")        # bounded (MAX_SOAP, depth), no DTD/entities
    out: list[Signal] = []
    for nm in root.iter(f"{{{NS['wsnt']}}}NotificationMessage"):
        topic = nm.find("wsnt:Topic", NS)
        msg = nm.find("wsnt:Message/tt:Message", NS)
        if topic is None or msg is None:
            raise ValueError("NotificationMessage without Topic or tt:Message")
        out += parse_message(topic.text or "", msg)
    return out


@dataclass
class PullResult:
    signals: list[Signal] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)     # notifications that could not be read
    left_s: float | None = None                       # TerminationTime - CurrentTime (device clock)


class SoapFault(Exception):
    """The device answered a SOAP fault (its reason and subcodes in the text)."""


def _iso_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        t = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def soap_fault(root: ET.Element) -> str | None:
    """The text of a SOAP 1.2 fault in ``root`` (reason and subcodes), or None."""
    fault = root.find("s:Body/s:Fault", NS)
    if fault is None:
        return None
    reason = " ".join((t.text or "").strip() for t in fault.iter(f"{{{NS['s']}}}Text"))
    codes = [(v.text or "").strip() for v in fault.iter(f"{{{NS['s']}}}Value")]
    return f"SOAP fault: {reason or 'no reason'} ({', '.join(c for c in codes if c)})"


def read_pull_response(xml: bytes) -> PullResult:
    """A PullMessagesResponse envelope -> its signals, the notifications that could not be
    read (each named, the others still count) and the subscription's time left.
    Raises ValueError for XML that is not an envelope, SoapFault for a fault."""
    root = parse_xml(xml, "SOAP answer")        # bounded (MAX_SOAP, depth), no DTD/entities
    fault = soap_fault(root)
    if fault is not None:
        raise SoapFault(fault)
    resp = next(root.iter("{http://www.onvif.org/ver10/events/wsdl}PullMessagesResponse"), None)
    if resp is None:
        raise ValueError("no PullMessagesResponse in the answer")
    out = PullResult()
    cur = _iso_time(resp.findtext("{http://www.onvif.org/ver10/events/wsdl}CurrentTime"))
    term = _iso_time(resp.findtext("{http://www.onvif.org/ver10/events/wsdl}TerminationTime"))
    if cur is not None and term is not None:
        out.left_s = (term - cur).total_seconds()
    for nm in resp.iter(f"{{{NS['wsnt']}}}NotificationMessage"):
        topic = nm.find("wsnt:Topic", NS)
        msg = nm.find("wsnt:Message/tt:Message", NS)
        try:
            if topic is None or msg is None:
                raise ValueError("NotificationMessage without Topic or tt:Message")
            out.signals += parse_message(topic.text or "", msg)
        except ValueError as e:
            out.bad.append(str(e))
    return out


def wsse_header(username: str, password: str, created: str | None = None, nonce: bytes | None = None) -> str:
    """WS-Security UsernameToken with PasswordDigest = Base64(SHA-1(nonce + created + password))."""
    nonce = os.urandom(16) if nonce is None else nonce
    created = created or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    digest = base64.b64encode(hashlib.sha1(nonce + created.encode() + password.encode()).digest()).decode()
    return (f'<wsse:Security xmlns:wsse="{WSSE_NS}" xmlns:wsu="{WSU_NS}" s:mustUnderstand="true">'
            f"<wsse:UsernameToken><wsse:Username>{escape(username)}</wsse:Username>"
            f'<wsse:Password Type="{WSS_PROFILE}#PasswordDigest">{digest}</wsse:Password>'
            f'<wsse:Nonce EncodingType="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security'
            f'-1.0#Base64Binary">{base64.b64encode(nonce).decode()}</wsse:Nonce>'
            f"<wsu:Created>{created}</wsu:Created></wsse:UsernameToken></wsse:Security>")


def pull_messages_request(address: str, username: str, password: str, timeout_s: float, limit: int,
                          reference_parameters: str = "") -> bytes:
    """The SOAP 1.2 PullMessages envelope to a subscription's address (WS-Addressing headers,
    the subscription's ReferenceParameters echoed as headers, as zeep's plugin sends them)."""
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<s:Envelope xmlns:s="{NS["s"]}" xmlns:wsa="{WSA_NS}">'
            f"<s:Header>{wsse_header(username, password)}<wsa:Action>{PULL_ACTION}</wsa:Action>"
            f"<wsa:MessageID>urn:uuid:{uuid.uuid4()}</wsa:MessageID><wsa:To>{escape(address)}</wsa:To>"
            f"{reference_parameters}</s:Header><s:Body>"
            f'<PullMessages xmlns="http://www.onvif.org/ver10/events/wsdl"><Timeout>PT{max(1, round(timeout_s))}S'
            f"</Timeout><MessageLimit>{limit}</MessageLimit></PullMessages></s:Body></s:Envelope>").encode()


# ---- TLS for onvif-zeep-async -------------------------------------------------------------------
_SSL: contextvars.ContextVar[ssl.SSLContext | None] = contextvars.ContextVar("camera_events_onvif_ssl",
                                                                              default=None)
_patched = False
# The configured camera's url: every zeep POST of this thread's session goes there or nowhere
# (set in the session thread's context, which each of its tasks copies).
_ORIGIN: contextvars.ContextVar[str | None] = contextvars.ContextVar("camera_events_onvif_origin", default=None)
_bounded = False


def bound_zeep_posts() -> None:
    """onvif-zeep-async's transport reads every answer whole and follows redirects (aiohttp's
    default): a hostile device answered setup with gigabytes (issue 28: RSS 1.93 GB in
    11.5 s), or sent us to another host with the WS-Security token. Its POSTs now go only to
    the session's camera (:data:`_ORIGIN`), never follow a redirect, and read at most
    ``MAX_SOAP`` bytes; the session's ClientTimeout (total) stays the deadline."""
    global _bounded
    if _bounded:
        return
    from onvif import zeep_aiohttp
    cls = zeep_aiohttp.AIOHTTPTransport
    if not hasattr(cls, "_post_internal"):
        raise RuntimeError("onvif-zeep-async no longer has AIOHTTPTransport._post_internal: answers cannot be bounded")

    async def _post_internal(self, address, message, headers):
        allowed = _ORIGIN.get()
        if allowed is not None:
            check_origin(str(address), allowed, "ONVIF service address")
        headers = dict(headers or {})
        headers.setdefault("Content-Type", 'text/xml; charset="utf-8"')
        data = message.encode("utf-8") if isinstance(message, str) else message
        response = await self.session.post(address, data=data, headers=headers, proxy=self.proxy,
                                           timeout=self._client_timeout, allow_redirects=False)
        try:
            if response.content_length is not None and response.content_length > MAX_SOAP:
                raise LimitError(f"ONVIF answer from {address}: {response.content_length} bytes announced, "
                                 f"more than {MAX_SOAP}")
            buf = bytearray()
            async for chunk in response.content.iter_chunked(64 << 10):
                buf += chunk
                if len(buf) > MAX_SOAP:
                    raise LimitError(f"ONVIF answer from {address}: more than {MAX_SOAP} bytes")
        except BaseException:
            response.close()
            raise
        return response, bytes(buf)

    cls._post_internal = _post_internal
    _bounded = True


def tls_context(ctx: ssl.SSLContext) -> None:
    """Connectors onvif-zeep-async creates from here on in this task (its setup services, Renew,
    Unsubscribe) use ``ctx``; elsewhere the library's own (verify nothing) stays."""
    global _patched
    if not _patched:
        import aiohttp
        import onvif.client as oc
        if getattr(oc, "TCPConnector", None) is not aiohttp.TCPConnector:
            raise RuntimeError("onvif-zeep-async no longer builds aiohttp.TCPConnector: TLS cannot be verified")

        def connector(*args, ssl=True, **kw):
            mine = _SSL.get()
            return aiohttp.TCPConnector(*args, ssl=mine if mine is not None else ssl, **kw)
        oc.TCPConnector = connector
        _patched = True
    _SSL.set(ctx)


def _duration_s(d) -> float | None:
    """Seconds between a response's CurrentTime and TerminationTime (device clock)."""
    cur, term = getattr(d, "CurrentTime", None), getattr(d, "TerminationTime", None)
    if isinstance(cur, dt.datetime) and isinstance(term, dt.datetime):
        return (term - cur).total_seconds()
    return None


class PullPointSession:
    """One subscription's life, run in the driver's device thread (one thread per device):
    :meth:`run` drives its own event loop for the zeep calls (setup, Renew, Unsubscribe) and
    pulls with a synchronous keep-alive ``httpx.Client`` between them (an async httpx POST cost
    ~4 ms of CPU each; bench/camera.py section 6). :meth:`abort` (any thread) ends it promptly.
    ``verify``: an ``ssl.SSLContext`` (https, verified) or False (tls_verify = false)."""

    def __init__(self, host: str, port: int, username: str, password: str, *, pull_timeout_s: float,
                 subscription_s: float, connect_timeout_s: float,
                 on_bytes: Callable[[], None], on_connected: Callable[[], None],
                 on_signals: Callable[[list[Signal]], None], on_bad: Callable[[str], None],
                 verify: ssl.SSLContext | bool = False, url: str | None = None):
        self.host, self.port, self.username, self.password = host, port, username, password
        self.url = url or (host if "://" in host else f"http://{host}:{port}")   # the configured camera
        self.pull_timeout_s = pull_timeout_s
        self.subscription_s = subscription_s
        self.connect_timeout_s = connect_timeout_s
        self.on_bytes, self.on_connected, self.on_signals, self.on_bad = on_bytes, on_connected, on_signals, on_bad
        self.verify = verify
        self.cam = None
        self.subscription = None
        self.snapshot_uris: dict[str, str] = {}     # video source token -> URI
        self.renewals = 0
        self.pulls = 0
        self.aborted = False
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None       # the zeep call running now, if any
        self._sock: socket.socket | None = None      # the PullMessages connection's socket
        self._asks: list[tuple[Callable, concurrent.futures.Future]] = []   # coroutines other threads asked for

    # ---- other threads ---------------------------------------------------
    def abort(self) -> None:
        """End :meth:`run` soon: cancel the zeep call running now, shut the pull's socket (a
        blocked long-poll returns). Any thread."""
        with self._lock:
            self.aborted = True
            loop, task, sock = self._loop, self._task, self._sock
        if sock is not None:
            _shutdown(sock)
        if loop is not None and task is not None:
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:       # the loop already ended
                pass

    def ask(self, coro_fn: Callable, timeout: float):
        """Run ``coro_fn()`` in the session's loop between two pulls (any other thread); its result."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self.aborted or self._loop is None:
                raise RuntimeError("the ONVIF session is not running")
            self._asks.append((coro_fn, fut))
        return fut.result(timeout)

    # ---- the device thread -----------------------------------------------
    def _call(self, coro):
        """Run one coroutine in the session's loop (cancelled by :meth:`abort`)."""
        loop = self._loop
        task = loop.create_task(coro)
        with self._lock:
            self._task = task
            if self.aborted:
                task.cancel()
        try:
            return loop.run_until_complete(task)
        finally:
            with self._lock:
                self._task = None

    def _answer_asks(self) -> None:
        with self._lock:
            asks, self._asks = self._asks, []
        for coro_fn, fut in asks:
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(self._call(coro_fn()))
            except BaseException as e:  # noqa: BLE001 - handed to the asking thread
                fut.set_exception(e)
                if isinstance(e, asyncio.CancelledError) and self.aborted:
                    raise

    def _trace(self, event: str, info: dict) -> None:
        """httpcore's trace: note the pull connection's socket (a new one after a reconnect)."""
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            stream = info.get("return_value")
            sock = stream.get_extra_info("socket") if stream is not None else None
            with self._lock:
                self._sock = sock
                aborted = self.aborted
            if aborted and sock is not None:
                _shutdown(sock)

    def run(self) -> None:
        """The subscription until an error (raised) or :meth:`abort` (returns, or CancelledError)."""
        import httpx
        loop = asyncio.new_event_loop()
        t = self.connect_timeout_s
        http = httpx.Client(verify=self.verify, timeout=httpx.Timeout(
            connect=t, read=self.pull_timeout_s + t * 2, write=t, pool=t))
        bound_zeep_posts()
        _ORIGIN.set(self.url)                  # this thread's tasks copy it (zeep POSTs checked)
        with self._lock:
            self._loop = loop
        try:
            address, params, renew_at = self._call(self._setup())
            term = f"PT{int(self.subscription_s)}S"
            headers = {"Content-Type": f'application/soap+xml; charset=utf-8; action="{PULL_ACTION}"'}
            timeout_s = self.pull_timeout_s
            while not self.aborted:
                if self._asks:
                    self._answer_asks()
                # Renew while more than one long-poll is left (the device may drop us at TerminationTime)
                if renew_at - time.monotonic() < timeout_s + t:
                    r = self._call(asyncio.wait_for(self.subscription.Renew(term), t * 2))
                    self.renewals += 1
                    renew_at = time.monotonic() + (_duration_s(r) or self.subscription_s)
                body = pull_messages_request(address, self.username, self.password, timeout_s, 100, params)
                # one deadline for the whole long-poll (not per read: a byte every few seconds
                # would hold it forever), at most MAX_SOAP bytes
                dl = Deadline(timeout_s + t * 2)
                dl.watch(self._sock)                      # a kept-alive connection: no connect to trace
                try:
                    with dl, http.stream("POST", address, content=body, headers=headers,
                                         extensions={"trace": trace_into(dl, self._trace)}) as resp:
                        content = read_capped(resp, dl, MAX_SOAP, "PullMessages")
                except httpx.HTTPError:
                    if self.aborted:
                        return
                    if dl.expired:
                        raise LimitError(f"PullMessages took longer than {dl.seconds:g} s in all") from None
                    raise
                self.pulls += 1
                try:
                    pulled = read_pull_response(content)
                except ValueError as e:
                    raise SoapFault(f"PullMessages: HTTP {resp.status_code}, {e}") from None
                if resp.status_code != 200:
                    raise SoapFault(f"PullMessages: HTTP {resp.status_code}")
                self.on_bytes()                # a valid answer (an empty one after Timeout too) is the heartbeat
                if pulled.left_s is not None:
                    renew_at = time.monotonic() + pulled.left_s
                for why in pulled.bad:
                    self.on_bad(f"unreadable notification: {why}")
                if pulled.signals:
                    self.on_signals(pulled.signals)
        finally:
            with self._lock:
                self.aborted = True
                self._sock = None
                asks, self._asks = self._asks, []
            for _, fut in asks:
                fut.cancel()
            try:
                http.close()
            finally:
                try:
                    loop.run_until_complete(self.close())
                finally:
                    with self._lock:
                        self._loop = None
                    loop.close()

    async def _setup(self) -> tuple[str, str, float]:
        """Services, subscription, snapshot URIs -> (subscription address, its reference
        parameters as headers, when to renew on the monotonic clock)."""
        from onvif import ONVIFCamera
        if isinstance(self.verify, ssl.SSLContext):
            tls_context(self.verify)          # the library's connectors below verify with it
        self.cam = cam = ONVIFCamera(self.host, self.port, self.username, self.password, no_cache=True)
        await asyncio.wait_for(cam.update_xaddrs(), self.connect_timeout_s * 3)
        events = await cam.create_events_service()
        term = f"PT{int(self.subscription_s)}S"
        res = await asyncio.wait_for(events.CreatePullPointSubscription({"InitialTerminationTime": term}),
                                     self.connect_timeout_s * 2)
        ref = res.SubscriptionReference
        address = check_origin(str(ref.Address._value_1), self.url, "the PullPoint subscription address")
        cam.xaddrs[PULLPOINT_NS] = address
        self.subscription = await cam.create_subscription_service("PullPointSubscription")
        params = _reference_parameters(ref)
        left = _duration_s(res) or self.subscription_s
        renew_at = time.monotonic() + left
        self.on_bytes()
        self.on_connected()
        try:
            await asyncio.wait_for(self._snapshot_uris(cam), self.connect_timeout_s * 3)
        except LimitError:         # a snapshot URI on another host: the device is misconfigured or hostile
            raise
        except Exception:          # snapshots are asked again on demand
            pass
        return address, params, renew_at

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
                    self.snapshot_uris[src] = check_origin(str(uri), self.url, "the snapshot URI")


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _reference_parameters(ref) -> str:
    """A SubscriptionReference's ReferenceParameters (some cameras name the subscription there)
    as the SOAP header elements WS-Addressing says to echo."""
    params = getattr(ref, "ReferenceParameters", None)
    items = getattr(params, "_value_1", None) or []
    if not items:
        return ""
    from lxml import etree
    return "".join(etree.tostring(el, encoding="unicode") for el in items if not isinstance(el, str))


def channel_number(token: str) -> str | None:
    """``VideoSource_1`` / ``VideoSourceToken1`` -> ``1`` (the digits a token ends with)."""
    m = re.search(r"(\d+)\s*$", token or "")
    return str(int(m.group(1))) if m else None
