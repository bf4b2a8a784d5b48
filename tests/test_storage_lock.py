"""One daemon per storage dir (SPEC §5 v3): a second `casegate run` exits 2 naming
the first one's pid, and leaves the first one's control socket and journal alone."""
from __future__ import annotations

import subprocess
import sys

from helpers.daemon import ROOT, DaemonProcess, cli, write_config


def test_second_run_refused_naming_the_holder(tmp_path):
    cfg = write_config(tmp_path, None)
    first = DaemonProcess(cfg).start()
    try:
        seq_before = first.status()["journal"]["last_seq"]
        r = subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(cfg), "run"],
                           capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert r.returncode == 2, r.stderr
        assert f"pid {first.proc.pid}" in r.stderr
        assert "one daemon per storage dir" in r.stderr
        # The refused daemon removed nothing and wrote nothing: the first still answers.
        assert first.socket.exists()
        st = first.status()
        assert st["pid"] == first.proc.pid
        assert st["journal"]["last_seq"] == seq_before
    finally:
        assert first.terminate() == 0
    # After the first stops, its lock is gone with it: the next run starts.
    second = DaemonProcess(cfg).start()
    try:
        assert second.status()["pid"] == second.proc.pid
    finally:
        second.stop()
    assert cli("journal", "verify", config=cfg).returncode == 0


def test_lock_released_by_kill9(tmp_path):
    """A flock dies with its holder: no stale lock after a crash or power loss."""
    cfg = write_config(tmp_path, None)
    first = DaemonProcess(cfg).start()
    first.kill9()
    second = DaemonProcess(cfg).start()
    try:
        assert second.status()["pid"] == second.proc.pid
    finally:
        second.stop()
