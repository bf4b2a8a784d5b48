"""The demo's simulated center: rooms, stations and exciters, people, lockers, doors (data,
like a TOML file: it may name driver kinds), the alarms the scripted day must raise,
and the casegate config written for it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.demo.simulators import Simulators

CENTER_ID = "demo-center"
TIMEZONE = "Asia/Shanghai"
DAY_START_HOUR = 8            # the scripted day starts at 08:00 local (the most recent one)
DESK = "demo-desk"            # MQTT client name of the demo's "central system"

# The alarms the scenario must produce (exit 0 only if every one appeared).
EXPECTED_ALARMS = (
    "procedure_skipped", "lone_interrogation", "officer_left_interrogation",
    "evidence_unauthorized_removal", "door_held_open", "collusion_risk",
    "detention_warning", "belongings_forgotten", "mixed_waiting_room", "interrogation_not_recorded",
)
# each interrogation room's recorder system (审讯主机): its MQTT account, [[rooms]] recorder
RECORDERS = {"interrogation-1": "rec-int1", "interrogation-2": "rec-int2"}

# ---- the center -------------------------------------------------------------------------------
# room id, type, name, adjacent rooms (co-suspects there count as together)
ROOMS: list[tuple[str, str, str, list[str]]] = [
    ("entrance", "entrance", "入区登记", []),
    ("security_check", "security_check", "人身安全检查室", []),
    ("belongings", "belongings", "随身物品保管室", []),
    ("info_collection", "info_collection", "信息采集室", []),
    ("waiting-1", "waiting", "候问室1", ["interrogation-1"]),
    ("waiting-2", "waiting", "候问室2", ["interrogation-2"]),
    ("interrogation-1", "interrogation", "讯问室1", []),
    ("interrogation-2", "interrogation", "讯问室2", []),
    ("corridor", "corridor", "走廊", []),
    ("toilet", "toilet", "卫生间", []),
    ("exit", "exit", "出口", []),
    ("evidence_store", "evidence_store", "涉案财物库", []),
]

# Three base stations (dev_id -> its own room) and one exciter per room (room -> station, address).
STATIONS = {"861694034205001": "entrance", "861694034205002": "corridor", "861694034205003": "evidence_store"}
_FRONT, _MID, _REAR = STATIONS
EXCITERS: dict[str, tuple[str, int]] = {
    "entrance": (_FRONT, 11), "security_check": (_FRONT, 12), "belongings": (_FRONT, 13),
    "info_collection": (_FRONT, 14), "exit": (_FRONT, 15),
    "corridor": (_MID, 21), "waiting-1": (_MID, 22), "waiting-2": (_MID, 23), "toilet": (_MID, 24),
    "interrogation-1": (_REAR, 31), "interrogation-2": (_REAR, 32), "evidence_store": (_REAR, 33),
}

# person id -> (role, name, gender, wristband/tag card, extra registration fields)
PEOPLE: dict[str, tuple[str, str, str, str, dict]] = {
    "off-wang": ("officer", "王建国", "male", "E3AF0001", {}),
    "off-li": ("officer", "李娜", "female", "E3AF0002", {}),
    "off-zhang": ("officer", "张伟", "male", "E3AF0003", {}),
    "off-zhao": ("officer", "赵磊", "male", "E3AF0004", {}),
    "staff-sun": ("staff", "孙丽", "female", "E3AF0101", {}),
    "staff-zhou": ("staff", "周强", "male", "E3AF0102", {}),
    "staff-wu": ("staff", "吴刚", "male", "E3AF0103", {}),
    "sus-liu": ("suspect", "刘某", "male", "5B000001", {"case_id": "A2026-0117", "case_type": "criminal"}),
    "sus-chen": ("suspect", "陈某", "female", "5B000002", {"case_id": "A2026-0117", "case_type": "criminal"}),
    "sus-zhou": ("suspect", "周某", "male", "5B000003", {"case_id": "X2026-0342", "case_type": "administrative"}),
}
CARDS = {"off-zhang": "14008EC794", "off-zhao": "14008EC793"}   # 125 kHz cards for the evidence store

EV_LOCKER, BEL_LOCKER = "locker-ev1", "locker-bel1"
EV_LABELS = {"E2000017C102": 2, "E2000017C105": 5, "E2000017C107": 7}
BEL_LABELS = {"E2000017B101": 1, "E2000017B102": 2, "E2000017B103": 3}
EVIDENCE = {"knife": "E2000017C10200000000A001", "phone": "E2000017C10500000000A002",
            "ledger": "E2000017C10700000000A003"}
BAGS = {"sus-liu": ("E2000017B10100000000B001", 1), "sus-chen": ("E2000017B10200000000B002", 2),
        "sus-zhou": ("E2000017B10300000000B003", 3)}
DOORS = {"entrance-door": (0, "entrance"), "exit-door": (1, "exit"), "evidence-door": (2, "evidence_store")}

# The simulated hardware (gateway/demo/simulators.py starts it through the driver registry):
# name -> (driver kind, simulator class in drivers/<kind>/simulator.py, its arguments).
SIMULATED: dict[str, tuple[str, str, dict[str, Any]]] = {
    "card": ("card_reader", "CardReaderSimulator", {}),
    "doors": ("modbus_doors", "ModbusDiSimulator", {"transport": "tcp", "units": (1,), "inputs": 16}),
    "ev_board": ("locker", "LockBoardSimulator", {"board": 0, "compartments": 8}),
    "ev_uhf": ("locker", "UhfReaderSimulator", {}),
    "bel_board": ("locker", "LockBoardSimulator", {"board": 0, "compartments": 12}),
    "bel_uhf": ("locker", "UhfReaderSimulator", {}),
}
# The base stations are TCP clients of the zone reader driver: started once the gateway listens.
STATION_KIND = "zone_reader"
STATION_HEARTBEAT_S = 10.0
CAMERA_KIND = "camera"        # its simulator writes the synthetic video the camera driver plays


# ---- the config --------------------------------------------------------------------------------
def floors(speed: float) -> dict[str, dict[str, float]]:
    """Latency-sensitive thresholds: at least this much *wall* time at this speed."""
    def f(default: float, wall_s: float) -> float:
        return float(max(default, round(wall_s * speed)))
    return {
        # a legal alarm's grace stays within the law's bound (rules/legal_bounds.py: ≤ 300 s) at any speed
        "unattended_suspect": {"grace_s": min(f(60, 1.0), 300.0)},
        "tag_signal_lost": {"after_s": f(60, 2.0)},
        "locker_unauthorized_open": {"window_s": f(30, 2.0)},
        "locker_open_too_long": {"limit_s": f(60, 1.5)},
        "door_held_open": {"limit_s": f(120, 1.5)},
    }


def demo_shortcuts(speed: float) -> list[str]:
    """What the demo changes from the law and the defaults, said on screen and in the
    summary: nobody should take a demo's 1.5 h limit for the real one."""
    from rules.catalog import CATALOG
    out = ["DEMO SETTING: administrative detention limit shortened to 1.5 h (law: 8 h, up to 24 h) "
           "so that its warning happens within the demo"]
    for code, settings in floors(speed).items():
        for key, value in settings.items():
            default = getattr(CATALOG[code].settings(), key)
            if value != default:
                out.append(f"DEMO SETTING: {code}.{key} = {value:g} (default {default:g}): at ×{speed:g} "
                           "device latency would otherwise trip it")
    return out


def build_config(storage: Path, mqtt_port: int, zone_port: int, sims: Simulators, speed: float) -> dict:
    """The center's casegate config (as a dict; toml_dumps writes it), pointed at the simulators."""
    rules: dict[str, dict] = {
        # shortened so that a warning happens within the demo: 1.5 h for administrative cases
        "detention_timeout": {"criminal_h": 12.0, "administrative_h": 1.5, "warn_before_min": [60.0, 30.0]},
        # the synthetic video always shows one person, whoever the tags say is in the room
        "headcount_mismatch": {"enabled": False},
    }
    rules.update(floors(speed))
    devices: list[dict] = [
        {"id": "zone-stations", "driver": "zone_reader", "listen": f"127.0.0.1:{zone_port}",
         "stations": dict(STATIONS), "exciters": {str(a): room for room, (_, a) in EXCITERS.items()},
         "presence_timeout_s": 3.0, "heartbeat_s": STATION_HEARTBEAT_S},
        {"id": "card-evidence", "driver": "card_reader", "port": sims["card"].port, "room": "evidence_store"},
        {"id": "doors-a", "driver": "modbus_doors", "url": sims["doors"].url, "unit": 1, "poll_ms": 100,
         "doors": [{"input": i, "door": d, "room": r, "closed_when": 1} for d, (i, r) in DOORS.items()]},
        {"id": EV_LOCKER, "driver": "locker", "purpose": "evidence", "port": sims["ev_board"].port,
         "compartments": 8, "poll_ms": 150,
         "inventory": {"port": sims["ev_uhf"].port, "poll_ms": 250, "missing_after": 2, "labels": dict(EV_LABELS)}},
        {"id": BEL_LOCKER, "driver": "locker", "purpose": "belongings", "port": sims["bel_board"].port,
         "compartments": 12, "poll_ms": 150,
         "inventory": {"port": sims["bel_uhf"].port, "poll_ms": 250, "missing_after": 2, "labels": dict(BEL_LABELS)}},
    ]
    if sims.video is not None:
        devices.append({"id": "cam-int1", "driver": "camera", "url": str(sims.video), "room": "interrogation-1",
                        "fps": 1.0, "still_s": 600.0, "face_repeat_s": 120.0})
    return {
        "center": {"id": CENTER_ID, "name": "示范执法办案管理中心（演示）", "timezone": TIMEZONE},
        "storage": {"dir": str(storage), "synchronous": "normal"},
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "client_id": "casegate-demo-center", "keepalive_s": 10},
        "rooms": [{"id": i, "type": t, "name": n, "adjacent": a, **({"recorder": RECORDERS[i]} if i in RECORDERS else {})}
                  for i, t, n, a in ROOMS],
        "devices": devices,
        "rules": rules,
    }


def _toml_key(k: str) -> str:
    return k if k and all(c.isalnum() and c.isascii() or c in "-_" for c in k) else json.dumps(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def toml_dumps(cfg: dict) -> str:
    """Enough TOML for a casegate config: tables, arrays of tables, [rules.<code>]."""
    out = ["# written by `casegate demo`: the simulated center's config\n"]
    for name, val in cfg.items():
        if isinstance(val, list) and val and all(isinstance(x, dict) for x in val):
            for item in val:
                out.append(f"[[{name}]]")
                out += [f"{_toml_key(k)} = {_toml_value(x)}" for k, x in item.items()]
                out.append("")
        elif name == "rules":
            for code, table in val.items():
                out.append(f"[rules.{_toml_key(code)}]")
                out += [f"{_toml_key(k)} = {_toml_value(x)}" for k, x in table.items()]
                out.append("")
        else:
            out.append(f"[{name}]")
            out += [f"{_toml_key(k)} = {_toml_value(x)}" for k, x in val.items()]
            out.append("")
    return "\n".join(out)
