"""A journal of a busy center, built fast (straight through the journal API, no daemon):
the bench's synthetic center (bench/rules.py, 200 persons in 50 rooms)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from rules.model import Draft, seal
from gateway.journal import Journal

ROOT = Path(__file__).resolve().parents[2]


def bench_rules():
    spec = importlib.util.spec_from_file_location("bench_rules", ROOT / "bench" / "rules.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def rooms_toml() -> str:
    """The synthetic center's rooms as config text (no devices: nothing to connect to)."""
    cfg = bench_rules().center()
    out = []
    for r in cfg.rooms:
        adj = ", ".join(f'"{a}"' for a in r.adjacent)
        out.append(f'[[rooms]]\nid = "{r.id}"\ntype = "{r.type}"\nname = "{r.name}"\nadjacent = [{adj}]\n')
    return "\n".join(out)


def build_journal(path: Path, n: int, center: str, seed: int = 1, skip: int = 0) -> int:
    """Append the synthetic center's first ``n`` inputs (after ``skip``) to the journal
    at ``path``; returns its last seq. Rule output is not journaled: the daemon's start
    regenerates and reconciles it."""
    j = Journal(path, "normal")
    seq, prev = j.last_seq, j.last_hash
    batch = []
    for i, (t, typ, data, src) in enumerate(bench_rules().synthetic(n + skip, seed=seed)):
        if i < skip:
            continue
        seq += 1
        ev = seal(Draft(typ, data, src, t), seq, center, prev, t)
        prev = ev.hash
        batch.append(ev)
        if len(batch) >= 5000:
            j.append(batch)
            batch = []
    if batch:
        j.append(batch)
    last = j.last_seq
    j.close()
    return last
