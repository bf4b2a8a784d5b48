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
  every event waits in the journal backlog) and the script sends the same
  commands in-process, through the same command table and router;
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
(``center.floors``); at the default speed they keep their defaults. The rules that
the scenario is *meant* to trigger keep their defaults at every speed: the
script holds the condition until the alarm appears.

Exit status: 0 when every expected alarm appeared and ``journal verify`` is
OK, 1 otherwise, 2 for bad arguments, 130 on Ctrl-C.

The package: ``center`` (the simulated center as data, and its config), ``simulators``
(started through the driver registry), ``broker`` (a local mosquitto), ``runtime`` (the
scaled clock and the instrumented daemon), ``desk`` (requests through the command table),
``script`` (the scripted day), ``view`` (what is shown), ``summary`` (the verdict), and
here ``run_demo``, which starts, runs and stops them in order.
"""
from __future__ import annotations

import json
import logging
import queue
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from gateway.demo.broker import Broker, free_port, mosquitto_path
from gateway.demo.center import EXPECTED_ALARMS, build_config, demo_shortcuts, toml_dumps
from gateway.demo.desk import Desk
from gateway.demo.runtime import DemoClock, DemoDaemon, DemoError, day_start
from gateway.demo.script import Script
from gateway.demo.simulators import Simulators
from gateway.demo.summary import print_summary, summarize
from gateway.demo.view import Display, View
from rules.model import Event

__all__ = ["run_demo", "mosquitto_path"]

log = logging.getLogger("casegate.demo")


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
        mqtt_port = broker.port if broker else free_port()   # nothing listens there: buffered
        sims.start_devices(workdir)
        zone_port = free_port()
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
            clock.real_time()           # the step acts at real speed; its story waits run compressed
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
