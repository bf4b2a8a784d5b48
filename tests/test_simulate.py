"""`casegate simulate` (SPEC §5 v3, issue 27): a site commissioned end to end through the CLI only.

The daemon runs on a config naming a zone reader, a card reader on a serial port, a Modbus door
module and a Hikvision camera; `casegate simulate` plays them on exactly those addresses and ports
(the serial port is a pseudo-terminal linked at the configured path); everything else is typed at
the CLI, and what the daemon journaled is read back with the CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers.brokers import free_port
from helpers.daemon import ROOT, DaemonProcess, cli, write_config
from helpers.polling import wait_for as poll

S1_TAG, O1_TAG, O1_CARD = "5B000001", "E3AF0001", "14008EC793"


@pytest.fixture
def site(tmp_path, mosquitto):
    pw = tmp_path / "cam.pass"
    pw.write_text("cam-secret\n")
    pw.chmod(0o600)
    zport, mport, cport = free_port(), free_port(), free_port()
    cfg = write_config(tmp_path, mosquitto.port, f"""
[[rooms]]
id = "security_check"
type = "security_check"
[[rooms]]
id = "info_collection"
type = "info_collection"
[[rooms]]
id = "waiting-1"
type = "waiting"
[[rooms]]
id = "interrogation-1"
type = "interrogation"
recorder = "rec-int1"
[[rooms]]
id = "exit"
type = "exit"

[[devices]]
id = "zone"
driver = "zone_reader"
listen = "127.0.0.1:{zport}"
stations = {{ "ST-WAIT" = "waiting-1", "ST-INT1" = "interrogation-1" }}
heartbeat_s = 5

[[devices]]
id = "card-int1"
driver = "card_reader"
port = "{tmp_path / 'ttyCARD'}"
room = "interrogation-1"

[[devices]]
id = "doors"
driver = "modbus_doors"
url = "tcp://127.0.0.1:{mport}"
doors = [ {{ input = 0, door = "exit-door", room = "exit", exit = true }} ]

[[devices]]
id = "cam-int1"
driver = "camera_events"
vendor = "hikvision"
url = "http://127.0.0.1:{cport}"
username = "admin"
password_file = "{pw}"
channels = {{ "1" = "interrogation-1" }}
""")
    sim = subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config", str(cfg), "simulate"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           cwd=ROOT, bufsize=1)
    started = [sim.stdout.readline() for _ in range(4)]
    assert all(x.startswith("simulating ") for x in started), started
    d = DaemonProcess(cfg).start()
    yield cfg, sim, d, started
    d.stop()
    if sim.poll() is None:
        sim.stdin.close()
        sim.wait(30)


def say(sim, line: str) -> str:
    sim.stdin.write(line + "\n")
    sim.stdin.flush()
    return sim.stdout.readline().strip()


def events(cfg, typ: str) -> list[dict]:
    r = cli("events", "--type", typ, "--json", config=cfg)
    return [json.loads(x) for x in r.stdout.splitlines() if x.strip()] if r.returncode == 0 else []


def test_commissioning_a_site_through_the_cli_only(site, tmp_path):
    cfg, sim, d, started = site
    assert any(f"{tmp_path / 'ttyCARD'} -> /dev/pts/" in x for x in started)
    assert any("2 station(s) connecting to 127.0.0.1:" in x for x in started)
    # the simulated hardware is what the daemon sees: every device online
    poll(lambda: all(x["state"] == "online" for x in d.status()["devices"]), 60, "every device online")

    for args in (["person", "add", "S1", "--role", "suspect", "--gender", "male", "--case-id", "C-1",
                  "--case-type", "criminal"],
                 ["person", "add", "O1", "--role", "officer", "--gender", "male"],
                 ["band", "bind", S1_TAG, "S1"], ["band", "bind", O1_TAG, "O1"], ["band", "bind", O1_CARD, "O1"]):
        r = cli(*args, config=cfg)
        assert r.returncode == 0, (args, r.stderr)

    assert say(sim, f"move {S1_TAG} waiting-1").startswith("ok: 5B000001 in range of ST-WAIT")
    assert say(sim, f"move {O1_TAG} interrogation-1").startswith("ok:")
    assert say(sim, f"swipe {O1_CARD} card-int1").startswith("ok: card 14008EC793 swiped")
    assert say(sim, "door open exit-door").startswith("ok: door exit-door (exit) opened")
    assert say(sim, "motion interrogation-1 on").startswith("ok: cam-int1: motion on")
    # the room's recorder, as itself over MQTT: recording evidence (DOMAIN v3)
    assert say(sim, "recorder start interrogation-1") == "ok: recorder rec-int1 of interrogation-1: recording"
    # what the CLI shows of it
    poll(lambda: [x["room"] for x in json.loads(cli("trace", "S1", "--json", config=cfg).stdout or "[]")]
         == ["waiting-1"], 30, "S1 in waiting-1 (trace)")
    poll(lambda: any(e["data"].get("person") == "O1" for e in events(cfg, "card.swiped")), 30, "O1's card swipe")
    poll(lambda: any(e["data"]["door"] == "exit-door" for e in events(cfg, "door.opened")), 30, "exit door opened")
    poll(lambda: any(e["data"]["room"] == "interrogation-1" and e["data"]["active"]
                     for e in events(cfg, "camera.motion")), 30, "camera motion")
    rec = poll(lambda: events(cfg, "recording.started"), 30, "recording started")
    assert rec[0]["source"] == "mqtt:rec-int1" and rec[0]["data"]["recorder"] is True

    # mistakes are said, with what is valid, and do not stop the session
    assert "no room 'kitchen' in the config" in say(sim, f"move {S1_TAG} kitchen")
    assert "a card id is 10 hex digits" in say(sim, "swipe 12 card-int1")
    assert "no simulated device takes this" in say(sim, "fly away")
    assert say(sim, "door close exit-door").startswith("ok:")


def test_a_script_runs_and_a_bad_line_fails_it(site, tmp_path):
    cfg, sim, d, _ = site
    # the script's first line goes to the daemon over MQTT: wait for its uplink's subscription
    # (ready on the control socket comes first; a request before it is published to nobody)
    poll(lambda: d.status()["uplink"].get("connected"), 30, "the daemon's uplink connected")
    script = tmp_path / "walk.txt"
    script.write_text("# recorder only: the devices are held by the other simulate\n"
                      "recorder start interrogation-1\nwait 0.1\nrecorder stop interrogation-1\n")
    sim.stdin.close()                       # frees the ports: the script's simulate takes them
    sim.wait(30)
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(cfg), "simulate", "--script",
                        str(script)], capture_output=True, text=True, timeout=120, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok: recorder rec-int1 of interrogation-1: stopped" in r.stdout
    poll(lambda: events(cfg, "recording.stopped"), 30, "recording stopped")
    script.write_text("recorder start waiting-1\n")
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(cfg), "simulate", "--script",
                        str(script)], capture_output=True, text=True, timeout=120, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and "'waiting-1' is not an interrogation room" in r.stdout
