"""Simulator -> ZoneReaderDriver over real TCP on 127.0.0.1 (SPEC §4.1)."""
from __future__ import annotations

import logging
import socket
import threading
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo


from drivers.base import PrintContext
from drivers.zone_reader import protocol as P
from drivers.zone_reader.driver import ZoneReaderDriver
from drivers.zone_reader.simulator import StationSimulator, ZoneSite

from helpers.polling import poll, wait_for
from helpers.zone_reader import S1, S2, TAG, make_cfg, raw_client, read_frames

# ---- replies --------------------------------------------------------------------
def test_handshake_replies_byte_layout(rig):
    tz = "Pacific/Kiritimati"           # UTC+14: a reply in UTC or machine time would be caught
    r = rig(timezone=tz)
    s = raw_client(r.port)
    s.sendall(P.encode_frame(P.CMD_REGISTER, 0x01020304, S1, P.register_content(0x7901, 99), ver=2))
    (f,) = read_frames(s, 1)
    assert (f.cmd, f.seq, f.dev_id, f.ver) == (0x8008, 0x01020304, S1, 2)
    c = f.content
    assert len(c) == 41 and c[0] == 0
    got = datetime(2000 + c[1], c[2], c[3], c[4], c[5], c[6], tzinfo=ZoneInfo(tz))
    assert abs(got - datetime.now(ZoneInfo(tz))) < timedelta(seconds=3)
    assert c[7:39].rstrip(b"\0") == b"127.0.0.1"
    assert c[39:41] == r.port.to_bytes(2, "little")
    s.sendall(P.encode_frame(P.CMD_LOGIN, 5, S1, P.login_content(0x0106, 0)))
    s.sendall(P.encode_frame(P.CMD_HEARTBEAT, 6, S1, P.heartbeat_content(10 << 8, 0, 0, 1, bytes(6))))
    s.sendall(P.encode_frame(P.CMD_DATA, 7, S1, b""))
    fs = read_frames(s, 3)
    assert [(f.cmd, f.seq, f.dev_id, len(f.content), f.content[0]) for f in fs] == [
        (0x8001, 5, S1, 7, 0), (0x8003, 6, S1, 7, 0), (0x8004, 7, S1, 7, 0)]
    s.close()


def test_register_with_wrong_code_gets_fe(rig):
    """A wrong reg_code is answered 0xFE and the connection closed (v2: one guess per
    connection, each on the record); the right code on a new connection is accepted."""
    r = rig(cfg=make_cfg(reg_code=1234))
    s = raw_client(r.port)
    s.sendall(P.encode_frame(P.CMD_REGISTER, 1, S1, P.register_content(1, 999)))
    s.sendall(P.encode_frame(P.CMD_REGISTER, 2, S1, P.register_content(1, 1234)))
    (a,) = read_frames(s, 2)
    assert (a.seq, a.content[0]) == (1, 0xFE)
    s.settimeout(2)
    assert s.recv(100) == b""
    s.close()
    s = raw_client(r.port)
    s.sendall(P.encode_frame(P.CMD_LOGIN, 3, S1, P.login_content(1, 0)))    # login without register
    (c,) = read_frames(s, 1)
    assert (c.seq, c.content[0]) == (3, 0xFF)
    s.close()
    s = raw_client(r.port)
    s.sendall(P.encode_frame(P.CMD_REGISTER, 4, S1, P.register_content(1, 1234)))
    s.sendall(P.encode_frame(P.CMD_LOGIN, 5, S1, P.login_content(1, 0)))
    b, d = read_frames(s, 2)
    assert (b.seq, b.content[0], d.seq, d.content[0]) == (4, 0x00, 5, 0x00)
    s.close()
    (_, e), = [(t, d) for t, d in r.events("device.error") if d.get("impostor")]
    assert e["device"] == f"zone-stations/{S1}" and e["kind"] == "reg_code" and e["station"] == S1


def test_simulator_handshake_and_reports(rig):
    r = rig(cfg=make_cfg(stations={S1: "interrogation-1"}))
    sim = r.station()
    assert sim.register_reply[0] == 0 and sim.register_reply[3] == r.port
    assert sim.login_result == 0
    sim.add_tag(TAG)
    r.wait(lambda t, d: t == "presence.entered")
    assert r.drv.health.state == "online"
    assert r.drv.health.frames_ok >= 3


# ---- presence -------------------------------------------------------------------
def test_presence_entered_left_and_move(rig):
    r = rig()
    site = ZoneSite("127.0.0.1", r.port, [S1, S2], report_s=0.1, reply_timeout_s=0.5)
    r.sims += site.stations.values()
    site.start()
    assert site.wait_logged_in()
    site.move(TAG, S1)
    r.wait(lambda t, d: t == "presence.entered" and d["room"] == "interrogation-1")
    t_in = time.monotonic()                    # entered by now
    r.settle(site[S1], reports=3)              # several reports: still one entered
    t_move = time.monotonic()                  # still in the room until at least now
    site.move(TAG, S2)
    r.wait(lambda t, d: t == "presence.entered" and d["room"] == "waiting-1")
    r.wait(lambda t, d: t == "presence.left" and d["room"] == "interrogation-1")
    site.move(TAG, None)
    r.wait(lambda t, d: t == "presence.left" and d["room"] == "waiting-1")
    pres = [(t, d["room"]) for t, d in r.events() if t.startswith("presence.")]
    assert pres[0] == ("presence.entered", "interrogation-1")
    assert sorted(pres) == sorted([("presence.entered", "interrogation-1"), ("presence.left", "interrogation-1"),
                                   ("presence.entered", "waiting-1"), ("presence.left", "waiting-1")])
    entered = r.events("presence.entered")[0][1]
    assert entered == {"person": "suspect-1", "tag": TAG, "room": "interrogation-1"}
    left = [d for t, d in r.events("presence.left") if d["room"] == "interrogation-1"][0]
    assert set(left) == {"person", "tag", "room", "seconds"}
    assert left["seconds"] >= t_move - t_in > 0         # the time in the room (several reports)


def test_presence_timeout(rig):
    r = rig(cfg=make_cfg(presence_timeout_s=0.5))
    sim = r.station()
    sim.add_tag(TAG)
    r.wait(lambda t, d: t == "presence.entered")
    # still reporting: no timeout. 9 more answered reports, every report_s=0.1 s, are >= 0.7 s
    # after the one that entered (the simulator never reports sooner than report_s after the last)
    r.settle(sim, reports=9, nudge=False)
    assert not r.events("presence.left")
    t0 = time.monotonic()
    sim.remove_tag(TAG, announce=False)    # silent, no out-of-range record
    _, d = r.wait(lambda t, d: t == "presence.left", timeout=3)
    assert time.monotonic() - t0 > 0.3         # by the presence timeout, not at once
    assert d["room"] == "interrogation-1" and d["seconds"] >= 1.0


def test_exciter_maps_to_room(rig):
    r = rig()
    sim = r.station()
    sim.add_tag(TAG, exciter=12)
    r.wait(lambda t, d: t == "presence.entered" and d["room"] == "exit")
    sim.add_tag("00000001", exciter=99)    # unmapped exciter: the station's room
    r.wait(lambda t, d: t == "presence.entered" and d["tag"] == "00000001" and d["room"] == "interrogation-1")


def test_door_tags_in_and_out(rig):
    r = rig()
    sim = r.station(dev_id=S2)
    sim.door_pass(TAG, inward=True)
    r.wait(lambda t, d: t == "presence.entered" and d["room"] == "waiting-1")
    sim.door_pass(TAG, inward=False)
    r.wait(lambda t, d: t == "presence.left" and d["room"] == "waiting-1")
    sim.door_pass("0000ABCD", inward=True, exciter=12)
    r.wait(lambda t, d: t == "presence.entered" and d["tag"] == "0000ABCD" and d["room"] == "exit")
    sim.door_pass("0000ABCD", inward=True, one_sided=True)      # direction void: no presence change
    r.handled("direction_void", 1)
    assert r.drv.health.counters.get("direction_void") == 1
    assert [d["room"] for t, d in r.events("presence.entered") if d["tag"] == "0000ABCD"] == ["exit"]
    assert not [d for t, d in r.events("presence.left") if d["tag"] == "0000ABCD"]


def test_door_tags_are_journaled_as_door_passed_with_direction(rig):
    """SPEC v2 door.passed [door, room, tag, person, direction]: every door-tag record
    with a direction, even when presence does not change (the tag was not in the room)."""
    r = rig()
    sim = r.station(dev_id=S2)
    sim.door_pass(TAG, inward=False)             # out, never seen in: no presence.left, but a passage
    r.wait(lambda t, d: t == "door.passed" and d["direction"] == "out")
    sim.door_pass(TAG, inward=True, exciter=12)
    _, d = r.wait(lambda t, d: t == "door.passed" and d["direction"] == "in")
    assert d == {"door": f"{S2}:12", "room": "exit", "tag": TAG, "person": "suspect-1", "direction": "in"}
    n = r.drv.health.counters.get("tag_records", 0)
    sim.door_pass("0000ABCD", inward=False, one_sided=True)     # direction void: no passage
    sim.door_pass(TAG, inward=True, exciter=12)                 # the same passage reported again
    r.handled("tag_records", n + 2)                             # both records handled
    assert not [d for d in r.events("door.passed") if d[1]["tag"] == "0000ABCD"]
    assert len([d for d in r.events("door.passed") if d[1]["door"] == f"{S2}:12"]) == 1


def test_unbound_tag_has_null_person(rig):
    r = rig(bindings={})
    sim = r.station()
    sim.add_tag("0A0B0C0D")
    _, d = r.wait(lambda t, d: t == "presence.entered")
    assert d == {"person": None, "tag": "0A0B0C0D", "room": "interrogation-1"}


# ---- tag status -----------------------------------------------------------------
def _status(r):
    return [d for t, d in r.events("tag.status")]


def test_tag_status_only_on_change(rig):
    r = rig()
    sim = r.station()
    sim.add_tag(TAG)
    r.wait(lambda t, d: t == "presence.entered")
    r.settle(sim, reports=3)
    assert _status(r) == []                      # a healthy tag: nothing to say
    sim.press_sos(TAG)
    r.wait(lambda t, d: t == "tag.status" and d["sos"])
    r.settle(sim, reports=3)                     # SOS keeps being reported: still one event
    assert len(_status(r)) == 1
    assert _status(r)[0] == {"tag": TAG, "person": "suspect-1", "battery": None, "tamper": False,
                             "sos": True, "heart_rate": None}
    sim.press_sos(TAG, False)
    r.wait(lambda t, d: t == "tag.status" and not d["sos"])
    sim.set_low_battery(TAG)
    r.wait(lambda t, d: t == "tag.status" and d["battery"] == "low")
    sim.set_low_battery(TAG, False)
    sim.set_battery(TAG, 15)
    r.wait(lambda t, d: t == "tag.status" and d["battery"] == 15)
    sim.set_heart_rate(TAG, 72)
    r.wait(lambda t, d: t == "tag.status" and d["heart_rate"] == 72)
    sim.set_heart_rate(TAG, 140)
    r.wait(lambda t, d: t == "tag.status" and d["heart_rate"] == 140)
    sim.set_strap(TAG, opened=True)
    r.wait(lambda t, d: t == "tag.status" and d["tamper"])
    sim.set_strap(TAG, opened=False)
    r.wait(lambda t, d: t == "tag.status" and d["heart_rate"] == 140 and not d["tamper"])
    sim.set_reader_removed(TAG)
    r.wait(lambda t, d: t == "tag.status" and d["tamper"] and d["battery"] == 15)
    sim.band_sos(TAG)
    r.wait(lambda t, d: t == "tag.status" and d["sos"] and d["tamper"])
    r.settle(sim, reports=3)
    sts = _status(r)
    # consecutive events always differ: only changes are reported
    for a, b in zip(sts, sts[1:]):
        assert a != b
    assert len(sts) == 11


def test_bad_tag_cc_record_dropped(rig):
    r = rig()
    sim = r.station()
    v = bytearray(P.tag_value(0xE3AF2232))
    v[6] ^= 0x55
    sim.queue_tlv(P.tlv(P.TLV_TAG, bytes(v)))
    sim.queue_tlv(P.tlv(0x7777, b"??"))
    sim.queue_tlv(P.tlv(P.TLV_WRISTBAND, P.wristband_value(0xE3AF2232, 9, 1)))
    sim.add_tag("00000002")
    r.wait(lambda t, d: t == "presence.entered")
    r.settle(sim)
    c = r.drv.health.counters
    assert c.get("bad_tag_cc") == 1 and c.get("unknown_tlv") == 1 and c.get("unknown_band_kind") == 1
    assert not [d for t, d in r.events() if d.get("tag") == TAG]


# ---- duplicates, unknown stations, garbage -------------------------------------
def test_duplicate_seq_absorbed(rig):
    r = rig()
    sim = r.station(start=False)
    sim.connect()
    assert sim.handshake()
    seq, raw = sim.frame(P.CMD_DATA, P.tlv(P.TLV_TAG, P.tag_value(0xE3AF2232, sos=True)))
    for _ in range(3):                      # the station re-sends: no reply came through
        sim.send_raw(raw)
    replies = []
    deadline = time.monotonic() + 3
    while len(replies) < 3 and time.monotonic() < deadline:
        replies += [f for f in sim.pump(0.2) if f.seq == seq]
    assert [f.cmd for f in replies] == [0x8004] * 3          # each answered after it was handled
    assert len(r.events("presence.entered")) == 1
    assert len(r.events("tag.status")) == 1
    assert r.drv.health.counters.get("duplicate_seq") == 2
    # the same seq with different content (a rebooted station restarting its seq) is processed
    sim.send_raw(P.encode_frame(P.CMD_DATA, seq, S1, P.tlv(P.TLV_TAG, P.tag_value(0x0BADCAFE))))
    r.wait(lambda t, d: t == "presence.entered" and d["tag"] == "0BADCAFE")


def test_unknown_station_replied_counted_logged_once(rig, caplog):
    r = rig()
    with caplog.at_level(logging.WARNING):
        sim = r.station(dev_id="999999999999999")
        sim.add_tag(TAG)
        poll(lambda: sim.stats["reports"] >= 4, 3)
    assert sim.stats["reports"] >= 4 and sim.stats["unanswered"] == 0
    assert r.drv.health.counters.get("unknown_station", 0) >= 6
    assert sum("999999999999999" in m for m in caplog.messages) == 1
    assert not r.events("presence.entered")


def test_garbage_and_byte_by_byte_over_tcp(rig):
    r = rig()
    s = raw_client(r.port)
    frames = [P.encode_frame(P.CMD_DATA, i, S1, P.tlv(P.TLV_TAG, P.tag_value(i))) for i in range(1, 4)]
    bad = bytearray(frames[1])
    bad[-2] ^= 1
    stream = b"\x00junk\x55" + frames[0] + b"\xaa\x55\x55" + bytes(bad) + b"zz" + frames[2]
    for b in stream:
        s.send(bytes([b]))
    got = read_frames(s, 2)
    assert [f.seq for f in got] == [1, 3]      # 3 answered: everything before it was handled
    h = r.drv.health
    assert h.counters.get("bad_crc") == 1 and h.frames_bad == 1
    assert h.counters.get("noise_bytes", 0) >= len(b"\x00junk\x55") + 3 + 2
    assert {d["tag"] for t, d in r.events("presence.entered")} == {"00000001", "00000003"}
    s.close()


def test_station_reconnecting_mid_frame_does_not_corrupt_others(rig):
    r = rig()
    other = r.station(dev_id=S2)
    other.add_tag("0000BEEF")
    a = raw_client(r.port)
    full = P.encode_frame(P.CMD_DATA, 1, S1, P.tlv(P.TLV_TAG, P.tag_value(0xE3AF2232)))
    a.sendall(full[:20])                       # cut in the middle of a frame ...
    a.close()                                  # ... and the link drops
    wait_for(lambda: r.drv.health.counters.get("partial_frame_dropped"), 5, "the cut frame dropped")
    b = raw_client(r.port)                     # the station comes back on a new connection
    b.sendall(full[20:])                       # the rest of the old frame: just noise now
    b.sendall(P.encode_frame(P.CMD_DATA, 2, S1, P.tlv(P.TLV_TAG, P.tag_value(0x0000CAFE))))
    (f,) = read_frames(b, 1)
    assert (f.cmd, f.seq) == (0x8004, 2)
    r.wait(lambda t, d: t == "presence.entered" and d["tag"] == "0000CAFE")
    r.wait(lambda t, d: t == "presence.entered" and d["tag"] == "0000BEEF")
    n = other.stats["reports"]
    poll(lambda: other.stats["reports"] >= n + 3, 3)
    assert other.stats["unanswered"] == 0 and other.stats["reports"] >= n + 3
    assert not any(d["tag"] == TAG for t, d in r.events("presence.entered"))
    h = r.drv.health
    assert h.counters.get("partial_frame_dropped") == 1
    assert h.counters.get("bad_crc", 0) == 0
    b.close()


def test_new_connection_of_same_station_closes_old_once_it_is_silent(rig):
    """v2: a second connection for a logged-in dev_id is not taken at its word: the old
    one is closed only once it has been silent for conflict_probe_s (a station that
    rebooted), with no impostor on the record."""
    r = rig(cfg=make_cfg(conflict_probe_s=0.5))
    a = raw_client(r.port)
    a.sendall(P.encode_frame(P.CMD_LOGIN, 1, S1, P.login_content(1, 0)))
    assert read_frames(a, 1)
    b = raw_client(r.port)
    b.sendall(P.encode_frame(P.CMD_LOGIN, 2, S1, P.login_content(1, 0)))
    assert read_frames(b, 1)
    t0 = time.monotonic()
    a.settimeout(3)
    assert a.recv(100) == b""                  # the half-open old link is closed ...
    assert time.monotonic() - t0 > 0.2         # ... after the probe time, not at once
    assert r.drv.health.counters.get("station_reconnected") == 1
    assert not [d for t, d in r.events("device.error") if d.get("impostor")]
    b.sendall(P.encode_frame(P.CMD_DATA, 3, S1, P.tlv(P.TLV_TAG, P.tag_value(0xE3AF2232))))
    assert read_frames(b, 1)
    r.wait(lambda t, d: t == "presence.entered" and d["tag"] == TAG)


# ---- connections and station health --------------------------------------------
def test_connection_limit_evicts_pending_never_logged_in(rig):
    r = rig(cfg=make_cfg(max_connections=2))
    a = raw_client(r.port)
    a.sendall(P.encode_frame(P.CMD_LOGIN, 1, S1, P.login_content(1, 0)))
    assert read_frames(a, 1)                   # a logged-in station
    b = raw_client(r.port)
    wait_for(lambda: r.drv.health.counters.get("connections") == 2, 5, "b accepted (b is the older pending)")
    c = raw_client(r.port)                     # at the cap: the oldest pending (b) goes
    b.settimeout(2)
    assert b.recv(100) == b""
    c.sendall(P.encode_frame(P.CMD_LOGIN, 2, S2, P.login_content(1, 0)))
    assert read_frames(c, 1)
    d = raw_client(r.port)                     # both slots logged in: refused
    d.settimeout(2)
    assert d.recv(100) == b""
    a.sendall(P.encode_frame(P.CMD_HEARTBEAT, 3, S1, P.heartbeat_content(10 << 8, 0, 0, 1, bytes(6))))
    assert read_frames(a, 1)
    h = r.drv.health.counters
    assert h.get("connection_evicted") == 1 and h.get("connection_refused") == 1
    for s in (a, b, c, d):
        s.close()


def test_idle_timeout(rig):
    r = rig(cfg=make_cfg(idle_timeout_s=0.3))
    a = raw_client(r.port)
    a.settimeout(3)
    assert a.recv(100) == b""
    assert r.drv.health.counters.get("idle_timeout") == 1      # closed for its idleness, nothing else


def test_silent_station_goes_offline_and_back(rig):
    r = rig(cfg=make_cfg(heartbeat_s=0.15, stations={S1: "interrogation-1", S2: "waiting-1"}))
    s2 = r.station(dev_id=S2, heartbeat_s=0.1)
    s1 = r.station(dev_id=S1, heartbeat_s=0.1)
    # both keep talking past the silence limit (3 x 0.15 s): 6 more answered heartbeats each, no
    # sooner than 0.1 s apart, are >= 0.5 s
    n1, n2 = s1.stats["replies"], s2.stats["replies"]
    wait_for(lambda: s1.stats["replies"] >= n1 + 6 and s2.stats["replies"] >= n2 + 6, 5, "6 heartbeats each")
    assert r.drv.health.state == "online"
    s1.stop()                                  # S1 falls silent, S2 keeps talking
    _, d = r.wait(lambda t, d: t == "device.error" and d["device"] == "zone-stations", timeout=3)
    assert S1 in d["error"] and S2 not in d["error"]
    # issue 18: the dead station is a device of its own, which is what raises device_offline
    _, d = r.wait(lambda t, d: t == "device.offline" and d["device"] == f"zone-stations/{S1}", timeout=3)
    assert d["station"] == S1 and d["room"] == "interrogation-1"
    s2.stop()
    _, d = r.wait(lambda t, d: t == "device.offline" and d["device"] == "zone-stations", timeout=3)
    assert S1 in d["error"] and S2 in d["error"]
    s3 = r.station(dev_id=S1, heartbeat_s=0.1)
    s4 = r.station(dev_id=S2, heartbeat_s=0.1)

    def online(dev):
        return [d for t, d in r.events("device.online") if d["device"] == dev]
    poll(lambda: len(online("zone-stations")) >= 2, 3)
    assert len(online("zone-stations")) == 2   # once both stations were in, once back
    # each station: online at its first login since the start, and once when back
    assert len(online(f"zone-stations/{S1}")) == 2 and len(online(f"zone-stations/{S2}")) == 2
    assert r.drv.health.state == "online"
    assert s3.logged_in.is_set() and s4.logged_in.is_set()
    assert r.drv.health.reconnects == 2        # each station logged in again once


def test_not_online_without_stations(rig):
    """issue 18: the reader is not "online" while no station is connected."""
    r = rig(cfg=make_cfg(heartbeat_s=0.15))
    states = []                                # the state all along, until the silence limit

    def offline():
        states.append(r.drv.health.state)
        return [d for t, d in r.events("device.offline") if d["device"] == "zone-stations"]
    (d,) = wait_for(offline, 3, "device.offline")
    assert states[0] == "starting" and set(states) <= {"starting", "offline"}
    assert not r.events("device.online")
    assert r.drv.health.state == "offline"


def test_simulator_retries_unanswered_requests():
    """The simulator re-sends an unanswered request with the same seq, then logs in again."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    seen: list[P.Frame] = []

    def platform():                            # ignores the first two copies of every request
        conn, _ = srv.accept()
        conn.settimeout(5)
        p = P.FrameParser()
        copies: dict = {}
        try:
            while len(seen) < 12:
                data = conn.recv(4096)
                if not data:
                    break
                for f in p.feed(data):
                    seen.append(f)
                    copies[f.seq] = copies.get(f.seq, 0) + 1
                    if copies[f.seq] >= 3:
                        conn.sendall(P.encode_reply(f, P.simple_reply_content(0, bytes(6)) if f.cmd != P.CMD_REGISTER
                                                    else P.register_reply_content(0, bytes(6), "127.0.0.1", port)))
        finally:
            conn.close()
    th = threading.Thread(target=platform, daemon=True)
    th.start()
    sim = StationSimulator("127.0.0.1", port, S1, reply_timeout_s=0.1)
    sim.connect()
    try:
        assert sim.register() == 0
        assert sim.login() == 0
        assert sim.stats["retries"] == 4
        assert [f.seq for f in seen[:6]] == [1, 1, 1, 2, 2, 2]
        assert len({bytes(P.encode_frame(f.cmd, f.seq, f.dev_id, f.content, f.ver)) for f in seen[:3]}) == 1
    finally:
        sim.close()
        th.join(3)
        srv.close()


def test_simulator_relogins_after_five_retries(rig):
    r = rig()
    sim = r.station(reply_timeout_s=0.05)
    assert sim.stats["logins"] == 1
    r.drv._loop.call_soon_threadsafe(lambda: setattr(r.drv, "_handle", lambda *a: None))  # platform goes deaf
    sim.add_tag(TAG)
    poll(lambda: sim.stats["relogins"] >= 1, 5)
    assert sim.stats["relogins"] >= 1
    assert sim.stats["retries"] >= 5


# ---- load ---------------------------------------------------------------------
def test_many_stations_many_tags(rig):
    n_st, n_tags = 10, 20
    stations = {f"ST{i:03d}": f"room-{i}" for i in range(n_st)}
    r = rig(cfg=make_cfg(stations=stations))
    site = ZoneSite("127.0.0.1", r.port, list(stations), report_s=0.2, reply_timeout_s=1.0)
    r.sims += site.stations.values()
    for i, d in enumerate(stations):
        for k in range(n_tags):
            site[d].add_tag(i * 1000 + k)
    site.start()
    poll(lambda: len(r.events("presence.entered")) >= n_st * n_tags, 8)
    entered = r.events("presence.entered")
    assert len(entered) == n_st * n_tags
    assert {(d["tag"], d["room"]) for _, d in entered} == {
        (f"{i * 1000 + k:08X}", f"room-{i}") for i in range(n_st) for k in range(n_tags)}
    r.settle(*site.stations.values())          # every station reports its tags again: nothing new
    assert len(r.events("presence.entered")) == n_st * n_tags and not r.events("presence.left")


def test_flood_of_unknown_dev_ids_is_bounded():
    from drivers.zone_reader import driver as zd
    drv = ZoneReaderDriver(make_cfg(), PrintContext("z"))
    for i in range(zd.MAX_UNKNOWN_STATIONS + 50):
        reply = drv._handle(None, P.Frame(P.CMD_HEARTBEAT, 1, f"X{i}", P.heartbeat_content(0, 0, 0, 1, bytes(6))),
                            1.0, time.time())
        assert reply is not None                    # still answered
    assert len(drv._stations) == 2 + zd.MAX_UNKNOWN_STATIONS
    assert drv.health.counters["unknown_station_overflow"] == 50
