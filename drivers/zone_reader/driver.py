"""Zone base stations (SPEC §4.1): casegate is the MR7901 platform server.

One asyncio event loop in its own thread owns every connection and all state
(stations, presence, tag status); nothing else mutates it, so there are no
locks on the hot path. A periodic tick on the same loop expires presence
(``presence_timeout_s``), marks stations offline after 3 silent
``heartbeat_s`` intervals and closes idle connections (``idle_timeout_s``).

Events:
* ``presence.entered`` [person, tag, room] on a tag's first in-range record
  in a room; ``presence.left`` [person, tag, room, seconds] on an out-of-range
  record (from every station of that room that heard it) or after
  ``presence_timeout_s`` without a record. Presence is per (tag, room); the
  room is the exciter's room when the record carries a mapped exciter address,
  else the station's room.
* ``tag.status`` [tag, person, battery, tamper, sos, heart_rate] only on a
  change that matters (SPEC §4.1 v2 volume): at once when tamper, SOS or
  battery-low change, when a value first appears or goes away, when the heart
  rate crosses a vital_signs_abnormal bound or moves ``hr_step_bpm`` from the
  last value SENT; any other change at most once per ``status_every_s`` (the
  held change goes out then, from the timer, even if the band falls silent).
  A band reports every second and its heart rate jitters: reporting every
  change made millions of events a day. Held changes are counted
  (``status_held``). ``battery`` is ``"low"`` while the status byte's
  low-battery bit is set, else the last wristband percentage (int), else null.
  ``tamper`` = strap opened (0x8A01 kind 2) or reader removed (0x8801);
  ``sos`` = status bit4 or 0x8A01 kind 4; ``heart_rate`` = last bpm or null.
* Station silence -> ``device.error`` (some stations) / ``device.offline``
  (all tracked stations) with the station dev_ids in ``error``; back ->
  ``device.online``.
"""
from __future__ import annotations

import asyncio
import collections
import threading
import time
from typing import Any, Callable
from zoneinfo import ZoneInfo

from drivers.base import Backoff, Driver, DriverContext
from drivers.zone_reader import protocol as P

RECENT_SEQS = 32              # remembered (seq -> reply) per station for duplicate absorption
MAX_WRITE_BUFFER = 1 << 20    # a station that does not read its replies is cut off
TAG_PRUNE_S = 3600.0          # forget the status of a quiet, healthy tag after this long
MAX_UNKNOWN_STATIONS = 1024   # unknown dev_ids remembered (a flood of made-up ids cannot grow memory)
_DEFAULT_STATUS = (None, False, False, None)
DEFAULT_VITAL_BOUNDS = (45.0, 130.0)   # rules.catalog.VitalSigns defaults, when the context gives none
DEFAULT_LOW_BATTERY_PCT = 20.0         # rules.catalog.LowBattery default, likewise


class PresenceTracker:
    """Pure presence logic: per (tag, room) since/last-seen/sources. ``now`` is
    a monotonic clock reading supplied by the caller."""

    __slots__ = ("timeout", "entries")

    def __init__(self, timeout_s: float):
        self.timeout = timeout_s
        # (tag, room) -> [since, last_seen, sources]
        self.entries: dict[tuple[str, str], list] = {}

    def seen(self, tag: str, room: str, source: str, now: float) -> bool:
        """An in-range record; True if the tag just entered the room."""
        e = self.entries.get((tag, room))
        if e is None:
            self.entries[(tag, room)] = [now, now, {source}]
            return True
        e[1] = now
        e[2].add(source)
        return False

    def gone(self, tag: str, room: str, source: str | None, now: float) -> float | None:
        """An out-of-range record from ``source`` (None = every source, e.g. a
        door passed out). Returns the seconds spent if the tag left the room."""
        key = (tag, room)
        e = self.entries.get(key)
        if e is None:
            return None
        if source is not None:
            e[2].discard(source)
            if e[2]:
                return None
        del self.entries[key]
        return max(0.0, now - e[0])

    def expire(self, now: float) -> list[tuple[str, str, float]]:
        cutoff = now - self.timeout
        out = []
        for key, e in self.entries.items():
            if e[1] <= cutoff:
                out.append((key[0], key[1], max(0.0, now - e[0])))
        for tag, room, _ in out:
            del self.entries[(tag, room)]
        return out

    def rooms_of(self, tag: str) -> list[str]:
        return [r for (t, r) in self.entries if t == tag]

    def __len__(self) -> int:
        return len(self.entries)


class TagStatus:
    """What casegate knows about one tag's health; ``snapshot()`` is what
    ``tag.status`` carries (minus ids)."""

    __slots__ = ("low_bit", "pct", "strap", "removed", "sos_bit", "band_sos", "hr", "last", "seen",
                 "sent_at")

    def __init__(self, now: float = 0.0):
        self.low_bit = False
        self.pct: int | None = None
        self.strap = False
        self.removed = False
        self.sos_bit = False
        self.band_sos = False
        self.hr: int | None = None
        self.last = _DEFAULT_STATUS       # what the last tag.status SENT said
        self.seen = now
        self.sent_at = float("-inf")      # monotonic time of the last tag.status

    def snapshot(self) -> tuple:
        return ("low" if self.low_bit else self.pct, self.strap or self.removed,
                self.sos_bit or self.band_sos, self.hr)


class _Station:
    __slots__ = ("dev_id", "room", "known", "last_seen", "offline", "conn", "recent",
                 "dev_type", "reg_code", "sw_ver", "heartbeat", "frames", "peer")

    def __init__(self, dev_id: str, room: str | None, now: float):
        self.dev_id = dev_id
        self.room = room
        self.known = room is not None
        self.last_seen = now
        self.offline = False
        self.conn: _Conn | None = None
        self.recent: collections.OrderedDict[int, tuple[int, bytes, bytes]] = collections.OrderedDict()
        self.dev_type: int | None = None
        self.reg_code: int | None = None
        self.sw_ver: int | None = None
        self.heartbeat: P.HeartbeatInfo | None = None
        self.frames = 0
        self.peer: str | None = None


class _Conn(asyncio.Protocol):
    def __init__(self, drv: "ZoneReaderDriver"):
        self.drv = drv
        self.transport: asyncio.Transport | None = None
        self.parser = P.FrameParser(on_error=drv._parse_error)
        self.last_rx = time.monotonic()
        self.dev_id: str | None = None
        self.peer = "?"
        self.local_ip = "0.0.0.0"
        self.refused = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        drv = self.drv
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        if sock:
            self.local_ip = sock[0]
        if len(drv._conns) >= drv.cfg.max_connections:
            self.refused = True
            drv.count("connection_refused")
            drv._log_once(("limit",), "connection limit %d reached, refusing %s", drv.cfg.max_connections, self.peer)
            transport.close()
            return
        drv._conns.add(self)
        drv.count("connections")

    def data_received(self, data: bytes) -> None:
        if self.refused or self.closed:
            return
        drv = self.drv
        now = time.monotonic()
        self.last_rx = now
        try:
            frames = self.parser.feed(data)
            if not frames:
                return
            wall = time.time()
            out = []
            for f in frames:
                r = drv._handle(self, f, now, wall)
                if r:
                    out.append(r)
            if out and self.transport is not None and not self.closed:
                self.transport.write(b"".join(out) if len(out) > 1 else out[0])
                if self.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
                    drv.count("slow_station")
                    self.close()
        except Exception:  # a bug must not kill the loop or the other stations
            drv.count("internal_error")
            drv.ctx.log.exception("%s: error handling data from %s", drv.device_id, self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        drv = self.drv
        drv._conns.discard(self)
        if self.parser.pending:
            drv.count("partial_frame_dropped")
            self.parser.reset()
        if self.dev_id is not None:
            st = drv._stations.get(self.dev_id)
            if st is not None and st.conn is self:
                st.conn = None

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.abort()


class ZoneReaderDriver(Driver):
    kind = "zone_reader"

    def __init__(self, cfg: Any, ctx: DriverContext):
        super().__init__(cfg, ctx)
        self._tz = ZoneInfo(getattr(ctx, "timezone", None) or "Asia/Shanghai")
        self._exciters: dict[int, str] = {}
        for k, room in cfg.exciters.items():
            try:
                self._exciters[int(str(k), 0)] = room
            except ValueError:
                ctx.log.warning("%s: exciter address %r is not a number; ignored", cfg.id, k)
        self.presence = PresenceTracker(cfg.presence_timeout_s)
        self.tags: dict[str, TagStatus] = {}
        self._stations: dict[str, _Station] = {}
        self._conns: set[_Conn] = set()
        self._logged: set = set()
        self._unknown = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._last_prune = time.monotonic()
        self.address: tuple[str, int] | None = None   # bound (host, port) once listening
        self.listening = threading.Event()
        self.listen_error: str | None = None
        #: optional hook for ``casegate probe``: (dev_id, frame, decoded items)
        self.on_frame: Callable[[str, P.Frame, list], None] | None = None
        now = time.monotonic()
        for dev_id, room in cfg.stations.items():
            self._stations[dev_id] = _Station(dev_id, room, now)

    # ---- lifecycle -------------------------------------------------------
    def start(self) -> None:
        self.stop_event.clear()
        self._restore_presence()
        self._thread = threading.Thread(target=self._run, name=f"zone-{self.device_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        super().stop(timeout)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._shutdown)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(timeout)
        with self._health_lock:
            self.health.state = "stopped"

    def _restore_presence(self) -> None:
        """After a restart, take over who the journal says is in our rooms.

        Without this a tag still in its room would be announced as entering
        again, and a tag that left while we were down would never leave. A
        restored entry has no station behind it yet: the first record
        confirms it, an out-of-range record or the timeout ends it."""
        restore = getattr(self.ctx, "present_tags", None)
        if restore is None:
            return
        mine = set(self.cfg.stations.values()) | set(self.cfg.exciters.values())
        now, wall = time.monotonic(), time.time()
        for tag, room, since in restore():
            if room in mine and (tag, room) not in self.presence.entries:
                self.presence.entries[(tag, room)] = [now - max(0.0, wall - since), now, set()]

    def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for c in list(self._conns):
            c.close()
        assert self._loop is not None
        self._loop.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        host, _, port = self.cfg.listen.rpartition(":")
        host = host.strip("[]") or None
        backoff = Backoff(self.stop_event, first=0.5, cap=30.0)
        try:
            while not self.stop_event.is_set():
                try:
                    self._server = loop.run_until_complete(
                        loop.create_server(lambda: _Conn(self), host, int(port), reuse_address=True,
                                           backlog=max(16, min(self.cfg.max_connections, 1024))))
                    break
                except OSError as e:
                    self.listen_error = f"cannot listen on {self.cfg.listen}: {e.strerror or e}"
                    self.set_state("error", self.listen_error)
                    if not backoff.wait():
                        return
            if self.stop_event.is_set():
                return
            sock = self._server.sockets[0].getsockname()
            self.address = (sock[0], sock[1])
            self.listen_error = None
            now = time.monotonic()
            for st in self._stations.values():
                st.last_seen = now
            self.set_state("online")
            self.listening.set()
            loop.call_later(self._tick_interval(), self._tick)
            loop.run_forever()
        finally:
            try:
                if self._server is not None:
                    self._server.close()
                for c in list(self._conns):
                    c.close()
                loop.run_until_complete(asyncio.sleep(0))
            except Exception:
                pass
            loop.close()

    def _tick_interval(self) -> float:
        c = self.cfg
        return max(0.02, min(0.5, c.presence_timeout_s / 5, c.heartbeat_s / 4, c.idle_timeout_s / 4))

    # ---- helpers -----------------------------------------------------------
    def _log_once(self, key, msg: str, *args) -> None:
        if key not in self._logged and len(self._logged) < 10000:
            self._logged.add(key)
            self.ctx.log.warning("%s: " + msg, self.device_id, *args)

    def _parse_error(self, reason: str, n: int) -> None:
        if reason == "noise_bytes":
            self.count(reason, n)
        else:
            self.frame_bad(reason, n)

    def _emit(self, type_: str, data: dict, wall: float) -> None:
        self.ctx.emit(type_, data, ts=wall)

    def now6(self) -> bytes:
        return P.now6(self._tz)

    def snapshot(self, timeout: float = 2.0) -> dict:
        """A consistent copy of stations/presence/tags, taken on the loop thread."""
        def take() -> dict:
            now = time.monotonic()
            return {
                "stations": {d: {"room": s.room, "known": s.known, "offline": s.offline,
                                 "connected": s.conn is not None, "frames": s.frames,
                                 "silent_s": round(now - s.last_seen, 3), "peer": s.peer}
                             for d, s in self._stations.items()},
                "presence": sorted(self.presence.entries),
                "connections": len(self._conns),
                "tags": {t: s.snapshot() for t, s in self.tags.items()},
            }
        loop = self._loop
        if loop is None or not loop.is_running():
            return take()

        async def coro():
            return take()
        return asyncio.run_coroutine_threadsafe(coro(), loop).result(timeout)

    # ---- frames ------------------------------------------------------------
    def _station(self, dev_id: str, now: float) -> _Station:
        st = self._stations.get(dev_id)
        if st is None:
            room = self.cfg.stations.get(dev_id)
            st = _Station(dev_id, room, now)
            if room is None:
                if self._unknown >= MAX_UNKNOWN_STATIONS:
                    self.count("unknown_station_overflow")
                    return st           # served, but not remembered
                self._unknown += 1
            self._stations[dev_id] = st
        return st

    def _handle(self, conn: _Conn | None, f: P.Frame, now: float, wall: float) -> bytes | None:
        """One CRC-checked frame from a station -> the reply bytes (or None)."""
        if f.cmd & P.REPLY:
            self.count("unexpected_reply")
            return None
        self.frame_ok()
        st = self._station(f.dev_id, now)
        st.frames += 1
        st.last_seen = now
        if not st.known:
            self.count("unknown_station")
            self._log_once(("station", f.dev_id), "unknown station %r (not in stations); replying anyway",
                           f.dev_id)
        if conn is not None and st.conn is not conn:
            old = st.conn
            if old is not None and not old.closed:
                self.count("station_reconnected")
                self.ctx.log.info("%s: station %s reconnected from %s; closing its old connection",
                                  self.device_id, f.dev_id, conn.peer)
                old.close()
            st.conn = conn
            st.peer = conn.peer
            conn.dev_id = f.dev_id
        if st.offline:
            st.offline = False
            self.ctx.log.info("%s: station %s back", self.device_id, f.dev_id)
            self._update_state()
        hit = st.recent.get(f.seq)
        if hit is not None and hit[0] == f.cmd and hit[1] == f.content:
            self.count("duplicate_seq")
            st.recent.move_to_end(f.seq)
            return hit[2]
        reply = self._process(st, conn, f, now, wall)
        if reply is not None:
            st.recent[f.seq] = (f.cmd, f.content, reply)
            if len(st.recent) > RECENT_SEQS:
                st.recent.popitem(last=False)
        return reply

    def _process(self, st: _Station, conn: _Conn | None, f: P.Frame, now: float, wall: float) -> bytes:
        cmd = f.cmd
        decoded: list | None = [] if self.on_frame is not None else None
        if cmd == P.CMD_DATA:
            self._data(st, f.content, now, wall, decoded)
            content = P.simple_reply_content(0, self.now6())
        elif cmd == P.CMD_HEARTBEAT:
            try:
                st.heartbeat = P.decode_heartbeat(f.content)
                if decoded is not None:
                    decoded.append(st.heartbeat)
            except P.TLVError:
                self.count("bad_heartbeat")
            content = P.simple_reply_content(0, self.now6())
        elif cmd == P.CMD_REGISTER:
            result = P.RESULT_OK
            try:
                st.dev_type, st.reg_code = P.decode_register(f.content)
                if decoded is not None:
                    decoded.append(("register", st.dev_type, st.reg_code))
                if self.cfg.reg_code is not None and st.reg_code != self.cfg.reg_code:
                    result = P.RESULT_BAD_CODE
                    self._log_once(("regcode", f.dev_id), "station %s registered with wrong code %d",
                                   f.dev_id, st.reg_code)
            except P.TLVError:
                self.count("bad_register")
                result = P.RESULT_BAD_CODE if self.cfg.reg_code is not None else P.RESULT_OK
            ip = conn.local_ip if conn is not None else "0.0.0.0"
            port = self.address[1] if self.address else 0
            content = P.register_reply_content(result, self.now6(), ip, port)
        elif cmd == P.CMD_LOGIN:
            try:
                st.sw_ver, _crc = P.decode_login(f.content)
                if decoded is not None:
                    decoded.append(("login", st.sw_ver, _crc))
            except P.TLVError:
                self.count("bad_login")
            content = P.simple_reply_content(P.RESULT_OK, self.now6())
        else:
            self.count("unknown_cmd")
            self._log_once(("cmd", f.cmd), "unknown command 0x%04X from %s; acknowledged", f.cmd, f.dev_id)
            content = P.simple_reply_content(0, self.now6())
        if decoded is not None:
            try:
                self.on_frame(st.dev_id, f, decoded)  # type: ignore[misc]
            except Exception:
                self.ctx.log.exception("on_frame hook failed")
        return P.encode_reply(f, content)

    def _data(self, st: _Station, content: bytes, now: float, wall: float, decoded: list | None) -> None:
        try:
            for t, v in P.iter_tlvs(content):
                if t == P.TLV_TAG or t == P.TLV_DOOR:
                    if len(v) < P.TAG_TLV_LEN:
                        self.count("bad_tlv")
                        continue
                    rec = P.decode_tag(v, t == P.TLV_DOOR)
                    if decoded is not None:
                        decoded.append(rec)
                    self._tag_record(st, rec, now, wall)
                elif t == P.TLV_WRISTBAND:
                    if len(v) < P.WRISTBAND_TLV_MIN:
                        self.count("bad_tlv")
                        continue
                    band = P.decode_wristband(v)
                    if decoded is not None:
                        decoded.append(band)
                    self._wristband(band, now, wall)
                elif t == P.TLV_READER:
                    if len(v) < P.READER_TLV_LEN:
                        self.count("bad_tlv")
                        continue
                    rd = P.decode_reader(v)
                    if decoded is not None:
                        decoded.append(rd)
                    self._reader(rd, now, wall)
                else:
                    self.count("unknown_tlv")
                    if decoded is not None:
                        decoded.append(("tlv", t, bytes(v)))
        except P.TLVError as e:
            self.count("bad_tlv")
            self._log_once(("tlv", st.dev_id), "station %s: %s", st.dev_id, e)

    def _tag_state(self, tag: str, now: float) -> TagStatus:
        ts = self.tags.get(tag)
        if ts is None:
            ts = self.tags[tag] = TagStatus(now)
        else:
            ts.seen = now
        return ts

    def _tag_record(self, st: _Station, rec: P.TagRecord, now: float, wall: float) -> None:
        if not rec.cc_ok:
            self.count("bad_tag_cc")
            return
        tag = rec.tag
        self.count("tag_records")
        if rec.void:
            self.count("direction_void" if rec.door else "station_stop")
        else:
            room = self._exciters.get(rec.exciter) if rec.exciter else None
            if room is None:
                room = st.room
            if room is None:
                self.count("no_room")
            elif rec.door:
                if rec.in_range:
                    if self.presence.seen(tag, room, "door", now):
                        self._entered(tag, room, wall)
                else:
                    secs = self.presence.gone(tag, room, None, now)
                    if secs is not None:
                        self._left(tag, room, secs, wall)
            elif rec.in_range:
                if self.presence.seen(tag, room, st.dev_id, now):
                    self._entered(tag, room, wall)
            else:
                secs = self.presence.gone(tag, room, st.dev_id, now)
                if secs is not None:
                    self._left(tag, room, secs, wall)
        ts = self._tag_state(tag, now)
        ts.low_bit = rec.low_battery
        ts.sos_bit = rec.sos
        self._status(tag, ts, wall, now)

    def _wristband(self, b: P.WristbandData, now: float, wall: float) -> None:
        ts = self._tag_state(b.tag, now)
        k = b.kind
        if k == P.BAND_HEART_RATE:
            ts.hr = b.value
        elif k == P.BAND_STRAP:
            ts.strap = b.value != 0
        elif k == P.BAND_BATTERY:
            ts.pct = min(int(b.value), 100)
        elif k == P.BAND_SOS:
            ts.band_sos = b.value != 0
        else:
            self.count("unknown_band_kind")
            return
        self._status(b.tag, ts, wall, now)

    def _reader(self, r: P.ReaderState, now: float, wall: float) -> None:
        if r.state not in (0, 1):
            self.count("unknown_reader_state")
            return
        ts = self._tag_state(r.tag, now)
        ts.removed = r.removed
        self._status(r.tag, ts, wall, now)

    def _status(self, tag: str, ts: TagStatus, wall: float, now: float | None = None) -> None:
        snap = ts.snapshot()
        if snap == ts.last:
            return
        now = time.monotonic() if now is None else now
        if not self._status_due(ts.last, snap, now - ts.sent_at):
            self.count("status_held")
            return
        ts.last = snap
        ts.sent_at = now
        battery, tamper, sos, hr = snap
        self._emit("tag.status", {"tag": tag, "person": self.ctx.person_for(tag), "battery": battery,
                                  "tamper": tamper, "sos": sos, "heart_rate": hr}, wall)

    def _vital_bounds(self) -> tuple[float, float]:
        """[rules.vital_signs_abnormal] low_bpm/high_bpm, as the daemon's context gives them."""
        b = getattr(self.ctx, "vital_signs_bounds", None)
        return b if b else DEFAULT_VITAL_BOUNDS

    def _battery_low(self, battery) -> bool:
        """The low-battery bit, or a percentage under [rules.tag_low_battery] below_pct."""
        if battery == "low":
            return True
        below = getattr(self.ctx, "low_battery_below_pct", None)
        return isinstance(battery, int) and battery < (DEFAULT_LOW_BATTERY_PCT if below is None else below)

    def _status_due(self, last: tuple, snap: tuple, since_sent: float) -> bool:
        battery, tamper, sos, hr = snap
        l_battery, l_tamper, l_sos, l_hr = last
        if tamper != l_tamper or sos != l_sos or self._battery_low(battery) != self._battery_low(l_battery):
            return True
        if (battery is None) != (l_battery is None) or (hr is None) != (l_hr is None):
            return True                       # a first reading, or one that went away
        if hr is not None:
            low, high = self._vital_bounds()
            zone = (hr > high) - (hr < low)   # the rule's in-range test: low <= hr <= high
            if zone != (l_hr > high) - (l_hr < low):
                return True
            if abs(hr - l_hr) >= self.cfg.hr_step_bpm:
                return True
        return since_sent >= self.cfg.status_every_s

    def _flush_held_status(self, now: float, wall: float) -> None:
        """Send changes held back by the rate bound once it allows (the timer's part)."""
        every = self.cfg.status_every_s
        for tag, ts in self.tags.items():
            if now - ts.sent_at >= every and ts.snapshot() != ts.last:
                self._status(tag, ts, wall, now)

    def _entered(self, tag: str, room: str, wall: float) -> None:
        self._emit("presence.entered", {"person": self.ctx.person_for(tag), "tag": tag, "room": room}, wall)

    def _left(self, tag: str, room: str, seconds: float, wall: float) -> None:
        self._emit("presence.left", {"person": self.ctx.person_for(tag), "tag": tag, "room": room,
                                     "seconds": round(seconds, 3)}, wall)

    # ---- timers --------------------------------------------------------------
    def _tick(self) -> None:
        try:
            self.tick(time.monotonic(), time.time())
        except Exception:
            self.count("internal_error")
            self.ctx.log.exception("%s: tick failed", self.device_id)
        if self._loop is not None and not self.stop_event.is_set():
            self._loop.call_later(self._tick_interval(), self._tick)

    def tick(self, now: float, wall: float) -> None:
        """Presence timeouts, station silence, idle connections (loop thread)."""
        for tag, room, secs in self.presence.expire(now):
            self._left(tag, room, secs, wall)
        self._flush_held_status(now, wall)
        limit = 3 * self.cfg.heartbeat_s
        changed = False
        for st in self._stations.values():
            if st.known and not st.offline and now - st.last_seen > limit:
                st.offline = True
                changed = True
                self.ctx.log.warning("%s: station %s silent for %.1f s", self.device_id, st.dev_id,
                                     now - st.last_seen)
        if changed:
            self._update_state()
        idle = self.cfg.idle_timeout_s
        for c in [c for c in self._conns if now - c.last_rx > idle]:
            self.count("idle_timeout")
            self.ctx.log.info("%s: closing idle connection %s (%s)", self.device_id, c.peer, c.dev_id)
            c.close()
        if now - self._last_prune > 60:
            self._last_prune = now
            quiet = [t for t, s in self.tags.items() if now - s.seen > TAG_PRUNE_S and s.last == _DEFAULT_STATUS]
            for t in quiet:
                del self.tags[t]
            for d in [d for d, s in self._stations.items() if not s.known and s.conn is None
                      and now - s.last_seen > TAG_PRUNE_S]:
                del self._stations[d]
                self._unknown -= 1

    def _update_state(self) -> None:
        tracked = [s for s in self._stations.values() if s.known]
        offline = sorted(s.dev_id for s in tracked if s.offline)
        if not offline:
            self.set_state("online")
            return
        limit = 3 * self.cfg.heartbeat_s
        if len(offline) == 1:
            msg = f"station {offline[0]} silent for more than {limit:g} s"
        else:
            msg = f"stations {', '.join(offline)} silent for more than {limit:g} s"
        self.set_state("offline" if len(offline) == len(tracked) else "error", msg)
