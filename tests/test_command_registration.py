"""A command is one declaration (issue 26 item 3): this test declares a command of its own
with ``@command`` beside its handler (argument model, handler, CLI verb) and, with nothing
else edited, it is answered over MQTT (``P/request/<command>`` through a real mosquitto, to
a real in-process daemon), on the daemon's control socket, and as a ``casegate`` verb; it
validates, and a re-sent request_id is answered from the store without acting again."""
from __future__ import annotations

import json
import re
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from pydantic import Field, StrictStr

from helpers.brokers import Subscriber
from helpers.daemon import write_config
from gateway.cli import control, main
from gateway.commands import COMMANDS, ID, Args, Verb, arg, command, unregister
from gateway.config import load_config
from gateway.daemon import Daemon

NAME = "desk/note"


class Note(Args):
    text: StrictStr = Field(min_length=1, max_length=200)
    by: str = Field(pattern=ID)


@pytest.fixture
def note_command():
    """The whole of a new command: its model above, this handler and its declaration."""
    acted: list[tuple[str, str]] = []
    lock = threading.Lock()

    @command(NAME, Note, example={"text": "keys handed over", "by": "o1"},
             cli=(Verb(("desk", "note"), "note something at the desk (same as MQTT desk/note)",
                       lambda a, tz: {"text": a.text, "by": a.by},
                       lambda a, d: f"noted as number {d['number']} at {d['center']}",
                       group_help="the front desk (a test's command)",
                       arguments=(arg("text"), arg("--by", required=True, help="who notes it"))),))
    def desk_note(s, core, a: Note, src: str):
        with lock:
            acted.append((a.text, src))
            n = len(acted)
        return {"number": n, "center": s.config().center.id, "source": src, "seq": core.journal.last_seq}, []

    yield acted
    unregister(NAME)


@pytest.fixture
def daemon(tmp_path, mosquitto):
    path = write_config(tmp_path, mosquitto.port)
    d = Daemon(load_config(path))
    d.start()
    d.config_file = path                                       # for the CLI's --config
    deadline = time.monotonic() + 20
    while not d.views.status()["uplink"].get("connected"):          # a bounded poll for the uplink's connect
        assert time.monotonic() < deadline, "the daemon's uplink did not connect"
        time.sleep(0.05)
    yield d
    d.stop("test")


def ask_mqtt(port: int, prefix: str, payload: dict) -> dict:
    sub = Subscriber(port, topics=(f"{prefix}/response/{NAME}",))
    try:
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        pub.publish(f"{prefix}/request/{NAME}", json.dumps(payload), qos=1).wait_for_publish(10)
        msg = sub.wait_for(lambda m: json.loads(m.payload).get("request_id") == payload["request_id"], 15)
        pub.loop_stop()
        pub.disconnect()
        return json.loads(msg.payload)
    finally:
        sub.close()


def test_a_command_declared_in_a_test_is_answered_on_mqtt_the_control_socket_and_the_cli(
        note_command, daemon, mosquitto, capsys):
    assert NAME in COMMANDS and COMMANDS[NAME].handler.__name__ == "desk_note"
    prefix = daemon.config.prefix

    body = ask_mqtt(mosquitto.port, prefix, {"request_id": "note-1", "text": "keys", "by": "o1"})
    assert body["ok"], body
    assert body["data"]["number"] == 1 and body["data"]["source"] == "mqtt:central"
    assert body["data"]["center"] == "t-center"
    # the same request_id again: the stored answer, the handler does not act twice
    again = ask_mqtt(mosquitto.port, prefix, {"request_id": "note-1", "text": "keys", "by": "o1"})
    assert again == body and len(note_command) == 1
    bad = ask_mqtt(mosquitto.port, prefix, {"request_id": "note-2", "text": "", "by": "o1"})
    assert not bad["ok"] and bad["error"]["code"] == "bad_request", bad
    assert len(note_command) == 1

    body = control(daemon.config, {"cmd": "request", "command": NAME,
                                   "args": {"request_id": "note-3", "text": "pen", "by": "o2"}})
    assert body["ok"] and body["data"]["number"] == 2 and body["data"]["source"] == "cli", body

    cfg = str(daemon.config_file)
    assert main(["--config", cfg, "desk", "note", "lamp", "--by", "o3"]) == 0
    assert capsys.readouterr().out == "noted as number 3 at t-center\n"
    assert note_command[-1] == ("lamp", "cli")
    assert main(["--config", cfg, "desk", "note", "lamp", "--by", "not an id"]) == 2     # bad_request
    assert "desk/note refused: bad_request: by: not a valid id" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["desk", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert re.search(r"^ +note +note something at the desk \(same as MQTT desk/note\)$", out, re.M), out
    assert len(note_command) == 3

    unregister(NAME)            # gone from the table: gone from every path, the CLI included
    with pytest.raises(SystemExit) as e:
        main(["desk", "--help"])
    assert e.value.code == 2 and "invalid choice: 'desk'" in capsys.readouterr().err
    body = control(daemon.config, {"cmd": "request", "command": NAME,
                                   "args": {"request_id": "note-4", "text": "pen", "by": "o2"}})
    assert not body["ok"] and body["error"]["code"] == "unknown_command", body

