"""pymodbus' own ERROR lines and its "Repeating...." are kept out of the probe's and the
daemon's output (issue 18 item 8): the driver reports a dead Modbus module once, with its id.
Real TCP: a port nobody listens on; a real daemon process."""
from __future__ import annotations

import time

from helpers.brokers import free_port
from helpers.daemon import DaemonProcess, cli, write_config


def test_modbus_probe_on_a_dead_module_prints_only_its_own_lines():
    port = free_port()
    r = cli("probe", "--driver", "modbus_doors", "--url", f"tcp://127.0.0.1:{port}", "--seconds", "2.5")
    out = r.stdout + r.stderr
    assert f"offline: cannot connect to 127.0.0.1:{port}" in out
    assert "Repeating" not in out and "Connection to" not in out, out


def test_daemon_log_has_no_pymodbus_noise(tmp_path):
    port = free_port()
    cfg = write_config(tmp_path, None, f"""
[[rooms]]
id = "exit"
type = "exit"
[[devices]]
id = "doors-a"
driver = "modbus_doors"
url = "tcp://127.0.0.1:{port}"
poll_ms = 100
timeout_ms = 100
doors = [ {{ input = 0, door = "exit-door", room = "exit" }} ]
""")
    d = DaemonProcess(cfg).start()
    try:
        d.wait_status(lambda s: s["devices"][0]["state"] in ("offline", "error"), timeout=20)
        time.sleep(2)            # several failed polls
    finally:
        d.stop()
    log = d.log()
    assert "doors-a" in log
    assert "Repeating" not in log and "pymodbus" not in log, log
