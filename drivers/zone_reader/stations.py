"""What the reader knows of each base station (SPEC §4.1): room, connection, liveness, identity.

A station is configured (``known``: it has a room, it is tracked for presence and
silence) or unknown (answered, remembered up to ``MAX_UNKNOWN_STATIONS`` so a
flood of made-up dev_ids cannot grow memory). Each station is also a device of
its own, ``"<reader id>/<dev_id>"`` (:func:`station_device`), which gets
``device.offline`` / ``device.online`` and ``station_impostor`` records (issue 18).
"""
from __future__ import annotations

import collections
from typing import TYPE_CHECKING

from drivers.zone_reader import protocol as P

if TYPE_CHECKING:
    from drivers.zone_reader.connection import Connection

RECENT_SEQS = 32              # remembered (seq -> reply) per station for duplicate absorption
MAX_UNKNOWN_STATIONS = 1024   # unknown dev_ids remembered (a flood of made-up ids cannot grow memory)


class Station:
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
        self.conn: Connection | None = None
        self.recent: collections.OrderedDict[int, tuple[int, bytes, bytes]] = collections.OrderedDict()
        self.dev_type: int | None = None
        self.reg_code: int | None = None
        self.sw_ver: int | None = None
        self.heartbeat: P.HeartbeatInfo | None = None
        self.frames = 0
        self.peer: str | None = None
        self.rival: Connection | None = None   # a second live peer claiming this dev_id
        self.rival_since = 0.0
        self.conflict = False                  # station_impostor raised for this station
        self.conflict_last = 0.0               # last evidence of a conflict (monotonic)
        self.conflict_kind: str | None = None
        self.pin: str | None = None            # the only address it may log in from
        self.logins = 0
        self.ever_connected = False
        self.impostor_journaled: dict[str, float] = {}   # kind -> when last journaled (monotonic)
        self.impostor_attempts: dict[str, int] = {}      # kind -> offences not journaled yet

    def connected(self) -> bool:
        return self.conn is not None and not self.conn.closed

    def remember_reply(self, seq: int, cmd: int, content: bytes, reply: bytes) -> None:
        """Keep the reply to ``seq`` so a re-sent frame gets the same answer (bounded)."""
        self.recent[seq] = (cmd, content, reply)
        if len(self.recent) > RECENT_SEQS:
            self.recent.popitem(last=False)

    def repeated_reply(self, seq: int, cmd: int, content: bytes) -> bytes | None:
        """The reply already sent to this very frame, if it is a re-send."""
        hit = self.recent.get(seq)
        if hit is not None and hit[0] == cmd and hit[1] == content:
            self.recent.move_to_end(seq)
            return hit[2]
        return None


def station_device(reader_id: str, st: Station) -> str:
    """The station's own device id: ``"<reader id>/<dev_id>"``."""
    return f"{reader_id}/{st.dev_id}"
