"""A real daemon tells its clock's sync state (SPEC §7 v3): `status`, `state/gateway` and the
journal (clock.sync, only when unsynchronised: a journal without it was on a synchronised clock).
The state is this host's own (adjtimex); the assertions hold for either answer."""
from __future__ import annotations

import json

from helpers.daemon import DaemonProcess, cli, write_config

P = "casegate/t-center"


def test_sync_state_in_status_state_gateway_and_journal(tmp_path, mosquitto, subscriber_factory):
    from gateway.timebase import TimeBase
    host = TimeBase().synchronised            # what the daemon's own time base reads
    sub = subscriber_factory(mosquitto.port, [f"{P}/state/gateway"])
    d = DaemonProcess(write_config(tmp_path, mosquitto.port)).start()
    try:
        st = d.wait_status(lambda s: s["uplink"]["connected"])
        assert st["clock"]["synchronised"] is host
        msg = sub.wait_for(lambda m: "clock_synchronised" in json.loads(m.payload), 20)
        assert json.loads(msg.payload)["clock_synchronised"] is host
        text = cli("status", config=d.config).stdout
        assert {True: "clock    synchronised", False: "clock    NOT synchronised",
                None: "clock    sync unknown"}[host] in text
        evs = [json.loads(x) for x in cli("events", "--json", "--type", "clock.sync",
                                          config=d.config).stdout.splitlines() if x.strip()]
        assert [e["data"]["synchronised"] for e in evs] == ([False] if host is False else [])
    finally:
        d.stop()


def test_person_add_arrived_at_without_offset_is_the_centers_local_time(tmp_path):
    """issue 22: a time typed from a 传唤证 has no offset; it is Beijing time (the default
    [center] timezone), not UTC (which would put it 8 h later: "in the future")."""
    import time
    from datetime import datetime, timedelta, timezone

    from rules.model import parse_ts
    d = DaemonProcess(write_config(tmp_path, None)).start()
    try:
        d.wait_status(lambda s: s["journal"]["last_seq"] >= 1)
        arrived = int(time.time()) - 2 * 3600
        typed = (datetime.fromtimestamp(arrived, timezone.utc) + timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%S")
        r = cli("person", "add", "sus-6", "--role", "suspect", "--gender", "male", "--case-type", "criminal",
                "--arrived-at", typed,
                config=d.config)
        assert r.returncode == 0, r.stderr
        (ev,) = [json.loads(x) for x in cli("events", "--json", "--type", "person.registered",
                                            config=d.config).stdout.splitlines() if x.strip()]
        assert parse_ts(ev["data"]["arrived_at"]) == arrived
    finally:
        d.stop()
