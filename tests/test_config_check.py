"""`casegate config check` catches what would fail at run time (issue 18 item 3), and a daemon
whose MQTT secret file is missing says so in `status` instead of crash-looping its uplink.
Real files, a real pty for the "present" serial port, a real daemon process.
"""
from __future__ import annotations

import json
import os
import pty

from helpers.daemon import DaemonProcess, cli, write_config

ROOMS = """
[[rooms]]
id = "security_check"
type = "security_check"
[[rooms]]
id = "info_collection"
type = "info_collection"
[[rooms]]
id = "interrogation-1"
type = "interrogation"
"""


def config(tmp_path, mqtt: str = "[mqtt]\nenabled = false\n", extra: str = ""):
    p = tmp_path / "casegate.toml"
    p.write_text(f'[center]\nid = "t-center"\n[storage]\ndir = "{tmp_path}/state"\n{mqtt}\n{ROOMS}\n{extra}')
    return p


def test_missing_password_file_fails_naming_the_key_and_the_fix(tmp_path):
    cfg = config(tmp_path, f'[mqtt]\nusername = "u"\npassword_file = "{tmp_path}/mqtt.pass"\n')
    r = cli("config", "check", config=cfg)
    assert r.returncode == 2, r.stdout
    assert f"mqtt.password_file: FAIL: {tmp_path}/mqtt.pass: no such file" in r.stderr
    assert "chmod 0640" in r.stderr
    (tmp_path / "mqtt.pass").write_text("secret\n")
    ok = cli("config", "check", config=cfg)
    assert ok.returncode == 0 and ok.stdout.startswith(f"{cfg}: OK"), ok.stderr
    j = json.loads(cli("config", "check", "--json", config=cfg).stdout)
    assert j["ok"] is True and j["problems"] == []


def test_a_directory_as_ca_file_fails(tmp_path):
    cfg = config(tmp_path, f'[mqtt]\ntls = true\nca_file = "{tmp_path}"\n')
    r = cli("config", "check", "--json", config=cfg)
    assert r.returncode == 2
    [p] = json.loads(r.stdout)["problems"]
    assert p["check"] == "mqtt.ca_file" and p["level"] == "FAIL" and "not a regular file" in p["message"]


def test_absent_serial_port_warns_present_pty_does_not(tmp_path):
    master, slave = pty.openpty()
    try:
        present = os.ttyname(slave)
        devices = f"""
[[devices]]
id = "card-gone"
driver = "card_reader"
port = "{tmp_path}/ttyUSB9"
room = "security_check"
[[devices]]
id = "card-here"
driver = "card_reader"
port = "{present}"
room = "security_check"
[[devices]]
id = "card-net"
driver = "card_reader"
port = "socket://127.0.0.1:1"
room = "security_check"
"""
        cfg = config(tmp_path, extra=devices)
        r = cli("config", "check", config=cfg, env={"COLUMNS": "250"})
        assert r.returncode == 0, r.stderr
        assert f"serial card-gone: WARN: {tmp_path}/ttyUSB9: not present now" in r.stderr
        assert "card-here" not in r.stderr and "card-net" not in r.stderr
        assert "(1 warning)" in r.stdout
    finally:
        os.close(master)
        os.close(slave)


def test_procedure_skipped_naming_a_room_type_the_center_lacks(tmp_path):
    cfg = config(tmp_path, extra='[rules.procedure_skipped]\nrequired = ["security_check", "medical"]\n')
    r = cli("config", "check", config=cfg)
    assert r.returncode == 2
    assert "rules.procedure_skipped.required: FAIL: requires a 'medical' step" in r.stderr
    assert "security_check" not in r.stderr.split("FAIL:")[1].split("—")[0]
    # without interrogation rooms the rule never runs: nothing to complain about
    cfg.write_text(cfg.read_text().replace('type = "interrogation"', 'type = "waiting"'))
    assert cli("config", "check", config=cfg).returncode == 0


def test_thresholds_in_effect_are_printed(tmp_path):
    cfg = config(tmp_path, extra='[rules]\nlegal_disabled_reason = "test: the alarm under test would interleave (approved by the lead)"\n' "[rules.lone_interrogation]\ngrace_s = 12\n"
                                  "[rules.unattended_suspect]\nenabled = false\n")
    r = cli("config", "check", config=cfg, env={"COLUMNS": "250"})
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("lone_interrogation"))
    assert "grace_s=12*" in line and "min_investigators=2" in line
    line = next(x for x in r.stdout.splitlines() if x.startswith("detention_timeout"))
    assert "criminal_h=12" in line and "warn_before_min=60" in line
    assert next(x for x in r.stdout.splitlines() if x.startswith("unattended_suspect")).split()[1] == "NO"
    # a legal alarm switched off is a warning (SPEC §1a), not an error
    assert "rules.unattended_suspect: WARN" in r.stderr
    j = json.loads(cli("config", "check", "--json", config=cfg).stdout)
    assert j["rules"]["lone_interrogation"]["grace_s"] == 12


def test_daemon_with_a_missing_password_file_reports_it_in_status(tmp_path):
    cfg = write_config(tmp_path, 1, ROOMS)   # a broker port nobody listens on: never reached anyway
    cfg.write_text(cfg.read_text().replace("keepalive_s = 5\n", f'keepalive_s = 5\nusername = "u"\n'
                                           f'password_file = "{tmp_path}/absent.pass"\n'))
    d = DaemonProcess(cfg).start()
    try:
        st = d.status()
        assert st["uplink"]["connected"] is False
        assert st["uplink"]["last_error"].startswith(f"mqtt.password_file: {tmp_path}/absent.pass: no such file")
        r = cli("status", config=cfg)
        assert r.returncode == 1 and "uplink not started" in r.stdout
        assert st["journal"]["events"] >= 1                 # the center still journals
    finally:
        assert d.terminate() == 0
    log = d.log()
    assert "MQTT uplink not started" in log and "Traceback" not in log
    assert not any(w in log for w in ("uplink process killed", "uplink process exited", "uplink process ended",
                                      "cannot start the uplink process"))
