"""What a technician reads when something is off (issue 27): each message names the fix.

Real subprocesses of the CLI on real files; no daemon is needed for these."""
from __future__ import annotations

import logging
import socket
import subprocess
import sys
from pathlib import Path

from helpers.daemon import ROOT, cli, write_config

from drivers.zone_reader.config import ZoneReaderConfig
from drivers.zone_reader.probe import args_from_config
from gateway.logging_setup import LocalTimeFormatter
from rules.model import parse_ts

ROOMS = """
[[rooms]]
id = "interrogation-1"
type = "interrogation"
[[rooms]]
id = "security_check"
type = "security_check"
[[rooms]]
id = "info_collection"
type = "info_collection"
"""


def test_config_after_the_command_is_the_global_option(tmp_path):
    """`casegate status --config X` reads X (it said "unrecognized arguments"): the no-daemon message
    names X's socket, not the default one."""
    cfg = write_config(tmp_path, None, ROOMS)
    r = cli("status", "--config", str(cfg))
    assert r.returncode == 3, r.stderr
    assert str(tmp_path / "state" / "casegate.sock") in r.stderr
    assert "unrecognized" not in r.stderr
    r = cli("config", "check", f"--config={cfg}")
    assert r.returncode == 0, r.stderr


def test_status_on_built_in_defaults_says_so_instead_of_blaming_the_service(tmp_path):
    r = cli("status", env={"HOME": str(tmp_path)})
    if Path("/etc/casegate/casegate.toml").exists():      # a real install on this box: not this case
        return
    assert r.returncode == 3
    assert "built-in defaults" in r.stderr and "--config" in r.stderr


def test_unknown_keys_and_codes_get_did_you_mean(tmp_path):
    cfg = write_config(tmp_path, None, ROOMS + """
[[devices]]
id = "zone"
driver = "zone_reader"
listn = "127.0.0.1:4501"

[rules.lone_interrogation]
grace = 30
""")
    text = cfg.read_text().replace('[center]\nid = "t-center"', '[center]\nid = "t-center"\ntimezon = "Asia/Shanghai"')
    cfg.write_text(text)
    r = cli("config", "check", config=cfg)
    assert r.returncode == 2
    assert "center.timezon: unknown key — did you mean 'timezone'?" in r.stderr
    assert "devices[0].listn: unknown key — did you mean 'listen'?" in r.stderr
    cfg.write_text(text.replace('timezon = "Asia/Shanghai"\n', "").replace('listn', 'listen'))
    r = cli("config", "check", config=cfg)
    assert r.returncode == 2 and "rules.lone_interrogation.grace: unknown key — did you mean 'grace_s'?" in r.stderr
    cfg.write_text(cfg.read_text().replace("[rules.lone_interrogation]\ngrace = 30", "[rules.lone_interogation]"))
    r = cli("config", "check", config=cfg)
    assert r.returncode == 2 and "did you mean 'lone_interrogation'" in r.stderr


def test_missing_config_file_says_how_to_make_one(tmp_path):
    r = cli("config", "check", config=tmp_path / "nope.toml")
    assert r.returncode == 2
    assert "file not found" in r.stderr and "config/small-center.toml" in r.stderr and "--config" in r.stderr
    r = cli("doctor", config=tmp_path / "nope.toml")
    assert r.returncode == 1
    assert "cp config/small-center.toml" in r.stdout and "fix the file" not in r.stdout


def test_camera_stillness_longer_than_the_rule_is_said(tmp_path):
    """One knob per behaviour: a camera reporting stillness after 300 s makes after_s = 120 fire at 300 s."""
    pw = tmp_path / "cam.pass"
    pw.write_text("secret\n")
    pw.chmod(0o600)
    cfg = write_config(tmp_path, None, ROOMS + f"""
[[devices]]
id = "cam-int1"
driver = "camera_events"
vendor = "hikvision"
url = "http://127.0.0.1:9"
username = "admin"
password_file = "{pw}"
channels = {{ "1" = "interrogation-1" }}

[rules.suspect_motionless]
after_s = 120
""")
    r = cli("config", "check", config=cfg, env={"COLUMNS": "250"})
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert "devices[0].still_s" in out and "still_s = 300 s is longer than" in out and "set still_s ≤ 120" in out
    cfg.write_text(cfg.read_text().replace('channels =', 'still_s = 120\nchannels ='))
    r = cli("config", "check", config=cfg, env={"COLUMNS": "250"})
    assert r.returncode == 0 and "still_s = " not in r.stdout + r.stderr


def test_log_lines_carry_the_utc_offset_in_the_center_zone():
    rec = logging.LogRecord("casegate", logging.INFO, __file__, 1, "hello", None, None)
    rec.created = parse_ts("2026-12-06T07:04:11.250Z")
    rec.msecs = 250
    line = LocalTimeFormatter("%(asctime)s %(message)s", "Asia/Shanghai").format(rec)
    assert line == "2026-12-06 15:04:11.250 +08:00 hello"


def test_probe_of_a_configured_zone_reader_knows_its_stations():
    dev = ZoneReaderConfig(id="zone", driver="zone_reader", listen="127.0.0.1:4501",
                           stations={"861694034205896": "interrogation-1",
                                     "861694034205897": {"room": "waiting-1", "ip": "10.30.1.41"}})
    args = args_from_config(dev, "/tmp")
    assert args == ["--listen", "127.0.0.1:4501", "--station", "861694034205896=interrogation-1",
                    "--station", "861694034205897=waiting-1"]


def test_probe_on_a_port_in_use_says_to_stop_the_daemon_once():
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = held.getsockname()[1]
    try:
        r = subprocess.run([sys.executable, "-m", "gateway.cli", "probe", "--driver", "zone_reader",
                            "--listen", f"127.0.0.1:{port}", "--seconds", "3"],
                           capture_output=True, text=True, timeout=60, cwd=ROOT)
    finally:
        held.close()
    assert r.returncode == 1
    assert r.stderr.count("in use") == 1, r.stderr
    assert "stop it first (systemctl stop casegate)" in r.stderr


def test_snapshot_names_carry_the_centers_local_time_with_offset(tmp_path):
    """issue 27: snapshot file names carried UTC while every time a person reads is local."""
    from drivers.common.snapshots import write_snapshot
    ts = parse_ts("2026-12-06T00:21:15.123Z")
    p = write_snapshot(tmp_path / "snapshots", "cam-int1", "alarm", 3, ts, b"\xff\xd8\xff\xd9", tz="Asia/Shanghai")
    assert p.name == "cam-int1-20261206T082115.123+0800-3-alarm.jpg" and p.read_bytes() == b"\xff\xd8\xff\xd9"
    assert oct(p.stat().st_mode & 0o777) == "0o600"
    utc = write_snapshot(tmp_path / "snapshots", "cam-int1", "alarm", 4, ts, b"\xff\xd8\xff\xd9")
    assert utc.name == "cam-int1-20261206T002115.123Z-4-alarm.jpg"
