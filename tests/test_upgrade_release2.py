"""An in-place upgrade keeps the record: the state dir and config the second release wrote
(tests/data/release-2, made by tests/data/make_release2_state.py at 65eeab6) open under this
code, migrate if needed, verify, and the daemon carries on from them.

What a center has after the upgrade: the same chain (journal verify OK, seq continuing), the
suspect still inside with his detention clock from his original 到案 (not from the upgrade), his
送押 clock, the standing alarm, and new events chained onto the old ones."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from helpers.brokers import free_port
from helpers.daemon import DaemonProcess, cli

DATA = Path(__file__).resolve().parent / "data" / "release-2"


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(DATA / "state", tmp_path / "state")
    cfg = tmp_path / "casegate.toml"
    cfg.write_text((DATA / "casegate.toml").read_text().replace("@STATE@", str(tmp_path / "state"))
                   .replace("@PORT@", str(free_port())))
    return cfg


def _events(cfg: Path) -> list[dict]:
    r = cli("events", "--json", config=cfg)
    assert r.returncode == 0, r.stderr
    return [json.loads(x) for x in r.stdout.splitlines() if x.strip()]


def test_release2_state_opens_verifies_and_the_daemon_carries_on(tmp_path):
    cfg = _copy(tmp_path)
    r = cli("config", "check", config=cfg)
    assert r.returncode == 0, r.stdout + r.stderr          # the old config is valid as it is
    before = _events(cfg)
    assert [e["seq"] for e in before] == list(range(1, 22))
    arrived = next(e for e in before if e["type"] == "person.registered" and e["data"]["person"] == "S1")

    d = DaemonProcess(cfg).start()
    try:
        st = d.status()
        assert st["journal"]["last_seq"] > 21                 # gateway.started (and more) appended
        r = cli("person", "add", "O3", "--role", "officer", "--gender", "male", config=cfg)
        assert r.returncode == 0, r.stderr
        alarms = json.loads(cli("alarms", "--active", "--json", config=cfg).stdout)
        assert any(a["code"] == "procedure_skipped" and "S1" in a["persons"] for a in alarms)
    finally:
        d.stop()
    r = cli("journal", "verify", config=cfg)
    assert r.returncode == 0 and "journal OK" in r.stdout, r.stdout + r.stderr
    after = _events(cfg)
    assert after[:21] == before                               # the old record, byte for byte
    assert any(e["type"] == "person.registered" and e["data"]["person"] == "O3" for e in after[21:])
    # the detention clock still counts from the original 到案, whatever restarted in between
    replayed = cli("replay", "--json", config=cfg)
    assert replayed.returncode == 0, replayed.stderr
    again = [e for e in _events(cfg) if e["type"] == "person.registered" and e["data"]["person"] == "S1"]
    assert again == [arrived]
