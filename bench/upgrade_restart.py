"""Restart after an upgrade or a config change (issue 24 item 3): a script, not a test.

    uv run python bench/upgrade_restart.py [--events 2500000] [--dir /tmp/upgrade] [--daemon]

Builds a journal of the bench's synthetic busy center (bench/rules.py: 200 persons,
50 rooms; tests/busy_journal.py, straight through the journal API), then times, in
one run, through the real Core, rules, SQLite journal and checkpoint files:

1. the baseline: a start with no usable checkpoint = a full replay (what every
   upgrade and every config change cost before: the checkpoint was refused);
2. a start after an upgrade: the checkpoint's header says other code wrote it
   (``source`` differs), its state's shape is this code's: checkpoint + tail;
3. a start after a config change (a rule threshold, a rule disabled, a room added):
   restored under the old config, tail, then reloaded to the new one.

With ``--daemon``, also a real ``casegate run`` (upgrade + another config change at
once) timed from launch to READY=1 under a NOTIFY_SOCKET (bench/soak.py's timing).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from busy_journal import bench_rules, build_journal  # noqa: E402
from gateway.checkpoint import MAGIC, CheckpointStore  # noqa: E402
from gateway.config import parse_config  # noqa: E402
from gateway.core import Core  # noqa: E402
from gateway.daemon import derive_person_left  # noqa: E402
from rules.model import parse_ts  # noqa: E402
from gateway.journal import Journal  # noqa: E402
from rules.engine import Engine  # noqa: E402

CENTER = "bench"


def load_soak():
    spec = importlib.util.spec_from_file_location("bench_soak", ROOT / "bench" / "soak.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def config_dict(state_dir: Path, rules: dict | None = None, extra_room: bool = False) -> dict:
    c = bench_rules().center()
    rooms = [r.model_dump(mode="json", exclude_defaults=True) for r in c.rooms]
    if extra_room:
        rooms.append({"id": "annex", "type": "waiting", "name": "候问室附"})
    devices = [{**d.model_dump(mode="json", exclude_defaults=True), "enabled": False} for d in c.devices]
    return {"center": {"id": CENTER}, "storage": {"dir": str(state_dir), "synchronous": "normal"},
            "mqtt": {"enabled": False}, "rooms": rooms, "devices": devices, "rules": rules or {}}


class LastEventClock:
    """The core's 'now': just after the journal's last event (no downtime to catch up on)."""

    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def start(cfg, clock, old_source: str | None = None) -> tuple[float, dict]:
    """One start: rebuild (timed), run the writer, stop (writes the checkpoint)."""
    t0 = time.perf_counter()
    journal = Journal(cfg.journal_path, cfg.storage.synchronous)
    core = Core(cfg, journal, Engine(cfg), clock=clock)
    core.add_derivation(derive_person_left)
    store = CheckpointStore(cfg.storage_dir / "checkpoints", cfg, cfg.storage.checkpoint_keep)
    core.enable_checkpoints(store)
    core.rebuild()
    took = time.perf_counter() - t0
    info = dict(core.replay_info)
    if old_source:
        store.source = old_source          # the checkpoint at stop: as the previous release writes it
    core.start()
    t1 = time.perf_counter()
    core.stop(timeout=600)
    info["stop_s"] = round(time.perf_counter() - t1, 2)
    info["checkpoint_mb"] = round((store.last or {}).get("bytes", 0) / 1e6, 2)
    journal.close()
    return took, info


def as_older_release(folder: Path) -> None:
    """Rewrite the newest checkpoint's header as an older release's code would have written it."""
    path = sorted(folder.glob("*.ckpt"))[-1]
    raw = path.read_bytes()
    nl = raw.find(b"\n", len(MAGIC))
    head = json.loads(raw[len(MAGIC):nl])
    head["source"] = "0ld0release0src0"
    path.write_bytes(MAGIC + json.dumps(head, sort_keys=True).encode() + b"\n" + raw[nl + 1:])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=2_500_000)
    ap.add_argument("--dir", default=None, help="work here (default: a temp dir, removed)")
    ap.add_argument("--daemon", action="store_true", help="also time a real `casegate run` to READY=1")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    tmp = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="upgrade-"))
    state = tmp / "state"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True, mode=0o700)
    try:
        t0 = time.perf_counter()
        last = build_journal(state / "journal.db", args.events, CENTER)
        print(f"journal: {last:,} events built in {time.perf_counter() - t0:.0f} s "
              f"({(state / 'journal.db').stat().st_size / 1e6:.0f} MB)")
        j = Journal(state / "journal.db", "normal")
        t_last = parse_ts(j.conn.execute("SELECT ts FROM events ORDER BY seq DESC LIMIT 1").fetchone()[0])
        j.close()
        clock = LastEventClock(t_last + 1.0)
        cfg_a = parse_config(config_dict(state))

        full, info = start(cfg_a, clock, old_source="0ld0release0src0")
        print(f"baseline, full replay (no usable checkpoint: every upgrade and config change before): "
              f"{full:.2f} s for {info['replayed']:,} events ({info['replayed'] / full:,.0f} ev/s); "
              f"clean stop {info['stop_s']} s, checkpoint {info['checkpoint_mb']} MB")

        up, info = start(cfg_a, clock)
        assert info["from_checkpoint"], info
        print(f"after an upgrade (checkpoint written by other code, same state shape): {up:.2f} s "
              f"(checkpoint seq {info['from_checkpoint']:,} + {info['replayed']} events)")

        changed = {"unattended_suspect": {"grace_s": 45}, "door_held_open": {"enabled": False},
                   "rest_overdue": {"limit_h": 3}}
        cfg_b = parse_config(config_dict(state, changed, extra_room=True))
        cc, info = start(cfg_b, clock)
        assert info["from_checkpoint"], info
        print(f"after a config change (threshold, rule disabled, room added): {cc:.2f} s "
              f"(checkpoint seq {info['from_checkpoint']:,} + {info['replayed']} events, then reloaded)")
        print(f"speed-up over the full replay: upgrade x{full / up:.0f}, config change x{full / cc:.0f}")

        if args.daemon:
            soak = load_soak()
            as_older_release(state / "checkpoints")
            cfg_path = tmp / "casegate.toml"
            cfg_path.write_text(soak.to_toml(config_dict(state)) + "[rules.unattended_suspect]\ngrace_s = 90\n"
                                "[rules.door_held_open]\nenabled = false\n[rules.rest_overdue]\nlimit_h = 3\n")
            soak.daemon_start(cfg_path, tmp, "after an upgrade and a config change")
    finally:
        if not args.dir:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
