"""Scenario scripts for the rule engine on an injectable clock.

A scenario is a list of steps ``(t_seconds, type, data)`` (t relative to T0).
``Scenario.run`` feeds them the way the gateway core does live: the core's
timer wakes ``lag`` seconds after each deadline and calls ``advance``; every
input is sealed into a hash chain and ``apply``-ed; every draft the rules
return is sealed and fed back through ``apply`` before the next input.
The journal (inputs + rule events, in seq order) is kept for replay tests.
"""
from __future__ import annotations

from typing import Any, Iterable

from gateway.config import parse_config
from rules.model import GENESIS, Draft, Event, parse_ts, seal
from rules.engine import Engine

T0 = parse_ts("2026-11-26T00:00:00Z")
CONDITION_TYPES = ("alarm.raised", "alarm.cleared")
H = 3600.0

ROOMS = [
    {"id": "entrance", "type": "entrance", "name": "入区登记"},
    {"id": "security-1", "type": "security_check", "name": "人身检查室"},
    {"id": "belongings-1", "type": "belongings", "name": "物品保管室"},
    {"id": "info-1", "type": "info_collection", "name": "信息采集室"},
    {"id": "waiting-1", "type": "waiting", "name": "候问室1", "adjacent": ["waiting-2"]},
    {"id": "waiting-2", "type": "waiting", "name": "候问室2"},
    {"id": "waiting-3", "type": "waiting", "name": "候问室3"},
    {"id": "interrogation-1", "type": "interrogation", "name": "讯问室1", "adjacent": ["waiting-1"]},
    {"id": "interrogation-2", "type": "interrogation", "name": "讯问室2"},
    {"id": "identification-1", "type": "identification", "name": "辨认室", "adjacent": ["waiting-3"]},
    {"id": "medical-1", "type": "medical", "name": "医疗室"},
    {"id": "toilet-1", "type": "toilet", "name": "卫生间"},
    {"id": "corridor", "type": "corridor", "name": "走廊"},
    {"id": "duty", "type": "duty", "name": "值班室"},
    {"id": "exit", "type": "exit", "name": "出口"},
    {"id": "evidence", "type": "evidence_store", "name": "涉案财物库"},
]

DEVICES = [
    {"id": "zone-stations", "driver": "zone_reader", "stations": {"861694034205896": "interrogation-1"}},
    {"id": "doors-a", "driver": "modbus_doors", "url": "tcp://127.0.0.1:502",
     "doors": [{"input": 0, "door": "exit-door", "room": "exit"},
               {"input": 1, "door": "int1-door", "room": "interrogation-1"},
               {"input": 2, "door": "side-door", "room": "corridor", "exit": True}]},
    {"id": "locker-ev1", "driver": "locker", "purpose": "evidence", "port": "/dev/null"},
    {"id": "locker-b1", "driver": "locker", "purpose": "belongings", "port": "/dev/null", "board": 1},
    {"id": "cam-int1", "driver": "camera", "url": "rtsp://x", "room": "interrogation-1"},
    {"id": "cam-wait1", "driver": "camera", "url": "rtsp://y", "room": "waiting-1"},
]


def make_config(rules: dict | None = None, rooms: list | None = None, devices: list | None = None):
    return parse_config({"center": {"id": "test-center"}, "rooms": rooms or ROOMS,
                         "devices": DEVICES if devices is None else devices,
                         "rules": rules or {}})


def config_dict(rules: dict | None = None, rooms: list | None = None, devices: list | None = None) -> dict:
    return {"center": {"id": "test-center"}, "rooms": rooms or ROOMS,
            "devices": DEVICES if devices is None else devices, "rules": rules or {}}


def to_toml(cfg: dict) -> str:
    """The scenario config as a TOML file (for the CLI as a subprocess). JSON
    strings, numbers, booleans and arrays are valid TOML values."""
    import json

    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{json.dumps(str(k))} = {val(x)}" for k, x in v.items()) + " }"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return json.dumps(v, ensure_ascii=False)

    out = []
    for section in ("center",):
        out.append(f"[{section}]")
        out += [f"{k} = {val(v)}" for k, v in cfg[section].items()]
    out.append("[mqtt]\nenabled = false")
    for key in ("rooms", "devices"):
        for item in cfg.get(key) or ():
            out.append(f"[[{key}]]")
            out += [f"{k} = {val(v)}" for k, v in item.items()]
    rules = cfg.get("rules") or {}
    plain = {k: v for k, v in rules.items() if not isinstance(v, dict)}   # [rules] legal_disabled_reason
    if plain:
        out.append("[rules]")
        out += [f"{k} = {val(v)}" for k, v in plain.items()]
    for code, table in rules.items():
        if not isinstance(table, dict):
            continue
        out.append(f"[rules.{code}]")
        out += [f"{k} = {val(v)}" for k, v in table.items()]
    return "\n".join(out) + "\n"


# ---- step builders -----------------------------------------------------------------------
def tag_of(pid: str) -> str:
    """A stable 8-hex tag id per person."""
    import zlib
    return f"{zlib.crc32(pid.encode()):08X}"


def register(t, pid, role, **kw) -> tuple:
    data = {"person": pid, "role": role, "name": kw.pop("name", ""), "gender": kw.pop("gender", None),
            "minor": kw.pop("minor", False), "case_id": kw.pop("case_id", None),
            "case_type": kw.pop("case_type", None), "limit_h": kw.pop("limit_h", None)}
    data.update(kw)
    return (t, "person.registered", data)


def bind(t, pid, tag=None) -> tuple:
    return (t, "wristband.bound", {"tag": tag or tag_of(pid), "person": pid})


def arrive(t, pid, role, tag=None, **kw) -> list[tuple]:
    """register + bind at t."""
    return [register(t, pid, role, **kw), bind(t, pid, tag)]


def enter(t, pid, room, tag=None) -> tuple:
    if pid is None:
        return (t, "presence.entered", {"person": None, "tag": tag, "room": room})
    return (t, "presence.entered", {"person": pid, "tag": tag or tag_of(pid), "room": room})


def leave(t, pid, room, tag=None, seconds=0) -> tuple:
    if pid is None:
        return (t, "presence.left", {"person": None, "tag": tag, "room": room, "seconds": seconds})
    return (t, "presence.left", {"person": pid, "tag": tag or tag_of(pid), "room": room,
                                  "seconds": seconds})


def move(t, pid, a, b, tag=None) -> list[tuple]:
    """Leave a, enter b (a door transit)."""
    return [leave(t, pid, a, tag), enter(t, pid, b, tag)]


def status(t, pid, **kw) -> tuple:
    tag = kw.pop("tag", None) or tag_of(pid)
    data = {"tag": tag, "person": pid, "battery": 80, "tamper": False, "sos": False, "heart_rate": 75}
    data.update(kw)
    return (t, "tag.status", data)


def flatten(steps: Iterable) -> list[tuple]:
    out: list[tuple] = []
    for s in steps:
        if isinstance(s, list):
            out.extend(flatten(s))
        else:
            out.append(s)
    return out


# ---- the live-style driver ---------------------------------------------------------------------
class Scenario:
    def __init__(self, config=None, rules: dict | None = None, lag: float = 0.3, t0: float = T0,
                 derive: bool = False):
        self.config = config or make_config(rules)
        self.derive = derive            # run the gateway's derivations (person.left) like the core
        self.engine = Engine(self.config)
        self.t0 = t0
        self.lag = lag
        self.seq = 0
        self.prev = GENESIS
        self.journal: list[Event] = []
        self.alarm_events: list[Event] = []
        self.timer_calls: list[float] = []
        self.derived: list[Draft] = []

    # sealing and feeding back, like gateway.core.Core._seal_apply
    def _feed(self, draft: Draft, now: float) -> list[Event]:
        pending = [draft]
        made: list[Event] = []
        while pending:
            d = pending.pop(0)
            self.seq += 1
            ev = seal(d, self.seq, self.config.center.id, self.prev, now)
            self.prev = ev.hash
            self.journal.append(ev)
            if ev.source == "rules":
                self.alarm_events.append(ev)
                made.append(ev)
            pending.extend(self.engine.apply(ev))
            if self.derive:
                from rules.replay import derive
                derived = derive(self.engine, ev)
                self.derived.extend(derived)
                pending.extend(derived)
        return made

    def tick(self, until: float) -> list[Event]:
        """Run the core's timer up to absolute time ``until``."""
        made: list[Event] = []
        while True:
            d = self.engine.next_deadline()
            if d is None or d + self.lag > until:
                return made
            now = d + self.lag
            self.timer_calls.append(now)
            for dr in self.engine.advance(now):
                made += self._feed(dr, now)

    def step(self, t: float, type: str, data: dict[str, Any], source: str = "test") -> list[Event]:
        now = self.t0 + t
        made = self.tick(now)
        return made + self._feed(Draft(type, data, source, now), now)

    def run(self, steps: Iterable) -> "Scenario":
        for s in flatten(steps):
            self.step(*s)
        return self

    def until(self, t: float) -> "Scenario":
        self.tick(self.t0 + t)
        return self

    # ---- assertions helpers ----------------------------------------------------------------
    def raised(self, code: str | None = None) -> list[dict]:
        """First raise of each alarm (updates excluded), in order."""
        seen: set[str] = set()
        out = []
        for e in self.alarm_events:
            if e.type == "alarm.raised" and (code is None or e.data["code"] == code):
                if e.data["alarm_id"] not in seen:
                    seen.add(e.data["alarm_id"])
                    out.append(e.data)
        return out

    def cleared(self, code: str | None = None) -> list[dict]:
        return [e.data for e in self.alarm_events
                if e.type == "alarm.cleared" and (code is None or e.data["code"] == code)]

    def events(self, code: str | None = None) -> list[tuple[str, str, float]]:
        """(type, code, t relative to T0) of every raise/update/clear (the alarm
        conditions; escalations and expiries are in ``lifecycle``)."""
        return [(e.type, e.data["code"], round(e.epoch - self.t0, 3)) for e in self.conditions()
                if code is None or e.data["code"] == code]

    def conditions(self) -> list[Event]:
        """alarm.raised / alarm.cleared rule events (what the rules decided)."""
        return [e for e in self.alarm_events if e.type in CONDITION_TYPES]

    def lifecycle(self, type: str | None = None) -> list[tuple[str, float, dict]]:
        """(type, t relative to T0, data) of the other rule events: alarm.escalated,
        alarm.unshelved and device.maintenance_ended by expiry (rules/alarm_states.py)."""
        return [(e.type, round(e.epoch - self.t0, 3), e.data) for e in self.alarm_events
                if e.type not in CONDITION_TYPES and (type is None or e.type == type)]

    def active(self, code: str | None = None) -> list[dict]:
        return [a for a in self.engine.alarms.values() if code is None or a["code"] == code]

    def rel(self, since: str) -> float:
        return round(parse_ts(since) - self.t0, 3)


def run_case(c) -> "Scenario":
    """One case of rule_cases.py run to its ``until`` on the scenario clock."""
    s = Scenario(make_config(c.rules))
    s.run(c.steps)
    s.until(c.until)
    return s
