"""Zone base stations (SPEC §4.1): casegate is the MR7901 platform server.

One asyncio event loop in its own thread owns every connection and all state
(stations, presence, tag status); nothing else mutates it, so there are no
locks on the hot path. A periodic tick on the same loop expires presence
(``presence_timeout_s``), marks stations offline after ``missed_intervals``
(3) silent ``heartbeat_s`` intervals and closes idle connections (``idle_timeout_s``).

This module is the server: it listens, answers every frame of a station
(register, login, heartbeat, data; re-sent frames get the same reply) and keeps
the reader's own device state. What the frames mean lives beside it, one job a
module:

* connection.py - one station's TCP connection (bytes in, replies out);
* admission.py - connections before login and a flood of them;
* identity.py - whose word a frame is (holders, rivals, impostors);
* stations.py - what is known of each station;
* records.py - data records -> ``presence.entered`` / ``presence.left``,
  ``door.passed`` and tag health;
* tag_status.py - ``tag.status`` and its volume bound.

Device state: station silence -> ``device.error`` (some stations) /
``device.offline`` (all tracked stations) with the station dev_ids in ``error``;
back -> ``device.online``. Per station (issue 18), the station's own device
``"<device id>/<dev_id>"`` gets ``device.offline`` / ``device.online`` (data adds
``station``, ``room``), which is what raises ``device_offline`` for it; a
station's first connection since the start is ``device.online`` for it too
(ending alarms left over from before a restart). The reader is "online" only
while every configured station is connected and trusted; before the first
stations log in it stays "starting". A flood or an identity conflict makes it
"error" with the reason.
"""
from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable, Iterable
from zoneinfo import ZoneInfo

from drivers.base import Backoff, Driver, DriverContext
from drivers.common.presence import PresenceTracker, PresentTag
from drivers.zone_reader import protocol as P
from drivers.zone_reader.admission import Admission
from drivers.zone_reader.connection import Connection
from drivers.zone_reader.identity import StationIdentity
from drivers.zone_reader.records import StationRecords, exciter_rooms
from drivers.zone_reader.stations import MAX_UNKNOWN_STATIONS, Station, station_device
from drivers.zone_reader.tag_status import TagStatusBook

PRUNE_EVERY_S = 60.0          # how often quiet tags and unknown stations are forgotten
UNKNOWN_STATION_PRUNE_S = 3600.0   # an unknown station silent this long is forgotten


class ZoneReaderDriver(Driver):
    kind = "zone_reader"

    def __init__(self, cfg: Any, ctx: DriverContext):
        super().__init__(cfg, ctx)
        self._tz = ZoneInfo(getattr(ctx, "timezone", None) or "Asia/Shanghai")
        self.presence = PresenceTracker(cfg.presence_timeout_s)
        self.status = TagStatusBook(cfg, ctx, self.count, self._emit)
        self.tags = self.status.tags
        self.records = StationRecords(ctx, exciter_rooms(cfg, ctx.log), self.presence, self.status,
                                      self.count, self._emit, self._log_once)
        self._stations: dict[str, Station] = {}
        self._conns: set[Connection] = set()
        self._known_addrs: dict[str, str] = {}         # dev_id -> address it last logged in from
        self.admission = Admission(self, time.monotonic())
        self.identity = StationIdentity(self)
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
            self._stations[dev_id] = Station(dev_id, room, now)
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
                        loop.create_server(lambda: Connection(self), host, int(port), reuse_address=True,
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
                "pending": len(self.admission.pending),
                "tags": {t: s.snapshot() for t, s in self.tags.items()},
            }
        loop = self._loop
        if loop is None or not loop.is_running():
            return take()

        async def coro():
            return take()
        return asyncio.run_coroutine_threadsafe(coro(), loop).result(timeout)

    # ---- frames ------------------------------------------------------------
    def _station(self, dev_id: str, now: float) -> Station:
        st = self._stations.get(dev_id)
        if st is None:
            room = self.cfg.stations.get(dev_id)
            st = Station(dev_id, room, now)
            if room is None:
                if self._unknown >= MAX_UNKNOWN_STATIONS:
                    self.count("unknown_station_overflow")
                    return st           # served, but not remembered
                self._unknown += 1
            self._stations[dev_id] = st
        return st

    def _handle(self, conn: Connection | None, f: P.Frame, now: float, wall: float) -> bytes | None:
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
            verdict, refusal = self._judge(st, conn, f, now, wall)
            if verdict == "refused":
                return refusal
            trusted = verdict == "ok"
        st.last_seen = now
        if st.offline:
            self._station_back(st, wall)
        repeated = st.repeated_reply(f.seq, f.cmd, f.content)
        if repeated is not None:
            self.count("duplicate_seq")
            return repeated
        reply = self._process(st, conn, f, now, wall, trusted)
        if reply is not None:
            st.remember_reply(f.seq, f.cmd, f.content, reply)
        return reply

    def _judge(self, st: Station, conn: Connection, f: P.Frame, now: float,
               wall: float) -> tuple[str, bytes | None]:
        """The identity verdict on a frame of ``conn`` ("ok", "untrusted", "refused")
        and, when refused, the refusal to send (None: closed without a word)."""
        conn.valid = True
        conn.last_frame = now
        if f.cmd == P.CMD_REGISTER and self.cfg.reg_code is not None:
            refusal = self.identity.check_reg_code(st, conn, f, now, wall)
            if refusal is not None:
                return "refused", refusal
        verdict = self.identity.claim(st, conn, f, now, wall)
        if verdict != "refused":
            return verdict, None
        self.count("refused_frames")
        if f.cmd in (P.CMD_REGISTER, P.CMD_LOGIN):
            reply = self.identity.refusal(conn, f)
            conn.close_after_reply()
            return verdict, reply
        conn.close()
        return verdict, None

    def _station_back(self, st: Station, wall: float) -> None:
        st.offline = False
        self.ctx.log.info("%s: station %s back", self.device_id, st.dev_id)
        if st.known:
            self._emit("device.online", {"device": station_device(self.device_id, st), "error": None,
                                         "station": st.dev_id, "room": st.room}, wall)
        self._update_state()

    def _process(self, st: Station, conn: Connection | None, f: P.Frame, now: float, wall: float,
                 trusted: bool = True) -> bytes:
        decoded: list | None = [] if self.on_frame is not None else None
        answer = self._ANSWERS.get(f.cmd, ZoneReaderDriver._on_unknown)
        content = answer(self, st, conn, f, now, wall, trusted, decoded)
        if decoded is not None:
            try:
                self.on_frame(st.dev_id, f, decoded)  # type: ignore[misc]
            except Exception:
                self.ctx.log.exception("on_frame hook failed")
        return P.encode_reply(f, content)

    def _on_data(self, st: Station, conn: Connection | None, f: P.Frame, now: float, wall: float,
                 trusted: bool, decoded: list | None) -> bytes:
        if trusted:
            self.records.data(st, f.content, now, wall, decoded)
        else:           # a contested station's word is not presence (SPEC §4.1 v2)
            self.count("untrusted_records")
        return P.simple_reply_content(0, self.now6())

    def _on_heartbeat(self, st: Station, conn: Connection | None, f: P.Frame, now: float, wall: float,
                      trusted: bool, decoded: list | None) -> bytes:
        try:
            hb = P.decode_heartbeat(f.content)
            if trusted:
                st.heartbeat = hb
            if decoded is not None:
                decoded.append(hb)
        except P.TLVError:
            self.count("bad_heartbeat")
        return P.simple_reply_content(0, self.now6())

    def _on_register(self, st: Station, conn: Connection | None, f: P.Frame, now: float, wall: float,
                     trusted: bool, decoded: list | None) -> bytes:
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
        return P.register_reply_content(P.RESULT_OK, self.now6(), ip, port)

    def _on_login(self, st: Station, conn: Connection | None, f: P.Frame, now: float, wall: float,
                  trusted: bool, decoded: list | None) -> bytes:
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
                self.identity.logged_in(st, conn, trusted)
        return P.simple_reply_content(result, self.now6())

    def _on_unknown(self, st: Station, conn: Connection | None, f: P.Frame, now: float, wall: float,
                    trusted: bool, decoded: list | None) -> bytes:
        self.count("unknown_cmd")
        self._log_once(("cmd", f.cmd), "unknown command 0x%04X from %s; acknowledged", f.cmd, f.dev_id)
        return P.simple_reply_content(0, self.now6())

    _ANSWERS = {P.CMD_DATA: _on_data, P.CMD_HEARTBEAT: _on_heartbeat, P.CMD_REGISTER: _on_register,
                P.CMD_LOGIN: _on_login}

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
        self.identity.tick(now, wall)
        for tag, room, secs in self.presence.expire(now):
            self.records.left(tag, room, secs, wall)
        self.status.flush_held(now, wall)
        self._silence_tick(now, wall)
        self.admission.expire_logins(now)
        self.admission.tick(now, wall)
        self._update_state()
        self._close_idle(now)
        if now - self._last_prune > PRUNE_EVERY_S:
            self._last_prune = now
            self._prune(now)

    def _silence_limit(self) -> float:
        """Seconds without a frame before a station is offline: [rules.device_offline]
        missed_intervals heartbeat intervals, as the daemon's context gives it (3 without one)."""
        missed = getattr(self.ctx, "missed_intervals", None)
        return (3 if missed is None else missed) * self.cfg.heartbeat_s

    def _silence_tick(self, now: float, wall: float) -> None:
        """A configured station silent past the limit: ``device.offline`` for its own device."""
        limit = self._silence_limit()
        for st in self._stations.values():
            if st.known and not st.offline and now - st.last_seen > limit:
                st.offline = True
                msg = f"station {st.dev_id} silent for more than {limit:g} s"
                self.ctx.log.warning("%s: station %s silent for %.1f s", self.device_id, st.dev_id,
                                     now - st.last_seen)
                self._emit("device.offline", {"device": station_device(self.device_id, st), "error": msg,
                                              "station": st.dev_id, "room": st.room}, wall)

    def _close_idle(self, now: float) -> None:
        idle = self.cfg.idle_timeout_s
        for c in [c for c in self._conns if now - c.last_rx > idle]:
            self.count("idle_timeout")
            self.ctx.log.info("%s: closing idle connection %s (%s)", self.device_id, c.peer, c.dev_id)
            c.close()

    def _prune(self, now: float) -> None:
        """Forget quiet healthy tags and long-gone unknown stations (bounded memory)."""
        self.status.prune(now)
        for d in [d for d, s in self._stations.items() if not s.known and s.conn is None
                  and now - s.last_seen > UNKNOWN_STATION_PRUNE_S]:
            del self._stations[d]
            self._unknown -= 1

    # ---- the reader's own state ------------------------------------------------
    def _problems(self, tracked: list[Station]) -> tuple[list[str], list[str]]:
        """(silent station ids, what is wrong in words) for the reader's state."""
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
        if self.admission.flood_msg:
            parts.append(self.admission.flood_msg)
        return offline, parts

    def _update_state(self, extra: dict | None = None) -> None:
        """The reader's own state from its stations, identity conflicts and a flood:
        online only while every configured station is connected and trusted."""
        tracked = [s for s in self._stations.values() if s.known]
        offline, parts = self._problems(tracked)
        connected = sum(1 for s in tracked if s.connected())
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
