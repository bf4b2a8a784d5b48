"""Whose word a frame is: station identity on a hostile network (SPEC §4.1 v2, docs/security.md).

A frame claiming a dev_id whose holder connection is alive makes the claimant a
*rival*. The holder is dead if it sends nothing for ``conflict_probe_s`` (its next
heartbeat; TCP keepalive probes it too): the rival then takes over silently (a
station that rebooted). If the holder speaks while the rival lives, both are
alive: a proven conflict. A pinned station (``stations = {dev = {room, ip}}``)
from another address and a wrong ``reg_code`` are refused and closed. Each of the
three journals ``device.error`` for the station device with ``impostor: true,
kind, station, peers`` (-> ``station_impostor``); ``device.online`` for the
station device after ``conflict_clear_s`` without new evidence ends it. While a
station is contested or in conflict its records are counted
(``untrusted_records``) and dropped, and the presence it had established is held
(neither new people appear nor known ones vanish on its word).

Runs on the reader's event-loop thread only.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from drivers.zone_reader import protocol as P
from drivers.zone_reader.connection import Connection, keepalive_probe
from drivers.zone_reader.stations import Station, station_device

if TYPE_CHECKING:
    from drivers.zone_reader.driver import ZoneReaderDriver

IMPOSTOR_RECORD_EVERY_S = 60.0   # per station and kind, while a conflict stands (as the flood window)


class StationIdentity:
    """Holders, rivals and conflicts of the reader's stations. ``drv`` gives the
    stations, config, counters, log, journal and the reader's state."""

    def __init__(self, drv: "ZoneReaderDriver"):
        self.drv = drv

    def distrusted(self, st: Station) -> bool:
        rival = st.rival
        return (rival is not None and not rival.closed) or (st.conflict and st.conflict_kind == "second_peer")

    def _verdict(self, st: Station) -> str:
        return "untrusted" if self.distrusted(st) else "ok"

    def set_holder(self, st: Station, conn: Connection) -> None:
        d = self.drv
        if st.ever_connected:
            with d._health_lock:
                d.health.reconnects += 1     # a station logging in again = one reconnect
        elif st.known:
            # First connection since this start: say so for the station device, which ends
            # a device_offline (or station_impostor) left over from before a restart; a
            # conflict that still goes on is detected again at once.
            d._emit("device.online", {"device": station_device(d.device_id, st), "error": None,
                                      "station": st.dev_id, "room": st.room, "peer": conn.peer}, time.time())
        st.ever_connected = True
        st.conn = conn
        st.peer = conn.peer

    def claim(self, st: Station, conn: Connection, f: P.Frame, now: float, wall: float) -> str:
        """Whose word is this frame? "ok" (the trusted holder), "untrusted"
        (answered, records dropped) or "refused" (closed)."""
        d = self.drv
        if conn.dev_id is not None and conn.dev_id != st.dev_id:
            d.count("dev_id_mismatch")        # one connection, one station
            d._log_once(("switch", conn.peer), "connection %s speaks for %s and now %s; not trusted",
                        conn.peer, conn.dev_id, st.dev_id)
            return "untrusted"
        conn.dev_id = st.dev_id
        holder = st.conn
        if not st.known:                          # served, never anybody's presence but exciters'
            if holder is not conn:
                if holder is not None and not holder.closed:
                    d.count("station_reconnected")
                    holder.close()
                st.conn = conn
                st.peer = conn.peer
            return "ok"
        if st.pin is not None and conn.ip != st.pin:
            self.impostor(st, conn, "pinned_address",
                          f"station {st.dev_id} connected from {conn.peer}, but it is pinned to {st.pin}",
                          [p for p in (holder.peer if holder is not None and not holder.closed else None,
                                       conn.peer) if p], now, wall)
            return "refused"
        if holder is conn:
            rival = st.rival
            if rival is not None and not rival.closed and conn.last_frame >= st.rival_since:
                self.impostor(st, rival, "second_peer",
                              f"station {st.dev_id} is claimed by {rival.peer} while {conn.peer} is alive",
                              [conn.peer, rival.peer], now, wall)
            return self._verdict(st)
        if holder is None or holder.closed:
            self.set_holder(st, conn)
            return self._verdict(st)
        return self._contest(st, conn, holder, now, wall)

    def _contest(self, st: Station, conn: Connection, holder: Connection, now: float, wall: float) -> str:
        """``conn`` claims a configured station whose holder connection is still open."""
        d = self.drv
        rival = st.rival
        if rival is conn:
            return "untrusted"
        if rival is not None and not rival.closed:
            # a third peer while a rival is being checked
            self.impostor(st, conn, "second_peer",
                          f"station {st.dev_id} claimed by a third peer {conn.peer} ({holder.peer} and "
                          f"{rival.peer} already)", [holder.peer, rival.peer, conn.peer], now, wall)
            return "refused"
        silent = now - holder.last_frame
        if st.pin is not None and holder.ip == conn.ip:
            why = f"same pinned address {conn.ip}"
        elif silent >= d.cfg.probe_s():
            why = f"old connection {holder.peer} silent for {silent:.1f} s"
        else:
            st.rival = conn
            st.rival_since = now
            d.count("station_contested")
            d.ctx.log.warning("%s: station %s claimed by %s while %s holds it; its records are held "
                              "until %s answers or stays silent %.0f s", d.device_id, st.dev_id,
                              conn.peer, holder.peer, holder.peer, d.cfg.probe_s())
            keepalive_probe(holder)
            return "untrusted"
        d.count("station_reconnected")
        d.ctx.log.info("%s: station %s reconnected from %s (%s); closing the old connection",
                       d.device_id, st.dev_id, conn.peer, why)
        holder.close()
        self.set_holder(st, conn)
        return self._verdict(st)

    def check_reg_code(self, st: Station, conn: Connection, f: P.Frame, now: float, wall: float) -> bytes | None:
        """None if the register frame carries the configured reg_code, else the refusal to send."""
        d = self.drv
        try:
            _dev_type, code = P.decode_register(f.content)
        except P.TLVError:
            d.count("bad_register")
            code = None
        if code == d.cfg.reg_code:
            return None
        self.impostor(st, conn, "reg_code",
                      f"station {st.dev_id} registered from {conn.peer} with a wrong reg_code", [conn.peer],
                      now, wall)
        port = d.address[1] if d.address else 0
        conn.close_after_reply()
        return P.encode_reply(f, P.register_reply_content(P.RESULT_BAD_CODE, d.now6(), conn.local_ip, port))

    def refusal(self, conn: Connection, f: P.Frame) -> bytes:
        d = self.drv
        if f.cmd == P.CMD_REGISTER:
            port = d.address[1] if d.address else 0
            return P.encode_reply(f, P.register_reply_content(P.RESULT_REFUSED, d.now6(), conn.local_ip, port))
        return P.encode_reply(f, P.simple_reply_content(P.RESULT_REFUSED, d.now6()))

    def impostor(self, st: Station, offender: Connection, kind: str, msg: str, peers: list[str],
                 now: float, wall: float) -> None:
        """Journal a conflict over a station's identity: once per offending connection,
        and per kind at most once per IMPOSTOR_RECORD_EVERY_S while the conflict stands (a
        misconfigured station retrying with a wrong reg_code must not fill the journal);
        ``attempts`` counts the offences since the last record."""
        d = self.drv
        st.conflict_last = now
        if offender.reported and st.conflict:
            return
        offender.reported = True
        d.count(f"impostor_{kind}")
        if not st.known:
            d.ctx.log.warning("%s: %s", d.device_id, msg)
            return
        st.impostor_attempts[kind] = st.impostor_attempts.get(kind, 0) + 1
        last = st.impostor_journaled.get(kind)
        if st.conflict and last is not None and now - last < IMPOSTOR_RECORD_EVERY_S:
            return
        attempts = st.impostor_attempts.pop(kind)
        st.impostor_journaled[kind] = now
        d.ctx.log.warning("%s: %s", d.device_id, msg)
        if kind == "second_peer" or not st.conflict:
            st.conflict_kind = kind
        st.conflict = True
        d._emit("device.error", {"device": station_device(d.device_id, st), "error": msg, "station": st.dev_id,
                                 "room": st.room, "impostor": True, "kind": kind, "peers": peers,
                                 "attempts": attempts}, wall)
        d._update_state()

    def logged_in(self, st: Station, conn: Connection, trusted: bool) -> None:
        d = self.drv
        if not st.known and any(s.known for s in d._stations.values()):
            return                     # an unknown station is answered, but stays pending
        if not conn.authed:
            conn.authed = True
            d.admission.unpend(conn)
        st.logins += 1
        if trusted and st.known and st.conn is conn:
            d._known_addrs[st.dev_id] = conn.ip
        d._update_state()

    def promote_rival(self, st: Station, why: str) -> None:
        """The rival takes the station over (the holder closed or fell silent)."""
        d = self.drv
        rival = st.rival
        st.rival = None
        if rival is None or rival.closed:
            return
        holder = st.conn
        if holder is not None and not holder.closed:
            holder.close()
        d.count("station_reconnected")
        d.ctx.log.info("%s: station %s continues on %s (%s)", d.device_id, st.dev_id, rival.peer, why)
        self.set_holder(st, rival)
        if rival.authed and not self.distrusted(st):
            d._known_addrs[st.dev_id] = rival.ip

    def tick(self, now: float, wall: float) -> None:
        """Settle rivals, hold a contested station's presence, end conflicts that went quiet."""
        probe = self.drv.cfg.probe_s()
        for st in self.drv._stations.values():
            rival = st.rival
            if rival is not None:
                if rival.closed:
                    st.rival = None
                else:
                    holder = st.conn
                    if holder is None or holder.closed:
                        self.promote_rival(st, "old connection closed")
                    elif now - holder.last_frame >= probe:
                        self.promote_rival(st, f"old connection {holder.peer} silent for "
                                               f"{now - holder.last_frame:.1f} s")
            if self.distrusted(st) and st.connected():
                # hold what the station had established: nobody appears or vanishes on its word
                # (only while it is connected: a dead station's presence times out as usual)
                self.drv.presence.hold(st.dev_id, now)
            if (st.conflict and (st.rival is None or st.rival.closed) and not st.offline and st.connected()
                    and now - st.conflict_last >= self.drv.cfg.conflict_clear_s):
                self._trust_again(st, wall)

    def _trust_again(self, st: Station, wall: float) -> None:
        d = self.drv
        assert st.conn is not None
        st.conflict = False
        st.conflict_kind = None
        st.impostor_journaled.clear()
        st.impostor_attempts.clear()
        if st.conn.authed:
            d._known_addrs[st.dev_id] = st.conn.ip
        msg = (f"station {st.dev_id}: no conflicting peer for {d.cfg.conflict_clear_s:g} s; "
               f"trusting {st.conn.peer} again")
        d.ctx.log.warning("%s: %s", d.device_id, msg)
        d._emit("device.online", {"device": station_device(d.device_id, st), "error": None,
                                  "station": st.dev_id, "room": st.room, "resolved": msg}, wall)
        d._update_state()
