"""Journal: hash chain, seq continuity, verify, retention, disk cap, commit failure."""
from __future__ import annotations

import json
import re
import sqlite3
import time

import pytest

from gateway.config import parse_config
from gateway.core import Core
from rules.model import GENESIS, Draft, chain_hash, format_ts, parse_ts, uuid7
from gateway.journal import Journal, iter_events, open_reader, verify
from rules.engine import Engine

from helpers.polling import wait_for
from helpers.daemon import cli


def make_core(tmp_path, **storage):
    cfg = parse_config({"center": {"id": "t-center"},
                        "storage": {"dir": str(tmp_path / "state"), **storage}, "mqtt": {"enabled": False}})
    j = Journal(cfg.journal_path, cfg.storage.synchronous)
    core = Core(cfg, j, Engine(cfg))
    core.start()
    return cfg, j, core


def test_uuid7_and_timestamps():
    a, b = uuid7(), uuid7()
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", a)
    assert a != b
    assert format_ts(1795725003.1234) == "2026-11-26T20:30:03.123Z"
    assert parse_ts("2026-11-26T20:30:03.123Z") == pytest.approx(1795725003.123)


def test_events_are_chained_and_verifiable_from_envelopes(tmp_path):
    cfg, j, core = make_core(tmp_path)
    futs = [core.submit(Draft("card.swiped", {"card": f"14008EC7{i:02X}", "reader": "r", "room": "x",
                                               "person": None}, "r")) for i in range(50)]
    evs = [f.result(5) for f in futs]
    core.stop()
    assert [e.seq for e in evs] == list(range(1, 51))
    prev = GENESIS
    for e in evs:
        env = json.loads(e.to_json())
        assert env["prev"] == prev
        body = {k: v for k, v in env.items() if k not in ("prev", "hash")}
        assert env["hash"] == chain_hash(prev, json.dumps(body, sort_keys=True, separators=(",", ":"),
                                                          ensure_ascii=False))
        prev = env["hash"]
    r = verify(cfg.journal_path)
    assert r.ok and r.checked == 50 and r.last_seq == 50


def test_seq_survives_reopen(tmp_path):
    cfg, j, core = make_core(tmp_path)
    core.submit(Draft("gateway.started", {"version": "t", "config_hash": "x"})).result(5)
    core.stop()
    j.close()
    cfg, j2, core2 = make_core(tmp_path)
    ev = core2.submit(Draft("gateway.stopped", {"reason": "t"})).result(5)
    core2.stop()
    assert ev.seq == 2 and ev.prev != GENESIS
    assert verify(cfg.journal_path).ok


@pytest.mark.parametrize("tamper,reason", [
    ("UPDATE events SET data = '{\"card\":\"FFFFFFFFFF\"}' WHERE seq = 7", "hash does not match"),
    ("DELETE FROM events WHERE seq = 7", "seq 7 is missing"),
    ("UPDATE events SET ts = '2020-01-01T00:00:00.000Z' WHERE seq = 7", "hash does not match"),
])
def test_verify_names_first_bad_seq(tmp_path, tamper, reason):
    cfg, j, core = make_core(tmp_path)
    for i in range(12):
        core.submit(Draft("card.swiped", {"card": f"{i:010X}"}, "r")).result(5)
    core.stop()
    j.close()
    conn = sqlite3.connect(cfg.journal_path)
    conn.execute(tamper)
    conn.commit()
    conn.close()
    r = verify(cfg.journal_path)
    assert not r.ok and r.bad_seq == 7 and reason in r.reason
    # and the CLI says so with exit 1
    toml = tmp_path / "c.toml"
    toml.write_text(f'[storage]\ndir = "{cfg.storage.dir}"\n[mqtt]\nenabled = false\n')
    out = cli("journal", "verify", config=toml)
    assert out.returncode == 1, out
    assert "seq 7" in out.stderr
    ok_dir = tmp_path / "ok"
    cfg2, j2, core2 = make_core(ok_dir)
    core2.submit(Draft("gateway.started", {"version": "t", "config_hash": "x"})).result(5)
    core2.stop()
    toml.write_text(f'[storage]\ndir = "{cfg2.storage.dir}"\n[mqtt]\nenabled = false\n')
    assert cli("journal", "verify", config=toml).returncode == 0


def test_disk_cap_sheds_only_telemetry(tmp_path):
    cfg, j, core = make_core(tmp_path, max_mb=0.3)
    keep = []
    for i in range(3000):
        core.submit(Draft("tag.status", {"tag": f"{i:08X}", "person": None, "battery": 50, "tamper": False,
                                         "sos": False, "heart_rate": 70, "pad": "x" * 200}, "z"))
        if i % 100 == 0:
            keep.append(core.submit(Draft("person.registered", {"person": f"p{i}", "role": "suspect"}, "t")))
    last = core.submit(Draft("alarm.raised", {"alarm_id": "a1", "code": "sos"}, "rules")).result(10)
    core.journal.conn.execute("UPDATE events SET delivered = 1")  # as if all were PUBACKed
    core.call(lambda c: (c.maintain(), [])).result(30)
    core.submit(Draft("gateway.stopped", {"reason": "t"})).result(10)
    core.stop()
    conn = open_reader(cfg.journal_path)
    shed_rows = conn.execute("SELECT COUNT(*) FROM events WHERE shed = 1").fetchone()[0]
    bad = conn.execute("SELECT COUNT(*) FROM events WHERE shed = 1 AND type NOT IN "
                       "('tag.status','card.swiped','camera.headcount','device.online')").fetchone()[0]
    sheds = [e for e in iter_events(conn, types=["journal.shed"])]
    persons = [e for e in iter_events(conn, types=["person.registered"])]
    assert shed_rows > 0 and bad == 0
    assert sheds and sum(e.data["count"] for e in sheds) == shed_rows
    assert len(persons) == len(keep) == 30
    assert [e for e in iter_events(conn, types=["alarm.raised"])][0].seq == last.seq
    r = verify(cfg.journal_path)
    assert r.ok and r.shed == shed_rows


def test_retention_prunes_only_old_delivered_prefix(tmp_path):
    cfg, j, core = make_core(tmp_path, retain_days=1)
    old = time.time() - 3 * 86400
    for i in range(10):
        core.submit(Draft("card.swiped", {"card": f"{i:010X}"}, "r", ts=old)).result(5)
    core.submit(Draft("card.swiped", {"card": "AA"}, "r")).result(5)
    core.journal.conn.execute("UPDATE events SET delivered = 1 WHERE seq <= 5")
    core.checkpoint_seq = lambda: core.journal.last_seq      # pruning needs a checkpoint (SPEC §7)
    core.call(lambda c: (c.prune_retained(c.clock(), force=True), [])).result(10)
    core.stop()
    conn = open_reader(cfg.journal_path)
    seqs = [r[0] for r in conn.execute("SELECT seq FROM events ORDER BY seq")]
    assert seqs == list(range(6, 12))  # 1..5 delivered and old: gone; 6.. undelivered: kept
    assert verify(cfg.journal_path).ok


def test_commit_failure_holds_events_and_recovers(tmp_path):
    cfg, j, core = make_core(tmp_path)
    core.submit(Draft("gateway.started", {"version": "t", "config_hash": "x"})).result(5)
    pages = j.conn.execute("PRAGMA page_count").fetchone()[0]
    j.conn.execute(f"PRAGMA max_page_count = {pages}")      # the disk is "full"
    futs = [core.submit(Draft("person.registered", {"person": f"p{i}", "role": "suspect",
                                                    "pad": "y" * 3000}, "t")) for i in range(20)]
    wait_for(lambda: core.error, 10, "the writer to report the full disk")
    assert "full" in core.error
    assert not any(f.done() for f in futs), "nobody may be told 'stored' before COMMIT"
    j.conn.execute("PRAGMA max_page_count = 1073741823")   # space is back
    evs = [f.result(15) for f in futs]
    assert core.error is None
    core.stop()
    assert [e.seq for e in evs] == list(range(2, 22))
    assert verify(cfg.journal_path).ok


def test_bounded_queue_back_pressure_and_receipts(tmp_path):
    """Past queue_size, submit() blocks (then answers busy) instead of growing RAM;
    receipts resolve only after COMMIT, in order, and wake every waiter."""
    import threading
    from gateway.core import Core as _Core, RequestError
    cfg = parse_config({"center": {"id": "t-center"}, "storage": {"dir": str(tmp_path / "state")},
                        "mqtt": {"enabled": False}})
    core = _Core(cfg, Journal(cfg.journal_path, "full"), Engine(cfg), queue_size=5)
    core.start()
    gate, busy_now = threading.Event(), threading.Event()
    held = core.call(lambda c: (busy_now.set() or gate.wait(10), []))     # the writer is busy ...
    assert busy_now.wait(10)                                               # ... from now on
    queued = [core.submit(Draft("card.swiped", {"card": f"{i:010X}"}, "r")) for i in range(5)]
    with pytest.raises(TimeoutError):
        queued[0].result(0.1)                                  # not committed: no answer yet
    busy = core.submit(Draft("card.swiped", {"card": "FF"}, "r"), block=False)
    with pytest.raises(RequestError) as e:
        busy.result(1)
    assert e.value.code == "busy"
    t0 = time.monotonic()
    slow = core.submit(Draft("card.swiped", {"card": "FE"}, "r"), timeout=0.3)
    # not before its own timeout (how soon after is a figure for bench/, not a test)
    assert time.monotonic() - t0 >= 0.25 and slow.exception(1).code == "busy"
    results: list = []
    waiters = [threading.Thread(target=lambda f=f: results.append(f.result(10).seq)) for f in queued]
    for w in waiters:
        w.start()
    later = threading.Thread(target=lambda: results.append(
        core.submit(Draft("card.swiped", {"card": "FD"}, "r"), timeout=10).result(10).seq))
    later.start()                                             # blocked on space until the writer drains
    time.sleep(0.2)
    assert not results
    gate.set()
    for w in waiters + [later]:
        w.join(10)
    assert held.result(5).value is True
    assert sorted(results) == [1, 2, 3, 4, 5, 6] and [f.result(0).seq for f in queued] == [1, 2, 3, 4, 5]
    core.stop()
    assert verify(cfg.journal_path).ok
