"""`casegate journal backup FILE` (SPEC §5 v3) and the restore of docs/operations.md §3,
with a real daemon: online copy, 0600, verified, nothing left beside source or copy."""
from __future__ import annotations

import json
import os
import shutil
import stat

from helpers.daemon import DaemonProcess, cli, write_config


def _files(d):
    return sorted(p.name for p in d.iterdir())


def test_backup_online_then_restore(tmp_path):
    cfg = write_config(tmp_path, None)
    d = DaemonProcess(cfg).start()
    bk = tmp_path / "backup"
    try:
        for i in range(3):
            cli("person", "add", f"off-{i}", "--role", "officer", config=cfg, check=True)
        seq_now = d.status()["journal"]["last_seq"]
        r = cli("journal", "backup", bk / "journal-1.db", "--json", config=cfg, check=True)
        out = json.loads(r.stdout)
        assert out["daemon_running"] is True
        assert out["last_seq"] >= seq_now and out["first_seq"] == 1
        copy = bk / "journal-1.db"
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600
        # Nothing beside the copy (no -wal/-shm, no leftover temp file).
        assert _files(bk) == ["journal-1.db"]
        # Never overwritten: a second backup to the same name is refused, the file kept.
        before = copy.read_bytes()
        r = cli("journal", "backup", copy, config=cfg)
        assert r.returncode == 1 and "exists" in r.stderr
        assert copy.read_bytes() == before
        cli("person", "add", "off-after-backup", "--role", "officer", config=cfg, check=True)
    finally:
        assert d.terminate() == 0

    # Restore exactly as docs/operations.md §3 says (service stopped).
    state = d.state_dir
    os.replace(state / "journal.db", tmp_path / "lost.db")
    shutil.copyfile(bk / "journal-1.db", state / "journal.db")
    os.chmod(state / "journal.db", 0o600)
    for s in ("-wal", "-shm"):
        (state / f"journal.db{s}").unlink(missing_ok=True)
    shutil.rmtree(state / "checkpoints", ignore_errors=True)
    assert cli("journal", "verify", config=cfg).returncode == 0
    d2 = DaemonProcess(cfg).start()
    try:
        st = d2.status()
        assert st["journal"]["last_seq"] > out["last_seq"]
        r = cli("events", "--type", "person.registered", "--json", config=cfg, check=True)
        people = {json.loads(line)["data"]["person"] for line in r.stdout.splitlines()}
        assert people == {"off-0", "off-1", "off-2"}      # the backup's, not the later one
    finally:
        d2.stop()
    assert cli("journal", "verify", config=cfg).returncode == 0


def test_backup_of_a_stopped_daemon_leaves_nothing_beside_the_journal(tmp_path):
    cfg = write_config(tmp_path, None)
    d = DaemonProcess(cfg).start()
    cli("person", "add", "off-1", "--role", "officer", config=cfg, check=True)
    assert d.terminate() == 0
    state = d.state_dir
    before = _files(state)
    assert "journal.db-wal" not in before
    r = cli("journal", "backup", tmp_path / "b" / "j.db", "--json", config=cfg, check=True)
    assert json.loads(r.stdout)["daemon_running"] is False
    assert _files(state) == before
    assert _files(tmp_path / "b") == ["j.db"]
    # Verifying the copy in place creates nothing beside it either.
    (tmp_path / "b2" / "state").mkdir(parents=True)
    cfg2 = write_config(tmp_path / "b2", None)
    shutil.copyfile(tmp_path / "b" / "j.db", tmp_path / "b2" / "state" / "journal.db")
    assert cli("journal", "verify", config=cfg2).returncode == 0
    assert _files(tmp_path / "b2" / "state") == ["journal.db"]


def test_backup_into_the_storage_dir_refused(tmp_path):
    cfg = write_config(tmp_path, None)
    d = DaemonProcess(cfg).start()
    try:
        r = cli("journal", "backup", d.state_dir / "copy.db", config=cfg)
        assert r.returncode == 1 and "another disk or folder" in r.stderr
        assert not (d.state_dir / "copy.db").exists()
    finally:
        d.stop()
