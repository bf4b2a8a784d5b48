"""The detention clock on the real daemon across a SIGHUP and a restart, with suspects whose arrival
(到案时间) lies hours before their registration."""
from __future__ import annotations

import json
import signal
import time

from helpers.daemon import DaemonProcess, cli, write_config
from rules.model import format_ts
from helpers.central import Central
from helpers import polling

RULES = "[rules.detention_timeout]\nadministrative_h = {h}\n"


def alarm_events(d, code):
    r = cli("events", "--json", "--type", "alarm.raised", config=d.config, check=True)
    evs = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
    return [e for e in evs if e["data"]["code"] == code]


def wait_for(pred, timeout=30):
    return polling.wait_for(pred, timeout, "the condition")


def test_a_reload_never_moves_a_running_clock_and_restart_agrees(tmp_path, mosquitto):
    """DOMAIN v3 (刑事诉讼法 第119条; 治安管理处罚法(2025) 第97条): a reload never lengthens a running
    clock - new defaults apply to new stays only (the default is written into the registration).
    Then a restart and a replay of the journal give the same alarms."""
    cfg = write_config(tmp_path, mosquitto.port, RULES.format(h=6))
    d = DaemonProcess(cfg).start()
    c = Central(mosquitto.port)
    try:
        d.wait_status(lambda s: s["uplink"]["connected"])
        arrived = int(time.time()) - 7 * 3600                # arrived 7 h ago: past this center's 6 h
        assert c.request("person/register", person="s1", role="suspect", gender="male", case_type="administrative",
                         arrived_at=format_ts(arrived))["ok"]
        (dt,) = wait_for(lambda: alarm_events(d, "detention_timeout"))
        assert dt["data"]["since"] == format_ts(arrived + 6 * 3600)      # exactly arrived_at + limit
        assert dt["data"]["details"]["arrived_at"] == format_ts(arrived)
        assert "+08:00" in dt["data"]["message"]["zh"]
        # the center goes back to the law's 8 h: SIGHUP. s1's clock stays 6 h; a new stay gets 8 h
        cfg.write_text(cfg.read_text().replace(RULES.format(h=6), RULES.format(h=8)))
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in d.log())
        arrived2 = int(time.time()) - 8 * 3600 - 60
        assert c.request("person/register", person="s2", role="suspect", gender="male", case_type="administrative",
                         arrived_at=format_ts(arrived2))["ok"]
        (dt2,) = wait_for(lambda: [e for e in alarm_events(d, "detention_timeout") if e["data"]["persons"] == ["s2"]])
        assert dt2["data"]["since"] == format_ts(arrived2 + 8 * 3600)
        r = cli("events", "--json", "--type", "alarm.cleared", config=cfg, check=True)
        assert not [x for x in r.stdout.splitlines() if "detention_timeout" in x]      # s1's stands
        # a restart under the new config re-derives the same alarms: nothing new, nothing cleared
        c.close()
        d.stop()
        d = DaemonProcess(cfg).start()
        d.wait_status(lambda s: s["journal"]["last_seq"] > 0)
        r = cli("replay", "--json", config=cfg, check=True)
        assert {dt["data"]["alarm_id"], dt2["data"]["alarm_id"]} <= {a["data"]["alarm_id"] for a in json.loads(r.stdout)}
        assert sorted(e["data"]["alarm_id"] for e in alarm_events(d, "detention_timeout")) == \
            sorted([dt["data"]["alarm_id"], dt2["data"]["alarm_id"]])
        r = cli("events", "--json", "--type", "alarm.cleared", config=cfg, check=True)
        assert not [x for x in r.stdout.splitlines() if "detention_timeout" in x]
    finally:
        c.close()
        d.stop()
