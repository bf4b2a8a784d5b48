"""What validation and bisection cost `casegate ingest` (issue 29), in process, no broker:

    uv run python bench/ingest_hostile.py [--events 40000] [--pg]

* clean: N good events from 4 centers through the writer's path (``_commit``,
  batches of 2,000): CPU µs per event.
* hostile 10 %: the same stream with every 10th message one of issue 29's
  payloads (tests/central/hostile_util.py): CPU µs per message; each one ends
  in ``rejected`` before the transaction (no bisection expected).
* poison: one message the database refuses (a constraint) in a batch of 2,000:
  wall time to isolate it by bisection, against a clean batch of 2,000.
``--pg`` runs the same against a real PostgreSQL (initdb in a temp dir) too.
Figures vary with the machine's load; quote them from an idle host.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from rules.model import GENESIS, Draft, seal  # noqa: E402
from gateway.ingest.consumer import Ingest, IngestOptions  # noqa: E402
from helpers.hostile import good_chain, hostile, message  # noqa: E402


def msgs_of(evs) -> list[tuple]:
    return [(*message(e), 0, 0, False) for e in evs]


def feed(ing: Ingest, msgs: list[tuple]) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(0, len(msgs), 2000):
        ing._commit(msgs[i:i + 2000])
    return time.process_time() - cpu, time.perf_counter() - wall


def run(url_for, n: int) -> dict:
    per = n // 4
    out = {}
    evs = [e for c in ("c-a", "c-b", "c-c", "c-d") for e in good_chain(c, per)]
    ing = Ingest(IngestOptions(db=url_for("clean"), tail_probe_s=0))
    cpu, wall = feed(ing, msgs_of(evs))
    out["clean_cpu_us_per_event"] = round(cpu / len(evs) * 1e6, 1)
    out["clean_events_per_s"] = round(len(evs) / wall)
    ing.store.close()

    bad = hostile()
    mixed = []
    for i, m in enumerate(msgs_of(evs)):
        mixed.append(m)
        if i % 9 == 8:
            _, topic, payload, _, _ = bad[(i // 9) % len(bad)]
            mixed.append((topic, payload, 0, 0, False))
    ing = Ingest(IngestOptions(db=url_for("hostile"), tail_probe_s=0))
    cpu, wall = feed(ing, mixed)
    out["hostile_cpu_us_per_message"] = round(cpu / len(mixed) * 1e6, 1)
    out["hostile_rejected"] = ing.counts["rejected"]
    out["hostile_bisections"] = ing.counts["bisections"]
    ing.store.close()

    ing = Ingest(IngestOptions(db=url_for("poison"), tail_probe_s=0))
    if ing.store.dialect == "sqlite":
        ing.store.conn.execute("CREATE TRIGGER no_poison BEFORE INSERT ON events WHEN NEW.source = 'poison' "
                               "BEGIN SELECT RAISE(ABORT, 'poison'); END")
    else:
        ing.store.conn.execute("ALTER TABLE events ADD CONSTRAINT no_poison CHECK (source <> 'poison')")
    ing.store.conn.commit()
    clean = msgs_of(good_chain("c-p", 4000))
    _, wall_clean = feed(ing, clean[:2000])
    poison = seal(Draft("card.swiped", {"card": "X"}, "poison"), 1, "c-x", GENESIS, time.time())
    batch = clean[2000:] + msgs_of([poison])
    batch.insert(1000, batch.pop())
    _, wall_poison = feed(ing, batch)
    out["batch_2000_clean_ms"] = round(wall_clean * 1000)
    out["batch_2000_with_poison_ms"] = round(wall_poison * 1000)
    out["poison_bisections"] = ing.counts["bisections"]
    ing.store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=40_000)
    ap.add_argument("--pg", action="store_true", help="also against a real PostgreSQL")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ingest-hostile-"))
    result = {"sqlite": run(lambda name: f"sqlite:///{tmp / name}.db", args.events)}
    if args.pg:
        from helpers.pg import Postgres, missing_reason
        why = missing_reason()
        if why:
            result["postgresql"] = {"skipped": why}
        else:
            import psycopg
            pg = Postgres(tmp).start()
            try:
                with psycopg.connect(pg.url, autocommit=True) as c:
                    for name in ("clean", "hostile", "poison"):
                        c.execute(f"CREATE DATABASE {name}")
                base = pg.url.rsplit("/", 1)[0]
                result["postgresql"] = run(lambda name: f"{base}/{name}", args.events)
            finally:
                pg.stop()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
