"""A full disk: the daemon keeps running, says `error` upstream, loses nothing, recovers."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from helpers.daemon import DaemonProcess, cli, write_config
from helpers.central import Central, P


@pytest.fixture
def tiny_disk(tmp_path):
    mnt = tmp_path / "state"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); the core-level test covers it")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(dirpath) -> str:
    junk = os.path.join(dirpath, "junk.bin")
    with open(junk, "wb") as f:
        try:
            for _ in range(10_000):
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return junk


def test_disk_full_reports_error_and_recovers(tmp_path, tiny_disk, mosquitto, subscriber_factory):
    cfg = write_config(tmp_path, mosquitto.port)
    sub = subscriber_factory(mosquitto.port, [f"{P}/state/gateway", f"{P}/events/person/#"])
    d = DaemonProcess(cfg).start()
    d.wait_status(lambda s: s["uplink"]["connected"])
    c = Central(mosquitto.port)
    try:
        assert c.request("person/register", person="before", role="visitor")["ok"]
        junk = fill(tiny_disk)
        for i in range(5):
            c.send("person/register", {"request_id": f"full-{i}", "person": f"p{i}", "role": "visitor"})
        # upstream learns the gateway cannot journal
        sub.wait_for(lambda m: m.topic == f"{P}/state/gateway" and json.loads(m.payload)["state"] == "error", 20)
        time.sleep(1.0)
        assert not any(c.responses.get(f"full-{i}", {}).get("ok") for i in range(5)), \
            "a request was acknowledged although nothing could be stored"
        st = d.status()
        assert st["journal"]["error"] and d.proc.poll() is None
        assert cli("status", config=cfg).returncode == 1
        os.unlink(junk)                          # space is back
        for i in range(5):
            r = c.wait(f"full-{i}", 40)
            assert r["ok"] or r["error"]["code"] == "busy", r
        sub.wait_for(lambda m: m.topic == f"{P}/state/gateway" and json.loads(m.payload)["state"] == "online", 20)
        # every request that was answered ok is journaled and upstream; re-sending the busy ones works
        for i in range(5):
            if not c.responses[f"full-{i}"]["ok"]:
                c.responses.pop(f"full-{i}")
                c.send("person/register", {"request_id": f"full-{i}", "person": f"p{i}", "role": "visitor"})
                assert c.wait(f"full-{i}", 20)["ok"]
        deadline = time.monotonic() + 20
        want = {f"p{i}" for i in range(5)} | {"before"}
        while time.monotonic() < deadline:
            got = {p["data"]["person"] for p in sub.payloads(f"{P}/events/person/registered")}
            if want <= got:
                break
            time.sleep(0.2)
        assert want <= got
        assert d.status()["journal"]["error"] is None
    finally:
        c.close()
        d.stop()
    assert cli("journal", "verify", config=cfg).returncode == 0
