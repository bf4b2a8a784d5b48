"""`casegate simulate`: the configured site played by the drivers' simulators (SPEC §5 v3).

Commissioning without hardware: every ``[[devices]]`` entry whose kind offers a site simulator
(``drivers/<kind>/simulator.py: site_device``, drivers/common/site.py) is started on the
addresses, ports and ids the config names — the stations connect to the zone reader's listen
address, serial devices appear as pseudo-terminals linked at their configured port, the door
module serves Modbus where the config points, cameras answer on their url with the password of
their password_file — so the running daemon reads them exactly as it would read the hardware.

Commands (typed, or one a line in ``--script FILE``; ``#`` starts a comment):
``move <tag> <room>``, ``leave <tag>``, ``swipe <card> <reader>``, ``door open|close <door>``,
``recorder start|stop <room>``, ``put/take`` (lockers), ``motion/tamper`` (cameras),
``wait <seconds>``, ``help``, ``quit``. Each prints ``ok: …`` or ``error: …``; a script that had an
error exits 1. ``recorder`` goes to the daemon (recording/state, as the recorder system's own
report does: over MQTT, under the room's configured recorder account), so it needs the daemon
running and connected to the broker.
"""
from __future__ import annotations

import json
import queue
import shlex
import sys
import threading
import time
import uuid
from typing import Callable, TextIO

from drivers.common.site import SiteCommandError
from drivers.registry import spec
from gateway.config import Config

BUILTIN_USAGE = ("recorder start|stop <room>", "wait <seconds>", "help", "quit")


class Site:
    """The simulated devices of one config, and the command loop over them."""

    def __init__(self, cfg: Config, out: TextIO = sys.stdout,
                 recorder_link: Callable[[str, dict], dict] | None = None):
        self.cfg = cfg
        self.out = out
        self.recorder_link = recorder_link   # the recorders' MQTT reports (RecorderLink); None: no MQTT
        self.devices = []
        self.skipped: list[str] = []
        self.room_types = {r.id: r.type for r in cfg.rooms}

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def start(self) -> None:
        for dev in self.cfg.devices:
            kind = dev.driver
            make = getattr(spec(kind).simulator(), "site_device", None)
            if make is None:
                self.skipped.append(f"{dev.id} ({kind}): this kind has no site simulator")
                continue
            try:
                sd = make(dev)
                sd.start()
            except (SiteCommandError, OSError) as e:
                self.skipped.append(f"{dev.id} ({kind}): {e}")
                continue
            self.devices.append(sd)
            self.say(f"simulating {dev.id} ({kind}): {sd.where()}")
        for s in self.skipped:
            self.say(f"not simulated: {s}")

    def stop(self) -> None:
        for sd in reversed(self.devices):
            try:
                sd.stop()
            except Exception as e:          # one stuck simulator must not keep the others' links
                self.say(f"stopping {sd.device_id}: {e}")
        self.devices.clear()

    def usage(self) -> list[str]:
        seen: list[str] = []
        for u in [u for sd in self.devices for u in sd.usage] + list(BUILTIN_USAGE):
            if u not in seen:
                seen.append(u)
        return seen

    def run_line(self, line: str) -> bool | None:
        """One command: True ok, False error, None nothing to do (blank, comment). ``quit`` raises EOFError."""
        line = line.split("#", 1)[0].strip()
        if not line:
            return None
        try:
            words = shlex.split(line)
        except ValueError as e:
            self.say(f"error: {line}: {e}")
            return False
        try:
            done = self._dispatch(words)
        except SiteCommandError as e:
            self.say(f"error: {line}: {e}")
            return False
        if done is None:
            self.say(f"error: {line}: no simulated device takes this — commands: {'; '.join(self.usage())}")
            return False
        if done:
            self.say(f"ok: {done}")
        return True

    def _dispatch(self, words: list[str]) -> str | None:
        verb = words[0]
        if verb in ("quit", "exit"):
            raise EOFError
        if verb == "help":
            self.say("commands: " + "; ".join(self.usage()))
            return ""
        if verb == "wait":
            try:
                seconds = float(words[1])
            except (IndexError, ValueError):
                raise SiteCommandError("usage: wait <seconds>") from None
            time.sleep(max(0.0, min(seconds, 3600.0)))
            return ""
        if verb == "recorder":
            return self._recorder(words[1:])
        for sd in self.devices:
            done = sd.handle(words)
            if done is not None:
                return done
        if verb == "move" and len(words) == 3 and words[2] not in self.room_types:
            raise SiteCommandError(f"no room {words[2]!r} in the config")
        if verb == "move" and len(words) == 3:
            raise SiteCommandError(f"no simulated base station covers room {words[2]!r}")
        return None

    def _recorder(self, args: list[str]) -> str:
        if len(args) != 2 or args[0] not in ("start", "stop"):
            raise SiteCommandError("usage: recorder start|stop <room>")
        room = args[1]
        if self.room_types.get(room) != "interrogation":
            raise SiteCommandError(f"{room!r} is not an interrogation room of the config")
        recorder = next((r.recorder for r in self.cfg.rooms if r.id == room), "")
        if not recorder:
            raise SiteCommandError(f"{room} has no recorder in the config ([[rooms]] recorder = \"<its MQTT "
                                   f"account>\"); a report by hand is `casegate recording start {room} --by <officer>`")
        if self.recorder_link is None:
            raise SiteCommandError("the recorder reports over MQTT ([mqtt] enabled = false here); a report by hand "
                                   f"is `casegate recording start {room} --by <officer>`")
        resp = self.recorder_link(recorder, {"room": room, "recording": args[0] == "start", "source": recorder})
        if not resp.get("ok"):
            err = resp.get("error") or {}
            raise SiteCommandError(f"the daemon refused: {err.get('code')}: {err.get('message')}")
        return f"recorder {recorder} of {room}: {'recording' if args[0] == 'start' else 'stopped'}"

    def run_lines(self, lines, prompt: bool = False) -> int:
        """Run commands until the lines end or ``quit``; the number that failed."""
        failed = 0
        try:
            for line in lines:
                if self.run_line(line) is False:
                    failed += 1
                if prompt:
                    print("simulate> ", end="", file=self.out, flush=True)
        except EOFError:
            pass
        return failed


class RecorderLink:
    """The rooms' recorder systems (审讯主机) as MQTT clients: each reports under its own account's
    topic ``P/client/<recorder>/request/recording/state`` (docs/security.md §3a), the way a real
    recorder does, so the daemon takes it as the room's recording evidence. One connection per
    recorder account, made at its first report; the broker and TLS settings are the config's,
    the account's password (if the broker asks for one) is ``--recorder-password-file``."""

    def __init__(self, cfg: Config, password_file: str | None = None):
        self.cfg = cfg
        self.password = None
        if password_file:
            with open(password_file, encoding="utf-8") as f:
                self.password = f.read().strip()
        self.clients: dict = {}

    def _client(self, account: str):
        import paho.mqtt.client as mqtt
        c = self.clients.get(account)
        if c is not None:
            return c
        m = self.cfg.mqtt
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=account, protocol=mqtt.MQTTv5)
        c.username_pw_set(account, self.password)
        if m.tls:
            c.tls_set(ca_certs=m.ca_file or None)
        c.answers = queue.Queue()
        c.on_message = lambda _c, _u, msg: c.answers.put(msg.payload)
        subscribed = threading.Event()
        prefix = f"{m.topic_prefix}/{self.cfg.center.id}"

        def on_connect(client, _u, _flags, reason, _props=None):
            if not reason.is_failure:       # (again after a reconnect: a clean session forgets it)
                client.subscribe(f"{prefix}/response/recording/state", qos=1)   # the answers (SPEC §3)

        c.on_connect = on_connect
        c.on_subscribe = lambda *_a: subscribed.set()
        c.connect(m.host, m.port, keepalive=30)
        c.loop_start()
        # The first report must not go out before the broker holds our subscription: its answer
        # would be published to nobody (seen: "recorder start" answered device_timeout, the
        # next report fine). Without a SUBACK in 10 s the report's own 15 s wait says so.
        subscribed.wait(10)
        self.clients[account] = c
        return c

    def __call__(self, account: str, report: dict) -> dict:
        c = self._client(account)
        rid = f"sim-{uuid.uuid4().hex[:12]}"
        topic = f"{self.cfg.mqtt.topic_prefix}/{self.cfg.center.id}/client/{account}/request/recording/state"
        c.publish(topic, json.dumps(dict(report, request_id=rid)), qos=1)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                answer = json.loads(c.answers.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
            except ValueError:
                continue
            if answer.get("request_id") == rid:
                return answer
        return {"ok": False, "error": {"code": "device_timeout", "message": "no answer from the daemon within 15 s "
                                                                          "(is it running and connected to the broker?)"}}

    def close(self) -> None:
        for c in self.clients.values():
            c.loop_stop()
            c.disconnect()
        self.clients.clear()
