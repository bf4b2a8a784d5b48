"""A real daemon tells its clock's sync state (SPEC §7 v3): `status`, `state/gateway` and the
journal (clock.sync, only when unsynchronised: a journal without it was on a synchronised clock).
The state is this host's own (adjtimex); the assertions hold for either answer."""
from __future__ import annotations

import json

from daemon_util import DaemonProcess, cli, write_config

P = "casegate/t-center"


def test_sync_state_in_status_state_gateway_and_journal(tmp_path, mosquitto, subscriber_factory):
    from gateway.timebase import clock_synchronised
    host = clock_synchronised(max_age_s=0)["synchronised"]
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
