"""Hostile network on the base-station port (SPEC §4.1 v2, issue 19), driver level:
real ZoneReaderDriver, real simulators over loopback TCP, other hosts played by
binding the client to 127.0.0.2/127.0.0.3."""
from __future__ import annotations

import socket

from drivers.zone_reader import protocol as P
from helpers.polling import poll
from helpers.zone_reader import S1, S2, TAG, make_cfg

OFFICER, FAKE = "0000000A", "0000000B"


def impostor_events(r, kind=None):
    return [d for t, d in r.events("device.error") if d.get("impostor") and (kind is None or d["kind"] == kind)]


def test_pinned_station_from_another_address_is_refused(rig):
    r = rig(cfg=make_cfg(stations={S1: {"room": "interrogation-1", "ip": "127.0.0.1"}, S2: "waiting-1"}))
    real = r.station(dev_id=S1)
    real.add_tag(TAG)
    r.wait(lambda t, d: t == "presence.entered" and d["tag"] == TAG)
    fake = r.station(dev_id=S1, start=False, bind="127.0.0.2")
    fake.connect()
    assert fake.register() == P.RESULT_REFUSED
    try:                                            # refused and closed
        assert fake.pump(2.0) == [] and False, "connection stayed open"
    except ConnectionError:
        pass
    (e,) = impostor_events(r, "pinned_address")
    assert e["device"] == f"zone-stations/{S1}" and e["station"] == S1 and "127.0.0.2" in e["error"]
    assert any(p.startswith("127.0.0.2:") for p in e["peers"])
    # the real station from its pinned address is untouched and still trusted
    real.add_tag(OFFICER)
    r.wait(lambda t, d: t == "presence.entered" and d["tag"] == OFFICER)
    assert real.stats["unanswered"] == 0
    # another host claiming an unpinned station is not refused outright (it may be a reboot)
    s2 = r.station(dev_id=S2, start=False, bind="127.0.0.2")
    s2.connect()
    assert s2.handshake()


def test_wrong_reg_code_is_refused_and_on_the_record(rig):
    r = rig(cfg=make_cfg(reg_code=4321))
    sim = r.station(dev_id=S1, start=False, reg_code=1)
    sim.connect()
    assert sim.register() == P.RESULT_BAD_CODE
    (e,) = impostor_events(r, "reg_code")
    assert e["station"] == S1 and e["device"] == f"zone-stations/{S1}"
    for _ in range(5):                              # a misconfigured station retrying: one record a minute
        sim.connect()
        assert sim.register() == P.RESULT_BAD_CODE
    assert len(impostor_events(r, "reg_code")) == 1
    assert r.drv.health.counters["impostor_reg_code"] == 6
    good = r.station(dev_id=S1, reg_code=4321)
    good.add_tag(TAG)
    r.wait(lambda t, d: t == "presence.entered" and d["tag"] == TAG)


def test_impostor_alternating_with_the_real_station(rig):
    """The real station (127.0.0.1) reports a suspect and one officer; an impostor
    (127.0.0.3) claiming its dev_id reports a second officer and comes back again and
    again. Conflict journaled, the fake officer never becomes presence, the real
    presence is held (not dropped) while the conflict stands, and it ends on the
    record once the impostor has stayed away for conflict_clear_s."""
    r = rig(cfg=make_cfg(conflict_probe_s=1.0, conflict_clear_s=2.0, presence_timeout_s=1.0))
    real = r.station(dev_id=S1)
    real.add_tag(TAG)
    real.add_tag(OFFICER)
    r.wait(lambda t, d: t == "presence.entered" and d["tag"] == OFFICER)
    for round_ in range(3):
        fake = r.station(dev_id=S1, start=False, bind="127.0.0.3", report_s=0.1, reply_timeout_s=0.5)
        fake.add_tag(FAKE)
        fake.start()
        assert fake.logged_in.wait(5)              # answered: an impostor learns nothing
        # it stays past the presence timeout (1 s) and the probe time: 15 answered reports,
        # report_s=0.1 s apart (not nudged), are >= 1.4 s
        r.settle(fake, reports=15, nudge=False)
        fake.stop()
        r.settle(real, reports=3, nudge=False)      # the real station alone a while (< conflict_clear_s)
    r.wait(lambda t, d: t == "device.online" and d["device"] == f"zone-stations/{S1}" and d.get("resolved"),
           timeout=8, what="conflict resolved")
    evs = impostor_events(r, "second_peer")
    assert evs and all(e["station"] == S1 for e in evs)
    assert any(any(p.startswith("127.0.0.3:") for p in e["peers"]) for e in evs)
    assert not [d for t, d in r.events("presence.entered") if d["tag"] == FAKE]
    # held, not dropped: the real suspect and officer never left during the conflict
    assert not [d for t, d in r.events("presence.left") if d["tag"] in (TAG, OFFICER)]
    assert r.drv.health.counters.get("untrusted_records", 0) > 0
    # trusted again afterwards
    real.add_tag("0000000C")
    r.wait(lambda t, d: t == "presence.entered" and d["tag"] == "0000000C")


def test_rebooted_station_with_half_dead_old_connection_no_false_alarm(rig):
    """A station reboots: its old TCP connection stays open but silent (half-dead);
    the new one logs in at once. No impostor, presence continues on the new connection."""
    r = rig(cfg=make_cfg(conflict_probe_s=1.0))
    old = r.station(dev_id=S1, start=False)
    old.connect()
    assert old.handshake()
    old.add_tag(TAG)
    assert old.report()
    r.wait(lambda t, d: t == "presence.entered" and d["tag"] == TAG)
    old_sock = old.sock                      # the old socket stays open: nobody reads it any more
    old.sock = None
    new = r.station(dev_id=S1, reply_timeout_s=0.5)
    new.add_tag(TAG)
    new.add_tag(OFFICER)
    r.wait(lambda t, d: t == "presence.entered" and d["tag"] == OFFICER, timeout=5)
    old_sock.settimeout(3)
    assert old_sock.recv(100) == b""         # the platform closed the dead connection
    old_sock.close()
    assert not impostor_events(r)
    assert not [d for t, d in r.events("presence.left") if d["tag"] == TAG]
    assert r.drv.health.counters.get("station_reconnected") == 1
    assert new.stats["unanswered"] == 0


def test_silent_connections_do_not_lock_a_station_out(rig, monkeypatch):
    """Driver-level flood: 300 half-frame connections from the station's own address
    stay bounded by the pending cap; the station logs in at once; the flood is journaled."""
    r = rig(cfg=make_cfg(stations={S1: "interrogation-1"}, max_pending=32, max_pending_per_ip=8,
                         login_timeout_s=1.0, flood_per_min=50))
    half = P.encode_frame(P.CMD_REGISTER, 1, S1, P.register_content(1, 0))[:15]
    socks = []
    for _ in range(300):
        s = socket.create_connection(("127.0.0.1", r.port))
        s.sendall(half)
        socks.append(s)
    sim = r.station(dev_id=S1, start=False)
    sim.connect()
    assert sim.handshake()
    sim.add_tag(TAG)
    assert sim.report()
    r.wait(lambda t, d: t == "presence.entered" and d["tag"] == TAG)
    snap = r.drv.snapshot()
    assert snap["pending"] <= 8 and snap["connections"] <= 9
    _, d = r.wait(lambda t, d: t == "device.error" and d["device"] == "zone-stations" and "flood" in d,
                  what="flood on the record")
    assert d["flood"]["active"] and d["flood"]["evicted"] >= 50 and "connection flood" in d["error"]
    assert r.drv.health.state == "error" and "connection flood" in r.drv.health.error
    for s in socks:
        s.close()
    # a window without a flood: one closing record with the totals, then back online
    from drivers.zone_reader import admission
    monkeypatch.setattr(admission, "FLOOD_WINDOW_S", 1.0)
    _, end = r.wait(lambda t, d: t == "device.error" and d.get("flood") and not d["flood"]["active"],
                    timeout=5, what="closing flood record")
    assert "ended" in end["error"] and end["flood"]["evicted"] >= 280
    poll(lambda: r.drv.health.state == "online", 5)
    assert r.drv.health.state == "online"
    floods = [d["flood"]["active"] for t, d in r.events("device.error") if d.get("flood")]
    # at most one while active per window (a slow burst may span two), exactly one closing, last
    assert floods[0] and floods[-1] is False and floods.count(False) == 1 and len(floods) <= 3, floods


def test_config_stations_room_or_pinned_room_and_ip():
    import pytest
    from gateway.config import ConfigError, parse_config
    rooms = [{"id": "interrogation-1", "type": "interrogation"}, {"id": "waiting-1", "type": "waiting"}]

    def zone(stations):
        return parse_config({"rooms": rooms, "devices": [{"id": "z", "driver": "zone_reader",
                                                           "stations": stations}]}).devices[0]
    z = zone({S1: "interrogation-1", S2: {"room": "waiting-1", "ip": "10.30.1.41"}})
    assert z.stations == {S1: "interrogation-1", S2: "waiting-1"}     # dev_id -> room for every reader
    assert z.station_ips == {S2: "10.30.1.41"}
    for bad, why in (({"room": "waiting-1", "ip": "10.30.1"}, "not an IP address"),
                     ({"room": "waiting-1", "port": 1}, "unknown key 'port'"),
                     ({"ip": "10.30.1.41"}, "room missing"),
                     ({"room": "nowhere", "ip": "10.30.1.41"}, "unknown room")):
        with pytest.raises(ConfigError) as e:
            zone({S2: bad})
        assert f"stations.{S2}" in str(e.value) and why in str(e.value), str(e.value)
