"""A scripted day with two cases interleaved in the same rooms, journaled by a real Core
(real journal, real rules, the device key signing heads) on an injectable clock.
Used by tests/test_case_bundle.py and bench/case_bundle.py."""
from __future__ import annotations

from pathlib import Path

from gateway.config import parse_config
from gateway.core import Core
from gateway.daemon import derive_person_left
from rules.model import Draft, parse_ts
from gateway.journal import Journal
from gateway.signing import load_or_create
from rules.engine import Engine

CASE_A, CASE_B = "C-2026-118", "C-2026-200"
# Everything that identifies case B's persons: none of it may leave in case A's bundle.
CASE_B_SECRETS = ("李四", "王芳", "SB1", "SB2", CASE_B, "E0B1", "ORD-B1")
ROOMS = [{"id": "waiting-1", "type": "waiting", "name": "候问室1"},
         {"id": "interrogation-1", "type": "interrogation", "name": "讯问室1"},
         {"id": "interrogation-2", "type": "interrogation", "name": "讯问室2"},
         {"id": "exit", "type": "exit", "name": "出口"},
         {"id": "evidence", "type": "evidence_store", "name": "涉案财物室"}]
T0 = parse_ts("2026-12-06T00:30:00Z")          # 08:30 in Asia/Shanghai


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def config_dict(storage_dir: Path, every_s: float = 3600) -> dict:
    return {"center": {"id": "t-center", "name": "测试办案中心", "timezone": "Asia/Shanghai"},
            "rooms": ROOMS, "storage": {"dir": str(storage_dir)}, "mqtt": {"enabled": False},
            "signing": {"every_s": every_s}}


def config_toml(path: Path, storage_dir: Path) -> Path:
    rooms = "".join(f'[[rooms]]\nid = "{r["id"]}"\ntype = "{r["type"]}"\nname = "{r["name"]}"\n\n' for r in ROOMS)
    path.write_text(f'[center]\nid = "t-center"\nname = "测试办案中心"\ntimezone = "Asia/Shanghai"\n\n'
                    f'[storage]\ndir = "{storage_dir}"\n\n[mqtt]\nenabled = false\n\n{rooms}', encoding="utf-8")
    return path


def start_core(storage_dir: Path, every_s: float = 3600, t: float = T0):
    cfg = parse_config(config_dict(storage_dir, every_s))
    cfg.storage_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    journal = Journal(cfg.journal_path, cfg.storage.synchronous)
    clock = Clock(t)
    core = Core(cfg, journal, Engine(cfg), clock=clock)
    core.add_derivation(derive_person_left)
    core.enable_signing(load_or_create(cfg.storage_dir, cfg.center.id), every_s)
    core.rebuild()
    core.start()
    return cfg, journal, core, clock


def tiny_jpeg() -> bytes:
    import cv2
    import numpy as np
    img = np.full((48, 64, 3), 200, np.uint8)
    cv2.rectangle(img, (10, 10), (50, 40), (20, 20, 160), -1)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


def play_day(core, clock, storage_dir: Path) -> dict:
    """The day; returns notable sealed events by name."""
    got: dict = {}

    def at(minutes: float, type_: str, data: dict, source: str = "test", name: str | None = None):
        clock.t = T0 + minutes * 60
        ev = core.submit(Draft(type_, data, source, ts=clock.t)).result(10)
        if name:
            got[name] = ev
        return ev

    def move(minutes, person, tag, room_from, room_to):
        if room_from:
            at(minutes, "presence.left", {"person": person, "tag": tag, "room": room_from, "seconds": 0})
        if room_to:
            at(minutes, "presence.entered", {"person": person, "tag": tag, "room": room_to})

    for p, name in (("O1", "王警官"), ("O2", "赵警官"), ("O3", "钱警官")):
        at(0, "person.registered", {"person": p, "role": "officer", "name": name, "gender": "male"})
    # case A: one suspect and his lawyer; case B: two suspects (one a woman)
    at(1, "person.registered", {"person": "SA1", "role": "suspect", "name": "张三", "gender": "male", "age": 30,
                                "minor": False, "case_id": CASE_A, "case_type": "criminal",
                                "arrived_at": "2026-12-06T00:31:00.000Z"}, name="reg_a")
    at(2, "person.registered", {"person": "SB1", "role": "suspect", "name": "李四", "gender": "male", "age": 41,
                                "minor": False, "case_id": CASE_B, "case_type": "criminal"})
    at(3, "person.registered", {"person": "SB2", "role": "suspect", "name": "王芳", "gender": "female", "age": 35,
                                "minor": False, "case_id": CASE_B, "case_type": "administrative"})
    at(4, "person.registered", {"person": "VA1", "role": "visitor", "name": "律师甲", "visitor_kind": "lawyer",
                                "for": "SA1"})
    for i, p in enumerate(("SA1", "SB1", "SB2", "VA1", "O1", "O2", "O3")):
        at(5, "wristband.bound", {"tag": f"0000A{i:03X}", "person": p})
    tag = {p: f"0000A{i:03X}" for i, p in enumerate(("SA1", "SB1", "SB2", "VA1", "O1", "O2", "O3"))}
    # both cases wait in the same room (a man of A, a woman of B: 分别看管)
    move(10, "SA1", tag["SA1"], None, "waiting-1")
    move(12, "SB1", tag["SB1"], None, "waiting-1")
    move(14, "SB2", tag["SB2"], None, "waiting-1")
    # A is questioned in interrogation-1, recorded, by two officers
    at(25, "recording.started", {"room": "interrogation-1", "source": "recorder-1"})
    move(30, "O1", tag["O1"], None, "interrogation-1")
    move(30, "O2", tag["O2"], None, "interrogation-1")
    move(31, "SA1", tag["SA1"], "waiting-1", "interrogation-1")
    move(90, "SA1", tag["SA1"], "interrogation-1", "waiting-1")
    at(91, "recording.stopped", {"room": "interrogation-1", "source": "recorder-1"})
    # B1 in the same room next, one officer, not recorded
    move(100, "SB1", tag["SB1"], "waiting-1", "interrogation-1")
    move(100, "O2", tag["O2"], "interrogation-1", None)
    move(160, "SB1", tag["SB1"], "interrogation-1", "waiting-1")
    move(160, "O1", tag["O1"], "interrogation-1", None)
    # A's meal; lawyer visit
    at(180, "person.rest", {"person": "SA1", "kind": "meal", "from": "2026-12-06T03:30:00.000Z",
                            "to": "2026-12-06T04:00:00.000Z", "by": "O1"})
    move(200, "VA1", tag["VA1"], None, "waiting-1")
    move(230, "VA1", tag["VA1"], "waiting-1", None)
    # A questioned again by one officer, not recorded: alarms naming A and O3
    move(240, "O3", tag["O3"], None, "interrogation-2")
    move(241, "SA1", tag["SA1"], "waiting-1", "interrogation-2")
    move(275, "SA1", tag["SA1"], "interrogation-2", "waiting-1")
    move(275, "O3", tag["O3"], "interrogation-2", None)
    # evidence of each case
    lo = {"locker": "locker-ev1", "compartment": 3}
    at(280, "custody.ordered", {"order": "ORD-A1", "item": "E0A1", "action": "deposit", "case_id": CASE_A,
                                "by": "O1", "expires": None})
    at(281, "locker.unlock_requested", dict(lo, by="O1", order="ORD-A1"))
    at(282, "evidence.added", dict(lo, item="E0A1"))
    at(283, "custody.ordered", {"order": "ORD-B1", "item": "E0B1", "action": "deposit", "case_id": CASE_B,
                                "by": "O2", "expires": None})
    at(284, "evidence.added", {"locker": "locker-ev1", "compartment": 4, "item": "E0B1"})
    # a still of the unrecorded interrogation
    snap_dir = storage_dir / "snapshots"
    snap_dir.mkdir(parents=True, exist_ok=True)
    (snap_dir / "cam-int2-0001.jpg").write_bytes(tiny_jpeg())
    alarms_a = [r[0] for r in core.journal.conn.execute(
        "SELECT json_extract(data, '$.alarm_id') FROM events WHERE type = 'alarm.raised' "
        "AND data LIKE '%\"SA1\"%' AND data NOT LIKE '%\"SB%' ORDER BY seq")]
    if alarms_a:
        at(285, "camera.snapshot", {"camera": "cam-int2", "room": "interrogation-2",
                                    "file": str(snap_dir / "cam-int2-0001.jpg"), "reason": "alarm",
                                    "alarm_id": alarms_a[0]})
        a = core.journal.conn.execute("SELECT data FROM events WHERE type = 'alarm.raised' AND "
                                      "json_extract(data, '$.alarm_id') = ?", (alarms_a[0],)).fetchone()
        import json
        at(286, "alarm.acknowledged", dict(json.loads(a[0]), by="O1", note="已处理 handled"), source="mqtt:desk",
           name="ack_a")
    # A checked out and leaves; B stays
    at(300, "person.checkout_approved", {"person": "SA1", "by": "O1"})
    move(305, "SA1", tag["SA1"], "waiting-1", "exit")
    move(306, "SA1", tag["SA1"], "exit", None)
    got["alarms_a"] = alarms_a
    return got
