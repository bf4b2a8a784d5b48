"""One station's TCP connection to the platform server (the reader's event loop owns it).

Frames are parsed per connection (a partial frame left when it closes is counted,
``partial_frame_dropped``); every CRC-checked frame goes to the driver, whose
replies are written back in one go. A station that does not read its replies is
cut off (``MAX_WRITE_BUFFER``, counted ``slow_station``). A refusal the station
should read is sent before the connection closes (:meth:`Connection.close_after_reply`).
"""
from __future__ import annotations

import asyncio
import socket
import time
from typing import TYPE_CHECKING

from drivers.zone_reader import protocol as P

if TYPE_CHECKING:
    from drivers.zone_reader.driver import ZoneReaderDriver

MAX_WRITE_BUFFER = 1 << 20    # a station that does not read its replies is cut off


class Connection(asyncio.Protocol):
    """One TCP connection from a (would-be) station; bytes in, reply bytes out.
    The driver decides what frames mean (``drv._handle``) and who may stay."""

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
        if not drv.admission.admit(self):
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
        drv.admission.unpend(self)
        if self.parser.pending:
            drv.count("partial_frame_dropped")
            self.parser.reset()
        if self.dev_id is not None:
            st = drv._stations.get(self.dev_id)
            if st is not None and st.conn is self:
                st.conn = None
                drv.identity.promote_rival(st, "its connection closed")
            elif st is not None and st.rival is self:
                st.rival = None

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.drv.admission.unpend(self)
            self.drv._conns.discard(self)       # its slot is free now, not after connection_lost
            self.transport.abort()

    def close_after_reply(self) -> None:
        """Close once the reply being built has gone out (a refusal the station should read)."""
        if not self.closed:
            self.close_pending = True
            self.drv.admission.unpend(self)



def keepalive_probe(conn: Connection) -> None:
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
