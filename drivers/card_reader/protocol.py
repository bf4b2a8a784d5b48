"""EM4100 125 kHz card-reader frames (SPEC §4.2). Pure encode/decode, no I/O.

Frame: ``02`` · 10 ASCII hex digits (2 version + 8 card id) · 2 ASCII hex
digits = XOR of the 5 data bytes · ``03``. Example: ``02 "14008EC793" "CE" 03``
-> card ``14008EC793``.

:class:`CardParser` resynchronises on the next ``02`` after anything wrong and
accounts for every byte::

    bytes_fed == 14 * frames + noise_bytes + dropped_bytes + pending
"""
from __future__ import annotations

from typing import Callable

STX = 0x02
ETX = 0x03
FRAME_LEN = 14
_HEX = frozenset(b"0123456789ABCDEFabcdef")


def checksum(data5: bytes) -> int:
    x = 0
    for b in data5:
        x ^= b
    return x


def encode(card: str, checksum_override: int | None = None) -> bytes:
    """``card`` = 10 hex digits -> the 14-byte frame."""
    card = card.upper()
    raw = bytes.fromhex(card)
    if len(raw) != 5 or len(card) != 10:
        raise ValueError(f"card must be 10 hex digits, got {card!r}")
    cs = checksum(raw) if checksum_override is None else checksum_override & 0xFF
    return bytes((STX,)) + card.encode("ascii") + f"{cs:02X}".encode("ascii") + bytes((ETX,))


class CardParser:
    """Byte stream -> card ids. ``on_error(reason, n)`` for each problem:
    ``noise_bytes`` (bytes outside frames), ``bad_checksum``, ``non_hex``,
    ``truncated`` (a new ``02`` before the frame ended), ``no_etx``."""

    __slots__ = ("buf", "on_error", "frames", "noise_bytes", "dropped_bytes", "bad_checksum",
                 "non_hex", "truncated", "no_etx", "bytes_fed")

    def __init__(self, on_error: Callable[[str, int], None] | None = None):
        self.buf = bytearray()
        self.on_error = on_error
        self.frames = 0
        self.noise_bytes = 0
        self.dropped_bytes = 0
        self.bad_checksum = 0
        self.non_hex = 0
        self.truncated = 0
        self.no_etx = 0
        self.bytes_fed = 0

    def _bad(self, reason: str, dropped: int) -> None:
        setattr(self, reason, getattr(self, reason) + 1)
        self.dropped_bytes += dropped
        if self.on_error is not None:
            self.on_error(reason, 1)

    def feed(self, data: bytes | bytearray | memoryview) -> list[str]:
        buf = self.buf
        buf += data
        self.bytes_fed += len(data)
        n = len(buf)
        out: list[str] = []
        i = 0
        noise = 0
        while True:
            j = buf.find(STX, i)
            if j < 0:
                noise += n - i
                i = n
                break
            noise += j - i
            # walk the 12 digits
            p = j + 1
            end = min(n, j + 13)
            while p < end and buf[p] in _HEX:
                p += 1
            if p < end:             # a non-digit inside the frame
                b = buf[p]
                if b == STX:        # a new frame starts: this one was cut short
                    self._bad("truncated", p - j)
                    i = p
                elif b == ETX:
                    self._bad("truncated", p - j + 1)
                    i = p + 1
                else:
                    self._bad("non_hex", p - j + 1)
                    i = p + 1
                continue
            if n < j + FRAME_LEN:   # incomplete
                i = j
                break
            if buf[j + 13] != ETX:
                self._bad("no_etx", 13)
                i = j + 13          # rescan from the odd byte (it may be a new 02)
                continue
            raw = bytes.fromhex(buf[j + 1:j + 13].decode("ascii"))
            if raw[0] ^ raw[1] ^ raw[2] ^ raw[3] ^ raw[4] != raw[5]:
                self._bad("bad_checksum", FRAME_LEN)
            else:
                self.frames += 1
                out.append(buf[j + 1:j + 11].decode("ascii").upper())
            i = j + FRAME_LEN
        if noise:
            self.noise_bytes += noise
            if self.on_error is not None:
                self.on_error("noise_bytes", noise)
        if i:
            del buf[:i]
        return out

    @property
    def pending(self) -> int:
        return len(self.buf)

    def reset(self) -> None:
        self.buf.clear()


class RepeatFilter:
    """The same card within ``repeat_ms`` of its last frame is one swipe (the
    window slides while the module keeps repeating a held card)."""

    __slots__ = ("window", "last")

    def __init__(self, repeat_ms: int):
        self.window = repeat_ms / 1000.0
        self.last: dict[str, float] = {}

    def accept(self, card: str, now: float) -> bool:
        prev = self.last.get(card)
        self.last[card] = now
        if len(self.last) > 256:
            cutoff = now - self.window
            self.last = {c: t for c, t in self.last.items() if t > cutoff or c == card}
        return prev is None or now - prev > self.window
