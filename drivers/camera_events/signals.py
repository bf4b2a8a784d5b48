"""What the vendor parsers hand the driver: one :class:`Signal` per decoded fact.

The parsers (hikvision.py, dahua.py, onvif.py) are pure: bytes in, signals out, a
``ValueError`` for a part they cannot read (the driver counts and drops it).
"""
from __future__ import annotations

from dataclasses import dataclass

# kinds: what a signal is about (camera.motion, camera.tampered kinds, or keep-alive only)
MOTION, COVERED, MOVED, VIDEO_LOST, HEARTBEAT, IGNORED = "motion", "covered", "moved", "video_lost", "heartbeat", "ignored"
TAMPER_KINDS = (COVERED, MOVED, VIDEO_LOST)


@dataclass(frozen=True)
class Signal:
    channel: str          # the vendor's channel number as configured ("1"); "" = the device itself
    kind: str             # MOTION | COVERED | MOVED | VIDEO_LOST | HEARTBEAT | IGNORED
    active: bool
    source: str           # the vendor's event type (vmd, linedetection, VideoMotion, ...)
    expires: bool = False  # an event that only ever says "active": it ends after active_expiry_s
    image: bytes | None = None


class Multipart:
    """Incremental reader of a multipart HTTP body (``multipart/mixed``, ``x-mixed-replace``).

    Cameras differ in what they call multipart: the boundary named in the header with or
    without its leading ``--`` in the body (Hikvision ``boundary=boundary`` vs
    ``--MIME_boundary``), CRLF or bare LF, parts with or without Content-Length. A part
    with Content-Length is cut at that length; one without runs to the next delimiter line.
    ``feed(bytes)`` returns the completed parts as (headers, body); junk between parts is
    counted in ``junk_bytes``, a part larger than ``max_part`` is dropped (``oversize``).
    """

    def __init__(self, boundary: str, max_part: int = 4 << 20):
        b = boundary.strip().strip('"')
        core = b[2:] if b.startswith("--") else b
        # delimiter lines we accept: --core, core, and the closing --core-- forms
        self._delims = {("--" + core).encode(), core.encode()}
        self._buf = bytearray()
        self._headers: dict[str, str] | None = None
        self.max_part = max_part
        self.junk_bytes = 0
        self.oversize = 0

    def _is_delim(self, line: bytes) -> bool:
        s = line.strip()
        if s.endswith(b"--") and s[:-2] in self._delims:
            return True
        return s in self._delims

    def feed(self, data: bytes) -> list[tuple[dict[str, str], bytes]]:
        self._buf += data
        out: list[tuple[dict[str, str], bytes]] = []
        while True:
            if self._headers is None:
                if not self._read_headers():
                    break
            part = self._read_body()
            if part is None:
                break
            out.append((self._headers, part))
            self._headers = None
        if len(self._buf) > self.max_part:           # no delimiter in sight: resynchronise
            self.oversize += 1
            self.junk_bytes += len(self._buf)
            self._buf.clear()
            self._headers = None
        return out

    def _read_headers(self) -> bool:
        """Skip to a delimiter line, then read header lines to the blank line."""
        buf = self._buf
        pos = 0
        while True:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                if pos:                  # whole lines before any delimiter: junk
                    self.junk_bytes += self._count_junk(buf[:pos])
                    del buf[:pos]
                return False
            if self._is_delim(bytes(buf[pos:nl])):
                break
            pos = nl + 1
        skipped = bytes(buf[:pos])
        p = nl + 1
        headers: dict[str, str] = {}
        while True:
            nl = buf.find(b"\n", p)
            if nl < 0:
                return False             # wait for the rest of the headers
            line = bytes(buf[p:nl]).rstrip(b"\r")
            if self._is_delim(line):     # an empty part, or a repeated delimiter
                headers = {}
                p = nl + 1
                continue
            if not line:
                p = nl + 1
                if not headers:          # a blank line right after the delimiter: skip it
                    continue
                break
            k, sep, v = line.decode("latin-1").partition(":")
            if not sep:                  # a body without (more) headers: it starts on this line
                break
            headers[k.strip().lower()] = v.strip()
            p = nl + 1
        self.junk_bytes += self._count_junk(skipped)
        del buf[:p]
        self._headers = headers
        return True

    @staticmethod
    def _count_junk(b) -> int:
        return len(bytes(b).strip())     # blank lines between parts are not junk

    def _read_body(self) -> bytes | None:
        buf = self._buf
        length = self._headers.get("content-length", "")
        if length.strip().isdigit():
            n = int(length)
            if n > self.max_part:
                self.oversize += 1
                self._headers = None
                return None
            if len(buf) < n:
                return None
            body = bytes(buf[:n])
            del buf[:n]
            return body
        # no length: the body ends at the next delimiter line (which stays in the buffer)
        pos = 0
        while True:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                return None
            nxt = buf.find(b"\n", nl + 1)
            if nxt < 0:
                return None
            if self._is_delim(bytes(buf[nl + 1:nxt])):
                body = bytes(buf[:nl]).rstrip(b"\r")
                del buf[:nl + 1]
                return body
            pos = nl + 1


def boundary_of(content_type: str) -> str | None:
    """The boundary parameter of a Content-Type header (quoted or not)."""
    for param in content_type.split(";")[1:]:
        k, _, v = param.strip().partition("=")
        if k.strip().lower() == "boundary" and v.strip():
            return v.strip().strip('"')
    return None
