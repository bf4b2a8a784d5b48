"""Reload == restart for the detention clock, on the real daemon (SIGHUP, then a restart), with a
suspect whose arrival (到案时间) lies hours before his registration."""
from __future__ import annotations

import json
import signal
import time

from daemon_util import DaemonProcess, cli, write_config
from gateway.events import format_ts
from test_daemon import Central

RULES = "[rules.detention_timeout]\nadministrative_h = {h}\n"


def alarm_events(d, code):
    r = cli("events", "--json", "--type", "alarm.raised", config=d.config, check=True)
    evs = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
    return [e for e in evs if e["data"]["code"] == code]


def wait_for(pred, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.3)
    raise TimeoutError


def test_limit_change_by_sighup_and_restart_give_one_alarm_at_arrival_plus_limit(tmp_path, mosquitto):
    cfg = write_config(tmp_path, mosquitto.port, RULES.format(h=8))
    d = DaemonProcess(cfg).start()
    c = Central(mosquitto.port)
    try:
        d.wait_status(lambda s: s["uplink"]["connected"])
        arrived = int(time.time()) - 6 * 3600 - 60          # arrived 6 h 1 min ago
        assert c.request("person/register", person="s1", role="suspect", case_type="administrative",
                         arrived_at=format_ts(arrived))["ok"]
        time.sleep(2)
        assert alarm_events(d, "detention_timeout") == []   # the law's 8 h for administrative cases
        # the center shortens its default to 6 h (never longer than the law's 8 h, DOMAIN v3): SIGHUP
        cfg.write_text(cfg.read_text().replace(RULES.format(h=8), RULES.format(h=6)))
        d.proc.send_signal(signal.SIGHUP)
        (dt,) = wait_for(lambda: alarm_events(d, "detention_timeout"))
        assert dt["data"]["since"] == format_ts(arrived + 6 * 3600)      # exactly arrived_at + limit
        assert dt["data"]["details"]["arrived_at"] == format_ts(arrived)
        assert "+08:00" in dt["data"]["message"]["zh"]
        # a restart under the same config re-derives the same alarm: nothing new, nothing cleared
        c.close()
        d.stop()
        d = DaemonProcess(cfg).start()
        d.wait_status(lambda s: s["journal"]["last_seq"] > 0)
        time.sleep(2)
        assert [e["data"]["alarm_id"] for e in alarm_events(d, "detention_timeout")] == [dt["data"]["alarm_id"]]
        r = cli("events", "--json", "--type", "alarm.cleared", config=cfg, check=True)
        assert not [x for x in r.stdout.splitlines() if "detention_timeout" in x]
        # and replay of the journal gives that alarm too
        r = cli("replay", "--json", config=cfg, check=True)
        assert dt["data"]["alarm_id"] in {a["data"]["alarm_id"] for a in json.loads(r.stdout)}
    finally:
        c.close()
        d.stop()
