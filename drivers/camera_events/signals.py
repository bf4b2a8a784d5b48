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


MAX_JUNK_LINES = 1024      # lines between two parts (real cameras send one or two blank ones)


class Multipart:
    """Incremental reader of a multipart HTTP body (``multipart/mixed``, ``x-mixed-replace``).

    Cameras differ in what they call multipart: the boundary named in the header with or
    without its leading ``--`` in the body (Hikvision ``boundary=boundary`` vs
    ``--MIME_boundary``), CRLF or bare LF, parts with or without Content-Length. A part
    with Content-Length is cut at that length; one without runs to the next delimiter line.
    ``feed(bytes)`` returns the completed parts as (headers, body); junk between parts is
    counted in ``junk_bytes``.

    Bounded and linear (issues 28, 30): every line is looked at once (``_scan`` keeps where
    the search for the next newline resumes, so a part made of newlines costs O(bytes), not
    O(bytes x lines)); consumed bytes leave the buffer once per feed. A part above
    ``max_part``, a header line above ``max_line``, more than ``max_headers`` headers or more
    than ``max_junk`` bytes (or MAX_JUNK_LINES lines) outside any part since the last good
    one sets :attr:`violation` (the reason) and the reader parses nothing more: the driver
    cuts the stream.
    """

    SEEK, HEADERS, BODY_LEN, BODY_DELIM, SKIP = range(5)

    def __init__(self, boundary: str, max_part: int = 2 << 20, max_line: int = 8 << 10,
                 max_headers: int = 32, max_junk: int = 256 << 10):
        b = boundary.strip().strip('"')
        core = b[2:] if b.startswith("--") else b
        # delimiter lines we accept: --core, core, and the closing --core-- forms
        self._delims = {("--" + core).encode(), core.encode()}
        self._core = core.encode()
        self._delim_max = len(core) + 4 + 16        # "--core--" plus whitespace: longer lines are no delimiter
        self._buf = bytearray()
        self._pos = 0                 # start of what is not consumed yet
        self._scan = 0                # the next newline search starts here
        self._state = self.SEEK
        self._discarding = False      # SEEK: inside an over-long junk line, dropped to its end
        self._headers: dict[str, str] = {}
        self._need = 0                # BODY_LEN / SKIP: bytes still to come
        self.max_part, self.max_line, self.max_headers, self.max_junk = max_part, max_line, max_headers, max_junk
        self.junk_bytes = 0
        self._junk_since_part = 0
        self._junk_lines = 0
        self._header_lines = 0
        self.oversize = 0
        self.violation: str | None = None

    def _is_delim(self, start: int, end: int) -> bool:
        if end - start > self._delim_max:
            return False
        s = bytes(self._buf[start:end]).strip()
        if s.endswith(b"--") and s[:-2] in self._delims:
            return True
        return s in self._delims

    def _violate(self, why: str) -> None:
        if self.violation is None:
            self.violation = why

    def _junk(self, n: int, raw: int | None = None) -> None:
        self.junk_bytes += n
        self._junk_since_part += n if raw is None else raw
        self._junk_lines += 1
        if self._junk_since_part > self.max_junk:
            self._violate(f"more than {self.max_junk} bytes outside any part")
        elif self._junk_lines > MAX_JUNK_LINES:      # each line costs a Python step: few between parts
            self._violate(f"more than {MAX_JUNK_LINES} lines outside any part")

    def feed(self, data: bytes) -> list[tuple[dict[str, str], bytes]]:
        buf = self._buf
        buf += data
        out: list[tuple[dict[str, str], bytes]] = []
        while self.violation is None and self._step(out):
            pass
        if self.violation is not None:               # the stream is to be cut: read no further
            self._pos = self._scan = len(buf)
        if self._pos:                               # once per feed: amortised O(bytes)
            del buf[:self._pos]
            self._scan -= self._pos
            self._pos = 0
        return out

    def _step(self, out: list) -> bool:
        """One transition; False when more bytes are needed."""
        buf, st = self._buf, self._state
        if st == self.SEEK:
            nl = buf.find(b"\n", self._scan)
            if nl < 0:
                pending = len(buf) - self._pos
                if pending > self.max_line:          # no line end in sight: junk, dropped as it comes
                    self._junk(len(bytes(buf[self._pos:]).strip()))
                    self._discarding = True
                    self._pos = self._scan = len(buf)
                else:
                    self._scan = len(buf)
                return False
            if self._discarding:
                self._discarding = False
                self._junk(len(bytes(buf[self._pos:nl]).strip()))
            elif self._is_delim(self._pos, nl):
                self._state, self._headers, self._header_lines = self.HEADERS, {}, 0
            elif nl > self._pos:                     # blank lines between parts are not junk (but bounded)
                self._junk(len(bytes(buf[self._pos:nl]).strip()), nl + 1 - self._pos)
            else:
                self._junk(0, 1)
            self._pos = self._scan = nl + 1
            return True
        if st == self.HEADERS:
            nl = buf.find(b"\n", self._scan)
            if nl < 0:
                self._scan = len(buf)
                if len(buf) - self._pos > self.max_line:
                    self._violate(f"a part header line longer than {self.max_line} bytes")
                    self._state, self._discarding = self.SEEK, True
                    self._pos = self._scan = len(buf)
                return False
            line_start = self._pos
            self._header_lines += 1
            if self._header_lines > self.max_headers + 8:     # blank lines and repeated delimiters too
                self._violate(f"a part with more than {self.max_headers} header lines")
                self._state = self.SEEK
                return True
            if nl - line_start > self.max_line:
                self._violate(f"a part header line longer than {self.max_line} bytes")
                self._state = self.SEEK
                self._pos = self._scan = nl + 1
                return True
            if self._is_delim(line_start, nl):       # an empty part, or a repeated delimiter
                self._headers = {}
                self._pos = self._scan = nl + 1
                return True
            line = bytes(buf[line_start:nl]).rstrip(b"\r")
            self._pos = self._scan = nl + 1
            if not line:
                if not self._headers:                # a blank line right after the delimiter: skip it
                    return True
                self._begin_body()
                return True
            k, sep, v = line.decode("latin-1").partition(":")
            if not sep:                              # a body without (more) headers: it starts on this line
                self._pos = self._scan = line_start
                self._begin_body()
                return True
            if len(self._headers) >= self.max_headers:
                self._violate(f"a part with more than {self.max_headers} header lines")
                self._state = self.SEEK
                return True
            self._headers[k.strip().lower()] = v.strip()
            return True
        if st == self.BODY_LEN:
            if len(buf) - self._pos < self._need:
                return False
            body = bytes(buf[self._pos:self._pos + self._need])
            self._pos = self._scan = self._pos + self._need
            self._part(out, body)
            return True
        if st == self.SKIP:
            take = min(self._need, len(buf) - self._pos)
            self._pos = self._scan = self._pos + take
            self._need -= take
            if self._need:
                return False
            self._state = self.SEEK
            return True
        # BODY_DELIM: the body ends at the line before the next delimiter line (which stays).
        # The search is for the boundary itself (C speed, each byte once): a part made of
        # newlines costs no Python per line. _scan: where the search resumes.
        core = self._core
        while True:
            i = buf.find(core, self._scan)
            if i < 0:
                self._scan = max(self._pos, len(buf) - len(core) + 1)
                if len(buf) - self._pos > self.max_part:
                    self._oversize()
                    self._state, self._discarding = self.SEEK, True
                    self._pos = self._scan = len(buf)
                return False
            j = buf.rfind(b"\n", max(self._pos, i - 8), i)     # a delimiter line starts at most "  --" before
            nl = buf.find(b"\n", i, i + self._delim_max + 1)
            if j < 0:
                self._scan = i + 1
                continue
            if nl < 0 and len(buf) - i <= self._delim_max:
                self._scan = i                      # the line may still become a delimiter
                if len(buf) - self._pos > self.max_part:
                    self._oversize()
                    self._state, self._discarding = self.SEEK, True
                    self._pos = self._scan = len(buf)
                return False
            if nl >= 0 and self._is_delim(j + 1, nl):
                body = bytes(buf[self._pos:j]).rstrip(b"\r")
                self._pos = self._scan = j + 1       # the delimiter line stays for SEEK
                self._part(out, body)
                return True
            self._scan = i + 1
            if i - self._pos > self.max_part:
                self._oversize()
                self._state, self._discarding = self.SEEK, True
                self._pos = self._scan = i
                return True

    def _begin_body(self) -> None:
        length = self._headers.get("content-length", "")
        if length.strip().isdigit():
            n = int(length)
            if n > self.max_part:
                self._oversize()
                self._state, self._need = self.SKIP, n
            else:
                self._state, self._need = self.BODY_LEN, n
        else:
            self._state = self.BODY_DELIM
            self._scan = self._pos

    def _oversize(self) -> None:
        self.oversize += 1
        self._violate(f"a part larger than {self.max_part} bytes")

    def _part(self, out: list, body: bytes) -> None:
        out.append((self._headers, body))
        self._headers = {}
        self._state = self.SEEK
        self._junk_since_part = 0
        self._junk_lines = 0


def boundary_of(content_type: str) -> str | None:
    """The boundary parameter of a Content-Type header (quoted or not)."""
    for param in content_type.split(";")[1:]:
        k, _, v = param.strip().partition("=")
        if k.strip().lower() == "boundary" and v.strip():
            return v.strip().strip('"')
    return None
