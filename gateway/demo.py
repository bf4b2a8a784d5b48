"""``casegate demo``: a whole simulated center in one process, driven through a scripted day.

What runs (all on loopback and pseudo-terminals, nothing needs a config file):

* three MR7901 base stations (TCP clients of the zone-reader driver) with a
  125 kHz exciter in every room, a card reader (pty), a Modbus TCP door
  module, an evidence locker and a belongings locker (lock board + UHF
  inventory reader, each on its own pty), and a synthetic camera video;
* a local mosquitto on a free 127.0.0.1 port when it is installed (and not
  ``--no-broker``): the script's registrations, bindings, locker openings and
  custody orders are then real MQTT requests (``P/request/<command>``).
  Without a broker the gateway runs *buffered* (the uplink keeps retrying,
  every event waits in the journal backlog) and the script calls the
  command handlers in-process instead;
* the gateway itself, in-process, on a scaled clock: ``--speed 60`` makes one
  wall second one demo minute, so rule deadlines (grace periods, detention
  limits) and every journal timestamp follow demo time (the daemon's device
  context re-expresses the drivers' wall-clock stamps on that clock).

The scenario (``Script.steps``) is a list of steps at demo-minute marks. Each
step acts on the simulators or sends a command, then waits - bounded in wall
time - for the events that prove it happened (``presence.entered``,
``locker.closed``, the alarm it should raise, ...). Device latency is wall
time and does not scale, so at high speeds a step may run past its mark;
the script then simply goes on.

Some rule thresholds protect against device latency (a suspect briefly
"alone" while two tags cross between stations, a compartment "open too long"
between two polls). At high speed their demo-time default would be a few
milliseconds of wall time, so the demo raises them to a wall-time floor
(``_floors``); at the default speed they keep their defaults. The rules that
the scenario is *meant* to trigger keep their defaults at every speed: the
script holds the condition until the alarm appears.

Exit status: 0 when every expected alarm appeared and ``journal verify`` is
OK, 1 otherwise, 2 for bad arguments, 130 on Ctrl-C.
"""
from __future__ import annotations

import getpass
import json
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway.daemon import Daemon
from gateway.events import Event

log = logging.getLogger("casegate.demo")

CENTER_ID = "demo-center"
TIMEZONE = "Asia/Shanghai"
DAY_START_HOUR = 8            # the scripted day starts at 08:00 local (the most recent one)
DESK = "demo-desk"            # MQTT client name of the demo's "central system"

# The alarms the scenario must produce (exit 0 only if every one appeared).
EXPECTED_ALARMS = (
    "procedure_skipped", "lone_interrogation", "officer_left_interrogation",
    "evidence_unauthorized_removal", "door_held_open", "collusion_risk",
    "detention_warning", "belongings_forgotten",
)

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


class DemoError(Exception):
    pass


# ---- time -------------------------------------------------------------------------------------
class DemoClock:
    """Demo time = start + (wall - wall0) × speed. Callable: the daemon's clock."""

    def __init__(self, speed: float, start: float | None = None):
        self.speed = float(speed)
        self.wall0 = time.time()
        self.start = self.wall0 if start is None else start
        # Start-up (broker, simulators, daemon, devices online) runs at real speed:
        # at --speed 600, 4 s of start-up must not become 40 demo minutes.
        # run() switches to the compressed clock from the demo time reached.
        self.scaled_from: tuple[float, float] | None = None     # (wall, demo) at run()

    def __call__(self) -> float:
        return self.to_demo(time.time())

    def run(self) -> None:
        wall = time.time()
        self.scaled_from = (wall, self.to_demo(wall))

    def to_demo(self, wall: float) -> float:
        if self.scaled_from is None:
            return self.start + (wall - self.wall0)
        w, d = self.scaled_from
        return d + (wall - w) * self.speed

    def minutes(self) -> float:
        return (self() - self.start) / 60.0

    def hhmm(self, epoch: float | None = None) -> str:
        t = self() if epoch is None else epoch
        return datetime.fromtimestamp(t, ZoneInfo(TIMEZONE)).strftime("%H:%M")


def day_start(now: float | None = None) -> float:
    """The most recent 08:00 in the center's time zone."""
    tz = ZoneInfo(TIMEZONE)
    n = datetime.fromtimestamp(time.time() if now is None else now, tz)
    s = n.replace(hour=DAY_START_HOUR, minute=0, second=0, microsecond=0)
    if s > n:
        s -= timedelta(days=1)
    return s.timestamp()


# ---- the gateway, instrumented -----------------------------------------------------------------
class DemoDaemon(Daemon):
    """The real daemon; committed events also feed the demo's display.

    Drivers stamp events with the wall clock; ``DeviceContext.emit`` re-expresses
    those stamps on the daemon's (demo) clock, so the journal keeps one time line."""

    def __init__(self, config, config_path, clock, sink: Callable[[list[Event]], None]):
        super().__init__(config, config_path, clock=clock)
        self.extra_listeners.append(lambda events: sink(events) if events else None)


# ---- a local broker ---------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the demo process dies (Linux prctl)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)     # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def mosquitto_path() -> str | None:
    exe = shutil.which("mosquitto")
    if exe:
        return exe
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


class Broker:
    def __init__(self, exe: str, workdir: Path):
        self.exe = exe
        self.port = _free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / "mosquitto.log"

    def start(self) -> None:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        "max_queued_messages 0\n"
                        + (f"user {getpass.getuser()}\n" if os.geteuid() == 0 else ""))
        with open(self.log_path, "ab") as out:
            # Own session: a terminal's Ctrl-C reaches only the demo, which then stops the
            # gateway before the broker. Parent-death signal: even a kill -9 of the demo
            # does not leave the broker behind.
            self.proc = subprocess.Popen([self.exe, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         preexec_fn=_die_with_parent)
        if not _wait_port(self.port, 5.0):
            self.stop()
            raise DemoError(f"mosquitto did not listen on 127.0.0.1:{self.port} (see {self.log_path})")

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


# ---- the config --------------------------------------------------------------------------------
def _floors(speed: float) -> dict[str, dict[str, float]]:
    """Latency-sensitive thresholds: at least this much *wall* time at this speed."""
    def f(default: float, wall_s: float) -> float:
        return float(max(default, round(wall_s * speed)))
    return {
        "unattended_suspect": {"grace_s": f(60, 1.0)},
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
    for code, settings in _floors(speed).items():
        for key, value in settings.items():
            default = getattr(CATALOG[code].settings(), key)
            if value != default:
                out.append(f"DEMO SETTING: {code}.{key} = {value:g} (default {default:g}): at ×{speed:g} "
                           "device latency would otherwise trip it")
    return out


def build_config(storage: Path, mqtt_port: int, zone_port: int, sims: Simulators, speed: float) -> dict:
    rules: dict[str, dict] = {
        # shortened so that a warning happens within the demo: 1.5 h for administrative cases
        "detention_timeout": {"criminal_h": 12.0, "administrative_h": 1.5, "warn_before_min": [60.0, 30.0]},
        # the synthetic video always shows one person, whoever the tags say is in the room
        "headcount_mismatch": {"enabled": False},
    }
    rules.update(_floors(speed))
    devices: list[dict] = [
        {"id": "zone-stations", "driver": "zone_reader", "listen": f"127.0.0.1:{zone_port}",
         "stations": dict(STATIONS), "exciters": {str(a): room for room, (_, a) in EXCITERS.items()},
         "presence_timeout_s": 3.0, "heartbeat_s": 10.0},
        {"id": "card-evidence", "driver": "card_reader", "port": sims.card.port, "room": "evidence_store"},
        {"id": "doors-a", "driver": "modbus_doors", "url": sims.modbus.url, "unit": 1, "poll_ms": 100,
         "doors": [{"input": i, "door": d, "room": r, "closed_when": 1} for d, (i, r) in DOORS.items()]},
        {"id": EV_LOCKER, "driver": "locker", "purpose": "evidence", "port": sims.ev_board.port,
         "compartments": 8, "poll_ms": 150,
         "inventory": {"port": sims.ev_uhf.port, "poll_ms": 250, "missing_after": 2, "labels": dict(EV_LABELS)}},
        {"id": BEL_LOCKER, "driver": "locker", "purpose": "belongings", "port": sims.bel_board.port,
         "compartments": 12, "poll_ms": 150,
         "inventory": {"port": sims.bel_uhf.port, "poll_ms": 250, "missing_after": 2, "labels": dict(BEL_LABELS)}},
    ]
    if sims.video is not None:
        devices.append({"id": "cam-int1", "driver": "camera", "url": str(sims.video), "room": "interrogation-1",
                        "fps": 1.0, "still_s": 600.0, "face_repeat_s": 120.0})
    return {
        "center": {"id": CENTER_ID, "name": "示范执法办案管理中心（演示）", "timezone": TIMEZONE},
        "storage": {"dir": str(storage), "synchronous": "normal"},
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "client_id": "casegate-demo-center", "keepalive_s": 10},
        "rooms": [{"id": i, "type": t, "name": n, "adjacent": a} for i, t, n, a in ROOMS],
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


# ---- simulators ---------------------------------------------------------------------------------
@dataclass
class Simulators:
    card: Any = None
    modbus: Any = None
    ev_board: Any = None
    ev_uhf: Any = None
    bel_board: Any = None
    bel_uhf: Any = None
    video: Path | None = None
    site: Any = None
    notes: list[str] = field(default_factory=list)

    def start_devices(self, workdir: Path) -> None:
        from drivers.card_reader.simulator import CardReaderSimulator
        from drivers.locker.simulator import LockBoardSimulator, UhfReaderSimulator
        from drivers.modbus_doors.simulator import ModbusDiSimulator
        self.card = CardReaderSimulator()
        self.card.start()
        self.modbus = ModbusDiSimulator(transport="tcp", units=(1,), inputs=16)
        self.modbus.set_inputs({i: 1 for i, _ in DOORS.values()})     # every door closed
        self.modbus.start()
        self.ev_board = LockBoardSimulator(board=0, compartments=8).start()
        self.ev_uhf = UhfReaderSimulator().start()
        for epc in EVIDENCE.values():
            self.ev_uhf.add_tag(epc)
        self.bel_board = LockBoardSimulator(board=0, compartments=12).start()
        self.bel_uhf = UhfReaderSimulator().start()
        try:
            from drivers.camera.simulator import write_synthetic_video
            self.video = write_synthetic_video(workdir / "camera" / "interrogation-1.avi", seconds=8.0, fps=8.0,
                                               scenario="face_moving")
        except Exception as e:   # no OpenCV writer: the center runs without its camera
            self.video = None
            self.notes.append(f"no synthetic camera ({e})")

    def start_stations(self, port: int) -> None:
        from drivers.zone_reader.simulator import ZoneSite
        self.site = ZoneSite("127.0.0.1", port, list(STATIONS), report_s=0.5, heartbeat_s=10.0,
                             timezone=TIMEZONE, reconnect_s=0.3)
        self.site.start()

    def stop(self) -> None:
        for name, fn in (("stations", lambda: self.site and self.site.stop(2.0)),
                         ("card reader", lambda: self.card and self.card.close()),
                         ("modbus", lambda: self.modbus and self.modbus.close()),
                         ("evidence board", lambda: self.ev_board and self.ev_board.stop()),
                         ("evidence uhf", lambda: self.ev_uhf and self.ev_uhf.stop()),
                         ("belongings board", lambda: self.bel_board and self.bel_board.stop()),
                         ("belongings uhf", lambda: self.bel_uhf and self.bel_uhf.stop())):
            try:
                fn()
            except Exception as e:
                log.warning("stopping the %s simulator: %s", name, e)


# ---- commands: MQTT requests (broker) or the handlers in-process (buffered) ----------------------
class Desk:
    """The demo's central system / registration desk."""

    def __init__(self, daemon: Daemon, broker_port: int | None):
        self.daemon = daemon
        self.prefix = daemon.config.prefix
        self.client = None
        self.responses: dict[str, dict] = {}
        self.alarm_messages = 0
        self.messages = 0
        self._cv = threading.Condition()
        if broker_port is not None:
            self._connect(broker_port)

    @property
    def via(self) -> str:
        return "mqtt" if self.client is not None else "in-process"

    def _connect(self, port: int) -> None:
        import paho.mqtt.client as mqtt
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{DESK}-{os.getpid()}",
                        protocol=mqtt.MQTTv5)
        subscribed = threading.Event()

        def on_connect(client, userdata, flags, rc, props=None):
            client.subscribe([(f"{self.prefix}/response/#", 1), (f"{self.prefix}/alarms/#", 1),
                              (f"{self.prefix}/events/#", 1)])

        def on_subscribe(client, userdata, mid, rcs, props=None):
            subscribed.set()

        def on_message(client, userdata, msg):
            with self._cv:
                self.messages += 1
                if msg.topic.startswith(f"{self.prefix}/alarms/"):
                    self.alarm_messages += 1
                elif msg.topic.startswith(f"{self.prefix}/response/"):
                    try:
                        body = json.loads(msg.payload)
                    except ValueError:
                        return
                    if isinstance(body, dict) and body.get("request_id"):
                        self.responses[body["request_id"]] = body
                        self._cv.notify_all()

        c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
        c.connect("127.0.0.1", port, keepalive=10)
        c.loop_start()
        self.client = c
        if not subscribed.wait(10):
            self.close()
            raise DemoError("the demo desk could not subscribe on the local broker")

    def close(self) -> None:
        c, self.client = self.client, None
        if c is not None:
            try:
                c.disconnect()
                c.loop_stop()
            except Exception:
                pass

    def __call__(self, command: str, **args) -> dict:
        rid = f"demo-{uuid.uuid4().hex[:12]}"
        if self.client is not None:
            return self._mqtt(command, rid, args)
        return self._direct(command, rid, args)

    def _mqtt(self, command: str, rid: str, args: dict) -> dict:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [("client", DESK)]
        self.client.publish(f"{self.prefix}/request/{command}", json.dumps({"request_id": rid, **args}),
                            qos=1, properties=props)
        deadline = time.monotonic() + 15.0
        with self._cv:
            while rid not in self.responses:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DemoError(f"{command}: no response within 15 s")
                self._cv.wait(left)
            body = self.responses.pop(rid)
        if not body.get("ok"):
            err = body.get("error") or {}
            raise DemoError(f"{command}: {err.get('code')}: {err.get('message')}")
        return body.get("data") or {}

    def _direct(self, command: str, rid: str, args: dict) -> dict:
        from gateway.core import RequestError
        from gateway.requests import COMMANDS, IN_CORE, ON_POOL, Handlers
        model, _ = COMMANDS[command]
        a = model.model_validate({"request_id": rid, **args})
        h = Handlers(self.daemon)
        src = f"mqtt:{DESK}"
        try:
            if command in IN_CORE:
                fn = getattr(h, IN_CORE[command])
                return self.daemon.core.call(lambda core: fn(core, a, src)).result(15).value
            return getattr(h, ON_POOL[command])(a, src)
        except RequestError as e:
            raise DemoError(f"{command}: {e.code}: {e.message}") from None
        except Exception as e:
            code = getattr(e, "code", None)
            if code:
                raise DemoError(f"{command}: {code}: {getattr(e, 'message', e)}") from None
            raise


# ---- what the demo knows: a fold of the committed events ------------------------------------------
class View:
    def __init__(self):
        self.events: list[Event] = []
        self.rooms: dict[str, dict[str, float]] = {r[0]: {} for r in ROOMS}
        self.names: dict[str, tuple[str, str]] = {}     # person -> (name, role)
        self.active: dict[str, dict] = {}
        self.raised: dict[str, set[str]] = {}
        self.types: Counter = Counter()

    def fold(self, ev: Event) -> list[tuple[str, str]]:
        """Returns display lines (text, style) worth showing for this event (the
        caller stamps them with the event's own time, so they read in order)."""
        self.events.append(ev)
        self.types[ev.type] += 1
        d = ev.data if isinstance(ev.data, dict) else {}
        out: list[tuple[str, str]] = []
        if ev.type == "person.registered":
            self.names[d["person"]] = (d.get("name") or d["person"], d.get("role", ""))
        elif ev.type == "presence.entered":
            who = d.get("person") or f"tag:{d.get('tag')}"
            self.rooms.setdefault(d.get("room"), {})[who] = ev.epoch
        elif ev.type == "presence.left":
            who = d.get("person") or f"tag:{d.get('tag')}"
            occ = self.rooms.get(d.get("room"), {})
            occ.pop(who, None)
            occ.pop(f"tag:{d.get('tag')}", None)
        elif ev.type == "person.left":
            for occ in self.rooms.values():
                occ.pop(d.get("person"), None)
            out.append((f"{self.label(d.get('person'))} has left the center", "green"))
        elif ev.type == "wristband.bound":
            tag = d.get("tag")
            for occ in self.rooms.values():
                if f"tag:{tag}" in occ:
                    occ[d["person"]] = occ.pop(f"tag:{tag}")
        elif ev.type == "alarm.raised":
            aid, code = d.get("alarm_id"), d.get("code")
            new = aid not in self.active
            old = self.active.get(aid)
            self.active[aid] = d
            self.raised.setdefault(code, set()).add(aid)
            msg = (d.get("message") or {}).get("en", "")
            if new:
                out.append((f"ALARM {code} [{d.get('severity')}] {msg}", "bold red"))
            elif d.get("snapshot") and d.get("snapshot") != (old or {}).get("snapshot"):
                # 视频联动: the camera's picture is attached to the alarm by an update
                out.append((f"snapshot for {code}: {d['snapshot']}", "cyan"))
        elif ev.type == "alarm.cleared":
            a = self.active.pop(d.get("alarm_id"), None)
            if a is not None:
                out.append((f"cleared {a.get('code')} ({a.get('room') or '-'})", "yellow"))
        elif ev.type == "device.error":
            out.append((f"device {d.get('device')}: {d.get('error')}", "magenta"))
        return out

    def label(self, who: str | None) -> str:
        if not who:
            return "?"
        n = self.names.get(who)
        return f"{n[0]}({who})" if n else who

    def room_of(self, who: str) -> set[str]:
        return {r for r, occ in self.rooms.items() if who in occ}

    def find(self, type_: str, since: int, **match) -> Event | None:
        for ev in self.events[since:]:
            if ev.type == type_ and all(ev.data.get(k) == v for k, v in match.items()):
                return ev
        return None

    def alarm_active(self, code: str, person: str | None = None) -> bool:
        return any(a.get("code") == code and (person is None or person in (a.get("persons") or []))
                   for a in self.active.values())


# ---- the terminal ------------------------------------------------------------------------------
ROLE_STYLE = {"suspect": "bold red", "officer": "bold blue", "staff": "green", "visitor": "cyan"}
SEV_STYLE = {"critical": "bold red", "major": "red", "minor": "yellow", "warning": "yellow"}


class Display:
    """Rich Live screen on a terminal; concise lines otherwise (stderr with --json)."""

    def __init__(self, json_mode: bool, total_steps: int, clock: DemoClock):
        from rich.console import Console
        self.json_mode = json_mode
        self.clock = clock
        self.total = total_steps
        self.step = 0
        self.step_text = "starting"
        self.header = ""
        self.lines: deque[tuple[str, str]] = deque(maxlen=14)
        self.view: View | None = None
        self.live = None
        self._last = 0.0
        tty = sys.stdout.isatty() and not json_mode
        self.console = Console(file=sys.stderr if json_mode else sys.stdout, highlight=False,
                               force_terminal=tty if tty else None, soft_wrap=not tty)
        self.mode = "live" if tty else "lines"

    def start(self) -> None:
        if self.mode == "live":
            from rich.live import Live
            self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
            self.live.start()

    def stop(self) -> None:
        if self.live is not None:
            try:
                self.live.update(self._render(), refresh=True)
                self.live.stop()
            except Exception:
                pass
            self.live = None

    def log(self, text: str, style: str = "", at: float | None = None) -> None:
        stamp = self.clock.hhmm(at)
        self.lines.append((f"{stamp}  {text}", style))
        if self.mode == "lines":
            self.console.print(f"{stamp} [{self.step:>2}/{self.total}] {text}", style=style or None,
                               markup=False)
        else:
            self.refresh(force=True)

    def set_step(self, i: int, text: str) -> None:
        self.step, self.step_text = i, text
        self.log(text, "bold")

    def refresh(self, force: bool = False) -> None:
        if self.live is None:
            return
        now = time.monotonic()
        if force or now - self._last >= 0.2:
            self._last = now
            self.live.update(self._render())

    def _render(self):
        from rich.console import Group
        from rich.panel import Panel
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text
        width, height = self.console.size
        head = Text.assemble(("casegate demo", "bold"), f"  ·  demo time {self.clock.hhmm()} ",
                             (f"(×{self.clock.speed:g})", "dim"), f"  ·  {self.header}")
        bar = Table.grid(padding=(0, 1))
        bar.add_row(ProgressBar(total=max(1, self.total), completed=self.step, width=min(40, width // 3)),
                    Text(f"{self.step}/{self.total}  {self.step_text}", overflow="ellipsis", no_wrap=True))
        v = self.view or View()
        rooms = [(rid, name, v.rooms.get(rid, {})) for rid, _, name, _ in ROOMS]
        short = height < 40
        shown = [r for r in rooms if r[2]] if short else rooms
        occ = Table(title="occupancy 实时人数", box=None, header_style="bold", title_justify="left",
                    caption=f"{len(rooms) - len(shown)} rooms empty" if short else None)
        occ.add_column("room 房间", no_wrap=True)
        occ.add_column("#", justify="right")
        occ.add_column("people")
        for rid, name, people in shown:
            txt = Text()
            for who in people:
                n = v.names.get(who)
                if txt:
                    txt.append(" ")
                txt.append(n[0] if n else who, ROLE_STYLE.get(n[1] if n else "", "dim"))
            occ.add_row(Text.assemble(name, (f" {rid}", "dim")), str(len(people)) if people else "", txt)
        alarms = Table(title=f"active alarms 报警 ({len(v.active)})", box=None, header_style="bold",
                       title_justify="left")
        for c in ("code", "severity", "room", "persons"):
            alarms.add_column(c, no_wrap=c != "persons")
        names = {r[0]: r[2] for r in ROOMS}
        for a in list(v.active.values())[-8:]:
            alarms.add_row(a.get("code", ""), Text(a.get("severity", ""), SEV_STYLE.get(a.get("severity"), "")),
                           names.get(a.get("room"), a.get("room") or "-"),
                           ", ".join(v.names.get(p, (p,))[0] for p in a.get("persons") or []))
        if width >= 125:
            grid = Table.grid(padding=(0, 3))
            grid.add_row(occ, alarms)
            used = 2 + max(len(shown) + 2 + (1 if short else 0), min(8, len(v.active)) + 2)
            body = [grid]
        else:
            used = 2 + len(shown) + 2 + (1 if short else 0) + min(8, len(v.active)) + 2
            body = [occ, alarms]
        n = max(3, min(len(self.lines), height - used - 3))
        logs = Text("\n".join(t for t, _ in list(self.lines)[-n:]) or " ", overflow="ellipsis", no_wrap=True)
        return Group(head, bar, *body, Panel(logs, title="log", border_style="dim"))


# ---- the scripted day -----------------------------------------------------------------------------
class Script:
    def __init__(self, daemon: DemoDaemon, sims: Simulators, desk: Desk, view: View, display: Display,
                 clock: DemoClock, events: queue.Queue[list[Event]]):
        self.d, self.sims, self.desk, self.view, self.ui = daemon, sims, desk, view, display
        self.clock = clock
        self.q = events
        self.problems: list[str] = []
        self.registered: dict[str, float] = {}

    # -- event pump and bounded waits --
    def pump(self, seconds: float) -> None:
        deadline = time.monotonic() + max(0.0, seconds)
        while True:
            left = deadline - time.monotonic()
            try:
                batch = self.q.get(timeout=max(0.0, min(0.1, left)))
            except queue.Empty:
                batch = None
            while batch is not None:
                for ev in batch:
                    for text, style in self.view.fold(ev):
                        self.ui.log(text, style, at=ev.epoch)
                try:
                    batch = self.q.get_nowait()
                except queue.Empty:
                    batch = None
            self.ui.refresh()
            if time.monotonic() >= deadline:
                return

    def wait(self, pred: Callable[[], Any], timeout: float, what: str) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self.pump(0.0)
            if pred():
                return True
            if time.monotonic() >= deadline:
                self.problems.append(f"timed out after {timeout:.0f} s waiting for {what}")
                self.ui.log(f"(timed out waiting for {what})", "magenta")
                return False
            self.pump(0.05)

    def until(self, minute: float) -> None:
        """Let demo time reach the mark (at once if the script is late)."""
        target = self.clock.start + minute * 60.0
        for _ in range(100000):
            left = (target - self.clock()) / self.clock.speed
            if left <= 0:
                return
            self.pump(min(left, 0.1))

    def wait_alarm(self, code: str, person: str | None = None, demo_s: float = 0.0, slack: float = 10.0) -> bool:
        return self.wait(lambda: self.view.alarm_active(code, person), demo_s / self.clock.speed + slack,
                         f"alarm {code}")

    def command(self, cmd: str, **args) -> dict:
        try:
            return self.desk(cmd, **args)
        except DemoError as e:
            self.problems.append(str(e))
            self.ui.log(f"command failed: {e}", "magenta")
            return {}

    # -- people --
    def register(self, pid: str) -> None:
        role, name, gender, tag, extra = PEOPLE[pid]
        self.command("person/register", person=pid, role=role, name=name, gender=gender, **extra)
        self.command("wristband/bind", tag=tag, person=pid)
        if pid in CARDS:
            self.command("wristband/bind", tag=CARDS[pid], person=pid)
        self.registered[pid] = self.clock()

    def _tag(self, pid: str) -> str:
        return PEOPLE[pid][3]

    def move(self, room: str, *who: str, wait: bool = True) -> None:
        """``who`` in arrival order: escorts first, the suspect last (she leaves first)."""
        dev, addr = EXCITERS[room]
        site = self.sims.site
        for pid in reversed(who):
            for st in site.stations.values():
                if st.has_tag(self._tag(pid)):
                    st.remove_tag(self._tag(pid))
        for pid in who:
            site[dev].add_tag(self._tag(pid), exciter=addr)
        if wait:
            self.wait(lambda: all(self.view.room_of(p) == {room} for p in who), 8.0,
                      f"{', '.join(who)} in {room}")

    def leave_center(self, pid: str) -> None:
        for st in self.sims.site.stations.values():
            if st.has_tag(self._tag(pid)):
                st.remove_tag(self._tag(pid))
        self.wait(lambda: not self.view.room_of(pid), 8.0, f"{pid} out of range")

    def door(self, door: str, open_: bool) -> None:
        i, _room = DOORS[door]
        mark = len(self.view.events)
        self.sims.modbus.set_input(i, 0 if open_ else 1)
        typ = "door.opened" if open_ else "door.closed"
        self.wait(lambda: self.view.find(typ, mark, door=door), 5.0, f"{typ} {door}")

    def swipe(self, pid: str) -> None:
        mark = len(self.view.events)
        self.sims.card.swipe(CARDS[pid], repeats=3)
        self.wait(lambda: self.view.find("card.swiped", mark, card=CARDS[pid]), 5.0, f"card swipe of {pid}")

    def compartment(self, locker: str, comp: int, by: str, put: str | None = None, take: str | None = None,
                    order: str | None = None) -> None:
        """Unlock (locker/open), put or take an item, shut the door, wait for the inventory."""
        board, uhf = ((self.sims.ev_board, self.sims.ev_uhf) if locker == EV_LOCKER
                      else (self.sims.bel_board, self.sims.bel_uhf))
        mark = len(self.view.events)
        args = {"locker": locker, "compartment": comp, "by": by}
        if order:
            args["order"] = order
        self.command("locker/open", **args)
        self.wait(lambda: self.view.find("locker.opened", mark, locker=locker, compartment=comp), 5.0,
                  f"{locker}/{comp} opened")
        if put:
            uhf.add_tag(put)
            board.set_occupied(comp, True)
        if take:
            uhf.remove_tag(take)
            board.set_occupied(comp, False)
        board.set_door(comp, False)
        self.wait(lambda: self.view.find("locker.closed", mark, locker=locker, compartment=comp), 5.0,
                  f"{locker}/{comp} closed")
        if put:
            self.wait(lambda: self.view.find("evidence.added", mark, locker=locker, item=put), 6.0,
                      f"inventory: {put} in {locker}/{comp}")
        if take:
            self.wait(lambda: self.view.find("evidence.removed", mark, locker=locker, item=take), 6.0,
                      f"inventory: {take} gone from {locker}/{comp}")

    def deposit_belongings(self, pid: str, by: str) -> None:
        epc, comp = BAGS[pid]
        self.command("belongings/assign", person=pid, locker=BEL_LOCKER, compartment=comp)
        self.compartment(BEL_LOCKER, comp, by, put=epc)

    def return_belongings(self, pid: str, by: str) -> None:
        epc, comp = BAGS[pid]
        self.compartment(BEL_LOCKER, comp, by, take=epc)

    def checkout_and_exit(self, pid: str, by: str) -> None:
        self.move("exit", by, pid)
        self.door("exit-door", True)
        self.leave_center(pid)
        mark_ok = self.wait(lambda: self.view.find("person.left", 0, person=pid), 5.0, f"person.left {pid}")
        if mark_ok:
            self.ui.log(f"{self.view.label(pid)} left at {self.clock.hhmm()}", "green")
        self.door("exit-door", False)
        self.move("corridor", by)

    # -- the day --
    def steps(self) -> list[tuple[float, str, Callable[[], None]]]:
        W, L, ZH, ZO = "off-wang", "off-li", "off-zhang", "off-zhao"
        S1, S2, S3 = "sus-liu", "sus-chen", "sus-zhou"
        warn_s = (1.5 - 1.0) * 3600.0      # administrative limit 1.5 h, first warning 60 min before

        def setup():
            for pid in (W, L, ZH, ZO, "staff-sun", "staff-zhou", "staff-wu"):
                self.register(pid)
            self.move("security_check", "staff-sun")
            self.move("waiting-1", "staff-zhou")
            self.move("waiting-2", "staff-wu")
            self.move("corridor", W, L, ZH, ZO)

        def s1_arrives():
            self.move("entrance", W)
            self.door("entrance-door", True)
            self.register(S1)
            self.move("entrance", W, S1)
            self.door("entrance-door", False)

        def s3_arrives():
            self.move("entrance", ZH)
            self.register(S3)
            self.move("entrance", ZH, S3)

        def s3_belongings():
            self.move("belongings", ZH, S3)
            self.deposit_belongings(S3, ZH)

        def s1_belongings():
            self.move("belongings", W, S1)
            self.deposit_belongings(S1, W)

        def s2_arrives():
            self.move("entrance", L)
            self.register(S2)
            self.move("entrance", L, S2)

        def s3_interrogation():
            self.move("interrogation-2", ZH, ZO, S3)
            self.wait_alarm("procedure_skipped", S3)

        def s2_belongings():
            self.move("belongings", L, S2)
            self.deposit_belongings(S2, L)

        def s2_waiting():
            self.move("waiting-2", L, S2)
            self.move("corridor", L)

        def s1_interrogation():
            self.move("waiting-1", W, L)
            self.move("interrogation-1", W, L, S1)

        def officer_leaves():
            self.move("corridor", L)
            self.wait_alarm("lone_interrogation", demo_s=30)
            self.wait_alarm("officer_left_interrogation", demo_s=60)

        def toilet():
            self.move("waiting-2", "staff-sun")
            self.move("toilet", "staff-sun", S2)

        def toilet_back():
            self.move("waiting-2", "staff-sun", S2)
            self.move("security_check", "staff-sun")

        def officer_back():
            self.move("interrogation-1", L)

        def s3_back():
            self.move("waiting-2", ZH, S3)
            self.move("corridor", ZH, ZO)

        def evidence_store():
            self.move("evidence_store", ZO)
            self.swipe(ZO)
            self.door("evidence-door", True)

        def unauthorised_take():
            self.compartment(EV_LOCKER, 2, ZO, take=EVIDENCE["knife"])
            self.wait_alarm("evidence_unauthorized_removal")

        def authorised_take():
            self.command("custody/order", order="CO-2026-0342-01", item=EVIDENCE["phone"], action="withdraw",
                         case_id="X2026-0342", by=ZH)
            self.compartment(EV_LOCKER, 5, ZO, take=EVIDENCE["phone"], order="CO-2026-0342-01")

        def door_held():
            lim = _floors(self.clock.speed)["door_held_open"]["limit_s"]
            self.wait_alarm("door_held_open", demo_s=lim)
            self.door("evidence-door", False)
            self.move("corridor", ZO)

        def s1_back():
            self.move("waiting-1", W, S1)
            self.move("corridor", W, L)

        def mixup():
            self.move("waiting-2", L)
            self.move("waiting-1", L, S2)
            self.wait_alarm("collusion_risk", demo_s=5)

        def separated():
            self.move("waiting-2", L, S2)
            self.move("corridor", L)

        def warning():
            due = self.registered.get(S3, self.clock()) + warn_s
            self.wait_alarm("detention_warning", S3, demo_s=max(0.0, due - self.clock()))

        def s3_checkout():
            self.move("waiting-2", ZH)
            self.command("person/checkout", person=S3, by=ZH)
            self.wait_alarm("belongings_forgotten", S3)

        def s3_fetches():
            self.move("belongings", ZH, S3)
            self.return_belongings(S3, ZH)

        def s3_exit():
            self.checkout_and_exit(S3, ZH)

        def s1_fetches():
            self.move("waiting-1", W)
            self.move("belongings", W, S1)
            self.return_belongings(S1, W)
            self.command("person/checkout", person=S1, by=W)

        def s1_exit():
            self.checkout_and_exit(S1, W)

        return [
            (0, "officers and staff sign in; guards take their posts", setup),
            (1, "刘某 (case A, criminal) is brought in by 王建国 and registered", s1_arrives),
            (3, "刘某 → security check (孙丽 searches)", lambda: self.move("security_check", W, S1)),
            (5, "周某 (case X, administrative) is brought in by 张伟", s3_arrives),
            (6, "刘某 → belongings: locker compartment 1", s1_belongings),
            (8, "周某 → belongings (he skips the security check)", s3_belongings),
            (9, "刘某 → information collection", lambda: self.move("info_collection", W, S1)),
            (10, "陈某 (case A, co-suspect of 刘某) is brought in by 李娜", s2_arrives),
            (11, "周某 → information collection", lambda: self.move("info_collection", ZH, S3)),
            (12, "陈某 → security check", lambda: self.move("security_check", L, S2)),
            (13, "刘某 → waiting room 1", lambda: (self.move("waiting-1", W, S1), self.move("corridor", W))),
            (14, "周某 → interrogation 2 with 张伟 and 赵磊, never searched", s3_interrogation),
            (15, "陈某 → belongings: compartment 2", s2_belongings),
            (17, "陈某 → information collection", lambda: self.move("info_collection", L, S2)),
            (19, "陈某 → waiting room 2", s2_waiting),
            (20, "刘某 → interrogation 1 with 王建国 and 李娜", s1_interrogation),
            (22, "李娜 steps out of interrogation 1 for a phone call", officer_leaves),
            (24, "陈某 asks for the toilet; 孙丽 escorts her", toilet),
            (25, "陈某 is back in waiting room 2", toilet_back),
            (26, "李娜 is back in interrogation 1", officer_back),
            (27, "周某's interrogation ends → waiting room 2", s3_back),
            (28, "赵磊 enters the evidence store (card swipe), props the door open", evidence_store),
            (29, "赵磊 takes the knife out of compartment 2 without a custody order", unauthorised_take),
            (31, "custody order for the phone, then 赵磊 takes it from compartment 5", authorised_take),
            (32, "the evidence store door is still open", door_held),
            (34, "刘某's interrogation ends → waiting room 1", s1_back),
            (36, "mix-up: 李娜 brings 陈某 into waiting room 1, where 刘某 sits", mixup),
            (38, "陈某 back to waiting room 2", separated),
            (39, "周某's administrative time limit approaches", warning),
            (40, "checkout of 周某 approved, his belongings still in the locker", s3_checkout),
            (41, "周某 fetches his belongings", s3_fetches),
            (43, "周某 leaves through the exit", s3_exit),
            (45, "刘某 fetches his belongings; checkout approved", s1_fetches),
            (47, "刘某 leaves through the exit", s1_exit),
        ]


# ---- summary ------------------------------------------------------------------------------------
def summarize(journal_path: Path, backlog: int | None, broker: dict, expected=None) -> dict:
    from gateway.journal import iter_events, journal_stats, open_reader, verify
    expected = EXPECTED_ALARMS if expected is None else expected
    st = journal_stats(journal_path)
    by_code: dict[str, set[str]] = {}
    conn = open_reader(journal_path)
    try:
        for ev in iter_events(conn, types=["alarm.raised"]):
            by_code.setdefault(ev.data.get("code"), set()).add(ev.data.get("alarm_id"))
    finally:
        conn.close()
    v = verify(journal_path)
    alarms = {k: len(v_) for k, v_ in sorted(by_code.items())}
    missing = [c for c in expected if c not in alarms]
    return {
        "events": st["events"],
        "alarms_by_code": alarms,
        "backlog": backlog if backlog is not None else st["backlog"],
        "verify_ok": v.ok,
        "verify": {"checked": v.checked, "first_seq": v.first_seq, "last_seq": v.last_seq,
                   "bad_seq": v.bad_seq, "reason": v.reason},
        "broker": broker,
        "expected_alarms": list(expected),
        "missing_alarms": missing,
        "ok": v.ok and not missing,
    }


def print_summary(console, s: dict) -> None:
    from rich.table import Table
    t = Table(title="alarms by code", box=None, header_style="bold")
    t.add_column("code")
    t.add_column("raised", justify="right")
    t.add_column("expected")
    for code in sorted(set(s["alarms_by_code"]) | set(s["expected_alarms"])):
        n = s["alarms_by_code"].get(code, 0)
        exp = code in s["expected_alarms"]
        t.add_row(code, str(n), ("[green]yes ✓[/]" if n else "[red]MISSING ✗[/]") if exp else "")
    console.print(t)
    b = s["broker"]
    console.print(f"events journaled: {s['events']} · uplink backlog: {s['backlog']} · "
                  f"broker: {b.get('address') or 'none'}"
                  + (f" ({b.get('alarm_messages', 0)} alarm messages received)" if b.get("running") else
                     f" — ran buffered: {b.get('reason')}"))
    v = s["verify"]
    if s["verify_ok"]:
        console.print(f"journal verify: [green]OK[/] ({v['checked']} events, seq {v['first_seq']}..{v['last_seq']})")
    else:
        console.print(f"journal verify: [red]BROKEN at seq {v['bad_seq']}[/]: {v['reason']}")
    for p in s.get("problems", []):
        console.print(f"[magenta]note:[/] {p}", markup=True)
    for text in s.get("demo_settings", []):
        console.print(text, style="yellow", markup=False)
    if s["missing_alarms"]:
        console.print(f"[red]missing alarms:[/] {', '.join(s['missing_alarms'])}")
    console.print(("[bold green]demo OK[/]" if s["ok"] else "[bold red]demo FAILED[/]")
                  + f" in {s['wall_s']:.1f} s ({s['demo_minutes']:.0f} demo minutes at ×{s['speed']:g})")


# ---- entry point ------------------------------------------------------------------------------------
def _setup_logging(path: Path) -> tuple[logging.Handler, int]:
    root = logging.getLogger()
    h = logging.FileHandler(path, encoding="utf-8")
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    old = root.level
    root.addHandler(h)
    root.setLevel(logging.INFO)
    return h, old


def run_demo(args) -> int:
    speed = getattr(args, "speed", None)
    speed = 60.0 if speed is None else float(speed)
    json_mode = bool(getattr(args, "json", False))
    keep_dir = getattr(args, "dir", None)
    keep_tmp = bool(getattr(args, "keep", False))
    no_broker = bool(getattr(args, "no_broker", False))
    if not 0 < speed <= 100000:        # NaN fails too
        print("casegate demo: --speed must be > 0 (1 = real time, 60 = one minute per second)", file=sys.stderr)
        return 2
    if keep_dir:
        workdir = Path(keep_dir).resolve()
        if (workdir / "state" / "journal.db").exists():
            print(f"casegate demo: {workdir} already holds a demo journal; give an empty or new directory",
                  file=sys.stderr)
            return 2
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="casegate-demo-"))

    # Ctrl-C and SIGTERM both end in the same clean-up.
    old_term = None
    if threading.current_thread() is threading.main_thread():
        def _term(signum, frame):
            raise KeyboardInterrupt
        old_term = signal.signal(signal.SIGTERM, _term)

    t0 = time.monotonic()
    handler, old_level = _setup_logging(workdir / "demo.log")
    sims = Simulators()
    broker: Broker | None = None
    daemon: DemoDaemon | None = None
    desk: Desk | None = None
    display: Display | None = None
    script: Script | None = None
    status = 1
    summary: dict | None = None
    broker_info: dict = {"running": False, "address": None}
    interrupted = False
    try:
        clock = DemoClock(speed, day_start())
        exe = None if no_broker else mosquitto_path()
        if no_broker:
            broker_info["reason"] = "--no-broker"
        elif exe is None:
            broker_info["reason"] = "mosquitto is not installed"
        else:
            try:
                broker = Broker(exe, workdir)
                broker.start()
                broker_info.update(running=True, address=f"127.0.0.1:{broker.port}")
            except (DemoError, OSError) as e:
                broker = None
                broker_info["reason"] = str(e)
        mqtt_port = broker.port if broker else _free_port()   # nothing listens there: buffered
        sims.start_devices(workdir)
        zone_port = _free_port()
        cfg_dict = build_config(workdir / "state", mqtt_port, zone_port, sims, speed)
        cfg_path = workdir / "casegate.toml"
        cfg_path.write_text(toml_dumps(cfg_dict), encoding="utf-8")
        from gateway.config import load_config
        cfg = load_config(cfg_path)

        events: queue.Queue[list[Event]] = queue.Queue()
        view = View()
        display = Display(json_mode, 0, clock)          # total set once the script is built
        display.view = view
        display.header = (f"broker {broker_info['address']} (MQTT requests)" if broker
                          else f"NO BROKER ({broker_info.get('reason')}): running buffered, events wait in the journal")
        display.start()
        display.log(f"workdir {workdir} · config {cfg_path.name} · log demo.log")
        if not broker:
            display.log(f"no broker ({broker_info.get('reason')}): the uplink buffers; commands run in-process",
                        "yellow")
        for n in sims.notes:
            display.log(n, "yellow")

        daemon = DemoDaemon(cfg, None, clock, events.put)
        daemon.start()
        sims.start_stations(zone_port)
        if not sims.site.wait_logged_in(10.0):
            display.log("some base stations did not log in", "magenta")
        if broker:
            deadline = time.monotonic() + 10.0
            while not (daemon.uplink and daemon.uplink.connected) and time.monotonic() < deadline:
                time.sleep(0.05)
        try:
            use_mqtt = broker is not None and daemon.uplink is not None and daemon.uplink.connected
            desk = Desk(daemon, broker.port if use_mqtt else None)
        except (DemoError, OSError) as e:
            display.log(f"{e}; commands run in-process", "yellow")
            desk = Desk(daemon, None)
        broker_info["requests"] = desk.via
        script = Script(daemon, sims, desk, view, display, clock, events)
        steps = script.steps()
        display.total = len(steps)
        # every started device online (bounded); the camera may lag, the demo goes on regardless
        script.wait(lambda: all(d.get("state") == "online" for d in daemon.devices()
                                if d["id"] in daemon.drivers), 15.0, "every device online")
        for d in daemon.devices():
            if d.get("state") != "online":
                display.log(f"device {d['id']} is {d.get('state')}: {d.get('error') or ''}", "magenta")
        for text in demo_shortcuts(speed):
            display.log(text, "yellow")
        clock.run()
        for i, (minute, text, fn) in enumerate(steps, 1):
            script.until(minute)
            script.pump(0.0)            # the previous step's events before this step's title
            display.set_step(i, text)
            fn()
        # every expected alarm (bounded), then let the uplink deliver
        script.wait(lambda: all(c in view.raised for c in EXPECTED_ALARMS), 5.0, "the expected alarms")
        if broker and daemon.uplink:
            script.wait(lambda: daemon.uplink.backlog == 0, 10.0, "the uplink to drain")
        # With a broker: what the uplink reported once drained. Without one, the
        # journal itself says what waits (the uplink process reports with a lag).
        backlog = daemon.uplink.backlog if (broker and daemon.uplink) else None
        demo_minutes = clock.minutes()
        display.log("scenario complete, stopping the center")
        daemon.stop("demo finished")
        daemon_stopped = daemon
        daemon = None
        if desk is not None:
            broker_info["alarm_messages"] = desk.alarm_messages
            broker_info["messages"] = desk.messages
        summary = summarize(daemon_stopped.config.journal_path, backlog, broker_info)
        summary.update(speed=speed, demo_minutes=round(demo_minutes, 1), wall_s=round(time.monotonic() - t0, 1),
                       problems=script.problems, demo_settings=demo_shortcuts(speed),
                       journal=str(daemon_stopped.config.journal_path) if keep_dir else None)
        status = 0 if summary["ok"] else 1
    except KeyboardInterrupt:
        interrupted = True
        status = 130
    except Exception as e:
        log.exception("demo failed")
        if keep_dir:
            print(f"casegate demo: {type(e).__name__}: {e} (see {workdir / 'demo.log'})", file=sys.stderr)
        else:   # the temporary directory goes away: show the log's end now
            import traceback
            traceback.print_exc()
            print(f"casegate demo: {type(e).__name__}: {e} (run with --dir DIR to keep demo.log)", file=sys.stderr)
        status = 1
    finally:
        for name, fn in (("display", lambda: display and display.stop()),
                         ("desk", lambda: desk and desk.close()),
                         ("gateway", lambda: daemon and daemon.stop("demo interrupted")),
                         ("simulators", sims.stop),
                         ("broker", lambda: broker and broker.stop())):
            try:
                fn()
            except BaseException as e:      # a second Ctrl-C must not skip the rest
                log.warning("clean-up of %s: %s", name, e)
        logging.getLogger().removeHandler(handler)
        handler.close()
        logging.getLogger().setLevel(old_level)
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        if not keep_dir and not keep_tmp:
            shutil.rmtree(workdir, ignore_errors=True)
    if interrupted:
        print("casegate demo: interrupted; everything stopped", file=sys.stderr)
        return status
    if summary is not None:
        if json_mode:
            sys.stdout.write(json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
        else:
            print_summary(display.console, summary)
            if keep_dir or keep_tmp:
                display.console.print(f"kept in {workdir}: try `casegate --config {workdir / 'casegate.toml'} "
                                      "trace sus-liu` or `... alarms`", markup=False)
            else:
                display.console.print(f"removed the demo's work dir {workdir} (journal, config, demo.log); "
                                      "--keep or --dir DIR keeps them", markup=False)
    return status
