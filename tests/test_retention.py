"""Retention that follows the law (SPEC §7): pruning keeps open matters, archives the
rest with chain anchors; journal verify (plain and --archive), custody and trace
after pruning; the upgrade path from a release-1 journal (tests/data)."""
from __future__ import annotations

import gzip
import json
import logging
import shutil
import sqlite3
import time
from pathlib import Path

from gateway.archive import archive_dir, archive_files
from gateway.journal import Journal, iter_events, open_reader, verify
from helpers.daemon import cli
from helpers.retention import DAY, make_core, old_center, prune_now, submit, toml_for

DATA = Path(__file__).resolve().parent / "data"
def alarm_keys(replay_json: str) -> list[tuple]:
    return [(a["type"], a["data"]["alarm_id"], a["ts"]) for a in json.loads(replay_json)]


def test_prune_keeps_open_matters_and_archives_the_rest(tmp_path):
    cfg, j, core = make_core(tmp_path, retain_days=180)
    t0 = time.time() - 400 * DAY
    e = old_center(core, t0)
    recent = submit(core, time.time(), "card.swiped", {"card": "FFFFFFFFFF", "reader": "r", "room": "x",
                                                        "person": None})
    core.journal.conn.execute("UPDATE events SET delivered = 1")      # as if all were PUBACKed
    before = [r[0] for r in core.journal.conn.execute("SELECT seq FROM events ORDER BY seq")]
    replay_before = alarm_keys(cli("replay", "--json", config=toml_for(tmp_path, cfg)).stdout)
    archived = prune_now(core)
    core.stop()
    j.close()
    conn = open_reader(cfg.journal_path)
    left = {ev.seq: ev for ev in iter_events(conn)}
    assert archived > 50 and len(left) + archived == len(before)
    # open matters stay in the journal with their original seq/prev/hash
    assert left[e["s_in"].seq].hash == e["s_in"].hash
    kept_types = sorted((ev.type, (ev.data or {}).get("person") or (ev.data or {}).get("item")
                         or (ev.data or {}).get("alarm_id") or (ev.data or {}).get("locker"))
                        for ev in left.values() if ev.seq < recent.seq)
    assert ("person.registered", "S-IN") in kept_types and ("wristband.bound", "S-IN") in kept_types
    assert ("presence.entered", "S-IN") in kept_types
    assert ("custody.ordered", "E0001") in kept_types and ("evidence.added", "E0001") in kept_types
    assert [t for t in kept_types if t[0].startswith("locker.")] == [
        ("locker.closed", "locker-ev1"), ("locker.opened", "locker-ev1"), ("locker.unlock_requested", "locker-ev1")]
    assert ("alarm.raised", "test_code:00000000000000aa") in kept_types
    # what no open matter needs is gone from the journal
    assert not [t for t in kept_types if t[1] in ("S-GONE", "E0002", "test_code:00000000000000bb")]
    assert not [t for t in kept_types if t[0] == "card.swiped"]
    assert recent.seq in left
    # the archive holds exactly the rest, with anchors
    files = archive_files(archive_dir(cfg.storage.dir))
    assert len(files) == 1
    with gzip.open(files[0], "rt") as f:
        header = json.loads(f.readline())
        envs = [json.loads(line) for line in f]
    assert header["count"] == archived == len(envs) and header["first_prev"] == envs[0]["prev"]
    assert header["last_hash"] == envs[-1]["hash"] and files[0].name.startswith(f"journal-{envs[0]['seq']:012d}-")
    assert {x["seq"] for x in envs} | set(left) == set(before)
    # plain verify passes on the journal with holes and says what was pruned
    r = verify(cfg.journal_path)
    assert r.ok and r.pruned == archived and r.holes >= 2, r
    toml = toml_for(tmp_path, cfg)
    out = cli("journal", "verify", config=toml)
    assert out.returncode == 0 and f"{archived} older events pruned" in out.stdout, out
    out = cli("journal", "verify", "--archive", config=toml)
    assert out.returncode == 0 and f"{archived} from 1 archive files" in out.stdout, out
    # custody: the whole chain of the item in custody; the released item's from the archive
    out = cli("custody", "E0001", "--json", config=toml)
    # (alarms about the item, e.g. a late hand-over, are part of its chain too)
    assert [r["event"] for r in json.loads(out.stdout) if not r["event"].startswith("alarm.")] == [
        "custody.ordered", "locker.unlock_requested", "locker.opened", "evidence.added", "locker.closed"]
    out = cli("custody", "E0002", "--json", config=toml)
    assert out.returncode == 0, out
    assert [r["event"] for r in json.loads(out.stdout)] == ["evidence.added", "custody.ordered", "evidence.removed"]
    # replay over archive + journal gives the same alarms as before pruning
    out = cli("replay", "--json", config=toml)
    assert out.returncode == 0, out
    assert alarm_keys(out.stdout) == replay_before and replay_before
    # trace of a person whose events were all archived
    out = cli("trace", "S-GONE", "--json", config=toml)
    assert out.returncode == 0, out
    assert [(r["room"], r["seconds"]) for r in json.loads(out.stdout)] == [("waiting-1", 595.0)]


def test_a_second_pass_archives_what_an_earlier_pass_kept(tmp_path):
    """The suspect kept by pass 1 leaves: pass 2 archives their year-old events into a
    second file; the holes merge and both verifies hold; trace still answers."""
    cfg, j, core = make_core(tmp_path, retain_days=180)
    t0 = time.time() - 400 * DAY
    e = old_center(core, t0)
    submit(core, time.time(), "card.swiped", {"card": "FFFFFFFFFF", "reader": "r", "room": "x", "person": None})
    core.journal.conn.execute("UPDATE events SET delivered = 1")
    first = prune_now(core)
    holes_1 = core.journal.conn.execute("SELECT COUNT(*) FROM pruned").fetchone()[0]
    assert e["s_in"].seq in {r[0] for r in core.journal.conn.execute("SELECT seq FROM events")}
    submit(core, time.time(), "person.left", {"person": "S-IN"}, "gateway")
    core.journal.conn.execute("UPDATE events SET delivered = 1")
    second = prune_now(core)
    holes_2 = core.journal.conn.execute("SELECT COUNT(*) FROM pruned").fetchone()[0]
    core.stop()
    j.close()
    assert first > 50 and second == 3 and holes_2 >= holes_1    # registered, bound, entered
    assert len(archive_files(archive_dir(cfg.storage.dir))) == 2
    assert verify(cfg.journal_path).ok
    toml = toml_for(tmp_path, cfg)
    out = cli("journal", "verify", "--archive", config=toml)
    assert out.returncode == 0 and "from 2 archive files" in out.stdout, out
    out = cli("trace", "S-IN", "--json", config=toml)
    assert [(r["room"], r["left"] is not None) for r in json.loads(out.stdout)] == [("waiting-1", True)]


def test_prune_below_the_checkpoint_only_and_never_without_one(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="casegate.core")
    cfg, j, core = make_core(tmp_path, retain_days=1)
    t0 = time.time() - 10 * DAY
    for i in range(20):
        submit(core, t0 + i, "card.swiped", {"card": f"{i:010X}", "reader": "r", "room": "x", "person": None})
    submit(core, time.time(), "card.swiped", {"card": "FF", "reader": "r", "room": "x", "person": None})
    core.journal.conn.execute("UPDATE events SET delivered = 1")
    assert core.call(lambda c: (c.prune_retained(time.time(), force=True), [])).result(10).value == 0
    assert "no checkpoint of the folded state yet, so nothing is pruned" in caplog.text
    assert prune_now(core, bound=8) == 8          # the checkpoint covers seq 8: 1..8 only
    core.stop()
    seqs = [r[0] for r in open_reader(cfg.journal_path).execute("SELECT seq FROM events ORDER BY seq")]
    assert seqs == list(range(9, 22))


def test_verify_archive_fails_on_tampered_or_missing_archive(tmp_path):
    cfg, j, core = make_core(tmp_path, retain_days=1)
    t0 = time.time() - 10 * DAY
    for i in range(30):
        submit(core, t0 + i, "card.swiped", {"card": f"{i:010X}", "reader": "r", "room": "x", "person": None})
    # (a visitor: a suspect without a band would also raise suspect_untracked, an alarm kept unacknowledged)
    submit(core, t0 + 40, "person.registered", {"person": "S-IN", "role": "visitor"})
    for i in range(30, 40):
        submit(core, t0 + 50 + i, "card.swiped", {"card": f"{i:010X}", "reader": "r", "room": "x",
                                                  "person": None})
    submit(core, time.time(), "card.swiped", {"card": "FF", "reader": "r", "room": "x", "person": None})
    core.journal.conn.execute("UPDATE events SET delivered = 1")
    assert prune_now(core) == 40
    core.stop()
    j.close()
    toml = toml_for(tmp_path, cfg)
    assert cli("journal", "verify", "--archive", config=toml).returncode == 0
    (path,) = archive_files(archive_dir(cfg.storage.dir))
    good = path.read_bytes()
    with gzip.open(path, "rt") as f:
        lines = f.readlines()
    ev = json.loads(lines[8])                      # seq 8
    ev["data"]["card"] = "DEADBEEF00"
    lines[8] = json.dumps(ev) + "\n"
    with gzip.open(path, "wt") as f:
        f.writelines(lines)
    out = cli("journal", "verify", "--archive", config=toml)
    assert out.returncode == 1 and "seq 8" in out.stderr and path.name in out.stderr, out
    assert cli("journal", "verify", config=toml).returncode == 0    # plain verify trusts the anchors
    path.write_bytes(good[:len(good) // 2])                          # truncated
    out = cli("journal", "verify", "--archive", config=toml)
    assert out.returncode == 1 and path.name in out.stderr, out
    path.unlink()                                                    # removed
    out = cli("journal", "verify", "--archive", config=toml)
    assert out.returncode == 1 and "seq 1..30 missing" in out.stderr, out
    # and plain verify catches a hole whose anchor was tampered with
    conn = sqlite3.connect(cfg.journal_path)
    hole_end = conn.execute("SELECT to_seq FROM pruned ORDER BY from_seq LIMIT 1").fetchone()[0]
    conn.execute("UPDATE pruned SET hash = ? WHERE to_seq = ?", ("0" * 64, hole_end))
    conn.commit()
    conn.close()
    out = cli("journal", "verify", config=toml)
    assert out.returncode == 1 and f"seq {hole_end + 1}:" in out.stderr and "anchor" in out.stderr, out


def test_legacy_journal_opens_migrates_verifies_and_replays_the_same(tmp_path):
    """A journal written by release 1 (tests/data/make_legacy_journal.py at d870053)."""
    from rules.replay import alarm_rows, replay
    from helpers.scenario import make_config
    db = tmp_path / "journal.db"
    shutil.copy(DATA / "legacy-v1-journal.db", db)
    assert verify(db).ok                          # readable before any migration (read-only)
    j = Journal(db)                               # the writer migrates
    assert j.get_meta("schema") == "2" and j.last_seq == 34
    indexes = {r[0] for r in j.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "idx_events_ts" not in indexes and "idx_events_type" in indexes
    j.close()
    r = verify(db)
    assert r.ok and r.checked == 34 and r.last_seq == 34
    conn = open_reader(db)
    events = list(iter_events(conn))
    journaled = list(alarm_rows(e for e in events if e.source == "rules"))
    replayed = list(alarm_rows(replay(events, make_config())))
    # The hash chain proves the content survived the migration. An audit replay runs
    # today's rules: every alarm the old release raised is raised again (same id), and
    # v2 adds its own (interrogation_not_recorded, cumulative grace periods).
    assert journaled
    again = {row[1] for row in replayed}
    kept = [row for row in journaled if row[2] not in ("lone_interrogation",) and row[0] == "alarm.raised"]
    assert kept and {row[1] for row in kept} <= again, (kept, replayed)
    assert {row[2] for row in journaled} <= {row[2] for row in replayed}
    assert any(row[2] == "lone_interrogation" for row in journaled)


def test_time_bounds_without_a_ts_index(tmp_path):
    """seq_at_ts finds the first event at/after a time by binary search on seq, across
    pruned holes; `events --since` gives exactly the events from then on."""
    from gateway.journal import seq_at_ts
    from rules.model import format_ts
    cfg, j, core = make_core(tmp_path, retain_days=1)
    t0 = time.time() - 10 * DAY
    evs = [submit(core, t0 + i * 3600, "card.swiped", {"card": f"{i:010X}", "reader": "r", "room": "x",
                                                       "person": None}) for i in range(200)]
    core.journal.conn.execute("UPDATE events SET delivered = 1")
    assert prune_now(core, bound=evs[48].seq) == 49           # seq 1..49 archived: a hole
    conn = core.journal.conn
    assert seq_at_ts(conn, format_ts(t0 - 1)) == 50          # the first event left
    assert seq_at_ts(conn, format_ts(t0 + 120 * 3600)) == evs[120].seq
    assert seq_at_ts(conn, format_ts(t0 + 120 * 3600 + 1)) == evs[121].seq
    assert seq_at_ts(conn, format_ts(t0 + 300 * 3600)) is None
    since = list(iter_events(conn, since_ts=format_ts(t0 + 150 * 3600)))
    assert [e.seq for e in since] == [e.seq for e in evs[150:]]
    assert list(iter_events(conn, since_ts=format_ts(t0 + 300 * 3600))) == []
    core.stop()


def test_a_journal_pruned_by_release_1_migrates_to_a_recorded_hole(tmp_path):
    """Release 1 deleted a prefix and kept only meta pruned_through/anchor: after the
    migration plain verify links across it; --archive says it cannot be proven."""
    db = tmp_path / "state" / "journal.db"
    db.parent.mkdir()
    shutil.copy(DATA / "legacy-v1-journal.db", db)
    conn = sqlite3.connect(db)
    anchor = conn.execute("SELECT hash FROM events WHERE seq = 10").fetchone()[0]
    conn.execute("DELETE FROM events WHERE seq <= 10")          # what release 1's prune did
    conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                     [("pruned_through", "10"), ("anchor", anchor)])
    conn.commit()
    conn.close()
    Journal(db).close()
    r = verify(db)
    assert r.ok and r.pruned == 10 and r.first_seq == 11, r
    toml = tmp_path / "c.toml"
    toml.write_text(f'[storage]\ndir = "{db.parent}"\n[mqtt]\nenabled = false\n')
    out = cli("journal", "verify", "--archive", config=toml)
    assert out.returncode == 1 and "seq 1..10 missing" in out.stderr and "release 1" in out.stderr, out


def test_prev_is_stored_only_where_the_previous_row_cannot_give_it(tmp_path):
    """Journals created by this release store prev NULL where it is the previous row's
    hash; readers get it back; the row after a pruned hole stores it; a changed hash
    still breaks verify at the next row."""
    cfg, j, core = make_core(tmp_path, retain_days=1)
    t0 = time.time() - 10 * DAY
    evs = [submit(core, t0 + i, "card.swiped", {"card": f"{i:010X}", "reader": "r", "room": "x",
                                                "person": None}) for i in range(20)]
    core.journal.conn.execute("UPDATE events SET delivered = 1")
    stored = dict(core.journal.conn.execute("SELECT seq, prev FROM events"))
    assert stored[1] is not None and all(stored[s] is None for s in range(2, 21))
    assert [(e.seq, e.prev) for e in iter_events(core.journal.conn)] == [(e.seq, e.prev) for e in evs]
    assert prune_now(core, bound=5) == 5
    assert core.journal.conn.execute("SELECT prev FROM events WHERE seq = 6").fetchone()[0] == evs[5].prev
    core.stop()
    j.close()
    assert verify(cfg.journal_path).ok
    conn = sqlite3.connect(cfg.journal_path)
    conn.execute("UPDATE events SET hash = ? WHERE seq = 10", ("f" * 64,))
    conn.commit()
    conn.close()
    r = verify(cfg.journal_path)
    assert not r.ok and r.bad_seq == 10, r
