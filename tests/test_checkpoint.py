"""Checkpoints in the real daemon: start = checkpoint + tail, kill -9 between checkpoints,
unusable checkpoints fall back (with a log line saying why), systemd is told about long
replays (EXTEND_TIMEOUT_USEC / STATUS under a fake NOTIFY_SOCKET)."""
from __future__ import annotations

import json
import logging
import re
import socket
from pathlib import Path

import pytest

from helpers.busy_journal import build_journal, rooms_toml
from helpers.daemon import DaemonProcess, cli, write_config
from gateway.checkpoint import MAGIC, CheckpointStore, engine_state, snapshot
from gateway.config import load_config, parse_config
from gateway.journal import Journal, iter_events, open_reader
from rules.engine import Engine
from rules.replay import rebuild
from helpers.central import Central

CENTER = "t-center"


def config(tmp_path: Path, mqtt_port=None, storage: str = "") -> Path:
    cfg = write_config(tmp_path, mqtt_port, extra=rooms_toml(), synchronous="normal")
    text = cfg.read_text().replace("[storage]\n", "[storage]\n" + storage, 1)
    cfg.write_text(text)
    return cfg


def boot(d: DaemonProcess) -> DaemonProcess:
    """Start and wait for the control socket; generous: 8 engineers share 2 cores."""
    d.start(wait=False)
    d.wait_ready(timeout=180)
    return d


def comparable(state: dict) -> dict:
    state = dict(state)
    state["memo"] = {k: v for k, v in state["memo"].items() if v}
    return state


def full_replay_state(cfg_path: Path, until_seq: int) -> dict:
    cfg = load_config(str(cfg_path))
    eng = Engine(cfg)
    conn = open_reader(cfg.journal_path)
    try:
        rebuild(eng, iter_events(conn, until_seq=until_seq), cfg.center.id)
    finally:
        conn.close()
    return comparable(engine_state(eng))


def checkpoints(cfg_path: Path) -> list[Path]:
    folder = Path(load_config(str(cfg_path)).storage_dir) / "checkpoints"
    return sorted(folder.glob("*.ckpt"))


def newest_state(cfg_path: Path) -> tuple[int, dict]:
    cfg = load_config(str(cfg_path))
    store = CheckpointStore(cfg.storage_dir / "checkpoints", cfg)
    path = checkpoints(cfg_path)[-1]
    head, state = store.read(path)
    return head["seq"], comparable(state)


def test_kill9_between_checkpoints_loses_nothing_and_restarts_from_the_older(tmp_path, mosquitto):
    cfg = config(tmp_path, mosquitto.port, "checkpoint_every_s = 3600\ncheckpoint_every_events = 10000000\n")
    state_dir = tmp_path / "state"
    n = build_journal(state_dir / "journal.db", 5_000, CENTER)
    d = DaemonProcess(cfg)
    boot(d)
    try:
        assert "no checkpoint: full replay" in d.log()
        st = d.status()
        assert st["start"]["from_checkpoint"] is None and st["start"]["replayed"] >= n
    finally:
        assert d.terminate() == 0
    stop_seq, _ = newest_state(cfg)
    # a clean stop checkpoints the end of the journal
    assert stop_seq == Journal(state_dir / "journal.db").last_seq

    boot(d)
    c = Central(mosquitto.port)
    try:
        d.wait_status(lambda s: s["uplink"]["connected"], timeout=120)
        st = d.status()
        assert st["start"]["from_checkpoint"] == stop_seq
        assert st["start"]["replayed"] <= 2            # gateway.started of this start, at most
        text = cli("status", config=cfg).stdout
        assert f"start    checkpoint seq {stop_seq} + " in text, text
        assert re.search(r"clock    (synchronised|NOT synchronised|sync unknown) \((timedatectl|adjtimex|unknown)\)",
                         text), text
        assert st["clock"]["synchronised"] in (True, False, None)
        for i in range(20):
            assert c.request("person/register", person=f"k{i}", role="suspect", gender="male", case_id=f"kc{i}", case_type="criminal")["ok"]
        d.kill9()                                      # no checkpoint since the start
    finally:
        c.close()
    assert [p.name for p in checkpoints(cfg)][-1] == f"{stop_seq:012d}.ckpt"

    boot(d)
    c = Central(mosquitto.port)
    try:
        d.wait_status(lambda s: s["uplink"]["connected"], timeout=120)
        st = d.status()
        assert st["start"]["from_checkpoint"] == stop_seq, d.log()   # the older checkpoint
        assert st["start"]["replayed"] >= 20
        # the registrations made before the kill are in the state: binding works
        for i in range(20):
            r = c.request("wristband/bind", tag=f"{0xB0000000 + i:08X}", person=f"k{i}")
            assert r["ok"], r
    finally:
        c.close()
        assert d.terminate() == 0
    # the checkpoint the daemon wrote at its stop == a full replay of the whole journal
    seq, ckpt = newest_state(cfg)
    assert seq == Journal(state_dir / "journal.db").last_seq
    assert ckpt == full_replay_state(cfg, seq)
    assert "k19" in ckpt["state"].persons
    assert cli("journal", "verify", config=cfg).returncode == 0

    # the newest checkpoint damaged: the daemon says why and takes the one before
    newest = checkpoints(cfg)[-1]
    raw = bytearray(newest.read_bytes())
    raw[-10] ^= 0xFF
    newest.write_bytes(bytes(raw))
    boot(d)
    try:
        log = d.log()
        assert re.search(rf"checkpoint {newest.name} unusable: payload damaged", log), log
        older = int(checkpoints(cfg)[-2].stem)
        assert d.status()["start"]["from_checkpoint"] == older
    finally:
        d.stop()


# ---- unusable checkpoints: each reason falls back, and says so -------------------------------
@pytest.fixture
def small(tmp_path):
    cfg = parse_config({"center": {"id": CENTER}, "storage": {"dir": str(tmp_path / "state")}})
    j = Journal(cfg.journal_path, "normal")
    from rules.model import Draft, seal
    ev = seal(Draft("person.registered", {"person": "p1", "role": "suspect"}, "test", 1.0e9), 1, CENTER,
              j.last_hash, 1.0e9)
    j.append([ev])
    eng = Engine(cfg)
    eng.apply(ev)
    store = CheckpointStore(cfg.storage_dir / "checkpoints", cfg)
    path = store.write(snapshot(eng), 1, ev.hash)

    def journal_hash(seq):
        row = j.conn.execute("SELECT hash FROM events WHERE seq = ?", (seq,)).fetchone()
        return row[0] if row else None
    yield cfg, store, path, journal_hash
    j.close()


def _rewrite_header(path: Path, **changes):
    raw = path.read_bytes()
    nl = raw.find(b"\n", len(MAGIC))
    head = json.loads(raw[len(MAGIC):nl])
    head.update(changes)
    path.write_bytes(MAGIC + json.dumps(head).encode() + b"\n" + raw[nl + 1:])


@pytest.mark.parametrize("damage,reason", [
    (lambda p: p.write_bytes(p.read_bytes()[:-7]), "payload damaged"),
    (lambda p: p.write_bytes(b"garbage"), "not a checkpoint file"),
    (lambda p: _rewrite_header(p, format=0), "format 0, this version reads 2"),
    (lambda p: _rewrite_header(p, format=1), "format 1 records neither its state's shape nor its config"),
    (lambda p: _rewrite_header(p, code="0123456789abcdef"), "written by other code"),
    (lambda p: _rewrite_header(p, revision=0), "written by other code (state revision 0"),
    (lambda p: _rewrite_header(p, shape={"Person": ["id", "role"]}), "Person's fields changed"),
    (lambda p: _rewrite_header(p, shape={"Gone": []}), "holds a Gone, which this code does not define"),
    (lambda p: _rewrite_header(p, engine=["state", "alarms"]), "the engine now keeps ["),
    (lambda p: _rewrite_header(p, config="x"), "rooms, devices, rules or center"),
    (lambda p: _rewrite_header(p, hash="f" * 64), "hash at seq 1 differs"),
    (lambda p: p.chmod(0o666), "not trusted"),
])
def test_unusable_checkpoint_means_full_replay_with_the_reason(small, caplog, damage, reason):
    cfg, store, path, journal_hash = small
    assert store.load_newest(journal_hash).seq == 1          # intact: used
    damage(path)
    with caplog.at_level(logging.INFO, logger="casegate.checkpoint"):
        assert store.load_newest(journal_hash) is None
    assert reason in caplog.text and "full replay" in caplog.text


def test_checkpoint_ahead_of_the_journal_is_not_used(small, caplog):
    cfg, store, path, journal_hash = small
    eng = Engine(cfg)
    store.write(snapshot(eng), 5, "a" * 64)                  # journal ends at 1
    with caplog.at_level(logging.INFO, logger="casegate.checkpoint"):
        got = store.load_newest(journal_hash)
    assert got.seq == 1
    assert "the journal has no event 5" in caplog.text


def test_store_keeps_the_newest_and_leaves_no_temporary_files(small):
    cfg, store, path, journal_hash = small
    eng = Engine(cfg)
    for seq in range(2, 8):
        store.write(snapshot(eng), seq, "h")
    assert [p for _, p in store.files()] == sorted(store.dir.glob("*.ckpt"), reverse=True)
    assert [s for s, _ in store.files()] == [7, 6, 5]
    assert not list(store.dir.glob(".*"))


def test_unpicklable_state_is_reported_not_fatal(small, caplog, tmp_path):
    """A rule that keeps a lambda in its memo breaks checkpoints: the core logs it and goes on."""
    from gateway.core import Core
    cfg, store, path, journal_hash = small
    j = Journal(tmp_path / "other.db", "normal")
    eng = Engine(cfg)
    core = Core(cfg, j, eng)
    core.enable_checkpoints(CheckpointStore(tmp_path / "ck", cfg))
    core.start()
    core.emit("door.opened", {"door": "d", "room": "r"}).result(5)
    eng.memo["x"]["bad"] = lambda: 1
    with caplog.at_level(logging.ERROR):
        core.stop()
    assert "not plain data" in caplog.text
    assert core.checkpoints.failed == 1 and not list((tmp_path / "ck").glob("*.ckpt"))
    j.close()


# ---- systemd: a long replay extends the start timeout and reports progress ------------------------
def test_long_replay_sends_extend_timeout_and_status(tmp_path):
    cfg = config(tmp_path, None, "replay_notify_after_s = 0\n")
    build_journal(tmp_path / "state" / "journal.db", 60_000, CENTER)
    addr = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(addr)
    s.settimeout(180)
    d = DaemonProcess(cfg, env={"NOTIFY_SOCKET": addr})
    d.start(wait=False)
    try:
        msgs = []
        while not any(m.startswith("READY=1") for m in msgs):
            msgs.append(s.recv(4096).decode())
        progress = [m for m in msgs if "STATUS=replaying journal" in m]
        assert progress, msgs
        for m in msgs[:-1]:                               # every phase of the start extends too
            assert "EXTEND_TIMEOUT_USEC=30000000\n" in m, m
        for m in progress:
            done, total, pct = re.search(r"STATUS=replaying journal (\d+)/(\d+) \((\d+)%\)", m).groups()
            assert 0 < int(done) <= int(total) and int(total) >= 60_000
        assert msgs[-1].startswith("READY=1")           # progress comes before READY, never after
        # a clean stop writes the final checkpoint (60k events' state: give a loaded machine time;
        # the fixture's stop() would SIGKILL after 15 s and the next start would replay a tail)
        assert d.terminate(timeout=120) == 0
    finally:
        d.stop()
        s.close()
    # after the clean stop, the next start replays no journal: no replay progress to report
    # (only its phases, each extending the start timeout)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(addr + "2")
    s.settimeout(180)
    d = DaemonProcess(cfg, env={"NOTIFY_SOCKET": addr + "2"})
    d.start(wait=False)
    try:
        msgs = [s.recv(4096).decode()]
        while not msgs[-1].startswith("READY=1"):
            msgs.append(s.recv(4096).decode())
        assert all("STATUS=starting: " in m for m in msgs[:-1]) and len(msgs) > 1, msgs
        d.wait_ready(timeout=180)
        assert d.status()["start"]["replayed"] <= 2
    finally:
        d.stop()
        s.close()


def test_after_a_live_reload_the_checkpoint_carries_the_reloaded_config(small, caplog):
    """Checkpoints carry the engine's own config: one written after a live reload restores
    under the reloaded config (what the daemon ran), whatever the store was opened with."""
    cfg, store, path, journal_hash = small
    reloaded = parse_config({**cfg.model_dump(mode="json"), "rules": {"unattended_suspect": {"grace_s": 7}}})
    eng = Engine(cfg)
    eng.reconfigure(reloaded)
    store.config_reloaded()
    store.write(snapshot(eng), 1, journal_hash(1))
    with caplog.at_level(logging.INFO, logger="casegate.checkpoint"):
        got = store.load_newest(journal_hash)
    assert got.config_changed and got.config.rules_config_hash() == reloaded.rules_config_hash()
    assert "written under another config" in caplog.text
    # opened under the reloaded config itself: nothing to reload
    assert not CheckpointStore(store.dir, reloaded).load_newest(journal_hash).config_changed


def test_a_changed_center_means_full_replay(small, caplog):
    """[center] cannot be reloaded live, so a checkpoint of another center is not restored."""
    cfg, store, path, journal_hash = small
    other = parse_config({**cfg.model_dump(mode="json"), "center": {"id": CENTER, "timezone": "Europe/Berlin"}})
    with caplog.at_level(logging.INFO, logger="casegate.checkpoint"):
        assert CheckpointStore(store.dir, other).load_newest(journal_hash) is None
    assert "[center] cannot be reloaded" in caplog.text and "full replay" in caplog.text


# ---- a start under another config: the checkpoint's config, its tail, then a reload ----------
def test_core_start_under_another_config_restores_replays_the_tail_then_reloads(tmp_path, caplog):
    """Core.rebuild from a checkpoint written under config A, started under B (a rule
    disabled, a room added): the engine is what a daemon that ran A all along and then
    reloaded B has (a full replay under A + Engine.reconfigure(B)), and the reload's
    alarm events are journaled at the start as a live reload journals them."""
    from helpers.busy_journal import bench_rules
    from gateway.core import Core
    rooms = [r.model_dump(mode="json") for r in bench_rules().center().rooms]
    base = {"center": {"id": CENTER}, "storage": {"dir": str(tmp_path / "state"), "synchronous": "normal"},
            "rooms": rooms}
    cfg_a = parse_config(base)
    cfg_b = parse_config({**base, "rooms": rooms + [{"id": "annex", "type": "waiting"}],
                          "rules": {"door_held_open": {"enabled": False}, "headcount_mismatch": {"grace_s": 90}}})
    cfg_a.storage_dir.mkdir(parents=True, mode=0o700)
    build_journal(cfg_a.journal_path, 6000, CENTER)

    def core(cfg, checkpoints=True):
        c = Core(cfg, Journal(cfg.journal_path, "normal"), Engine(cfg), clock=lambda: 1.0e9 + 10 * 86400)
        if checkpoints:
            c.enable_checkpoints(CheckpointStore(cfg.storage_dir / "checkpoints", cfg))
        return c
    first = core(cfg_a)
    first.rebuild()
    first.start()
    first.stop(timeout=60)                                  # the checkpoint under A
    first.journal.close()
    build_journal(cfg_a.journal_path, 3000, CENTER, skip=6000)  # the tail, journaled under A

    with caplog.at_level(logging.INFO):
        second = core(cfg_b)
        second.rebuild()
    assert second.replay_info["from_checkpoint"] and 2900 < second.replay_info["replayed"] < 3100
    assert "written under another config" in caplog.text
    assert second.engine.config is cfg_b and "door_held_open" not in second.engine.enabled
    assert second.engine.room_types["annex"] == "waiting"
    reference = core(cfg_a, checkpoints=False)               # what the live daemon had
    reference.rebuild()
    cleared = reference.engine.reconfigure(cfg_b)
    assert comparable(engine_state(second.engine)) == comparable(engine_state(reference.engine))
    reference.journal.close()
    assert any(d.data["code"] == "door_held_open" for d in cleared)   # the reload had something to do
    second.start()
    second.stop(timeout=60)
    j = second.journal
    # (the synthetic tail has no rule output journaled: reconcile settles that first, marked)
    got = [e.data["alarm_id"] for e in iter_events(j.conn, since_seq=9001)
           if e.type == "alarm.cleared" and e.data["code"] == "door_held_open"
           and not e.data.get("details", {}).get("reconciled")]
    assert sorted(got) == sorted(d.data["alarm_id"] for d in cleared)
    j.close()
