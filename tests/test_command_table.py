"""One command table (gateway/commands COMMANDS) and one dispatch for every path:
MQTT (P/request/<command>), the control socket (casegate ack, person add, ...) and the
demo's desk. Every command is reachable from each path that the table says offers it,
refused as ``unknown_command`` on a path that does not, and an unknown command gets
``unknown_command`` on all three."""
from __future__ import annotations

import dataclasses
import inspect
import json
import threading
import uuid
from types import SimpleNamespace

import pytest

from drivers.common.config import CAPABILITIES
from gateway.cli import control
from gateway.config import parse_config
from gateway.control_socket import CONTROL_ALIASES
from gateway.daemon import Daemon
from gateway.demo.desk import Desk
from gateway.demo.runtime import DemoError
from gateway.commands import COMMANDS, PATHS, RATE_LIMITED_PATHS

# What each path journals as the source of what a command causes (SPEC §2).
SOURCE = {"mqtt": "mqtt:central", "control": "cli", "demo": "mqtt:demo-desk"}


def test_the_table_is_complete_and_consistent():
    assert set(PATHS) == set(SOURCE)
    assert RATE_LIMITED_PATHS <= set(PATHS)
    for name, c in COMMANDS.items():
        assert c.name == name
        assert c.paths and c.paths <= set(PATHS), name
        assert c.limit in (None, "heavy", "resend"), name
        fn = c.handler
        assert callable(fn), f"{name}: no handler"
        # pool handlers talk to a device: (services, args, source); writer ones also get the core
        want = ["s", "a", "src"] if c.pool else ["s", "core", "a", "src"]
        assert list(inspect.signature(fn).parameters) == want, name
        c.model.model_validate({"request_id": "r-1", **c.example})      # the example is a valid request
        # a device command names the argument that is its device and the capability that device declares
        assert (c.device_arg is None) == (c.capability is None), name
        assert c.capability is None or (c.pool and c.capability in CAPABILITIES), name
        assert c.device_arg is None or c.device_arg in c.model.model_fields, name
    verbs = [v.words for c in COMMANDS.values() for v in c.cli]
    assert len(verbs) == len(set(verbs)) and all(len(w) in (1, 2) for w in verbs), verbs
    for verb, (command, _) in CONTROL_ALIASES.items():
        assert command in COMMANDS and "control" in COMMANDS[command].paths, verb


class RecordingHandlers:
    """Stands in for every command's handler: records which command ran with which source."""

    def __init__(self):
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def handler_of(self, c):
        def record(*args):
            src = args[-1]
            with self.lock:
                self.calls.append((c.name, src))
            data = {"handled": c.name, "source": src}
            return data if c.pool else (data, [])
        return record


@pytest.fixture
def daemon(tmp_path, monkeypatch):
    cfg = parse_config({"center": {"id": "t-center"}, "mqtt": {"enabled": False},
                        "storage": {"dir": str(tmp_path / "state")}})
    d = Daemon(cfg)
    d.start()
    d.recorded = RecordingHandlers()
    for name, c in list(COMMANDS.items()):
        monkeypatch.setitem(COMMANDS, name, dataclasses.replace(c, handler=d.recorded.handler_of(c)))
    answers: dict[str, dict] = {}
    done = threading.Condition()

    def respond(req, body):           # what the uplink would publish on P/response/<command>
        with done:
            answers[body.get("request_id") or f"anon-{len(answers)}"] = body
            done.notify_all()
    d.router.respond = respond
    d.mqtt_answers, d.mqtt_done = answers, done
    yield d
    d.stop("test")


def via_mqtt(d, command: str, args: dict) -> dict:
    rid = f"m-{uuid.uuid4().hex[:10]}"
    msg = SimpleNamespace(topic=f"{d.config.prefix}/request/{command}", properties=None,
                          payload=json.dumps({"request_id": rid, **args}).encode())
    d.router.on_message(d.config.prefix, msg)
    with d.mqtt_done:
        assert d.mqtt_done.wait_for(lambda: rid in d.mqtt_answers, 10), command
        return d.mqtt_answers.pop(rid)


def via_control(d, command: str, args: dict) -> dict:
    return control(d.config, {"cmd": "request", "command": command, "args": args}, timeout=20)


def via_demo(d, command: str, args: dict) -> dict:
    desk = Desk(d, None)            # no broker: the desk's in-process path
    try:
        return {"ok": True, "data": desk(command, **args)}
    except DemoError as e:
        code = str(e).split(": ")[1]
        return {"ok": False, "error": {"code": code, "message": str(e)}}


VIA = {"mqtt": via_mqtt, "control": via_control, "demo": via_demo}


@pytest.mark.parametrize("path", PATHS)
def test_every_command_is_reachable_from_every_path_that_offers_it(daemon, path):
    for name, c in COMMANDS.items():
        body = VIA[path](daemon, name, dict(c.example))
        if path in c.paths:
            assert body["ok"], (name, body)
            assert body["data"] == {"handled": name, "source": SOURCE[path]}, (name, body)
        else:
            assert not body["ok"] and body["error"]["code"] == "unknown_command", (name, body)
    offered = [(n, SOURCE[path]) for n, c in COMMANDS.items() if path in c.paths]
    assert sorted(daemon.recorded.calls) == sorted(offered)


@pytest.mark.parametrize("path", PATHS)
def test_a_command_not_offered_on_a_path_is_unknown_there(daemon, path, monkeypatch):
    others = frozenset(PATHS) - {path}
    monkeypatch.setitem(COMMANDS, "ping", dataclasses.replace(COMMANDS["ping"], paths=others))
    body = VIA[path](daemon, "ping", {})
    assert not body["ok"] and body["error"]["code"] == "unknown_command", body
    assert daemon.recorded.calls == []
    other = sorted(others)[0]
    assert VIA[other](daemon, "ping", {})["ok"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("command", ["no/such", "PING", "person/register/extra", "ping/"])
def test_an_unknown_command_is_unknown_command_on_every_path(daemon, path, command):
    body = VIA[path](daemon, command, {"person": "x", "role": "suspect"})
    assert body["ok"] is False and body["error"]["code"] == "unknown_command", body
    assert daemon.recorded.calls == []


def test_an_unknown_control_verb_is_unknown_command(daemon):
    body = control(daemon.config, {"cmd": "no-such-verb"})
    assert body == {"ok": False, "error": {"code": "unknown_command",
                                           "message": "unknown control command 'no-such-verb'"}}


def test_old_control_verbs_run_their_command_through_the_table(daemon):
    """`{"cmd":"ack"}` and `{"cmd":"reload"}` (clients older than the "request" verb) are
    alarm/ack and config/reload: same validation, same handler, same answer."""
    body = control(daemon.config, {"cmd": "ack", "alarm_id": "lone_interrogation:int-1:1", "by": "o1"})
    assert body["ok"] and body["data"] == {"handled": "alarm/ack", "source": "cli"}, body
    body = control(daemon.config, {"cmd": "ack", "alarm_id": "x", "by": "not an id"})
    assert body["ok"] is False and body["error"]["code"] == "bad_request", body
    body = control(daemon.config, {"cmd": "reload"})
    assert body["ok"] and body["data"] == {"handled": "config/reload", "source": "cli"}, body
    assert daemon.recorded.calls == [("alarm/ack", "cli"), ("config/reload", "cli")]


def test_only_mqtt_is_rate_limited(daemon):
    """[mqtt] heavy_requests_per_min guards against central clients; an operator on the
    control socket (or the demo) enrolling a whole shift's photos is not refused."""
    n = int(daemon.router.heavy_limit.per_min) + 3
    control_codes = [via_control(daemon, "state/republish", {}).get("ok") for _ in range(n)]
    assert all(control_codes)
    mqtt = [via_mqtt(daemon, "state/republish", {}) for _ in range(n)]
    assert [b["error"]["code"] for b in mqtt if not b["ok"]] == ["busy"] * 3
