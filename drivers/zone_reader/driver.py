"""Zone base stations (SPEC §4.1): casegate is the MR7901 platform server.

One asyncio event loop in its own thread owns every connection and all state
(stations, presence, tag status); nothing else mutates it, so there are no
locks on the hot path. A periodic tick on the same loop expires presence
(``presence_timeout_s``), marks stations offline after ``missed_intervals``
(3) silent ``heartbeat_s`` intervals and closes idle connections (``idle_timeout_s``).

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
  ``device.online``. Per station (issue 18), the station's own device
  ``"<device id>/<dev_id>"`` gets ``device.offline`` / ``device.online``
  (data adds ``station``, ``room``), which is what raises ``device_offline`` for
  it; a station's first connection since the start is ``device.online`` for it
  too (ending alarms left over from before a restart).
  The reader is "online" only while every configured station is connected
  and trusted; before the first stations log in it stays "starting".

Hostile network (SPEC §4.1 v2, docs/security.md):
* Connections that have not logged in are "pending": capped in total
  (``max_pending``) and per source address (``max_pending_per_ip``), closed
  after ``login_timeout_s``. At a cap the oldest pending connection is evicted
  - first one that never sent a valid frame, never a logged-in station; an
  address a configured station has logged in from before is exempt from the
  per-address cap and evicted last.
* Identity: a frame claiming a dev_id whose holder connection is alive makes
  the claimant a *rival*. The holder is dead if it sends nothing for
  ``conflict_probe_s`` (its next heartbeat; TCP keepalive probes it too): the
  rival then takes over silently (a station that rebooted). If the holder
  speaks while the rival lives, both are alive: a proven conflict. A pinned
  station (``stations = {dev = {room, ip}}``) from another address and a wrong
  ``reg_code`` are refused and closed. Each of the three journals
  ``device.error`` for the station device with ``impostor: true, kind,
  station, peers`` (-> ``station_impostor``); ``device.online`` for the
  station device after ``conflict_clear_s`` without new evidence ends it.
  While a station is contested or in conflict its records are counted
  (``untrusted_records``) and dropped, and the presence it had established is
  held (neither new people appear nor known ones vanish on its word).
* A flood (``flood_per_min`` refused/evicted/timed-out connections in a
  minute) is journaled as ``device.error`` with counts at most once a minute
  while it lasts, plus a closing one; meanwhile the reader's state is
  "error" with the counts (``casegate devices`` / ``status``).
"""
from __future__ import annotations

import asyncio
import collections
import socket
import threading
import time
from typing import Any, Callable, Iterable
from zoneinfo import ZoneInfo

from drivers.base import Backoff, Driver, DriverContext
from drivers.common.presence import PresenceTracker, PresentTag, entered_data, left_data
from drivers.zone_reader import protocol as P

RECENT_SEQS = 32              # remembered (seq -> reply) per station for duplicate absorption
MAX_WRITE_BUFFER = 1 << 20    # a station that does not read its replies is cut off
TAG_PRUNE_S = 3600.0          # forget the status of a quiet, healthy tag after this long
MAX_UNKNOWN_STATIONS = 1024   # unknown dev_ids remembered (a flood of made-up ids cannot grow memory)
FLOOD_WINDOW_S = 60.0         # the flood counts' window, and the most often a flood is journaled
MAX_FLOOD_ADDRS = 256         # source addresses counted per flood window (the rest: "other")
_DEFAULT_STATUS = (None, False, False, None)
DEFAULT_VITAL_BOUNDS = (45.0, 130.0)   # rules.catalog.VitalSigns defaults, when the context gives none
DEFAULT_LOW_BATTERY_PCT = 20.0         # rules.catalog.LowBattery default, likewise


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
                 "dev_type", "reg_code", "sw_ver", "heartbeat", "frames", "peer",
                 "rival", "rival_since", "conflict", "conflict_last", "conflict_kind", "pin",
                 "logins", "ever_connected", "impostor_journaled", "impostor_attempts")

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
        self.rival: _Conn | None = None        # a second live peer claiming this dev_id
        self.rival_since = 0.0
        self.conflict = False                  # station_impostor raised for this station
        self.conflict_last = 0.0               # last evidence of a conflict (monotonic)
        self.conflict_kind: str | None = None
        self.pin: str | None = None            # the only address it may log in from
        self.logins = 0
        self.ever_connected = False
        self.impostor_journaled: dict[str, float] = {}   # kind -> when last journaled (monotonic)
        self.impostor_attempts: dict[str, int] = {}      # kind -> offences not journaled yet


class _Conn(asyncio.Protocol):
    def __init__(self, drv: "ZoneReaderDriver"):
        self.drv = drv
        self.transport: asyncio.Transport | None = None
        self.parser = P.FrameParser(on_error=drv._parse_error)
        self.last_rx = time.monotonic()
        self.dev_id: str | None = None
        self.peer = "?"
        self.ip = "?"
        self.local_ip = "0.0.0.0"
        self.refused = False
        self.closed = False
        self.opened = self.last_rx
        self.last_frame = self.last_rx          # last CRC-valid frame (liveness for identity)
        self.valid = False                      # sent at least one CRC-valid frame
        self.authed = False                     # logged in as a configured station
        self.trusted_addr = False               # from an address a configured station logged in from
        self.registered = False                 # registered with the right reg_code on this connection
        self.reported = False                   # an impostor refusal of this connection is journaled
        self.close_pending = False              # close once the pending reply is written

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        drv = self.drv
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.ip = peer[0] if peer else "?"
        if sock:
            self.local_ip = sock[0]
        if not drv._admit(self):
            self.refused = True
            transport.abort()
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
                if self.closed or self.close_pending:
                    break
            if out and self.transport is not None and not self.closed:
                self.transport.write(b"".join(out) if len(out) > 1 else out[0])
                if self.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
                    drv.count("slow_station")
                    self.close()
            if self.close_pending and not self.closed and self.transport is not None:
                self.closed = True
                self.transport.close()          # after the refusal above has been sent
        except Exception:  # a bug must not kill the loop or the other stations
            drv.count("internal_error")
            drv.ctx.log.exception("%s: error handling data from %s", drv.device_id, self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        drv = self.drv
        drv._conns.discard(self)
        drv._unpend(self)
        if self.parser.pending:
            drv.count("partial_frame_dropped")
            self.parser.reset()
        if self.dev_id is not None:
            st = drv._stations.get(self.dev_id)
            if st is not None and st.conn is self:
                st.conn = None
                drv._promote_rival(st, "its connection closed")
            elif st is not None and st.rival is self:
                st.rival = None

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.drv._unpend(self)
            self.drv._conns.discard(self)       # its slot is free now, not after connection_lost
            self.transport.abort()

    def close_after_reply(self) -> None:
        """Close once the reply being built has gone out (a refusal the station should read)."""
        if not self.closed:
            self.close_pending = True
            self.drv._unpend(self)


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
        self._pending: dict[_Conn, None] = {}          # not logged in yet, oldest first
        self._pending_per_ip: collections.Counter[str] = collections.Counter()
        self._known_addrs: dict[str, str] = {}         # dev_id -> address it last logged in from
        self._flood_win: collections.Counter[str] = collections.Counter()   # this window's counts
        self._flood_addrs: collections.Counter[str] = collections.Counter()
        self._flood_start = time.monotonic()
        self._flood_since: float | None = None        # wall time the current flood was first journaled
        self._flood_total: collections.Counter[str] = collections.Counter()  # over the current flood
        self._flood_msg: str | None = None
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
        pins = getattr(cfg, "station_ips", None) or {}
        for dev_id, room in cfg.stations.items():
            self._stations[dev_id] = _Station(dev_id, room, now)
            self._stations[dev_id].pin = pins.get(dev_id)

    # ---- lifecycle -------------------------------------------------------
    def start(self) -> None:
        self.stop_event.clear()
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

    def restore_presence(self, present: Iterable[PresentTag]) -> int:
        """After a restart, take over who the journal says is in our rooms (the daemon
        calls this before start(); see drivers/common/presence.py)."""
        mine = set(self.cfg.stations.values()) | set(self.cfg.exciters.values())
        return self.presence.restore(present, mine, time.monotonic(), time.time())

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
            if not any(st.known for st in self._stations.values()):
                self.set_state("online")        # nothing to wait for (probe, commissioning)
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
        return max(0.02, min(0.5, c.presence_timeout_s / 5, c.heartbeat_s / 4, c.idle_timeout_s / 4,
                             c.login_timeout_s / 4))

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
                                 "silent_s": round(now - s.last_seen, 3), "peer": s.peer,
                                 "pin": s.pin, "conflict": s.conflict,
                                 "rival": s.rival.peer if s.rival is not None and not s.rival.closed else None}
                             for d, s in self._stations.items()},
                "presence": sorted(self.presence.entries),
                "connections": len(self._conns),
                "pending": len(self._pending),
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
        if not st.known:
            self.count("unknown_station")
            self._log_once(("station", f.dev_id), "unknown station %r (not in stations); replying anyway",
                           f.dev_id)
        trusted = True
        if conn is not None:
            conn.valid = True
            conn.last_frame = now
            if f.cmd == P.CMD_REGISTER and self.cfg.reg_code is not None:
                refusal = self._check_reg_code(st, conn, f, now, wall)
                if refusal is not None:
                    return refusal
            verdict = self._claim(st, conn, f, now, wall)
            if verdict == "refused":
                self.count("refused_frames")
                if f.cmd in (P.CMD_REGISTER, P.CMD_LOGIN):
                    reply = self._refusal(conn, f)
                    conn.close_after_reply()
                    return reply
                conn.close()
                return None
            trusted = verdict == "ok"
        st.last_seen = now
        if st.offline:
            st.offline = False
            self.ctx.log.info("%s: station %s back", self.device_id, f.dev_id)
            if st.known:
                self._emit("device.online", {"device": self._station_device(st), "error": None,
                                             "station": st.dev_id, "room": st.room}, wall)
            self._update_state()
        hit = st.recent.get(f.seq)
        if hit is not None and hit[0] == f.cmd and hit[1] == f.content:
            self.count("duplicate_seq")
            st.recent.move_to_end(f.seq)
            return hit[2]
        reply = self._process(st, conn, f, now, wall, trusted)
        if reply is not None:
            st.recent[f.seq] = (f.cmd, f.content, reply)
            if len(st.recent) > RECENT_SEQS:
                st.recent.popitem(last=False)
        return reply

    def _process(self, st: _Station, conn: _Conn | None, f: P.Frame, now: float, wall: float,
                 trusted: bool = True) -> bytes:
        cmd = f.cmd
        decoded: list | None = [] if self.on_frame is not None else None
        if cmd == P.CMD_DATA:
            if trusted:
                self._data(st, f.content, now, wall, decoded)
            else:           # a contested station's word is not presence (SPEC §4.1 v2)
                self.count("untrusted_records")
            content = P.simple_reply_content(0, self.now6())
        elif cmd == P.CMD_HEARTBEAT:
            try:
                hb = P.decode_heartbeat(f.content)
                if trusted:
                    st.heartbeat = hb
                if decoded is not None:
                    decoded.append(hb)
            except P.TLVError:
                self.count("bad_heartbeat")
            content = P.simple_reply_content(0, self.now6())
        elif cmd == P.CMD_REGISTER:
            result = P.RESULT_OK
            try:
                dev_type, reg_code = P.decode_register(f.content)
                if trusted:
                    st.dev_type, st.reg_code = dev_type, reg_code
                if decoded is not None:
                    decoded.append(("register", dev_type, reg_code))
            except P.TLVError:
                self.count("bad_register")
            if conn is not None:
                conn.registered = True
            ip = conn.local_ip if conn is not None else "0.0.0.0"
            port = self.address[1] if self.address else 0
            content = P.register_reply_content(result, self.now6(), ip, port)
        elif cmd == P.CMD_LOGIN:
            result = P.RESULT_OK
            try:
                sw_ver, _crc = P.decode_login(f.content)
                if trusted:
                    st.sw_ver = sw_ver
                if decoded is not None:
                    decoded.append(("login", sw_ver, _crc))
            except P.TLVError:
                self.count("bad_login")
            if conn is not None:
                if self.cfg.reg_code is not None and not conn.registered:
                    # the code is checked at register: a login that skipped it proves nothing
                    self.count("login_unregistered")
                    self._log_once(("unregistered", conn.ip), "login of %s from %s without register refused",
                                   st.dev_id, conn.peer)
                    conn.close_after_reply()
                    result = P.RESULT_REFUSED
                else:
                    self._logged_in(st, conn, trusted)
            content = P.simple_reply_content(result, self.now6())
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

    # ---- connections before login (flood) ------------------------------------
    def _admit(self, conn: _Conn) -> bool:
        """A new connection: make room for it among the pending ones, or refuse it.
        Cost is bounded by ``max_pending`` whatever the flood."""
        cfg = self.cfg
        if len(self._conns) >= cfg.max_connections:
            victim = self._pick_victim(None)
            if victim is None:           # every slot is a logged-in station
                self.count("connection_refused")
                self._flood_note("refused", conn.ip)
                self._log_once(("limit",), "connection limit %d reached, refusing %s", cfg.max_connections,
                               conn.peer)
                return False
            self._evict(victim)
        conn.trusted_addr = conn.ip in self._known_addrs.values()
        if not conn.trusted_addr and self._pending_per_ip[conn.ip] >= cfg.max_pending_per_ip:
            victim = self._pick_victim(conn.ip)
            if victim is not None:
                self._evict(victim)
        if len(self._pending) >= cfg.max_pending:
            victim = self._pick_victim(None)
            if victim is not None:
                self._evict(victim)
        self._pending[conn] = None
        self._pending_per_ip[conn.ip] += 1
        return True

    def _pick_victim(self, ip: str | None) -> _Conn | None:
        """The oldest pending connection (of ``ip``): first one that never sent a
        valid frame from an unknown address, then any from an unknown address, then any."""
        first_any = first_untrusted = None
        for c in self._pending:
            if ip is not None and c.ip != ip:
                continue
            if first_any is None:
                first_any = c
            if not c.trusted_addr:
                if not c.valid:
                    return c
                if first_untrusted is None:
                    first_untrusted = c
        return first_untrusted or first_any

    def _evict(self, c: _Conn) -> None:
        self.count("connection_evicted")
        self._flood_note("evicted", c.ip)
        c.close()

    def _unpend(self, c: _Conn) -> None:
        if c in self._pending:
            del self._pending[c]
            n = self._pending_per_ip[c.ip] - 1
            if n > 0:
                self._pending_per_ip[c.ip] = n
            else:
                del self._pending_per_ip[c.ip]

    def _flood_note(self, kind: str, ip: str) -> None:
        self._flood_win[kind] += 1
        if ip in self._flood_addrs or len(self._flood_addrs) < MAX_FLOOD_ADDRS:
            self._flood_addrs[ip] += 1
        else:
            self._flood_addrs["other"] += 1

    def _flood_data(self, counts: collections.Counter, active: bool, wall: float) -> dict:
        return {"active": active, "refused": counts["refused"], "evicted": counts["evicted"],
                "login_timeout": counts["login_timeout"], "addresses": len(self._flood_addrs),
                "top": [[a, n] for a, n in self._flood_addrs.most_common(3)],
                "since": self._flood_since, "window_s": FLOOD_WINDOW_S}

    def _flood_tick(self, now: float, wall: float) -> None:
        """Journal a flood at most once per window while it lasts, and once when it ends."""
        win = self._flood_win
        total = win["refused"] + win["evicted"] + win["login_timeout"]
        elapsed = now - self._flood_start
        if self._flood_since is None:
            if total >= self.cfg.flood_per_min:
                self._flood_since = wall
                self._flood_total = collections.Counter(win)
                self._flood_report(win, now, wall, first=True)
            elif elapsed >= FLOOD_WINDOW_S:
                self._flood_reset(now)
            return
        if elapsed < FLOOD_WINDOW_S:
            return
        if total >= self.cfg.flood_per_min:
            self._flood_total.update(win)
            self._flood_report(win, now, wall, first=False)
            return
        self._flood_total.update(win)
        t = self._flood_total
        lasted = max(0.0, wall - self._flood_since)
        msg = (f"connection flood on {self.cfg.listen} ended after {lasted:.0f} s: "
               f"{t['refused']} refused, {t['evicted']} evicted, {t['login_timeout']} login timeouts")
        self.ctx.log.warning("%s: %s", self.device_id, msg)
        self._emit("device.error", {"device": self.device_id, "error": msg,
                                    "flood": self._flood_data(t, False, wall)}, wall)
        self._flood_since = None
        self._flood_msg = None
        self._flood_reset(now)
        self._update_state()

    def _flood_report(self, win: collections.Counter, now: float, wall: float, first: bool) -> None:
        secs = max(1.0, now - self._flood_start)
        top = ", ".join(f"{a} x{n}" for a, n in self._flood_addrs.most_common(3))
        self._flood_msg = (f"connection flood on {self.cfg.listen}: {win['refused']} refused, "
                           f"{win['evicted']} evicted, {win['login_timeout']} login timeouts in {secs:.0f} s "
                           f"from {len(self._flood_addrs)} address(es) ({top}); logged-in stations kept")
        self.ctx.log.warning("%s: %s", self.device_id, self._flood_msg)
        self._update_state(extra={"flood": self._flood_data(win, True, wall)})
        self._flood_reset(now)

    def _flood_reset(self, now: float) -> None:
        self._flood_win.clear()
        self._flood_addrs.clear()
        self._flood_start = now

    # ---- identity ------------------------------------------------------------
    def _station_device(self, st: _Station) -> str:
        return f"{self.device_id}/{st.dev_id}"

    def _distrusted(self, st: _Station) -> bool:
        rival = st.rival
        return (rival is not None and not rival.closed) or (st.conflict and st.conflict_kind == "second_peer")

    def _set_holder(self, st: _Station, conn: _Conn) -> None:
        if st.ever_connected:
            with self._health_lock:
                self.health.reconnects += 1     # a station logging in again = one reconnect
        elif st.known:
            # First connection since this start: say so for the station device, which ends
            # a device_offline (or station_impostor) left over from before a restart; a
            # conflict that still goes on is detected again at once.
            self._emit("device.online", {"device": self._station_device(st), "error": None,
                                         "station": st.dev_id, "room": st.room, "peer": conn.peer},
                       time.time())
        st.ever_connected = True
        st.conn = conn
        st.peer = conn.peer

    def _claim(self, st: _Station, conn: _Conn, f: P.Frame, now: float, wall: float) -> str:
        """Whose word is this frame? "ok" (the trusted holder), "untrusted"
        (answered, records dropped) or "refused" (closed)."""
        if conn.dev_id is not None and conn.dev_id != st.dev_id:
            self.count("dev_id_mismatch")        # one connection, one station
            self._log_once(("switch", conn.peer), "connection %s speaks for %s and now %s; not trusted",
                           conn.peer, conn.dev_id, st.dev_id)
            return "untrusted"
        conn.dev_id = st.dev_id
        holder = st.conn
        if not st.known:                          # served, never anybody's presence but exciters'
            if holder is not conn:
                if holder is not None and not holder.closed:
                    self.count("station_reconnected")
                    holder.close()
                st.conn = conn
                st.peer = conn.peer
            return "ok"
        if st.pin is not None and conn.ip != st.pin:
            self._impostor(st, conn, "pinned_address",
                           f"station {st.dev_id} connected from {conn.peer}, but it is pinned to {st.pin}",
                           [p for p in (holder.peer if holder is not None and not holder.closed else None,
                                        conn.peer) if p], now, wall)
            return "refused"
        if holder is conn:
            rival = st.rival
            if rival is not None and not rival.closed and conn.last_frame >= st.rival_since:
                self._impostor(st, rival, "second_peer",
                               f"station {st.dev_id} is claimed by {rival.peer} while {conn.peer} is alive",
                               [conn.peer, rival.peer], now, wall)
            return "untrusted" if self._distrusted(st) else "ok"
        if holder is None or holder.closed:
            self._set_holder(st, conn)
            return "untrusted" if self._distrusted(st) else "ok"
        rival = st.rival
        if rival is conn:
            return "untrusted"
        if rival is None or rival.closed:
            silent = now - holder.last_frame
            if st.pin is not None and holder.ip == conn.ip:
                why = f"same pinned address {conn.ip}"
            elif silent >= self.cfg.probe_s():
                why = f"old connection {holder.peer} silent for {silent:.1f} s"
            else:
                st.rival = conn
                st.rival_since = now
                self.count("station_contested")
                self.ctx.log.warning("%s: station %s claimed by %s while %s holds it; its records are held "
                                     "until %s answers or stays silent %.0f s", self.device_id, st.dev_id,
                                     conn.peer, holder.peer, holder.peer, self.cfg.probe_s())
                _keepalive_probe(holder)
                return "untrusted"
            self.count("station_reconnected")
            self.ctx.log.info("%s: station %s reconnected from %s (%s); closing the old connection",
                              self.device_id, st.dev_id, conn.peer, why)
            holder.close()
            self._set_holder(st, conn)
            return "untrusted" if self._distrusted(st) else "ok"
        # a third peer while a rival is being checked
        self._impostor(st, conn, "second_peer",
                       f"station {st.dev_id} claimed by a third peer {conn.peer} ({holder.peer} and "
                       f"{rival.peer} already)", [holder.peer, rival.peer, conn.peer], now, wall)
        return "refused"

    def _check_reg_code(self, st: _Station, conn: _Conn, f: P.Frame, now: float, wall: float) -> bytes | None:
        try:
            _dev_type, code = P.decode_register(f.content)
        except P.TLVError:
            self.count("bad_register")
            code = None
        if code == self.cfg.reg_code:
            return None
        self._impostor(st, conn, "reg_code",
                       f"station {st.dev_id} registered from {conn.peer} with a wrong reg_code", [conn.peer],
                       now, wall)
        ip = conn.local_ip
        port = self.address[1] if self.address else 0
        conn.close_after_reply()
        return P.encode_reply(f, P.register_reply_content(P.RESULT_BAD_CODE, self.now6(), ip, port))

    def _refusal(self, conn: _Conn, f: P.Frame) -> bytes:
        if f.cmd == P.CMD_REGISTER:
            port = self.address[1] if self.address else 0
            return P.encode_reply(f, P.register_reply_content(P.RESULT_REFUSED, self.now6(), conn.local_ip, port))
        return P.encode_reply(f, P.simple_reply_content(P.RESULT_REFUSED, self.now6()))

    def _impostor(self, st: _Station, offender: _Conn, kind: str, msg: str, peers: list[str],
                  now: float, wall: float) -> None:
        """Journal a conflict over a station's identity: once per offending connection,
        and per kind at most once per FLOOD_WINDOW_S while the conflict stands (a
        misconfigured station retrying with a wrong reg_code must not fill the journal);
        ``attempts`` counts the offences since the last record."""
        st.conflict_last = now
        if offender.reported and st.conflict:
            return
        offender.reported = True
        self.count(f"impostor_{kind}")
        if not st.known:
            self.ctx.log.warning("%s: %s", self.device_id, msg)
            return
        st.impostor_attempts[kind] = st.impostor_attempts.get(kind, 0) + 1
        last = st.impostor_journaled.get(kind)
        if st.conflict and last is not None and now - last < FLOOD_WINDOW_S:
            return
        attempts = st.impostor_attempts.pop(kind)
        st.impostor_journaled[kind] = now
        self.ctx.log.warning("%s: %s", self.device_id, msg)
        if kind == "second_peer" or not st.conflict:
            st.conflict_kind = kind
        st.conflict = True
        self._emit("device.error", {"device": self._station_device(st), "error": msg, "station": st.dev_id,
                                    "room": st.room, "impostor": True, "kind": kind, "peers": peers,
                                    "attempts": attempts}, wall)
        self._update_state()

    def _logged_in(self, st: _Station, conn: _Conn, trusted: bool) -> None:
        if not st.known and any(s.known for s in self._stations.values()):
            return                     # an unknown station is answered, but stays pending
        if not conn.authed:
            conn.authed = True
            self._unpend(conn)
        st.logins += 1
        if trusted and st.known and st.conn is conn:
            self._known_addrs[st.dev_id] = conn.ip
        self._update_state()

    def _promote_rival(self, st: _Station, why: str) -> None:
        rival = st.rival
        st.rival = None
        if rival is None or rival.closed:
            return
        holder = st.conn
        if holder is not None and not holder.closed:
            holder.close()
        self.count("station_reconnected")
        self.ctx.log.info("%s: station %s continues on %s (%s)", self.device_id, st.dev_id, rival.peer, why)
        self._set_holder(st, rival)
        if rival.authed and not self._distrusted(st):
            self._known_addrs[st.dev_id] = rival.ip

    def _identity_tick(self, now: float, wall: float) -> None:
        probe = self.cfg.probe_s()
        for st in self._stations.values():
            rival = st.rival
            if rival is not None:
                if rival.closed:
                    st.rival = None
                else:
                    holder = st.conn
                    if holder is None or holder.closed:
                        self._promote_rival(st, "old connection closed")
                    elif now - holder.last_frame >= probe:
                        self._promote_rival(st, f"old connection {holder.peer} silent for "
                                                f"{now - holder.last_frame:.1f} s")
            if self._distrusted(st) and st.conn is not None and not st.conn.closed:
                # hold what the station had established: nobody appears or vanishes on its word
                # (only while it is connected: a dead station's presence times out as usual)
                self.presence.hold(st.dev_id, now)
            if (st.conflict and (st.rival is None or st.rival.closed) and not st.offline
                    and st.conn is not None and not st.conn.closed
                    and now - st.conflict_last >= self.cfg.conflict_clear_s):
                st.conflict = False
                st.conflict_kind = None
                st.impostor_journaled.clear()
                st.impostor_attempts.clear()
                if st.conn.authed:
                    self._known_addrs[st.dev_id] = st.conn.ip
                msg = (f"station {st.dev_id}: no conflicting peer for {self.cfg.conflict_clear_s:g} s; "
                       f"trusting {st.conn.peer} again")
                self.ctx.log.warning("%s: %s", self.device_id, msg)
                self._emit("device.online", {"device": self._station_device(st), "error": None,
                                             "station": st.dev_id, "room": st.room, "resolved": msg}, wall)
                self._update_state()

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

    # A station may report one passage in several records (re-sends, several
    # antennas): the same tag, door and direction within this many seconds is one.
    PASSAGE_REPEAT_S = 5.0
    _passages: dict | None = None     # (tag, door) -> (direction, monotonic time); made on first use

    def _new_passage(self, tag: str, door: str, direction: str, now: float) -> bool:
        seen = self._passages
        if seen is None:
            seen = self._passages = {}
        last = seen.get((tag, door))
        if last is not None and last[0] == direction and now - last[1] < self.PASSAGE_REPEAT_S:
            return False
        if len(seen) > 20_000:            # bounded: forget passages older than the window
            for k in [k for k, v in seen.items() if now - v[1] >= self.PASSAGE_REPEAT_S]:
                del seen[k]
        seen[(tag, door)] = (direction, now)
        return True

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
                # A door (attendance) tag record is a passage with a direction
                # (SPEC §4.1): journaled as door.passed, whatever presence says.
                door = f"{st.dev_id}:{rec.exciter}" if rec.exciter else st.dev_id
                direction = "in" if rec.in_range else "out"
                if self._new_passage(tag, door, direction, now):
                    self._emit("door.passed", {"door": door, "room": room, "tag": tag,
                                               "person": self.ctx.person_for(tag),
                                               "direction": direction}, wall)
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

    def _silence_limit(self) -> float:
        """Seconds without a frame before a station is offline: [rules.device_offline]
        missed_intervals heartbeat intervals, as the daemon's context gives it (3 without one)."""
        missed = getattr(self.ctx, "missed_intervals", None)
        return (3 if missed is None else missed) * self.cfg.heartbeat_s

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
        self._emit("presence.entered", entered_data(self.ctx, tag, room), wall)

    def _left(self, tag: str, room: str, seconds: float, wall: float) -> None:
        self._emit("presence.left", left_data(self.ctx, tag, room, seconds), wall)

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
        self._identity_tick(now, wall)
        for tag, room, secs in self.presence.expire(now):
            self._left(tag, room, secs, wall)
        self._flush_held_status(now, wall)
        limit = self._silence_limit()
        for st in self._stations.values():
            if st.known and not st.offline and now - st.last_seen > limit:
                st.offline = True
                msg = f"station {st.dev_id} silent for more than {limit:g} s"
                self.ctx.log.warning("%s: station %s silent for %.1f s", self.device_id, st.dev_id,
                                     now - st.last_seen)
                self._emit("device.offline", {"device": self._station_device(st), "error": msg,
                                              "station": st.dev_id, "room": st.room}, wall)
        deadline = now - self.cfg.login_timeout_s
        late = []
        for c in self._pending:                    # oldest first: stop at the first young one
            if c.opened > deadline:
                break
            late.append(c)
        for c in late:
            self.count("login_timeout")
            self._flood_note("login_timeout", c.ip)
            c.close()
        self._flood_tick(now, wall)
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

    def _update_state(self, extra: dict | None = None) -> None:
        """The reader's own state from its stations, identity conflicts and a flood:
        online only while every configured station is connected and trusted."""
        tracked = [s for s in self._stations.values() if s.known]
        limit = self._silence_limit()
        offline = sorted(s.dev_id for s in tracked if s.offline)
        parts = []
        if len(offline) == 1:
            parts.append(f"station {offline[0]} silent for more than {limit:g} s")
        elif offline:
            parts.append(f"stations {', '.join(offline)} silent for more than {limit:g} s")
        contested = sorted(s.dev_id for s in tracked if s.conflict or (s.rival is not None and not s.rival.closed))
        if contested:
            parts.append(f"identity conflict on station{'s' if len(contested) > 1 else ''} {', '.join(contested)}")
        if self._flood_msg:
            parts.append(self._flood_msg)
        connected = sum(1 for s in tracked if s.conn is not None and not s.conn.closed)
        current = self.health.state
        if tracked and len(offline) == len(tracked):
            state, msg = "offline", "; ".join(parts)
        elif parts:
            state, msg = "error", "; ".join(parts)
        elif connected == len(tracked):
            state, msg = "online", None
        elif connected == 0 and current != "starting":
            state, msg = "error", f"no station connected ({len(tracked)} configured)"
        else:
            return      # starting, or a station between connections (offline after 3 heartbeats)
        self._set_health(state, msg, extra)

    def _set_health(self, state: str, error: str | None, extra: dict | None = None) -> None:
        """Like Driver.set_state (one event per change), with extra event data; a
        reader's ``reconnects`` count station re-logins, not its own state changes."""
        with self._health_lock:
            if state == self.health.state and error == self.health.error:
                return
            self.health.state = state
            self.health.error = error
        if state == "online":
            self.ctx.log.info("%s online", self.device_id)
        else:
            self.ctx.log.warning("%s %s: %s", self.device_id, state, error)
        self.ctx.emit(f"device.{state}", {"device": self.device_id, "error": error, **(extra or {})})


def _keepalive_probe(conn: _Conn) -> None:
    """Make the kernel probe a contested holder: a rebooted station's host answers
    with a reset and the old connection dies within seconds."""
    sock = conn.transport.get_extra_info("socket") if conn.transport is not None else None
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for opt, v in (("TCP_KEEPIDLE", 1), ("TCP_KEEPINTVL", 1), ("TCP_KEEPCNT", 3)):
            if hasattr(socket, opt):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), v)
    except OSError:
        pass
