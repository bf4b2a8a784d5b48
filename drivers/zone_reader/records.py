"""What a station's data records mean: presence, door passages and tag health.

A trusted station's ``CMD_DATA`` content is a list of TLVs (SPEC §4.1): tag and
door-tag records, wristband readings and reader (tamper) states. Here they become
``presence.entered`` / ``presence.left`` (through the shared
:class:`~drivers.common.presence.PresenceTracker`), ``door.passed`` and the
inputs of ``tag.status`` (:class:`~drivers.zone_reader.tag_status.TagStatusBook`).

``presence.entered`` [person, tag, room] goes out on a tag's first in-range
record in a room; ``presence.left`` [person, tag, room, seconds] on an
out-of-range record (from every station of that room that heard it) or after
``presence_timeout_s`` without a record (the driver's tick). Presence is per
(tag, room); the room is the exciter's room when the record carries a mapped
exciter address, else the station's room. A door (attendance) tag record is also
a ``door.passed`` with its direction. Runs on the reader's
event-loop thread only; ``now`` is monotonic, ``wall`` the event time.
"""
from __future__ import annotations

from typing import Any, Callable

from drivers.common.presence import PresenceTracker, entered_data, left_data
from drivers.zone_reader import protocol as P
from drivers.zone_reader.tag_status import TagStatusBook


def exciter_rooms(cfg: Any, log: Any) -> dict[int, str]:
    """``exciters`` of the config with their addresses as numbers (a non-number is logged, ignored)."""
    rooms: dict[int, str] = {}
    for k, room in cfg.exciters.items():
        try:
            rooms[int(str(k), 0)] = room
        except ValueError:
            log.warning("%s: exciter address %r is not a number; ignored", cfg.id, k)
    return rooms


class PassageFilter:
    """A station may report one passage in several records (re-sends, several
    antennas): the same tag, door and direction within ``REPEAT_S`` seconds is one."""

    REPEAT_S = 5.0
    MAX_REMEMBERED = 20_000

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], tuple[str, float]] = {}   # (tag, door) -> (direction, monotonic)

    def new(self, tag: str, door: str, direction: str, now: float) -> bool:
        seen = self.seen
        last = seen.get((tag, door))
        if last is not None and last[0] == direction and now - last[1] < self.REPEAT_S:
            return False
        if len(seen) > self.MAX_REMEMBERED:      # bounded: forget passages older than the window
            for k in [k for k, v in seen.items() if now - v[1] >= self.REPEAT_S]:
                del seen[k]
        seen[(tag, door)] = (direction, now)
        return True


class StationRecords:
    """Turns one station's data records into events. ``count``, ``emit(type, data,
    wall)`` and ``log_once(key, msg, *args)`` are the driver's."""

    def __init__(self, ctx: Any, exciters: dict[int, str], presence: PresenceTracker, status: TagStatusBook,
                 count: Callable[[str], None], emit: Callable[[str, dict, float], None],
                 log_once: Callable[..., None]):
        self.ctx = ctx
        self.exciters = exciters
        self.presence = presence
        self.status = status
        self.count = count
        self.emit = emit
        self.log_once = log_once
        self.passages = PassageFilter()

    def data(self, st: Any, content: bytes, now: float, wall: float, decoded: list | None) -> None:
        """One ``CMD_DATA`` content of station ``st``; ``decoded`` (the probe's) collects what was read."""
        try:
            for t, v in P.iter_tlvs(content):
                item = self._tlv(st, t, v, now, wall)
                if decoded is not None and item is not None:
                    decoded.append(item)
        except P.TLVError as e:
            self.count("bad_tlv")
            self.log_once(("tlv", st.dev_id), "station %s: %s", st.dev_id, e)

    def _tlv(self, st: Any, t: int, v: bytes, now: float, wall: float) -> Any:
        if t == P.TLV_TAG or t == P.TLV_DOOR:
            if len(v) < P.TAG_TLV_LEN:
                self.count("bad_tlv")
                return None
            rec = P.decode_tag(v, t == P.TLV_DOOR)
            self.tag_record(st, rec, now, wall)
            return rec
        if t == P.TLV_WRISTBAND:
            if len(v) < P.WRISTBAND_TLV_MIN:
                self.count("bad_tlv")
                return None
            band = P.decode_wristband(v)
            self.wristband(band, now, wall)
            return band
        if t == P.TLV_READER:
            if len(v) < P.READER_TLV_LEN:
                self.count("bad_tlv")
                return None
            rd = P.decode_reader(v)
            self.reader(rd, now, wall)
            return rd
        self.count("unknown_tlv")
        return ("tlv", t, bytes(v))

    def tag_record(self, st: Any, rec: P.TagRecord, now: float, wall: float) -> None:
        if not rec.cc_ok:
            self.count("bad_tag_cc")
            return
        self.count("tag_records")
        if rec.void:
            self.count("direction_void" if rec.door else "station_stop")
        else:
            self._presence(st, rec, now, wall)
        ts = self.status.tag(rec.tag, now)
        ts.low_bit = rec.low_battery
        ts.sos_bit = rec.sos
        self.status.report(rec.tag, ts, wall, now)

    def _presence(self, st: Any, rec: P.TagRecord, now: float, wall: float) -> None:
        tag = rec.tag
        room = self.exciters.get(rec.exciter) if rec.exciter else None
        if room is None:
            room = st.room
        if room is None:
            self.count("no_room")
            return
        seen_as: str = st.dev_id           # the source that hears it in the room
        gone_from: str | None = st.dev_id  # the source that stops hearing it (None: every source)
        if rec.door:
            # A door (attendance) tag record is a passage with a direction
            # (SPEC §4.1): journaled as door.passed, whatever presence says.
            door = f"{st.dev_id}:{rec.exciter}" if rec.exciter else st.dev_id
            direction = "in" if rec.in_range else "out"
            if self.passages.new(tag, door, direction, now):
                self.emit("door.passed", {"door": door, "room": room, "tag": tag,
                                          "person": self.ctx.person_for(tag), "direction": direction}, wall)
            seen_as, gone_from = "door", None    # out through the door: gone from every source
        if rec.in_range:
            if self.presence.seen(tag, room, seen_as, now):
                self.entered(tag, room, wall)
        else:
            secs = self.presence.gone(tag, room, gone_from, now)
            if secs is not None:
                self.left(tag, room, secs, wall)

    def wristband(self, b: P.WristbandData, now: float, wall: float) -> None:
        ts = self.status.tag(b.tag, now)
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
        self.status.report(b.tag, ts, wall, now)

    def reader(self, r: P.ReaderState, now: float, wall: float) -> None:
        if r.state not in (0, 1):
            self.count("unknown_reader_state")
            return
        ts = self.status.tag(r.tag, now)
        ts.removed = r.removed
        self.status.report(r.tag, ts, wall, now)

    def entered(self, tag: str, room: str, wall: float) -> None:
        self.emit("presence.entered", entered_data(self.ctx, tag, room), wall)

    def left(self, tag: str, room: str, seconds: float, wall: float) -> None:
        self.emit("presence.left", left_data(self.ctx, tag, room, seconds), wall)
