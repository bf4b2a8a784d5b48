"""Soak benchmark (a script, not a test): a busy center for 30 days on a compressed clock,
through the real Core, rules and SQLite journal (no MQTT). Prints figures.

    uv run python bench/soak.py [--days 10] [--scale 1.0] [--dir /tmp/soak] [--daemon]

The default (10 days, ~860,000 events) runs in under 10 minutes on a busy 2-core
machine; ``--days 30`` is the month the README's figures come from.

The center (bench/rules.py's 50 rooms): 100 officers, 30 staff, 10 visitors
every day, 60 suspects a day (x scale) who arrive 08:00-20:00, hand in their
belongings (locker), pass security and information collection, wait, are
interrogated by two officers (1-3 h, once or twice), and leave through the exit
3-9 h later; officers and staff walk about; doors open and close behind people
who pass; cameras count heads on motion. Wristbands report every second; the
zone reader's filter (SPEC §4.1) turns that into ``tag.status`` every
``status_every_s`` = 300 s and on a heart-rate move of >= ``hr_step_bpm`` = 10
(a suspect's pulse rises when an interrogation starts and falls after):
jitter of +-4 bpm never passes the deadband, so the bench emits the filter's
output rather than 86,400 readings per band and day.

Figures: events and journal MB per day, RSS per day, restart time (checkpoint
+ tail, after a clean stop) at day 1, 10 and 30, the full-replay rate, the
checkpoint pause of the writer, and how many days fit in ``max_mb``. With
``--daemon`` the last restart is a real ``casegate run`` timed to READY=1 under
a NOTIFY_SOCKET, plus one full replay with no checkpoint (EXTEND_TIMEOUT_USEC).
"""
from __future__ import annotations

import argparse
import ctypes
import heapq
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.checkpoint import CheckpointStore  # noqa: E402
from gateway.config import parse_config  # noqa: E402
from gateway.core import Core  # noqa: E402
from gateway.daemon import derive_person_left  # noqa: E402
from rules.model import Draft, parse_ts  # noqa: E402
from gateway.journal import Journal  # noqa: E402
from rules.engine import Engine  # noqa: E402

T0 = parse_ts("2026-10-01T00:00:00Z")   # 30 days end before "now": a real daemon can start on it
DAY = 86400.0
STATUS_EVERY_S = 300.0
TYPES = (["interrogation"] * 12 + ["waiting"] * 12 + ["corridor"] * 4 + ["security_check"] * 3 +
         ["info_collection"] * 3 + ["belongings"] * 2 + ["toilet"] * 3 + ["medical"] * 2 +
         ["counselling"] * 2 + ["identification"] * 2 + ["duty", "entrance", "exit", "evidence_store", "waiting"])


def center_dict(state_dir: str) -> dict:
    rooms = []
    for i in range(50):
        adj = [f"r{i + 1:02d}"] if i + 1 < 50 and i % 5 != 4 else []
        rooms.append({"id": f"r{i:02d}", "type": TYPES[i % len(TYPES)], "name": f"房间{i}", "adjacent": adj})
    devices = [{"id": f"cam{i:02d}", "driver": "camera", "url": "rtsp://x", "room": f"r{i:02d}", "enabled": False}
               for i in range(0, 50, 3)]
    devices += [{"id": "ev1", "driver": "locker", "purpose": "evidence", "port": "/dev/null", "enabled": False},
                {"id": "bl1", "driver": "locker", "purpose": "belongings", "port": "/dev/null", "board": 1,
                 "enabled": False}]
    return {"center": {"id": "soak"}, "storage": {"dir": state_dir, "synchronous": "normal"},
            "mqtt": {"enabled": False}, "rooms": rooms, "devices": devices}


class SimClock:
    """The compressed clock: the core's 'now' is the simulated time of the last event fed."""

    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


class Center:
    """A discrete-event simulation of the center; ``run_day`` yields (t, type, data, source)."""

    def __init__(self, scale: float, seed: int = 7):
        self.rnd = random.Random(seed)
        self.scale = scale
        self.rtype = {f"r{i:02d}": TYPES[i % len(TYPES)] for i in range(50)}
        self.by_type: dict[str, list[str]] = {}
        for r, ty in self.rtype.items():
            self.by_type.setdefault(ty, []).append(r)
        self.cams = {f"r{i:02d}" for i in range(0, 50, 3)}
        self.doors = {f"r{i:02d}" for i in range(50) if i % 2 == 0}
        self.walkable = [r for r, ty in self.rtype.items()
                         if ty in ("corridor", "duty", "medical", "counselling", "evidence_store", "toilet")]
        self.where: dict[str, str] = {}
        self.occ: dict[str, set[str]] = {r: set() for r in self.rtype}
        self.tag: dict[str, str] = {}
        self.hr: dict[str, int] = {}
        self.role: dict[str, str] = {}
        self.officers = [f"O{i:03d}" for i in range(100)]
        self.staff = [f"ST{i:02d}" for i in range(30)] + [f"V{i:02d}" for i in range(10)]
        self.busy: set[str] = set()            # officers escorting
        self.q: list = []
        self.n = 0
        self.comp = 0

    def push(self, t, kind, *args):
        self.n += 1
        heapq.heappush(self.q, (t, self.n, kind, args))

    # ---- moves ----------------------------------------------------------------------------
    def move(self, t, p, room):
        out = []
        old = self.where.get(p)
        if old == room:
            return out
        tag = self.tag[p]
        if old is not None:
            self.occ[old].discard(p)
            out.append((t, "presence.left", {"person": p, "tag": tag, "room": old, "seconds": 0}, "zone"))
            if old in self.cams and self.rnd.random() < 0.5:
                out.append((t, "camera.headcount", {"camera": f"cam{old[1:]}", "room": old,
                                                    "count": len(self.occ[old])}, f"cam{old[1:]}"))
        if room is None:
            self.where.pop(p, None)
            return out
        if room in self.doors:
            out.append((t, "door.opened", {"door": f"d-{room}", "room": room}, "doors"))
            self.push(t + 4, "door_closed", room)
        self.where[p] = room
        self.occ[room].add(p)
        out.append((t, "presence.entered", {"person": p, "tag": tag, "room": room}, "zone"))
        if room in self.cams and self.rnd.random() < 0.5:
            out.append((t, "camera.headcount", {"camera": f"cam{room[1:]}", "room": room,
                                                "count": len(self.occ[room])}, f"cam{room[1:]}"))
        return out

    def status(self, t, p):
        return (t, "tag.status", {"tag": self.tag[p], "person": p, "battery": 80, "tamper": False,
                                  "sos": False, "heart_rate": self.hr[p]}, "zone")

    def free_room(self, ty):
        rooms = [r for r in self.by_type[ty] if not any(self.role.get(q) == "suspect" for q in self.occ[r])]
        return self.rnd.choice(rooms) if rooms else None

    # ---- the days -----------------------------------------------------------------------------
    def setup(self, t):
        out = []
        for p in self.officers + self.staff:
            role = "officer" if p.startswith("O") else "staff" if p.startswith("ST") else "visitor"
            self.role[p] = role
            self.tag[p] = f"{0xA0000000 + len(self.tag):08X}"
            self.hr[p] = 70 + self.rnd.randint(-5, 5)
            out.append((t, "person.registered", {"person": p, "role": role, "name": p}, "gateway"))
            out.append((t, "wristband.bound", {"tag": self.tag[p], "person": p}, "gateway"))
            out += self.move(t, p, self.rnd.choice(self.walkable))
            self.push(t + self.rnd.uniform(0, STATUS_EVERY_S), "status", p)
            self.push(t + self.rnd.uniform(60, 1200), "walk", p)
        return out

    def schedule_day(self, day_start):
        n = max(1, round(60 * self.scale))
        for i in range(n):
            self.push(day_start + 8 * 3600 + self.rnd.uniform(0, 12 * 3600), "arrive",
                      f"S{int((day_start - T0) // DAY):02d}-{i:02d}")

    def step(self, t, kind, args):
        rnd = self.rnd
        if kind == "emit":
            return [(t, *args)]
        if kind == "go":
            p, room = args
            return self.move(t, p, room)
        if kind == "door_closed":
            room, = args
            return [(t, "door.closed", {"door": f"d-{room}", "room": room}, "doors")]
        if kind == "status":
            p, = args
            if p not in self.where:
                return []
            self.push(t + STATUS_EVERY_S, "status", p)
            return [self.status(t, p)]
        if kind == "walk":
            p, = args
            self.push(t + rnd.uniform(300, 1800), "walk", p)
            if p in self.busy:
                return []
            return self.move(t, p, rnd.choice(self.walkable))
        if kind == "arrive":
            s, = args
            self.role[s] = "suspect"
            self.tag[s] = f"{0xB0000000 + len(self.tag):08X}"
            self.hr[s] = 80 + rnd.randint(-5, 5)
            self.comp = self.comp % 64 + 1
            out = [(t, "person.registered", {"person": s, "role": "suspect", "name": s,
                                             "gender": "female" if rnd.random() < 0.2 else "male",
                                             "case_id": f"C{s}", "case_type": rnd.choice(("criminal", "administrative"))},
                    "gateway"),
                   (t, "wristband.bound", {"tag": self.tag[s], "person": s}, "gateway")]
            out += self.move(t, s, self.by_type["entrance"][0])
            item = f"E{s}".replace("-", "")
            self.push(t + 30, "emit", "belongings.assigned", {"person": s, "locker": "bl1", "compartment": self.comp},
                      "gateway")
            self.push(t + 31, "emit", "locker.opened", {"locker": "bl1", "compartment": self.comp}, "bl1")
            self.push(t + 40, "emit", "evidence.added", {"locker": "bl1", "compartment": self.comp, "item": item},
                      "bl1")
            self.push(t + 50, "emit", "locker.closed", {"locker": "bl1", "compartment": self.comp}, "bl1")
            plan = ["security_check", "info_collection", "waiting", "interrogation", "waiting"]
            if rnd.random() < 0.4:
                plan += ["interrogation", "waiting"]
            plan += ["exit"]
            self.push(t + 60, "status", s)
            self.push(t + rnd.uniform(300, 900), "next", s, plan, self.comp, None)
            return out
        if kind == "next":
            s, plan, comp, escort = args
            out = []
            if escort:                              # the interrogation is over: officers go back
                for o in escort:
                    self.busy.discard(o)
                    out += self.move(t, o, rnd.choice(self.by_type["duty"]))
                self.hr[s] -= 15
                out.append(self.status(t, s))
            ty = plan[0]
            if ty == "exit":
                out.append((t, "person.checkout_approved", {"person": s, "by": "O000"}, "gateway"))
                item = f"E{s}".replace("-", "")
                self.push(t + 5, "emit", "locker.opened", {"locker": "bl1", "compartment": comp}, "bl1")
                self.push(t + 10, "emit", "evidence.removed", {"locker": "bl1", "compartment": comp, "item": item},
                          "bl1")
                self.push(t + 15, "emit", "locker.closed", {"locker": "bl1", "compartment": comp}, "bl1")
                self.push(t + 60, "go", s, self.by_type["exit"][0])
                self.push(t + 90, "go", s, None)    # through the exit: person.left is derived
                return out
            room = self.free_room(ty)
            team = None
            if ty == "interrogation":
                team = [o for o in rnd.sample(self.officers, 6) if o not in self.busy][:2]
                if room is None or len(team) < 2:
                    self.push(t + 600, "next", s, plan, comp, None)
                    return out
                for o in team:
                    self.busy.add(o)
                    out += self.move(t, o, room)
                self.hr[s] += 15
                out.append(self.status(t, s))
            out += self.move(t, s, room or rnd.choice(self.by_type[ty]))
            stay = {"security_check": (300, 900), "info_collection": (600, 1500), "waiting": (1800, 5400),
                    "interrogation": (3600, 9000)}[ty]
            self.push(t + rnd.uniform(*stay), "next", s, plan[1:], comp, team)
            return out
        raise ValueError(kind)

    def run_until(self, end):
        while self.q and self.q[0][0] < end:
            t, _, kind, args = heapq.heappop(self.q)
            yield from self.step(t, kind, args)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]


def memory_parts(core) -> str:
    """Where the RSS is (--memory): Python's own blocks, glibc malloc in use and free inside its
    arenas (free-but-held is fragmentation), SQLite's allocator, and the sizes of the core's maps."""
    parts = [f"py blocks {sys.getallocatedblocks() / 1e3:7.0f}k"]
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        mi = libc.mallinfo2()
        parts.append(f"malloc used {mi.uordblks / 1e6:6.1f} MB free {mi.fordblks / 1e6:6.1f} MB "
                     f"mmap {mi.hblkhd / 1e6:5.1f} MB")
    except (OSError, AttributeError):
        pass
    try:
        lib = ctypes.CDLL("libsqlite3.so.0")
        lib.sqlite3_memory_used.restype = ctypes.c_int64
        parts.append(f"sqlite {lib.sqlite3_memory_used() / 1e6:5.1f} MB")
    except (OSError, AttributeError):
        pass
    eng = core.engine
    parts.append(f"alarms {len(eng.alarms)} by_id {len(eng.by_id)} last_id {len(eng._last_id)} "
                 f"timers {len(eng.timers)} heap {len(eng._heap)} persons {len(eng.state.persons)} "
                 f"requests {len(core.requests_done)}")
    return " · ".join(parts)


def open_core(cfg, clock):
    journal = Journal(cfg.journal_path, cfg.storage.synchronous)
    core = Core(cfg, journal, Engine(cfg), clock=clock)
    core.add_derivation(derive_person_left)
    core.enable_checkpoints(CheckpointStore(cfg.storage_dir / "checkpoints", cfg, cfg.storage.checkpoint_keep))
    return core


def restart(cfg, clock) -> tuple[float, dict, Core]:
    t0 = time.perf_counter()
    core = open_core(cfg, clock)
    core.rebuild()
    took = time.perf_counter() - t0
    core.start()
    return took, core.replay_info, core


def daemon_start(cfg_path: Path, tmp: Path, note: str) -> None:
    """A real `casegate run`: seconds from launch to READY=1, and what it told systemd."""
    addr = str(tmp / f"notify-{time.time_ns()}.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(addr)
    s.settimeout(900)
    env = dict(os.environ, NOTIFY_SOCKET=addr)
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config", str(cfg_path), "run"], cwd=ROOT,
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    extends = 0
    try:
        while True:
            m = s.recv(4096).decode()
            if "EXTEND_TIMEOUT_USEC" in m:
                extends += 1
            if m.startswith("READY=1"):
                break
        ready = time.perf_counter() - t0
    finally:
        p.terminate()
        p.wait(60)
        s.close()
    print(f"  real daemon ({note}): READY=1 {ready:.2f} s after launch; {extends} EXTEND_TIMEOUT_USEC messages")


def to_toml(d: dict) -> str:
    """Enough TOML for center_dict()."""
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return '"' + str(v) + '"'
    out = []
    for sec in ("center", "storage", "mqtt"):
        out.append(f"[{sec}]")
        out += [f"{k} = {val(v)}" for k, v in d[sec].items()]
    for arr in ("rooms", "devices"):
        for item in d[arr]:
            out.append(f"[[{arr}]]")
            out += [f"{k} = {val(v)}" for k, v in item.items()]
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=10, help="30 for the month (~25 min on a busy 2-core machine)")
    ap.add_argument("--scale", type=float, default=1.0, help="suspects per day / 60")
    ap.add_argument("--dir", default=None, help="keep the journal here (default: a temp dir, removed)")
    ap.add_argument("--daemon", action="store_true", help="also time real `casegate run` starts at the end")
    ap.add_argument("--max-mb", type=float, default=2048)
    ap.add_argument("--memory", action="store_true",
                    help="print where the RSS is each day (Python blocks, malloc, SQLite, the core's maps)")
    ap.add_argument("--tracemalloc", type=int, default=0, metavar="DAY",
                    help="trace Python allocations and print what grew between DAY and the last day")
    a = ap.parse_args()
    tmp = Path(a.dir or tempfile.mkdtemp(prefix="casegate-soak-"))
    if a.tracemalloc:
        tracemalloc.start(4)
    state = tmp / "state"
    if state.exists():
        shutil.rmtree(state)
    cfg = parse_config(center_dict(str(state)))
    clock = SimClock(T0)
    sim = Center(a.scale)
    core = open_core(cfg, clock)
    core.rebuild()
    core.start()
    print(f"soak: {a.days} days, {round(60 * a.scale)} suspects/day, 140 staff/officers/visitors, "
          f"50 rooms; journal {cfg.journal_path}")
    feed = [Draft(ty, d, src, t) for t, ty, d, src in sim.setup(T0)]
    restarts: dict[int, tuple] = {}
    all_pauses: list[float] = []
    per_day = []
    wall0 = time.perf_counter()
    last_events = 0
    for day in range(a.days):
        start = T0 + day * DAY
        sim.schedule_day(start)
        td = time.perf_counter()
        n_in = 0
        for t, ty, d, src in sim.run_until(start + DAY):
            feed.append(Draft(ty, d, src, t))
            if len(feed) >= 500:
                for dr in sorted(feed, key=lambda x: x.ts):
                    clock.t = max(clock.t, dr.ts)
                    core.submit(dr, timeout=None)
                n_in += len(feed)
                feed = []
        for dr in sorted(feed, key=lambda x: x.ts):
            clock.t = max(clock.t, dr.ts)
            core.submit(dr, timeout=None)
        n_in += len(feed)
        feed = []
        clock.t = start + DAY
        core.call(lambda c: (None, [])).result(600)       # everything of the day committed
        events = core.journal.last_seq
        size = core.journal.size_bytes() / 1e6
        per_day.append((events - last_events, size))
        last_events = events
        print(f"day {day + 1:2d}: {per_day[-1][0]:7,} events ({n_in:,} inputs) · journal {events:9,} events "
              f"{size:7.1f} MB · RSS {rss_mb():6.1f} MB · {time.perf_counter() - td:5.1f} s", flush=True)
        if a.memory:
            print(f"        {memory_parts(core)}", flush=True)
        if a.tracemalloc and day + 1 == a.tracemalloc:
            traced_at = tracemalloc.take_snapshot()
        if day + 1 in (1, 10, 30) or day + 1 == a.days:
            core.stop(timeout=600)
            all_pauses += core.checkpoint_pauses_ms
            core.journal.close()
            took, info, core = restart(cfg, clock)
            restarts[day + 1] = (took, info, events)
            print(f"  restart after a clean stop: {took:.2f} s (checkpoint seq {info['from_checkpoint']} + "
                  f"{info['replayed']} events)", flush=True)
    if a.tracemalloc and a.days > a.tracemalloc:
        grew = tracemalloc.take_snapshot().compare_to(traced_at, "lineno")
        print(f"Python allocations that grew after day {a.tracemalloc}:")
        for stat in grew[:25]:
            print(f"  {stat}")
    core.stop(timeout=600)
    pauses = sorted(all_pauses + list(core.checkpoint_pauses_ms)) or [0.0]
    store = core.checkpoints
    core.journal.close()
    total = time.perf_counter() - wall0
    ev_day = sum(e for e, _ in per_day) / len(per_day)
    mb_day = per_day[-1][1] / len(per_day)
    print()
    print(f"events/day: {ev_day:,.0f} (mean; journal {last_events:,} events after {a.days} days)")
    print(f"journal: {mb_day:.1f} MB/day, {per_day[-1][1] * 1e6 / max(1, last_events):.0f} bytes/event "
          f"(indexes included); max_mb = {a.max_mb:.0f} holds {a.max_mb / mb_day:,.0f} days")
    print(f"RSS: {rss_mb():.1f} MB now, {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6:.1f} MB peak")
    print(f"checkpoint: {store.last['bytes'] / 1e6:.2f} MB on disk; writer pause (pickling) over "
          f"{len(pauses)} checkpoints: median {pauses[len(pauses) // 2]:.1f} ms, max {pauses[-1]:.1f} ms")
    for d, (took, info, events) in restarts.items():
        print(f"restart at day {d}: {took:.2f} s ({events:,} events in the journal, replayed {info['replayed']})")
    # the full replay (no checkpoint): what a first start after an upgrade costs
    ck = cfg.storage_dir / "checkpoints"
    aside = tmp / "checkpoints-aside"
    if aside.exists():
        shutil.rmtree(aside)
    ck.rename(aside)
    took, info, core = restart(cfg, clock)
    core.stop(timeout=600)
    core.journal.close()
    print(f"full replay: {info['replayed']:,} events in {took:.1f} s = {info['replayed'] / took:,.0f} events/s")
    print(f"run took {total:.0f} s")
    if a.daemon:
        ck_new = cfg.storage_dir / "checkpoints"
        cfg_path = tmp / "casegate.toml"
        cfg_path.write_text(to_toml(center_dict(str(state))))
        daemon_start(cfg_path, tmp, f"after a clean stop: checkpoint + tail, {last_events:,}-event journal")
        shutil.rmtree(ck_new)
        daemon_start(cfg_path, tmp, "no checkpoint: full replay")
        daemon_start(cfg_path, tmp, "after the clean stop above: checkpoint + tail")
    if not a.dir:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
