"""MR7901 base-station imitation (SPEC §4.1): a TCP client speaking the exact bytes.

A :class:`StationSimulator` connects to the platform, registers, logs in,
sends a heartbeat every ``heartbeat_s`` and a data frame (0x8B01 tag records,
plus 0x8A01 wristband and 0x8801 reader TLVs for tags that have them) every
``report_s``. Every request waits for its ``cmd | 0x8000`` reply with the same
seq; an unanswered request is re-sent ``retries`` (5) times, then the station
logs in again, and reconnects if that fails too.

Use it two ways:
* background: ``start()`` / ``stop()``; drive tags with :meth:`add_tag`,
  :meth:`remove_tag`, :meth:`press_sos`, :meth:`set_heart_rate` ...
* manual (tests): ``connect()``, ``handshake()``, then :meth:`request`,
  :meth:`send_raw`, :meth:`pump` from the caller's thread.

:class:`ZoneSite` runs several stations and moves tags between them.
"""
from __future__ import annotations

import collections
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Iterable
from zoneinfo import ZoneInfo

from drivers.common.site import SiteCommandError, SiteDevice
from drivers.zone_reader import protocol as P


@dataclass
class SimTag:
    tag_id: int
    exciter: int = 0
    tag_type: int = 0x20
    rssi: int = -55
    antenna: int = 1
    low_battery: bool = False
    sos: bool = False
    band: dict[int, int] = field(default_factory=dict)   # wristband kind -> value
    reader_state: int | None = None                      # 0 normal, 1 removed
    reader_id: int = 1


def _tag_int(tag: str | int) -> int:
    return tag if isinstance(tag, int) else int(tag, 16)


class StationSimulator:
    def __init__(self, host: str, port: int, dev_id: str, *, dev_type: int = 0x7901, reg_code: int = 0,
                 sw_ver: int = 0x0106, ver: int = 1, heartbeat_s: float = 30.0, report_s: float = 1.0,
                 reply_timeout_s: float = 1.0, retries: int = 5, timezone: str = "Asia/Shanghai",
                 tlvs_per_frame: int = 20, seq_start: int = 1, reconnect_s: float = 0.5,
                 bind: str | None = None):
        self.host, self.port, self.dev_id = host, port, dev_id
        self.bind = bind                    # source address (e.g. "127.0.0.2": another host on loopback)
        self.dev_type, self.reg_code, self.sw_ver, self.ver = dev_type, reg_code, sw_ver, ver
        self.heartbeat_s, self.report_s = heartbeat_s, report_s
        self.reply_timeout_s, self.retries = reply_timeout_s, retries
        self.tz = ZoneInfo(timezone)
        self.tlvs_per_frame = max(1, tlvs_per_frame)
        self.reconnect_s = reconnect_s
        self.work_status = 10 << 8          # battery 10/10, external power present
        self.sock: socket.socket | None = None
        self._parser = P.FrameParser()
        self._inbox: collections.deque[P.Frame] = collections.deque(maxlen=1000)
        self.replies: collections.deque[P.Frame] = collections.deque(maxlen=1000)  # every reply received
        self._seq = seq_start
        self._tags: dict[int, SimTag] = {}
        self._oneshot: list[bytes] = []
        self._lock = threading.RLock()     # tag state
        self._io = threading.RLock()       # the socket
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()
        self.logged_in = threading.Event()
        self.stats: collections.Counter[str] = collections.Counter()
        self.register_reply: tuple | None = None   # (result, time6, ip, port)
        self.login_result: int | None = None

    # ---- tags --------------------------------------------------------------
    def add_tag(self, tag: str | int, **kw) -> SimTag:
        """Put a tag in range; it is reported every ``report_s``."""
        t = _tag_int(tag)
        with self._lock:
            st = self._tags.get(t)
            if st is None:
                st = self._tags[t] = SimTag(t)
            for k, v in kw.items():
                setattr(st, k, v)
        self._wake.set()
        return st

    def remove_tag(self, tag: str | int, announce: bool = True) -> None:
        """Tag leaves the range: one out-of-range record (unless ``announce`` is
        False: then it just goes silent, for presence-timeout tests)."""
        t = _tag_int(tag)
        with self._lock:
            st = self._tags.pop(t, None)
            if st is not None and announce:
                self._oneshot.append(P.tlv(P.TLV_TAG, self._tag_value(st, in_range=False)))
        self._wake.set()

    def has_tag(self, tag: str | int) -> bool:
        with self._lock:
            return _tag_int(tag) in self._tags

    @property
    def tags(self) -> list[str]:
        with self._lock:
            return [P.tag_hex(t) for t in self._tags]

    def _update(self, tag: str | int, **kw) -> None:
        t = _tag_int(tag)
        with self._lock:
            st = self._tags.get(t)
            if st is None:
                st = self._tags[t] = SimTag(t)
            for k, v in kw.items():
                setattr(st, k, v)
        self._wake.set()

    def set_exciter(self, tag: str | int, address: int) -> None:
        self._update(tag, exciter=address)

    def press_sos(self, tag: str | int, pressed: bool = True) -> None:
        """Status byte bit4 (button pressed) on the tag's records."""
        self._update(tag, sos=pressed)

    def set_low_battery(self, tag: str | int, low: bool = True) -> None:
        self._update(tag, low_battery=low)

    def _band(self, tag: str | int, kind: int, value: int | None) -> None:
        t = _tag_int(tag)
        with self._lock:
            st = self._tags.get(t)
            if st is None:
                st = self._tags[t] = SimTag(t)
            if value is None:
                st.band.pop(kind, None)
            else:
                st.band[kind] = value
        self._wake.set()

    def set_heart_rate(self, tag: str | int, bpm: int | None) -> None:
        self._band(tag, P.BAND_HEART_RATE, bpm)

    def set_strap(self, tag: str | int, opened: bool) -> None:
        self._band(tag, P.BAND_STRAP, 1 if opened else 0)

    def set_battery(self, tag: str | int, percent: int | None) -> None:
        self._band(tag, P.BAND_BATTERY, percent)

    def band_sos(self, tag: str | int, pressed: bool = True) -> None:
        self._band(tag, P.BAND_SOS, 1 if pressed else 0)

    def set_reader_removed(self, tag: str | int, removed: bool = True, reader_id: int = 1) -> None:
        self._update(tag, reader_state=1 if removed else 0, reader_id=reader_id)

    def door_pass(self, tag: str | int, inward: bool = True, exciter: int = 0, one_sided: bool = False) -> None:
        """An attendance (door) tag passing this reader: one 0x8B02 record."""
        st = SimTag(_tag_int(tag), exciter=exciter)
        with self._lock:
            self._oneshot.append(P.tlv(P.TLV_DOOR, self._tag_value(st, in_range=inward, stop=one_sided)))
        self._wake.set()

    def queue_tlv(self, tlv_bytes: bytes) -> None:
        """Send an arbitrary TLV with the next data frame."""
        with self._lock:
            self._oneshot.append(tlv_bytes)
        self._wake.set()

    def send_now(self) -> None:
        self._wake.set()

    def _tag_value(self, st: SimTag, in_range: bool = True, stop: bool = False) -> bytes:
        return P.tag_value(st.tag_id, in_range=in_range, stop=stop, antenna=st.antenna, tag_type=st.tag_type,
                           exciter=st.exciter, low_battery=st.low_battery, sos=st.sos, rssi=st.rssi,
                           t6=self.now6())

    def data_tlvs(self) -> list[bytes]:
        """The TLVs of the next report (one-shot TLVs first, then every tag in range)."""
        t6 = self.now6()
        with self._lock:
            out = self._oneshot
            self._oneshot = []
            for st in self._tags.values():
                out.append(P.tlv(P.TLV_TAG, self._tag_value(st)))
                for kind, value in st.band.items():
                    out.append(P.tlv(P.TLV_WRISTBAND, P.wristband_value(st.tag_id, kind, value, st.rssi, t6, t6)))
                if st.reader_state is not None:
                    out.append(P.tlv(P.TLV_READER, P.reader_value(st.reader_id, st.reader_state, st.tag_id,
                                                                  st.rssi, t6)))
        return out

    # ---- wire ----------------------------------------------------------------
    def now6(self) -> bytes:
        return P.now6(self.tz)

    def next_seq(self) -> int:
        with self._io:
            s = self._seq
            self._seq = (self._seq + 1) & 0xFFFFFFFF
            return s

    def frame(self, cmd: int, content: bytes = b"", seq: int | None = None) -> tuple[int, bytes]:
        if seq is None:
            seq = self.next_seq()
        return seq, P.encode_frame(cmd, seq, self.dev_id, content, self.ver)

    def connect(self, timeout: float = 3.0) -> None:
        with self._io:
            self.close()
            s = socket.create_connection((self.host, self.port), timeout=timeout,
                                         source_address=(self.bind, 0) if self.bind else None)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock = s
            self._parser = P.FrameParser()
            self._inbox.clear()
            self.stats["connects"] += 1
            self.connected.set()

    def close(self) -> None:
        with self._io:
            if self.sock is not None:
                try:
                    self.sock.close()
                except OSError:
                    pass
                self.sock = None
            self.connected.clear()
            self.logged_in.clear()

    def send_raw(self, data: bytes) -> None:
        with self._io:
            if self.sock is None:
                raise ConnectionError("not connected")
            self.sock.sendall(data)
            self.stats["bytes_sent"] += len(data)

    def pump(self, timeout: float = 0.2) -> list[P.Frame]:
        """Read whatever arrives within ``timeout``; returns (and records) the frames."""
        with self._io:
            if self.sock is None:
                raise ConnectionError("not connected")
            self.sock.settimeout(max(0.001, timeout))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return []
            if not data:
                raise ConnectionError("platform closed the connection")
            frames = self._parser.feed(data)
            for f in frames:
                self.replies.append(f)
                self._inbox.append(f)
                self.stats["replies"] += 1
            return frames

    def wait_reply(self, cmd: int, seq: int, timeout: float) -> P.Frame | None:
        deadline = time.monotonic() + timeout
        with self._io:
            while True:
                for f in list(self._inbox):
                    if f.seq == seq and f.cmd == (cmd | P.REPLY):
                        self._inbox.remove(f)
                        return f
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.pump(left)

    def request(self, cmd: int, content: bytes = b"", timeout: float | None = None,
                retries: int | None = None) -> P.Frame | None:
        """Send, wait for the reply; re-send the same bytes up to ``retries`` times."""
        seq, raw = self.frame(cmd, content)
        timeout = self.reply_timeout_s if timeout is None else timeout
        retries = self.retries if retries is None else retries
        with self._io:
            for attempt in range(1 + retries):
                if attempt:
                    self.stats["retries"] += 1
                self.send_raw(raw)
                self.stats["requests"] += 1
                r = self.wait_reply(cmd, seq, timeout)
                if r is not None:
                    return r
                if self._stop.is_set():
                    break
        self.stats["unanswered"] += 1
        return None

    def register(self) -> int | None:
        r = self.request(P.CMD_REGISTER, P.register_content(self.dev_type, self.reg_code))
        if r is None:
            return None
        self.register_reply = P.decode_register_reply(r.content)
        return self.register_reply[0]

    def login(self) -> int | None:
        r = self.request(P.CMD_LOGIN, P.login_content(self.sw_ver, 0))
        if r is None:
            return None
        self.login_result = P.decode_simple_reply(r.content)[0]
        if self.login_result == 0:
            self.logged_in.set()
            self.stats["logins"] += 1
        return self.login_result

    def handshake(self) -> bool:
        return self.register() == 0 and self.login() == 0

    def heartbeat(self) -> P.Frame | None:
        return self.request(P.CMD_HEARTBEAT, P.heartbeat_content(self.work_status, 0, 0, self.sw_ver, self.now6()))

    def report(self) -> bool:
        """Send the current tags (and queued TLVs) as data frames; False if one went unanswered."""
        tlvs = self.data_tlvs()
        ok = True
        for i in range(0, len(tlvs), self.tlvs_per_frame):
            if self.request(P.CMD_DATA, b"".join(tlvs[i:i + self.tlvs_per_frame])) is None:
                ok = False
                self.stats["lost_reports"] += 1
            else:
                self.stats["reports"] += 1
        return ok

    # ---- background ----------------------------------------------------------
    def start(self) -> "StationSimulator":
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"station-{self.dev_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        self._wake.set()
        with_sock = self.sock
        if with_sock is not None:
            try:
                with_sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout)
        self.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.connect()
                if not self.handshake():
                    raise ConnectionError("register/login refused or unanswered")
                next_hb = time.monotonic()
                next_report = time.monotonic()
                while not self._stop.is_set():
                    now = time.monotonic()
                    ok = True
                    if now >= next_hb:
                        ok = self.heartbeat() is not None
                        next_hb = now + self.heartbeat_s
                    if ok and (now >= next_report or self._wake.is_set()):
                        self._wake.clear()
                        ok = self.report()
                        next_report = max(next_report + self.report_s, time.monotonic())
                    if not ok and not self._stop.is_set():
                        self.stats["relogins"] += 1
                        if self.login() != 0:
                            raise ConnectionError("login again failed")
                        continue
                    wait = min(next_hb, next_report) - time.monotonic()
                    if wait > 0:
                        self._wake.wait(wait)
            except (OSError, ConnectionError):
                if self._stop.is_set():
                    break
                self.stats["reconnects"] += 1
                self.close()
                self._stop.wait(self.reconnect_s)
        self.close()


class ZoneSite:
    """Several stations; moves tags between them (and so between rooms)."""

    def __init__(self, host: str, port: int, dev_ids: Iterable[str], **station_kw):
        self.stations: dict[str, StationSimulator] = {
            d: StationSimulator(host, port, d, **station_kw) for d in dev_ids}

    def start(self) -> "ZoneSite":
        for s in self.stations.values():
            s.start()
        return self

    def stop(self, timeout: float = 3.0) -> None:
        for s in self.stations.values():
            s._stop.set()
            s._wake.set()
        for s in self.stations.values():
            s.stop(timeout)

    def wait_logged_in(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        return all(s.logged_in.wait(max(0.0, deadline - time.monotonic())) for s in self.stations.values())

    def where(self, tag: str | int) -> str | None:
        for d, s in self.stations.items():
            if s.has_tag(tag):
                return d
        return None

    def move(self, tag: str | int, dev_id: str | None, **kw) -> None:
        """The tag leaves its current station (out-of-range record) and appears at ``dev_id``
        (None: it just leaves)."""
        for d, s in self.stations.items():
            if d != dev_id and s.has_tag(tag):
                s.remove_tag(tag)
        if dev_id is not None:
            self.stations[dev_id].add_tag(tag, **kw)

    def __getitem__(self, dev_id: str) -> StationSimulator:
        return self.stations[dev_id]


# ---- casegate simulate (drivers/common/site.py) ----------------------------------------------
class ZoneSiteDevice(SiteDevice):
    """The configured stations of one zone_reader, connecting to its ``listen`` address."""

    usage = ("move <tag> <room>", "leave <tag>", "sos <tag> [off]", "strap <tag> open|closed",
             "heart <tag> <bpm>", "battery <tag> <percent>")

    def __init__(self, dev):
        super().__init__(dev.id)
        host, _, port = dev.listen.rpartition(":")
        host = host.strip("[]")
        self.host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
        self.port = int(port)
        self.rooms: dict[str, list[str]] = {}              # room -> its stations' dev_ids
        for dev_id, room in dev.stations.items():
            self.rooms.setdefault(room, []).append(dev_id)
        # a pinned station (SPEC v2 {room, ip}) must come from its address: bind it on loopback
        # when that address is a loopback one, else it is refused as an impostor — said at start
        self.site = ZoneSite(self.host, self.port, list(dev.stations), heartbeat_s=min(dev.heartbeat_s, 10.0),
                             report_s=1.0, reconnect_s=1.0)
        self.pinned = dict(getattr(dev, "station_ips", {}) or {})

    def start(self) -> None:
        self.site.start()

    def stop(self) -> None:
        self.site.stop()

    def where(self) -> str:
        note = f" (pinned stations {', '.join(self.pinned)} will be refused unless from their ip)" if self.pinned else ""
        return f"{len(self.site.stations)} station(s) connecting to {self.host}:{self.port}{note}"

    def _tag(self, word: str) -> str:
        t = word.upper()
        if len(t) != 8 or any(c not in "0123456789ABCDEF" for c in t):
            raise SiteCommandError(f"{word!r}: a wristband tag is 8 hex digits, e.g. 5B000001")
        return t

    def handle(self, words: list[str]) -> str | None:
        verb, args = words[0], words[1:]
        if verb == "move" and len(args) == 2:
            room = args[1]
            if room not in self.rooms:
                return None                   # another zone reader's room, or none: the caller says so
            tag = self._tag(args[0])
            self.site.move(tag, self.rooms[room][0])
            return f"{tag} in range of {self.rooms[room][0]} ({room})"
        tag_verbs = {"leave", "sos", "strap", "heart", "battery"}
        if verb not in tag_verbs or not args:
            return None
        tag = self._tag(args[0])
        at = self.site.where(tag)
        if at is None:
            if verb == "leave":
                return None
            raise SiteCommandError(f"{tag} is in range of no station: `move {tag} <room>` first")
        st = self.site[at]
        if verb == "leave":
            self.site.move(tag, None)
            return f"{tag} out of range"
        if verb == "sos":
            st.press_sos(tag, not (len(args) > 1 and args[1] == "off"))
            return f"{tag} SOS {'released' if len(args) > 1 and args[1] == 'off' else 'pressed'}"
        if len(args) != 2:
            raise SiteCommandError(f"usage: {verb} <tag> <value>")
        if verb == "strap":
            if args[1] not in ("open", "closed"):
                raise SiteCommandError("usage: strap <tag> open|closed")
            st.set_strap(tag, args[1] == "open")
            return f"{tag} strap {args[1]}"
        try:
            value = int(args[1])
        except ValueError:
            raise SiteCommandError(f"{verb}: {args[1]!r} is not a whole number") from None
        (st.set_heart_rate if verb == "heart" else st.set_battery)(tag, value)
        return f"{tag} {verb} {value}"


def site_device(dev) -> ZoneSiteDevice:
    return ZoneSiteDevice(dev)
