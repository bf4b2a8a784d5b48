"""Retention across interrupted passes and restarts (issue 30 item 8), against the real
daemon: an interrupted pass's leftovers (an orphan ``.tmp``, an archive of rows the journal
still holds, a second copy of an archive) are removed at start and ``journal verify
--archive`` still proves the history; pruning waits for the first checkpoint, runs as soon as
there is one, and keeps its hourly cadence across restarts (journal meta ``last_prune``)."""
from __future__ import annotations

import shutil
import sqlite3
import time

from helpers.daemon import DaemonProcess, cli
from gateway.archive import archive_dir, archive_files, write_archive
from rules.model import format_ts
from gateway.journal import EVENT_COLUMNS
from helpers.retention import DAY, make_core, old_center, prune_now, submit, toml_for
from helpers.polling import wait_for as poll


def test_an_interrupted_pass_leaves_nothing_behind_after_a_start(tmp_path):
    cfg, j, core = make_core(tmp_path, retain_days=180)
    old_center(core, time.time() - 400 * DAY)
    submit(core, time.time(), "card.swiped", {"card": "FFFFFFFFFF", "reader": "r", "room": "x", "person": None})
    core.journal.conn.execute("UPDATE events SET delivered = 1")
    assert prune_now(core) > 50
    core.stop()
    adir = archive_dir(cfg.storage.dir)
    (good,) = archive_files(adir)
    # what a kill -9 in the middle of later passes leaves:
    # 1. a second copy of a completed pass (the next pass archived the same rows again)
    shutil.copy(good, adir / good.name.replace(".jsonl.gz", "-2.jsonl.gz"))
    # 2. an archive written, the process killed before its rows were deleted
    rows = j.conn.execute(f"SELECT {EVENT_COLUMNS}, shed FROM events ORDER BY seq LIMIT 3").fetchall()
    stale = write_archive(adir, "t-center", rows, format_ts(time.time()))
    # 3. a file being written when the process died
    orphan = adir / "journal-000000000090-000000000099.jsonl.gz.tmp"
    orphan.write_bytes(b"\x1f\x8b half a gzip stream")
    j.close()
    assert len(archive_files(adir)) == 3
    toml = toml_for(tmp_path, cfg)
    d = DaemonProcess(toml).start()
    try:
        assert archive_files(adir) == [good], archive_files(adir)
        assert not orphan.exists() and not stale.exists()
        log = d.log()
        assert "removed 1 leftover file(s) of an interrupted pruning pass (tmp)" in log, log
        assert "(still_in_journal)" in log and "(duplicate)" in log, log
    finally:
        d.stop()
    out = cli("journal", "verify", "--archive", config=toml)
    assert out.returncode == 0 and "from 1 archive files" in out.stdout, out


def add_old_swipes(cfg, n: int, start: int) -> None:
    from gateway.core import Core
    from gateway.journal import Journal
    from rules.engine import Engine
    j = Journal(cfg.journal_path, cfg.storage.synchronous)
    core = Core(cfg, j, Engine(cfg))
    core.start()
    t0 = time.time() - 10 * DAY
    for i in range(n):
        submit(core, t0 + i, "card.swiped", {"card": f"{start + i:010X}", "reader": "r", "room": "x", "person": None})
    submit(core, time.time(), "card.swiped", {"card": "FFFFFFFFFF", "reader": "r", "room": "x", "person": None})
    core.stop()
    j.conn.execute("UPDATE events SET delivered = 1")      # as if the broker had them all
    j.close()


def meta(cfg, key: str):
    conn = sqlite3.connect(cfg.journal_path)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None
    finally:
        conn.close()


def test_pruning_waits_for_the_first_checkpoint_and_keeps_its_hourly_cadence_across_restarts(tmp_path):
    cfg, j, core = make_core(tmp_path, retain_days=1)
    core.stop()
    j.close()
    add_old_swipes(cfg, 20, 0)
    toml = toml_for(tmp_path, cfg)
    toml.write_text(toml.read_text().replace("[storage]\n", "[storage]\nretain_days = 1\ncheckpoint_every_s = 1\n"))
    adir = archive_dir(cfg.storage.dir)

    # 1st start: no checkpoint yet, so nothing is pruned; once the first one is written the
    # pass runs at once (not 30 s or an hour later)
    d = DaemonProcess(toml).start()
    try:
        # the archive file is renamed into place before the pass logs it: wait for the log line
        poll(lambda: "retention: archived 20 events" in d.log(), 20, "never pruned after the first checkpoint")
        assert archive_files(adir)
        log = d.log()
        assert log.index("no checkpoint of the folded state yet") < log.index("retention: archived 20 events")
    finally:
        d.stop()
    first = float(meta(cfg, "last_prune"))
    assert abs(first - time.time()) < 120

    # 2nd start minutes later, with more old events: the hourly slot is still used
    add_old_swipes(cfg, 5, 100)
    d = DaemonProcess(toml).start()
    try:
        poll(lambda: "the last pruning pass was" in d.log(), 20, "no cadence decision logged")
        d.wait_status(lambda s: (s["checkpoint"]["last"] or {}).get("seq"), timeout=20)
        assert len(archive_files(adir)) == 1 and float(meta(cfg, "last_prune")) == first
    finally:
        d.stop()

    # 3rd start, the last pass more than an hour ago: pruned after its first checkpoint
    conn = sqlite3.connect(cfg.journal_path)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'last_prune'", (repr(first - 3700),))
    conn.commit()
    conn.close()
    d = DaemonProcess(toml).start()
    try:
        poll(lambda: len(archive_files(adir)) == 2, 20, "the due pass did not run")
        assert float(meta(cfg, "last_prune")) > first - 60
    finally:
        d.stop()
    assert cli("journal", "verify", "--archive", config=toml).returncode == 0
