"""The duty room's views of a real center (issue 18): `casegate top` in a real terminal (tmux) and
Prometheus metrics scraped over HTTP. One running daemon with real devices: MR7901 zone stations
(simulated over TCP) and an EM4100 card reader on a pty; people registered through the CLI; a
suspect left alone in the waiting room raises unattended_suspect.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from types import SimpleNamespace

import pytest
from helpers.brokers import free_port
from helpers.daemon import ROOT, DaemonProcess, cli, write_config

from drivers.card_reader.simulator import CardReaderSimulator
from drivers.zone_reader.simulator import ZoneSite
from helpers.polling import wait_for as poll

CENTER = """
[center]
timezone = "Asia/Shanghai"
[metrics]
listen = "127.0.0.1:{mport}"

[[rooms]]
id = "waiting-1"
type = "waiting"
name = "候问室1"
[[rooms]]
id = "security_check"
type = "security_check"

[[devices]]
id = "zone"
driver = "zone_reader"
listen = "127.0.0.1:{zport}"
stations = {{ "ST-WAIT" = "waiting-1", "ST-SEC" = "security_check" }}
presence_timeout_s = 5
heartbeat_s = 5
[[devices]]
id = "card-sec"
driver = "card_reader"
port = "{card}"
room = "security_check"

[rules.unattended_suspect]
grace_s = 0.5
"""


@pytest.fixture(scope="module")
def center(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dutyroom")
    zport, mport = free_port(), free_port()
    card = CardReaderSimulator(link=str(tmp / "ttyCARD"))
    text = CENTER.format(zport=zport, mport=mport, card=card.port)
    # write_config puts [center] first; ours adds the timezone and metrics, so merge by hand.
    cfg = write_config(tmp, None, text.replace('[center]\ntimezone = "Asia/Shanghai"\n', ""))
    cfg.write_text(cfg.read_text().replace('[center]\nid = "t-center"\n',
                                           '[center]\nid = "t-center"\ntimezone = "Asia/Shanghai"\n'))
    d = DaemonProcess(cfg)
    site = ZoneSite("127.0.0.1", zport, ["ST-WAIT", "ST-SEC"], heartbeat_s=5, report_s=0.3, reconnect_s=0.3)
    try:
        d.start()
        for args in (["s1", "--role", "suspect", "--gender", "male", "--name", "王五", "--case-id", "c1", "--case-type", "criminal"],
                     ["o1", "--role", "officer", "--name", "赵六"]):
            cli("person", "add", *args, config=cfg, check=True)
        cli("band", "bind", "5B000001", "s1", config=cfg, check=True)
        cli("band", "bind", "E3AF0001", "o1", config=cfg, check=True)
        site.start()
        assert site.wait_logged_in(10)
        site.move("5B000001", "ST-WAIT")
        site.move("E3AF0001", "ST-SEC")
        card.swipe("0A1B2C3D4E")
        card.swipe("0A1B2C3D4F")
        poll(lambda: any(a["code"] == "unattended_suspect" for a in
                         json.loads(cli("alarms", "--active", "--json", config=cfg).stdout or "[]")),
             20, "unattended_suspect")
        poll(lambda: next(x for x in d.status()["devices"] if x["id"] == "card-sec")["frames_ok"] >= 2,
             10, "card frames")
        yield SimpleNamespace(cfg=cfg, daemon=d, mport=mport, site=site, card=card)
    finally:
        site.stop()
        d.stop()
        card.close()


# ---- metrics ------------------------------------------------------------------------------------------
def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_metrics_scraped_from_a_real_daemon(center):
    m = scrape(center.mport)
    st = center.daemon.status()
    assert m["casegate_events_journaled_total"] >= st["journal"]["last_seq"] - 5 > 0
    assert m["casegate_journal_bytes"] > 0
    assert m['casegate_alarms_active{code="unattended_suspect",severity="critical"}'] == 1
    assert m['casegate_device_frames_ok_total{device="card-sec",driver="card_reader"}'] >= 2
    assert m['casegate_device_state{device="zone",driver="zone_reader",state="online"}'] == 1
    assert m['casegate_device_state{device="zone",driver="zone_reader",state="offline"}'] == 0
    assert m["casegate_uplink_connected"] == 0             # MQTT disabled here
    # the checkpoint-age gauge exists once a checkpoint does (tests/test_metrics_bounded.py)
    if st["checkpoint"]["last"]:
        assert m["casegate_checkpoint_age_seconds"] >= 0
    synced = st["clock"]["synchronised"]                   # SPEC §7 v3: the daemon's own sync state
    assert m.get("casegate_clock_synchronised") == (None if synced is None else int(synced))
    assert m["casegate_clock_steps_total"] == st["clock"]["steps"]


def test_metrics_follow_the_journal(center):
    before = scrape(center.mport)["casegate_events_journaled_total"]
    cli("person", "add", "v1", "--role", "visitor", config=center.cfg, check=True)
    after = scrape(center.mport)["casegate_events_journaled_total"]
    assert after >= before + 1


def test_metrics_port_taken_is_logged_and_the_center_still_runs(tmp_path, center):
    cfg = write_config(tmp_path, None, f'[metrics]\nlisten = "127.0.0.1:{center.mport}"\n')
    d = DaemonProcess(cfg).start()
    try:
        assert d.status()["journal"]["events"] >= 1
    finally:
        d.stop()
    assert f"metrics: cannot listen on 127.0.0.1:{center.mport}" in d.log()


# ---- top in a real terminal -------------------------------------------------------------------------
@pytest.fixture
def tmux(tmp_path):
    if not shutil.which("tmux"):
        pytest.fail("tmux is not installed (apt-get install tmux)")
    sock = str(tmp_path / "tmux.sock")
    yield lambda *a: subprocess.run(["tmux", "-S", sock, *a], capture_output=True, text=True, timeout=20)
    subprocess.run(["tmux", "-S", sock, "kill-server"], capture_output=True, timeout=20)


def test_top_in_a_real_terminal(center, tmux):
    # COLUMNS: the window's width, whatever the test runner exported (rich reads COLUMNS first;
    # an inherited 80 drew the narrow layout, which test_top_render.py checks on its own)
    cmd = f"cd {ROOT} && COLUMNS=160 {sys.executable} -m gateway.cli --config {center.cfg} top --interval 0.5; " \
          f"echo TOP-EXIT=$?; sleep 30"
    r = tmux("new-session", "-d", "-s", "top", "-x", "160", "-y", "45", cmd)
    assert r.returncode == 0, r.stderr

    def screen():
        return tmux("capture-pane", "-p", "-t", "top").stdout

    text = poll(lambda: (s := screen()) and "unattended_suspect" in s and "waiting-1" in s and s, 30,
                "top to draw the center")
    lines = text.splitlines()
    assert "t-center" in lines[0] and "(Asia/Shanghai)" in lines[0] and "+08:00" in lines[0]
    alarm = next(x for x in lines if "unattended_suspect" in x)
    assert "UNACKED" in alarm and "critical" in alarm and "s1" in alarm
    rooms_at = next(i for i, x in enumerate(lines) if x.startswith("rooms:"))
    person = next(x for x in lines[rooms_at:] if " s1 " in x)
    assert "waiting-1" in person and "候问室1" in person and " suspect " in person
    assert "王五" in person
    since = next(w for w in person.split() if w.count(":") == 2)        # hh:mm:ss, local
    from rules.model import format_local
    assert abs(int(since[:2]) - int(format_local(time.time(), "Asia/Shanghai")[11:13])) in (0, 1, 23)
    assert any("card-sec" in x and "online" in x for x in lines)
    assert "uplink disabled" in " ".join(lines[:2])        # the header may wrap

    # acknowledge: the alarm moves to "acked <by>" on the next refresh
    aid = next(a["alarm_id"] for a in json.loads(cli("alarms", "--active", "--json", config=center.cfg).stdout)
               if a["code"] == "unattended_suspect")
    cli("ack", aid, "--by", "o1", config=center.cfg, check=True)
    poll(lambda: "acked o1" in screen(), 15, "top to show the acknowledgement")

    tmux("send-keys", "-t", "top", "q")
    poll(lambda: "TOP-EXIT=0" in screen(), 10, "top to quit on q")
