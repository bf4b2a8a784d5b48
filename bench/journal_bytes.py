"""Bytes per journaled event, indexes included.

Writes a synthetic busy-center journal (the event mix of a bounded day: wristband
status, presence, doors, cards, lockers, alarms) through gateway.journal.Journal,
marks it delivered as the uplink would, then prints the file size per event and
each table's and index's share (SQLite dbstat).

    uv run python bench/journal_bytes.py [--events 200000]
"""
from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rules.model import GENESIS, Draft, seal  # noqa: E402
from gateway.journal import Journal  # noqa: E402

ROOMS = ["interrogation-1", "interrogation-2", "waiting-1", "waiting-2", "corridor", "security-1",
         "info-1", "belongings-1", "medical-1", "toilet-1", "exit", "entrance"]


def synthetic_drafts(n: int, t0: float, rng: random.Random):
    """A day's bounded mix: ~45 % tag.status, ~35 % presence, doors, cards, lockers, alarms."""
    t = t0
    for i in range(n):
        t += 0.25
        p = f"P{rng.randrange(200):04d}"
        tag = f"{rng.randrange(1 << 32):08X}"
        room = rng.choice(ROOMS)
        r = rng.random()
        if r < 0.45:
            yield Draft("tag.status", {"tag": tag, "person": p, "battery": rng.randrange(20, 100),
                                       "tamper": False, "sos": False, "heart_rate": rng.randrange(60, 110)},
                        "zone-stations", t)
        elif r < 0.62:
            yield Draft("presence.entered", {"person": p, "tag": tag, "room": room}, "zone-stations", t)
        elif r < 0.80:
            yield Draft("presence.left", {"person": p, "tag": tag, "room": room,
                                          "seconds": round(rng.uniform(1, 900), 3)}, "zone-stations", t)
        elif r < 0.88:
            yield Draft(rng.choice(["door.opened", "door.closed"]), {"door": f"{room}-door", "room": room},
                        "doors-a", t)
        elif r < 0.93:
            yield Draft("card.swiped", {"card": f"{rng.randrange(1 << 40):010X}", "reader": "card-int1",
                                        "room": room, "person": p}, "card-int1", t)
        elif r < 0.97:
            yield Draft(rng.choice(["locker.opened", "locker.closed"]),
                        {"locker": "locker-ev1", "compartment": rng.randrange(1, 17)}, "locker-ev1", t)
        else:
            yield Draft("alarm.raised", {
                "alarm_id": f"unattended_suspect:{rng.randrange(1 << 64):016x}", "code": "unattended_suspect",
                "severity": "major", "room": room, "persons": [p], "since": "2026-11-26T08:00:00.000Z",
                "message": {"zh": f"{room}内嫌疑人无人看管", "en": f"suspect alone in {room}"},
                "details": {}, "legal_basis": ["公安机关办理刑事案件程序规定 第183条"], "snapshot": None},
                "rules", t)


def build(path: Path, n: int) -> None:
    j = Journal(path, "normal")
    rng = random.Random(7)
    prev, seq, batch = GENESIS, 0, []
    for d in synthetic_drafts(n, 1795680000.0, rng):
        seq += 1
        ev = seal(d, seq, "city-a-center", prev, d.ts)
        prev = ev.hash
        batch.append(ev)
        if len(batch) == 2000:
            j.append(batch, delivered=[e.seq for e in batch])
            batch = []
    if batch:
        j.append(batch, delivered=[e.seq for e in batch])
    j.checkpoint()
    j.close()


def report(path: Path, n: int) -> float:
    size = os.path.getsize(path)
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall()
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    print(f"{n} events, file {size / 1e6:.1f} MB, page_size {page}: {size / n:.0f} bytes/event")
    for name, b in rows:
        print(f"  {name:32s} {b / n:7.1f} bytes/event")
    return size / n


def archive_bytes(path: Path, directory: Path, n: int) -> None:
    """The same events as one archive file (gzip JSON Lines, gateway.archive)."""
    from gateway.archive import write_archive
    conn = sqlite3.connect(path)
    from gateway.journal import EVENT_COLUMNS
    rows = conn.execute(f"SELECT {EVENT_COLUMNS}, shed FROM events ORDER BY seq").fetchall()
    conn.close()
    t = time.perf_counter()
    f = write_archive(directory, "city-a-center", rows, "now")
    print(f"archive/: {os.path.getsize(f) / n:.0f} bytes/event gzip JSON Lines "
          f"(written at {n / (time.perf_counter() - t):,.0f} events/s)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--per-day", type=int, default=350_000, help="busy center, bounded telemetry")
    ap.add_argument("--max-mb", type=float, default=2048)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "journal.db"
        t = time.perf_counter()
        build(path, args.events)
        print(f"written in {time.perf_counter() - t:.1f} s")
        per = report(path, args.events)
        archive_bytes(path, Path(d) / "archive", args.events)
    mb_day = per * args.per_day / 1e6
    print(f"busy center: {args.per_day} events/day -> {mb_day:.0f} MB/day; "
          f"max_mb {args.max_mb:g} holds {args.max_mb * 1.048576 / mb_day:.1f} days")


if __name__ == "__main__":
    main()
