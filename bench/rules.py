"""Rule-engine benchmark (a script, not a test): prints figures.

    cd /work/main && uv run python bench/rules.py [--events N] [--live N]

1. live: events/s through state + rules with 200 persons in 50 rooms, each
   event sealed (hash chain) and its alarms sealed and fed back, as the core
   does; the timer advanced like the core's.
2. replay: a synthetic in-memory journal of N (default 1,000,000) events
   through ``rules.replay.replay`` (target >= 50,000 events/s).
"""
from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gateway.config import parse_config  # noqa: E402
from rules.model import GENESIS, Draft, Event, format_ts, parse_ts, seal  # noqa: E402
from rules.engine import Engine  # noqa: E402
from rules.replay import replay  # noqa: E402

T0 = parse_ts("2026-11-26T00:00:00Z")
TYPES = (["interrogation"] * 12 + ["waiting"] * 12 + ["corridor"] * 4 + ["security_check"] * 3 +
         ["info_collection"] * 3 + ["belongings"] * 2 + ["toilet"] * 3 + ["medical"] * 2 +
         ["counselling"] * 2 + ["identification"] * 2 + ["duty", "entrance", "exit", "evidence_store", "waiting"])


def center(n_rooms=50):
    rooms = []
    for i in range(n_rooms):
        adj = [f"r{i + 1:02d}"] if i + 1 < n_rooms and i % 5 != 4 else []
        rooms.append({"id": f"r{i:02d}", "type": TYPES[i % len(TYPES)], "name": f"房间{i}", "adjacent": adj})
    devices = [{"id": f"cam{i:02d}", "driver": "camera", "url": "rtsp://x", "room": f"r{i:02d}"}
               for i in range(0, n_rooms, 3)]
    devices.append({"id": "ev1", "driver": "locker", "purpose": "evidence", "port": "/dev/null"})
    return parse_config({"center": {"id": "bench"}, "rooms": rooms, "devices": devices})


def synthetic(n_events: int, n_persons=200, n_rooms=50, seed=1):
    """Yield (t, type, data, source) for a busy, mostly orderly center, ~4
    events/s: suspects are escorted from room to room (by two officers into a
    free interrogation room, never next to a co-suspect), other officers, staff
    and visitors walk about, wristbands report battery and heart rate, cameras
    count (off by one now and then), doors and lockers move. Alarms still
    happen (walkers leaving interrogations, minors without guardians, doors,
    lockers, detention limits...)."""
    rnd = random.Random(seed)
    n_sus = 60 * n_persons // 200
    n_off = 100 * n_persons // 200
    n_staff = 30 * n_persons // 200
    pids = [f"P{i:03d}" for i in range(n_persons)]
    roles = {p: ("suspect" if i < n_sus else "officer" if i < n_sus + n_off
                 else "staff" if i < n_sus + n_off + n_staff else "visitor") for i, p in enumerate(pids)}
    suspects = [p for p in pids if roles[p] == "suspect"]
    officers = [p for p in pids if roles[p] == "officer"]
    others = [p for p in pids if roles[p] != "suspect"]
    tags = {p: f"{0xA0000000 + i:08X}" for i, p in enumerate(pids)}
    rooms = [f"r{i:02d}" for i in range(n_rooms)]
    cameras = [f"r{i:02d}" for i in range(0, n_rooms, 3)]
    camset = set(cameras)
    rtype = {r: TYPES[i % len(TYPES)] for i, r in enumerate(rooms)}
    t = T0
    n = 0
    for i, p in enumerate(pids):
        role = roles[p]
        yield t, "person.registered", {"person": p, "role": role, "name": f"人员{i}",
                                       "gender": "female" if i % 3 == 0 else "male", "minor": i % 29 == 0,
                                       "case_id": f"C{i % 20}" if role == "suspect" else None,
                                       "case_type": "criminal" if i % 2 else "administrative",
                                       "limit_h": 24 if i % 7 == 0 else None}, "gateway"
        yield t, "wristband.bound", {"tag": tags[p], "person": p}, "gateway"
        n += 2
    where: dict[str, str] = {}
    occ: dict[str, set] = {r: set() for r in rooms}
    hr: dict[str, int] = {p: 75 for p in pids}
    battery: dict[str, float] = {p: 100.0 for p in pids}

    def go(p, room):
        old = where.get(p)
        if old == room:
            return
        if old is not None:
            occ[old].discard(p)
            yield t, "presence.left", {"person": p, "tag": tags[p], "room": old, "seconds": 1}, "zone"
        where[p] = room
        occ[room].add(p)
        yield t, "presence.entered", {"person": p, "tag": tags[p], "room": room}, "zone"
        for r in (old, room):
            if r in camset and rnd.random() < 0.3:   # cameras count on motion
                yield t, "camera.headcount", {"camera": f"cam{r[1:]}", "room": r,
                                              "count": len(occ[r])}, f"cam{r[1:]}"

    case = {p: f"C{i % 20}" for i, p in enumerate(pids)}
    near = {r: {r} for r in rooms}
    for i in range(n_rooms - 1):
        if i % 5 != 4:
            near[rooms[i]].add(rooms[i + 1])
            near[rooms[i + 1]].add(rooms[i])
    walkable = [r for r in rooms if rtype[r] not in ("interrogation", "exit")]

    def pick(sus, rnd):
        """An orderly center: a free interrogation room, or a room with no co-suspect nearby."""
        for _ in range(6):
            room = rooms[rnd.randrange(n_rooms)]
            if rtype[room] == "exit":
                continue
            if rtype[room] == "interrogation":
                if any(roles[q] == "suspect" for q in occ[room]):
                    continue
                return room
            if not any(roles[q] == "suspect" and q != sus and case[q] == case[sus]
                       for r in near[room] for q in occ[r]):
                return room
        return where.get(sus) or walkable[0]

    while n < n_events:
        t += rnd.uniform(0.0, 0.5)
        x = rnd.random()
        if x < 0.40:                                  # an escorted suspect moves
            i = rnd.randrange(len(suspects))
            room = pick(suspects[i], rnd)
            group = [suspects[i], officers[i % len(officers)]]
            if rtype[room] == "interrogation":
                group.append(officers[(i + 60) % len(officers)])
            for p in group:
                for e in go(p, room):
                    n += 1
                    yield e
        elif x < 0.62:                                # somebody else walks
            p = others[rnd.randrange(len(others))]
            for e in go(p, walkable[rnd.randrange(len(walkable))]):
                n += 1
                yield e
        elif x < 0.90:                                # a wristband reports a change
            p = pids[rnd.randrange(n_persons)]
            hr[p] = max(55, min(110, hr[p] + rnd.randint(-3, 3)))
            battery[p] = max(25.0, battery[p] - 0.05)
            n += 1
            yield t, "tag.status", {"tag": tags[p], "person": p, "battery": int(battery[p]),
                                    "tamper": False, "sos": False, "heart_rate": hr[p]}, "zone"
        elif x < 0.96:                                # a camera counts (off by one now and then)
            r = cameras[rnd.randrange(len(cameras))]
            cnt = len(occ[r]) + (1 if rnd.random() < 0.02 else 0)
            n += 1
            yield t, "camera.headcount", {"camera": f"cam{r[1:]}", "room": r, "count": cnt}, f"cam{r[1:]}"
        elif x < 0.99:
            d = rnd.randrange(10)
            n += 1
            yield t, rnd.choice(("door.opened", "door.closed")), {"door": f"d{d}", "room": f"r{d:02d}"}, "doors"
        else:
            c = rnd.randint(1, 16)
            n += 1
            if rnd.random() < 0.5:
                yield t, "locker.unlock_requested", {"locker": "ev1", "compartment": c, "by": "P100",
                                                     "order": None}, "gateway"
                n += 1
            yield t, rnd.choice(("locker.opened", "locker.closed")), {"locker": "ev1", "compartment": c}, "ev1"


def journal(n_events: int) -> list[Event]:
    """In-memory journal (envelopes without real hashes: replay does not check them)."""
    out = []
    for seq, (t, typ, data, src) in enumerate(synthetic(n_events), 1):
        ts = format_ts(t)
        out.append(Event(str(uuid.UUID(int=seq)), seq, ts, "bench", typ, src, data, "", "", parse_ts(ts)))
    return out


def bench_live(n: int, cfg) -> tuple[float, int, int]:
    eng = Engine(cfg)
    prev, seq, alarms = GENESIS, 0, 0
    steps = list(synthetic(n))
    t0 = time.perf_counter()
    for t, typ, data, src in steps:
        pending = eng.advance(t)            # the core's timer, at each batch
        pending.append(Draft(typ, data, src, t))
        while pending:
            d = pending.pop(0)
            seq += 1
            ev = seal(d, seq, "bench", prev, t)
            prev = ev.hash
            if d.source == "rules":
                alarms += 1
            pending.extend(eng.apply(ev))
    dt = time.perf_counter() - t0
    return dt, seq, alarms


def bench_engine_only(events: list[Event], cfg) -> float:
    eng = Engine(cfg)
    t0 = time.perf_counter()
    apply = eng.apply
    for ev in events:
        apply(ev)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--live", type=int, default=100_000)
    a = ap.parse_args()
    cfg = center()
    print(f"center: {len(cfg.rooms)} rooms, 200 persons (60 suspects / 20 cases, 100 officers, 30 staff, 10 visitors)")

    dt, seq, alarms = bench_live(a.live, cfg)
    print(f"live (seal + apply + feed back alarms): {a.live:,} inputs, {seq:,} journaled "
          f"({alarms:,} alarm events) in {dt:.2f} s = {a.live / dt:,.0f} events/s "
          f"({dt / a.live * 1e6:.1f} us/event)")

    t0 = time.perf_counter()
    evs = journal(a.events)
    # The journal is held in memory only for the benchmark (the daemon and
    # `casegate replay` stream it from SQLite): keep the collector from
    # re-scanning those million objects on every full collection.
    gc.collect()
    gc.freeze()
    print(f"built a {len(evs):,}-event in-memory journal in {time.perf_counter() - t0:.1f} s "
          f"({(evs[-1].epoch - evs[0].epoch) / 3600:.1f} h of center time)")

    dt = bench_engine_only(evs[: min(len(evs), 200_000)], cfg)
    k = min(len(evs), 200_000)
    print(f"engine.apply only (state + rules, drafts dropped): {k:,} events in {dt:.2f} s = {k / dt:,.0f} events/s")

    t0 = time.perf_counter()
    out = replay(evs, cfg)
    dt = time.perf_counter() - t0
    print(f"replay: {len(evs):,} events in {dt:.2f} s = {len(evs) / dt:,.0f} events/s "
          f"(target >= 50,000); {len(out):,} alarm events regenerated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
