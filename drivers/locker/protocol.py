"""Locker wire protocols (SPEC §4.4, §4.5): pure encode/decode, no I/O.

Lock control board (Kerong KR-CU16-style, RS-485 19200 8N1)
    command  ``02 ADDR CMD 03 SUM``            (5 bytes)
    status   ``02 ADDR 35 L1 L2 S1 S2 03 SUM`` (9 bytes, reply to CMD 0x30)
    unlock   ``02 ADDR 31 ST 03 SUM``          (6 bytes, reply to CMD 0x31; ST 0x11 opened, 0x00 failed)
    SUM = byte sum of every preceding byte of the frame & 0xFF; ADDR = board << 4 | lock;
    compartment n is lock n-1 and bit n-1 of L2:L1 / S2:S1.

UHF inventory reader (Chafon UHFReader18-style, 57600 8N1)
    command  ``Len Adr Cmd Data CRC_lo CRC_hi``
    response ``Len Adr reCmd Status Data CRC_lo CRC_hi``
    ``Len`` counts every byte after itself; CRC = CRC-16/MCRF4XX over Len..Data.
    Inventory (Cmd 0x01) response data = Num, then Num x (EPC length, EPC bytes);
    Status 0x01 done, 0x02/0x03/0x04 more frames follow, 0xFB no tag.

Both stream parsers take arbitrary chunks, never raise on bad input, count
what they drop (``parser.bad`` reason -> count, plus the optional ``on_bad``
callback) and resynchronise: the board parser on the next ``02``, the UHF
parser (which has no start byte) by sliding one byte at a time and by looking
ahead for a complete, CRC-valid frame when the current length byte would make
it wait for bytes that are not coming.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable

from drivers.crc import crc16_mcrf4xx

# ---------------------------------------------------------------- lock board
STX = 0x02
ETX = 0x03
CMD_STATUS = 0x30
CMD_UNLOCK = 0x31
REPLY_STATUS = 0x35
REPLY_UNLOCK = 0x31
ST_OPENED = 0x11
ST_FAILED = 0x00

#: reply length by CMD byte, as seen by the host (driver side)
REPLY_LEN = {REPLY_STATUS: 9, REPLY_UNLOCK: 6}
#: command length by CMD byte, as seen by the board (simulator side)
COMMAND_LEN = {CMD_STATUS: 5, CMD_UNLOCK: 5}


class ProtocolError(ValueError):
    """A frame that is well delimited but does not mean anything valid."""


def board_sum(data: bytes | bytearray | Iterable[int]) -> int:
    """SUM byte: byte sum of ``data`` & 0xFF."""
    return sum(data) & 0xFF


def _addr(board: int, lock: int) -> int:
    if not 0 <= board <= 15:
        raise ValueError(f"board must be 0..15, got {board}")
    if not 0 <= lock <= 15:
        raise ValueError(f"lock must be 0..15, got {lock}")
    return board << 4 | lock


def board_frame(body: bytes) -> bytes:
    """``02 body 03 SUM``."""
    raw = bytes([STX]) + bytes(body) + bytes([ETX])
    return raw + bytes([board_sum(raw)])


def board_command(board: int, lock: int, cmd: int) -> bytes:
    return board_frame(bytes([_addr(board, lock), cmd & 0xFF]))


def status_command(board: int) -> bytes:
    """``02 B0 30 03 SUM`` - status of every lock of ``board``."""
    return board_command(board, 0, CMD_STATUS)


def unlock_command(board: int, compartment: int) -> bytes:
    """Unlock compartment 1..16 (lock ``compartment - 1``)."""
    if not 1 <= compartment <= 16:
        raise ValueError(f"compartment must be 1..16, got {compartment}")
    return board_command(board, compartment - 1, CMD_UNLOCK)


def status_reply(board: int, hooks: int, sensors: int) -> bytes:
    """``02 ADDR 35 L1 L2 S1 S2 03 SUM``; ``hooks``/``sensors`` are 16-bit masks, bit n-1 = compartment n."""
    return board_frame(bytes([_addr(board, 0), REPLY_STATUS, hooks & 0xFF, hooks >> 8 & 0xFF,
                              sensors & 0xFF, sensors >> 8 & 0xFF]))


def unlock_reply(board: int, lock: int, opened: bool | int) -> bytes:
    st = opened if isinstance(opened, int) and not isinstance(opened, bool) else (ST_OPENED if opened else ST_FAILED)
    return board_frame(bytes([_addr(board, lock), REPLY_UNLOCK, st & 0xFF]))


@dataclass(frozen=True, slots=True)
class StatusReply:
    board: int
    hooks: int      # bit n-1 = compartment n lock-hook open
    sensors: int    # bit n-1 = compartment n occupied (infrared)

    def is_open(self, compartment: int) -> bool:
        return bool(self.hooks >> (compartment - 1) & 1)

    def is_occupied(self, compartment: int) -> bool:
        return bool(self.sensors >> (compartment - 1) & 1)


@dataclass(frozen=True, slots=True)
class UnlockReply:
    board: int
    lock: int
    st: int

    @property
    def compartment(self) -> int:
        return self.lock + 1

    @property
    def opened(self) -> bool:
        return self.st == ST_OPENED


@dataclass(frozen=True, slots=True)
class BoardCommand:
    board: int
    lock: int
    cmd: int


BoardFrame = StatusReply | UnlockReply | BoardCommand


class BoardParser:
    """Stream parser for ``02 ... 03 SUM`` frames.

    ``role="host"`` decodes the board's replies (what the driver reads),
    ``role="board"`` decodes commands (what a board or the simulator reads).
    """

    def __init__(self, role: str = "host", on_bad: Callable[[str], None] | None = None):
        if role not in ("host", "board"):
            raise ValueError("role must be 'host' or 'board'")
        self.role = role
        self.lengths = REPLY_LEN if role == "host" else COMMAND_LEN
        self.buf = bytearray()
        self.bad: Counter[str] = Counter()
        self.frames = 0
        self.skipped_bytes = 0
        self._on_bad = on_bad
        self._resyncing = False

    def _reject(self, reason: str) -> None:
        # one count per lost frame / garbage run, not per byte
        if not self._resyncing:
            self.bad[reason] += 1
            if self._on_bad:
                self._on_bad(reason)
        self._resyncing = True

    def flush(self) -> None:
        """Drop a partial frame (call when its rest cannot come any more)."""
        if self.buf:
            self._reject("truncated" if self.buf[0] == STX else "garbage")
            self.skipped_bytes += len(self.buf)
            self.buf.clear()
        self._resyncing = False

    def feed(self, data: bytes | bytearray) -> list[BoardFrame]:
        buf = self.buf
        buf += data
        out: list[BoardFrame] = []
        while buf:
            if buf[0] != STX:
                i = buf.find(STX)
                n = len(buf) if i < 0 else i
                self._reject("garbage")
                self.skipped_bytes += n
                del buf[:n]
                continue
            if len(buf) < 3:
                break
            need = self.lengths.get(buf[2])
            if need is None:
                self._reject("unknown_cmd")
                self.skipped_bytes += 1
                del buf[:1]
                continue
            if len(buf) < need:
                break
            if buf[need - 2] != ETX:
                self._reject("bad_etx")
                self.skipped_bytes += 1
                del buf[:1]
                continue
            if board_sum(buf[:need - 1]) != buf[need - 1]:
                self._reject("bad_sum")
                self.skipped_bytes += 1
                del buf[:1]
                continue
            frame = bytes(buf[:need])
            del buf[:need]
            self._resyncing = False
            self.frames += 1
            out.append(self._decode(frame))
        return out

    def _decode(self, f: bytes) -> BoardFrame:
        board, lock, cmd = f[1] >> 4, f[1] & 0x0F, f[2]
        if self.role == "board":
            return BoardCommand(board, lock, cmd)
        if cmd == REPLY_STATUS:
            return StatusReply(board, f[3] | f[4] << 8, f[5] | f[6] << 8)
        return UnlockReply(board, lock, f[3])


# ---------------------------------------------------------------- UHF reader
UHF_INVENTORY = 0x01
UHF_DONE = 0x01
UHF_MORE = frozenset({0x02, 0x03, 0x04})
UHF_NO_TAG = 0xFB
UHF_MIN_LEN = 4          # Len of a frame without data: Adr Cmd CRC CRC
UHF_MAX_LEN = 0xFF


def uhf_frame(adr: int, cmd: int, data: bytes = b"") -> bytes:
    """``Len Adr Cmd Data CRC_lo CRC_hi`` (a response passes Status as data[0])."""
    length = 4 + len(data)
    if length > UHF_MAX_LEN:
        raise ValueError(f"frame too long ({length} > 255)")
    body = bytes([length, adr & 0xFF, cmd & 0xFF]) + bytes(data)
    crc = crc16_mcrf4xx(body)
    return body + bytes([crc & 0xFF, crc >> 8])


def inventory_command(adr: int = 0xFF) -> bytes:
    """``04 FF 01 1B B4`` for the broadcast address."""
    return uhf_frame(adr, UHF_INVENTORY)


def epc_bytes(epc: str) -> bytes:
    b = bytes.fromhex(epc)
    if not 1 <= len(b) <= 62:
        raise ValueError(f"EPC must be 1..62 bytes, got {len(b)}")
    return b


def inventory_payload(epcs: list[str], ant: int | None = None) -> bytes:
    """Inventory data: [Ant] Num (len EPC)*."""
    out = bytearray() if ant is None else bytearray([ant & 0xFF])
    out.append(len(epcs))
    for e in epcs:
        b = epc_bytes(e)
        out.append(len(b))
        out += b
    return bytes(out)


def inventory_responses(adr: int, epcs: list[str], max_frame_tags: int | None = None,
                        ant: int | None = None) -> list[bytes]:
    """All response frames for one inventory: a frame per chunk of tags that fits
    in 255 bytes (or ``max_frame_tags``), Status 0x03 on all but the last (0x01),
    a single 0xFB frame when no tag is in the field."""
    if not epcs:
        return [uhf_frame(adr, UHF_INVENTORY, bytes([UHF_NO_TAG]))]
    chunks: list[list[str]] = []
    cur: list[str] = []
    size = 0
    overhead = 4 + 1 + 1 + (1 if ant is not None else 0)   # Len-counted bytes + Status + Num [+ Ant]
    for e in epcs:
        n = 1 + len(epc_bytes(e))
        if cur and (overhead + size + n > UHF_MAX_LEN or (max_frame_tags and len(cur) >= max_frame_tags)):
            chunks.append(cur)
            cur, size = [], 0
        cur.append(e)
        size += n
    chunks.append(cur)
    frames = []
    for i, c in enumerate(chunks):
        status = UHF_DONE if i == len(chunks) - 1 else 0x03
        frames.append(uhf_frame(adr, UHF_INVENTORY, bytes([status]) + inventory_payload(c, ant)))
    return frames


@dataclass(frozen=True, slots=True)
class UhfFrame:
    adr: int
    cmd: int
    data: bytes            # for a response: Status, then the data

    @property
    def status(self) -> int | None:
        return self.data[0] if self.data else None


@dataclass(frozen=True, slots=True)
class Inventory:
    status: int
    epcs: tuple[str, ...]
    ant: int | None = None

    @property
    def more(self) -> bool:
        return self.status in UHF_MORE

    @property
    def antennas(self) -> tuple[int, ...]:
        """Antenna numbers 1..8 from the Ant bitmask (bit0 = antenna 1)."""
        if self.ant is None:
            return ()
        return tuple(i + 1 for i in range(8) if self.ant >> i & 1)


def decode_inventory(frame: UhfFrame, ant_byte: bool = False) -> Inventory:
    """Decode an inventory response; raise :class:`ProtocolError` if it is not one."""
    if frame.cmd != UHF_INVENTORY:
        raise ProtocolError(f"not an inventory response (reCmd 0x{frame.cmd:02X})")
    if not frame.data:
        raise ProtocolError("response without status")
    status = frame.data[0]
    if status == UHF_NO_TAG:
        return Inventory(status, ())
    if status != UHF_DONE and status not in UHF_MORE:
        raise ProtocolError(f"inventory status 0x{status:02X}")
    d = frame.data[1:]
    ant = None
    if ant_byte:
        if not d:
            raise ProtocolError("missing antenna byte")
        ant, d = d[0], d[1:]
    if not d:
        if status == UHF_DONE:
            return Inventory(status, (), ant)
        raise ProtocolError("missing tag count")
    num, pos = d[0], 1
    epcs = []
    for _ in range(num):
        if pos >= len(d):
            raise ProtocolError("tag count larger than data")
        n = d[pos]
        if n == 0 or pos + 1 + n > len(d):
            raise ProtocolError("bad EPC length")
        epcs.append(d[pos + 1:pos + 1 + n].hex().upper())
        pos += 1 + n
    if pos != len(d):
        raise ProtocolError("trailing bytes after the last EPC")
    return Inventory(status, tuple(epcs), ant)


class UhfParser:
    """Stream parser for ``Len Adr Cmd Data CRC`` frames (both directions)."""

    def __init__(self, on_bad: Callable[[str], None] | None = None):
        self.buf = bytearray()
        self.bad: Counter[str] = Counter()
        self.frames = 0
        self.skipped_bytes = 0
        self._on_bad = on_bad
        self._resyncing = False
        self._scanned = 0          # len(buf) at the last look-ahead scan from this head

    def _reject(self, reason: str) -> None:
        if not self._resyncing:
            self.bad[reason] += 1
            if self._on_bad:
                self._on_bad(reason)
        self._resyncing = True

    def _skip(self, n: int, reason: str) -> None:
        self._reject(reason)
        self.skipped_bytes += n
        del self.buf[:n]
        self._scanned = 0

    def flush(self) -> None:
        if self.buf:
            self._reject("truncated")
            self.skipped_bytes += len(self.buf)
            self.buf.clear()
        self._resyncing = False
        self._scanned = 0

    @staticmethod
    def _valid_at(buf: bytearray, i: int) -> bool:
        n = buf[i]
        if n < UHF_MIN_LEN or i + n + 1 > len(buf):
            return False
        crc = crc16_mcrf4xx(memoryview(buf)[i:i + n - 1])
        return buf[i + n - 1] == crc & 0xFF and buf[i + n] == crc >> 8

    def feed(self, data: bytes | bytearray) -> list[UhfFrame]:
        buf = self.buf
        buf += data
        out: list[UhfFrame] = []
        while buf:
            n = buf[0]
            if n < UHF_MIN_LEN:
                self._skip(1, "bad_len")
                continue
            if len(buf) < n + 1:
                # Incomplete. If a whole valid frame starts further on, the
                # length byte here was noise: skip to that frame. Only
                # candidates completed by the bytes added since the last scan
                # are checked (the others already failed), so a stream costs
                # O(bytes x frame length), not O(bytes^2 x frame length).
                prev, size = self._scanned, len(buf)
                self._scanned = size
                for i in range(1, size - UHF_MIN_LEN):
                    end = i + buf[i] + 1
                    if buf[i] >= UHF_MIN_LEN and prev < end <= size and self._valid_at(buf, i):
                        self._skip(i, "garbage")
                        break
                else:
                    break
                continue
            if not self._valid_at(buf, 0):
                self._skip(1, "bad_crc")
                continue
            f = UhfFrame(buf[1], buf[2], bytes(buf[3:n - 1]))
            del buf[:n + 1]
            self._scanned = 0
            self._resyncing = False
            self.frames += 1
            out.append(f)
        return out
