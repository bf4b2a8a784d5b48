"""MR7901 zone base-station framing (SPEC §4.1). Pure encode/decode, no I/O.

Frame: ``55 AA`` · header (28 bytes) · content · CRC16 (big-endian).
Header: len u16 BE (= 28 + content length) · cmd u16 · seq u32 · ver u16 ·
sec_flag u16 · dev_id 16 bytes ASCII NUL-padded. CRC = CRC-16/CCITT-FALSE over
header + content.

:class:`FrameParser` turns a byte stream into :class:`Frame` objects: it
resynchronises on garbage, keeps frames split across reads, drops frames
whose length field is out of range (without ever allocating it) or whose CRC
is wrong, and counts every dropped byte. Its byte accounting is exact::

    bytes fed == frame_bytes + noise_bytes + len(pending)
"""
from __future__ import annotations

import struct
from datetime import datetime
from typing import Callable, Iterator, NamedTuple
from zoneinfo import ZoneInfo

from drivers.crc import crc16_ccitt_false

SYNC = b"\x55\xaa"
HEADER_LEN = 28
MIN_LEN = HEADER_LEN
#: Largest accepted ``len`` field (header + content). A station sends at most a
#: few dozen 17-byte TLVs per data frame; anything above this is corruption.
MAX_LEN = 4096

CMD_LOGIN = 0x0001
CMD_HEARTBEAT = 0x0003
CMD_DATA = 0x0004
CMD_REGISTER = 0x0008
REPLY = 0x8000
CMD_NAMES = {CMD_LOGIN: "login", CMD_HEARTBEAT: "heartbeat", CMD_DATA: "data", CMD_REGISTER: "register"}

TLV_TAG = 0x8B01
TLV_DOOR = 0x8B02
TLV_READER = 0x8801
TLV_WRISTBAND = 0x8A01
TLV_NAMES = {TLV_TAG: "tag", TLV_DOOR: "door", TLV_READER: "reader", TLV_WRISTBAND: "wristband"}
TAG_TLV_LEN = 17
READER_TLV_LEN = 16
WRISTBAND_TLV_LEN = 20  # SPEC says 18 but lists 20 bytes of fields; see decode_wristband
WRISTBAND_TLV_MIN = 8   # rssi, id, kind, value: all casegate needs

# wristband kinds (casegate's profile)
BAND_HEART_RATE = 1
BAND_STRAP = 2
BAND_BATTERY = 3
BAND_SOS = 4

RESULT_OK = 0x00
RESULT_BAD_CODE = 0xFE
RESULT_REFUSED = 0xFF

_HDR = struct.Struct(">HHIHH16s")           # len cmd seq ver sec_flag dev_id (after 55 AA)
_TLV = struct.Struct(">HH")
_TAG = struct.Struct(">BBIBHBb6s")          # channel type id cc exciter status rssi time
_READER = struct.Struct(">bIBI6s")          # rssi reader_id state tag_id time
_BAND = struct.Struct(">bIBH")              # rssi id kind value (then times)
_HB = struct.Struct(">HHHH6s")              # work_status dev_status param_crc ver time


class Frame(NamedTuple):
    cmd: int
    seq: int
    dev_id: str
    content: bytes
    ver: int = 1
    sec_flag: int = 0

    @property
    def name(self) -> str:
        base = CMD_NAMES.get(self.cmd & 0x7FFF, f"0x{self.cmd & 0x7FFF:04X}")
        return base + ("-reply" if self.cmd & REPLY else "")


# ---- encoding --------------------------------------------------------------
def _dev_bytes(dev_id: str) -> bytes:
    # latin-1 both ways: a reply echoes even a non-ASCII dev_id byte for byte
    raw = dev_id.encode("latin-1", "replace")[:16]
    return raw + b"\0" * (16 - len(raw))


def encode_frame(cmd: int, seq: int, dev_id: str, content: bytes = b"", ver: int = 1,
                 sec_flag: int = 0) -> bytes:
    length = HEADER_LEN + len(content)
    if length > 0xFFFF:
        raise ValueError("content too long")
    body = _HDR.pack(length, cmd & 0xFFFF, seq & 0xFFFFFFFF, ver & 0xFFFF, sec_flag & 0xFFFF,
                     _dev_bytes(dev_id)) + content
    return SYNC + body + crc16_ccitt_false(body).to_bytes(2, "big")


def time6(dt: datetime) -> bytes:
    """year-2000, month, day, hour, minute, second."""
    return bytes((max(0, min(255, dt.year - 2000)), dt.month, dt.day, dt.hour, dt.minute, dt.second))


def now6(tz: ZoneInfo | str | None = None) -> bytes:
    if isinstance(tz, str):
        tz = ZoneInfo(tz)
    return time6(datetime.now(tz))


def decode_time6(b: bytes) -> tuple[int, int, int, int, int, int]:
    return (2000 + b[0], b[1], b[2], b[3], b[4], b[5])


def format_time6(b: bytes) -> str:
    y, mo, d, h, mi, s = decode_time6(b)
    return f"{y:04d}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}"


def register_reply_content(result: int, t6: bytes, server_ip: str, port: int) -> bytes:
    ip = server_ip.encode("ascii", "replace")[:32]
    return bytes((result & 0xFF,)) + t6 + ip + b"\0" * (32 - len(ip)) + (port & 0xFFFF).to_bytes(2, "little")


def simple_reply_content(result: int, t6: bytes) -> bytes:
    """Login (result), heartbeat and data (op) replies: one byte + time 6."""
    return bytes((result & 0xFF,)) + t6


def encode_reply(req: Frame, content: bytes) -> bytes:
    return encode_frame(req.cmd | REPLY, req.seq, req.dev_id, content, req.ver, 0)


def register_content(dev_type: int, reg_code: int) -> bytes:
    return struct.pack(">HI", dev_type & 0xFFFF, reg_code & 0xFFFFFFFF)


def login_content(sw_ver: int, param_crc: int) -> bytes:
    return struct.pack(">HH", sw_ver & 0xFFFF, param_crc & 0xFFFF)


def heartbeat_content(work_status: int, dev_status: int, param_crc: int, ver: int, t6: bytes) -> bytes:
    return _HB.pack(work_status & 0xFFFF, dev_status & 0xFFFF, param_crc & 0xFFFF, ver & 0xFFFF, t6)


def tlv(type_: int, value: bytes) -> bytes:
    return _TLV.pack(type_, len(value)) + value


def tag_cc(tag_type: int, tag_id: int) -> int:
    """Two's complement of the byte sum of type + id (``20 E3 AF 22 32`` -> ``FA``)."""
    s = tag_type + sum(tag_id.to_bytes(4, "big"))
    return (-s) & 0xFF


def tag_value(tag_id: int, *, in_range: bool = True, stop: bool = False, antenna: int = 1,
              tag_type: int = 0x20, exciter: int = 0, low_battery: bool = False, sos: bool = False,
              rssi: int = -60, t6: bytes = b"\0" * 6, cc: int | None = None, status: int | None = None) -> bytes:
    channel = (0x80 if in_range else 0) | (0x40 if stop else 0) | (antenna & 0x0F)
    if status is None:
        status = (0x01 if low_battery else 0) | (0x10 if sos else 0)
    if cc is None:
        cc = tag_cc(tag_type, tag_id)
    return _TAG.pack(channel, tag_type & 0xFF, tag_id & 0xFFFFFFFF, cc & 0xFF, exciter & 0xFFFF,
                     status & 0xFF, max(-128, min(127, rssi)), t6)


def reader_value(reader_id: int, state: int, tag_id: int, rssi: int = -60, t6: bytes = b"\0" * 6) -> bytes:
    return _READER.pack(max(-128, min(127, rssi)), reader_id & 0xFFFFFFFF, state & 0xFF,
                        tag_id & 0xFFFFFFFF, t6)


def wristband_value(band_id: int, kind: int, value: int, rssi: int = -60,
                    acq6: bytes = b"\0" * 6, recv6: bytes = b"\0" * 6) -> bytes:
    return _BAND.pack(max(-128, min(127, rssi)), band_id & 0xFFFFFFFF, kind & 0xFF, value & 0xFFFF) + acq6 + recv6


# ---- decoding --------------------------------------------------------------
def tag_hex(tag_id: int) -> str:
    return f"{tag_id:08X}"


class TagRecord(NamedTuple):
    door: bool          # TLV 0x8B02 (attendance/door tag) rather than 0x8B01
    in_range: bool      # 0x8B01: inside the station's range; 0x8B02: passed in
    void: bool          # bit6: station-stop (0x8B01) / one-sided reader (0x8B02): in_range is void
    antenna: int
    tag_type: int
    tag: str            # 8 upper-case hex digits
    cc_ok: bool
    exciter: int
    low_battery: bool
    sos: bool
    rssi: int
    time: bytes


class ReaderState(NamedTuple):
    rssi: int
    reader_id: int
    removed: bool
    state: int
    tag: str
    time: bytes


class WristbandData(NamedTuple):
    rssi: int
    tag: str
    kind: int
    value: int
    acq_time: bytes | None
    recv_time: bytes | None


class HeartbeatInfo(NamedTuple):
    work_status: int
    dev_status: int
    param_crc: int
    ver: int
    time: bytes

    @property
    def external_power_lost(self) -> bool:
        return bool(self.work_status & 0x20)

    @property
    def battery(self) -> int:
        return (self.work_status >> 8) & 0x0F


class TLVError(ValueError):
    pass


def iter_tlvs(content: bytes) -> Iterator[tuple[int, bytes]]:
    """Yield (type, value); raise TLVError on a TLV running past the content."""
    i, n = 0, len(content)
    while i < n:
        if n - i < 4:
            raise TLVError(f"{n - i} stray bytes at the end of the data")
        t, ln = _TLV.unpack_from(content, i)
        i += 4
        if ln > n - i:
            raise TLVError(f"TLV 0x{t:04X} length {ln} runs past the data ({n - i} left)")
        yield t, content[i:i + ln]
        i += ln


def decode_tag(value: bytes, door: bool = False) -> TagRecord:
    if len(value) < TAG_TLV_LEN:
        raise TLVError(f"tag TLV is {len(value)} bytes, needs {TAG_TLV_LEN}")
    ch, typ, tid, cc, exc, st, rssi, t6 = _TAG.unpack_from(value)
    ok = ((typ + (tid >> 24) + ((tid >> 16) & 0xFF) + ((tid >> 8) & 0xFF) + (tid & 0xFF) + cc) & 0xFF) == 0
    return TagRecord(door, bool(ch & 0x80), bool(ch & 0x40), ch & 0x0F, typ, f"{tid:08X}", ok, exc,
                     bool(st & 0x01), bool(st & 0x10), rssi, t6)


def decode_reader(value: bytes) -> ReaderState:
    if len(value) < READER_TLV_LEN:
        raise TLVError(f"reader TLV is {len(value)} bytes, needs {READER_TLV_LEN}")
    rssi, rid, state, tid, t6 = _READER.unpack_from(value)
    return ReaderState(rssi, rid, state == 1, state, f"{tid:08X}", t6)


def decode_wristband(value: bytes) -> WristbandData:
    """SPEC §4.1 says 18 bytes but its fields add up to 20 (1+4+1+2+6+6); both
    are accepted: the first 8 bytes carry everything casegate uses, the times
    are decoded when present."""
    if len(value) < WRISTBAND_TLV_MIN:
        raise TLVError(f"wristband TLV is {len(value)} bytes, needs {WRISTBAND_TLV_MIN}")
    rssi, bid, kind, val = _BAND.unpack_from(value)
    acq = bytes(value[8:14]) if len(value) >= 14 else None
    recv = bytes(value[14:20]) if len(value) >= 20 else None
    return WristbandData(rssi, f"{bid:08X}", kind, val, acq, recv)


def decode_register(content: bytes) -> tuple[int, int]:
    if len(content) < 6:
        raise TLVError("register content shorter than 6 bytes")
    return struct.unpack_from(">HI", content)


def decode_login(content: bytes) -> tuple[int, int]:
    if len(content) < 4:
        raise TLVError("login content shorter than 4 bytes")
    return struct.unpack_from(">HH", content)


def decode_heartbeat(content: bytes) -> HeartbeatInfo:
    if len(content) < _HB.size:
        raise TLVError(f"heartbeat content shorter than {_HB.size} bytes")
    return HeartbeatInfo(*_HB.unpack_from(content))


def decode_register_reply(content: bytes) -> tuple[int, bytes, str, int]:
    """(result, time6, server_ip, port) - port is little-endian on the wire."""
    if len(content) < 41:
        raise TLVError("register reply shorter than 41 bytes")
    ip = content[7:39].split(b"\0", 1)[0].decode("ascii", "replace")
    return content[0], bytes(content[1:7]), ip, int.from_bytes(content[39:41], "little")


def decode_simple_reply(content: bytes) -> tuple[int, bytes]:
    if len(content) < 7:
        raise TLVError("reply shorter than 7 bytes")
    return content[0], bytes(content[1:7])


# ---- the stream parser -----------------------------------------------------
class FrameParser:
    """Byte stream -> frames. ``on_error(reason, n)`` is called for every drop:
    ``bad_crc``, ``bad_length``, ``truncated`` (a frame cut short by a later
    complete one) and ``noise_bytes`` (n = bytes skipped)."""

    __slots__ = ("buf", "max_len", "on_error", "frames", "frame_bytes", "noise_bytes",
                 "bad_crc", "bad_length", "truncated", "bytes_fed")

    def __init__(self, max_len: int = MAX_LEN, on_error: Callable[[str, int], None] | None = None):
        self.buf = bytearray()
        self.max_len = max_len
        self.on_error = on_error
        self.frames = 0
        self.frame_bytes = 0
        self.noise_bytes = 0
        self.bad_crc = 0
        self.bad_length = 0
        self.truncated = 0
        self.bytes_fed = 0

    def _err(self, reason: str, n: int = 1) -> None:
        if self.on_error is not None and n:
            self.on_error(reason, n)

    def _check(self, buf: bytearray, j: int, n: int) -> int:
        """At a sync word at j: -1 = length out of range, 0 = incomplete,
        -2 = CRC wrong, else the frame's total size."""
        length = (buf[j + 2] << 8) | buf[j + 3]
        if length < MIN_LEN or length > self.max_len:
            return -1
        total = length + 4
        if n - j < total:
            return 0
        end = j + 2 + length
        if crc16_ccitt_false(memoryview(buf)[j + 2:end]) != ((buf[end] << 8) | buf[end + 1]):
            return -2
        return total

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        buf = self.buf
        buf += data
        self.bytes_fed += len(data)
        n = len(buf)
        out: list[Frame] = []
        i = 0
        noise = 0
        while True:
            j = buf.find(SYNC, i)
            if j < 0:
                keep = 1 if n > i and buf[n - 1] == 0x55 else 0
                noise += n - i - keep
                i = n - keep
                break
            noise += j - i
            if n - j < 4:
                i = j
                break
            r = self._check(buf, j, n)
            if r > 0:
                hl, cmd, seq, ver, sec, dev = _HDR.unpack_from(buf, j + 2)
                nul = dev.find(b"\0")
                dev_id = (dev if nul < 0 else dev[:nul]).decode("latin-1")
                out.append(Frame(cmd, seq, dev_id, bytes(buf[j + 30:j + 2 + hl]), ver, sec))
                self.frames += 1
                self.frame_bytes += r
                i = j + r
                continue
            if r == -1:
                self.bad_length += 1
                self._err("bad_length")
            elif r == -2:
                self.bad_crc += 1
                self._err("bad_crc")
            else:  # incomplete: a later complete, valid frame means this one was cut short
                k = buf.find(SYNC, j + 2)
                tries = 0
                while 0 <= k and n - k >= 4 and tries < 8:
                    if self._check(buf, k, n) > 0:
                        break
                    k = buf.find(SYNC, k + 2)
                    tries += 1
                else:
                    k = -1
                if k < 0 or n - k < 4:
                    i = j
                    break
                self.truncated += 1
                self._err("truncated")
            # drop the sync word of the rejected frame and rescan after it
            noise += 2
            i = j + 2
        if noise:
            self.noise_bytes += noise
            self._err("noise_bytes", noise)
        if i:
            del buf[:i]
        return out

    @property
    def pending(self) -> int:
        return len(self.buf)

    def reset(self) -> None:
        """Forget a partial frame (the connection it came from is gone)."""
        self.buf.clear()
