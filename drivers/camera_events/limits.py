"""What a network camera may send us, and where we may send its credentials (issues 28, 30).

Every byte a camera sends is bounded before it is parsed: the multipart stream by part,
line and header limits (signals.Multipart), XML by size and depth through defusedxml (no
DTD, no entities), whole answers (snapshot, ONVIF PullMessages and setup calls) by size and
by one wall-clock deadline for the whole exchange (not per read: a byte every 4 s would
otherwise hold a request forever). Requests go only to the configured camera's scheme,
host and port: a subscription address, snapshot URI or redirect anywhere else is refused
before a byte (or a credential) leaves.

A device that exceeds a limit gets a :class:`LimitError`; the driver reports it as
``device.error`` with the reason and reconnects with its backoff.
"""
from __future__ import annotations

import heapq
import socket
import threading
import time
from xml.etree.ElementTree import Element

from drivers.common.origin import origin

# A Hikvision EventNotificationAlert with a DetectionRegionList is 1-4 KB; an image part
# (a camera's own JPEG in the stream) up to ~1.5 MB on 8 MP models.
MAX_PART = 2 << 20
MAX_XML_PART = 64 << 10
MAX_LINE = 8 << 10                 # one header or delimiter line
MAX_HEADERS = 32                   # header lines of one part
MAX_JUNK = 256 << 10               # bytes outside any part since the last good one
# ONVIF: a PullMessagesResponse with MessageLimit 100 is ~150 KB; setup answers (GetServices,
# GetProfiles with every profile) stay under ~200 KB on the models we know.
MAX_SOAP = 1 << 20
MAX_XML_DEPTH = 40                 # SOAP envelopes nest ~12 deep
# Parts (events, heartbeats, pictures) a second per device: a real camera sends a few
# (Hikvision re-posts each active event every second per channel); more is dropped and
# counted, and a stream that keeps it up for RATE_CUT_S is cut as a device.error.
EVENT_RATE = 50.0
EVENT_BURST = 200.0
RATE_CUT_S = 10.0
RATE_PAUSE_S = 0.05                # while over the rate, read a chunk at most every 50 ms


class LimitError(Exception):
    """The device exceeded a bound (its text is the reason a technician reads)."""


class OriginError(LimitError):
    """A URI the device gave points away from the configured camera."""


def check_origin(url: str, configured: str, what: str) -> str:
    """``url`` if it is on ``configured``'s scheme, host and port; else :class:`OriginError`."""
    if origin(url) != origin(configured):
        s, h, p = origin(configured)
        raise OriginError(f"{what} {url[:200]!r} is not on the camera's own {s}://{h}:{p}: refused "
                          "(credentials are sent only to the configured url; fix the camera's network "
                          "settings or configure the address it names)")
    return url


def parse_xml(data: bytes, what: str, max_bytes: int = MAX_SOAP, max_depth: int = MAX_XML_DEPTH) -> Element:
    """Parse ``data`` with defusedxml (no DTD, entities or external references), at most
    ``max_bytes`` and ``max_depth`` deep; ValueError saying which bound was broken."""
    import defusedxml.ElementTree as DET
    from defusedxml import DefusedXmlException
    from xml.etree.ElementTree import ParseError
    if len(data) > max_bytes:
        raise ValueError(f"{what}: {len(data)} bytes of XML, more than {max_bytes}")
    try:
        root = DET.fromstring(data, forbid_dtd=True)
    except DefusedXmlException as e:
        raise ValueError(f"{what}: forbidden XML ({type(e).__name__})") from None
    except ParseError as e:
        raise ValueError(f"bad XML: {e}") from None
    stack = [(root, 1)]
    while stack:                       # iterative: a deep document must not recurse here either
        el, depth = stack.pop()
        if depth > max_depth:
            raise ValueError(f"{what}: XML nested deeper than {max_depth}")
        stack.extend((c, depth + 1) for c in el)
    return root


class RateLimit:
    """A token bucket of parts per second; :meth:`take` is False when one must be dropped.
    :meth:`over_for`: for how many whole seconds in a row parts were dropped."""

    def __init__(self, rate: float = EVENT_RATE, burst: float = EVENT_BURST):
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.at = time.monotonic()
        self._second = int(self.at)
        self._dropped_this_second = False
        self._seconds_over = 0

    def _tick(self, now: float) -> None:
        sec = int(now)
        if sec != self._second:
            if self._dropped_this_second and sec == self._second + 1:
                self._seconds_over += 1
            else:
                self._seconds_over = 0
            self._second, self._dropped_this_second = sec, False

    def take(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        self._tick(now)
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self._dropped_this_second = True
        return False

    def over_for(self, now: float | None = None) -> float:
        self._tick(time.monotonic() if now is None else now)
        return float(self._seconds_over)


class _Deadlines:
    """One thread for every :class:`Deadline` of the process (an ONVIF camera makes one per
    pull, every second or so: a timer thread each would cost a thread start per pull)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, "Deadline"]] = []
        self._n = 0
        self._thread: threading.Thread | None = None

    def add(self, dl: "Deadline") -> None:
        with self._cond:
            self._n += 1
            heapq.heappush(self._heap, (dl.end, self._n, dl))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="camera-deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    if not self._cond.wait(60):
                        self._thread = None          # idle a minute: end; add() starts another
                        return
                end, _, dl = self._heap[0]
                left = end - time.monotonic()
                if dl.done:
                    heapq.heappop(self._heap)
                    continue
                if left > 0:
                    self._cond.wait(left)
                    continue
                heapq.heappop(self._heap)
            dl._fire()


_DEADLINES = _Deadlines()


class Deadline:
    """One wall-clock deadline for a whole exchange: when it passes, the socket is shut (a
    blocked read returns) and :attr:`expired` is set. ``with Deadline(s) as dl: dl.watch(sock)``."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.expired = False
        self.done = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> "Deadline":
        _DEADLINES.add(self)
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:            # after this no shut: the connection may be kept alive
            self.done = True

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def watch(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._sock = sock
            fire = self.expired
        if fire:
            self._shut()

    def _fire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.expired = True
            self._shut()

    def _shut(self) -> None:
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def check(self, what: str) -> None:
        if self.expired or time.monotonic() >= self.end:
            self.expired = True
            raise LimitError(f"{what} took longer than {self.seconds:g} s in all")


def trace_into(deadline: Deadline, also=None):
    """An httpx ``trace`` extension that hands each new connection's socket to ``deadline``
    (so a camera dripping its status line or headers is cut too), then to ``also(event, info)``."""
    def trace(event: str, info: dict) -> None:
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            stream = info.get("return_value")
            deadline.watch(stream.get_extra_info("socket") if stream is not None else None)
        if also is not None:
            also(event, info)
    return trace


def read_capped(resp, deadline: Deadline, max_bytes: int, what: str) -> bytes:
    """The body of a streamed httpx response, at most ``max_bytes``, within ``deadline``."""
    stream = resp.extensions.get("network_stream")
    deadline.watch(stream.get_extra_info("socket") if stream is not None else None)
    length = resp.headers.get("content-length", "")
    if length.strip().isdigit() and int(length) > max_bytes:
        raise LimitError(f"{what}: the camera announces {int(length)} bytes, more than {max_bytes}")
    buf = bytearray()
    try:
        for chunk in resp.iter_bytes():
            buf += chunk
            if len(buf) > max_bytes:
                raise LimitError(f"{what}: more than {max_bytes} bytes")
            deadline.check(what)
    except LimitError:
        raise
    except Exception:
        if deadline.expired:
            raise LimitError(f"{what} took longer than {deadline.seconds:g} s in all") from None
        raise
    deadline.check(what)
    return bytes(buf)
