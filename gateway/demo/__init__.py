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
from dataclasses import dataclass
from pathlib import Path

from gateway.demo.broker import Broker, free_port, mosquitto_path
from gateway.demo.center import EXPECTED_ALARMS, build_config, demo_shortcuts, toml_dumps
from gateway.demo.desk import Desk
from gateway.demo.runtime import DemoClock, DemoDaemon, DemoError, day_start
from gateway.demo.script import INTERRUPTED, Script
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


@dataclass(frozen=True)
class DemoOptions:
    speed: float            # demo seconds per wall second
    json_mode: bool         # the summary as JSON, the live view as lines
    keep_dir: str | None    # --dir: work there and keep it
    keep_tmp: bool          # --keep: keep the temporary work dir
    no_broker: bool

    @classmethod
    def from_args(cls, args) -> DemoOptions:
        speed = getattr(args, "speed", None)
        return cls(speed=60.0 if speed is None else float(speed), json_mode=bool(getattr(args, "json", False)),
                   keep_dir=getattr(args, "dir", None), keep_tmp=bool(getattr(args, "keep", False)),
                   no_broker=bool(getattr(args, "no_broker", False)))


def _prepare_workdir(keep_dir: str | None) -> Path | None:
    """--dir (which must not hold a demo journal yet) or a new temporary directory; None: refused."""
    if not keep_dir:
        return Path(tempfile.mkdtemp(prefix="casegate-demo-"))
    workdir = Path(keep_dir).resolve()
    if (workdir / "state" / "journal.db").exists():
        print(f"casegate demo: {workdir} already holds a demo journal; give an empty or new directory",
              file=sys.stderr)
        return None
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


def _sigterm_interrupts():
    """Ctrl-C and SIGTERM both end in the same clean-up. Returns the handlers to restore (None:
    none was set, off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    INTERRUPTED.requested = False

    def _interrupt(signum, frame):
        INTERRUPTED.requested = True     # even if this KeyboardInterrupt is swallowed (gateway/demo/script.py)
        raise KeyboardInterrupt
    return signal.signal(signal.SIGTERM, _interrupt), signal.signal(signal.SIGINT, _interrupt)


def run_demo(args) -> int:
    opts = DemoOptions.from_args(args)
    if not 0 < opts.speed <= 100000:        # NaN fails too
        print("casegate demo: --speed must be > 0 (1 = real time, 60 = one minute per second)", file=sys.stderr)
        return 2
    workdir = _prepare_workdir(opts.keep_dir)
    if workdir is None:
        return 2
    old_term = _sigterm_interrupts()
    t0 = time.monotonic()
    handler, old_level = _setup_logging(workdir / "demo.log")
    demo = _Demo(opts, workdir, t0)
    status = 1
    summary: dict | None = None
    interrupted = False
    try:
        summary = demo.play()
        status = 0 if summary["ok"] else 1
        if INTERRUPTED.requested:       # an interrupt swallowed after the last pump
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        interrupted = True
        status = 130
    except Exception as e:
        _say_failed(e, workdir, opts.keep_dir)
        status = 1
    finally:
        demo.clean_up()
        logging.getLogger().removeHandler(handler)
        handler.close()
        logging.getLogger().setLevel(old_level)
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term[0])
            signal.signal(signal.SIGINT, old_term[1])
        if not opts.keep_dir and not opts.keep_tmp:
            shutil.rmtree(workdir, ignore_errors=True)
    if interrupted:
        print("casegate demo: interrupted; everything stopped", file=sys.stderr)
        return status
    if summary is not None:
        _print_result(summary, demo.display, opts, workdir)
    return status


def _say_failed(e: Exception, workdir: Path, keep_dir: str | None) -> None:
    log.exception("demo failed")
    if keep_dir:
        print(f"casegate demo: {type(e).__name__}: {e} (see {workdir / 'demo.log'})", file=sys.stderr)
    else:   # the temporary directory goes away: show the log's end now
        import traceback
        traceback.print_exc()
        print(f"casegate demo: {type(e).__name__}: {e} (run with --dir DIR to keep demo.log)", file=sys.stderr)


def _print_result(summary: dict, display: Display, opts: DemoOptions, workdir: Path) -> None:
    if opts.json_mode:
        sys.stdout.write(json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
        return
    print_summary(display.console, summary)
    if opts.keep_dir or opts.keep_tmp:
        display.console.print(f"kept in {workdir}: try `casegate --config {workdir / 'casegate.toml'} "
                              "trace sus-liu` or `... alarms`", markup=False)
    else:
        display.console.print(f"removed the demo's work dir {workdir} (journal, config, demo.log); "
                              "--keep or --dir DIR keeps them", markup=False)


class _Demo:
    """The parts of one demo run, started in order by :meth:`play`, stopped by :meth:`clean_up`."""

    def __init__(self, opts: DemoOptions, workdir: Path, t0: float):
        self.opts = opts
        self.workdir = workdir
        self.t0 = t0
        self.sims = Simulators()
        self.broker: Broker | None = None
        self.daemon: DemoDaemon | None = None
        self.desk: Desk | None = None
        self.display: Display | None = None
        self.broker_info: dict = {"running": False, "address": None}

    def play(self) -> dict:
        """Start everything, run the scripted day, stop the gateway; the summary."""
        speed = self.opts.speed
        clock = DemoClock(speed, day_start())
        self._start_broker()
        mqtt_port = self.broker.port if self.broker else free_port()   # nothing listens there: buffered
        self.sims.start_devices(self.workdir)
        zone_port = free_port()
        cfg_dict = build_config(self.workdir / "state", mqtt_port, zone_port, self.sims, speed)
        cfg_path = self.workdir / "casegate.toml"
        cfg_path.write_text(toml_dumps(cfg_dict), encoding="utf-8")
        from gateway.config import load_config
        cfg = load_config(cfg_path)

        events: queue.Queue[list[Event]] = queue.Queue()
        view = View()
        display = self._open_display(clock, view, cfg_path)
        daemon = self.daemon = DemoDaemon(cfg, None, clock, events.put)
        daemon.start()
        self._connect(zone_port)
        script = Script(daemon, self.sims, self.desk, view, display, clock, events)
        steps = script.steps()
        display.total = len(steps)
        # every started device online (bounded); the camera may lag, the demo goes on regardless
        script.wait(lambda: all(d.get("state") == "online" for d in daemon.views.devices()
                                if d["id"] in daemon.drivers), 15.0, "every device online")
        for d in daemon.views.devices():
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
        return self._finish(script, view, clock)

    def _start_broker(self) -> None:
        exe = None if self.opts.no_broker else mosquitto_path()
        if self.opts.no_broker:
            self.broker_info["reason"] = "--no-broker"
        elif exe is None:
            self.broker_info["reason"] = "mosquitto is not installed"
        else:
            try:
                self.broker = Broker(exe, self.workdir)
                self.broker.start()
                self.broker_info.update(running=True, address=f"127.0.0.1:{self.broker.port}")
            except (DemoError, OSError) as e:
                self.broker = None
                self.broker_info["reason"] = str(e)

    def _open_display(self, clock: DemoClock, view: View, cfg_path: Path) -> Display:
        info = self.broker_info
        display = self.display = Display(self.opts.json_mode, 0, clock)     # total set once the script is built
        display.view = view
        display.header = (f"broker {info['address']} (MQTT requests)" if self.broker
                          else f"NO BROKER ({info.get('reason')}): running buffered, events wait in the journal")
        display.start()
        display.log(f"workdir {self.workdir} · config {cfg_path.name} · log demo.log")
        if not self.broker:
            display.log(f"no broker ({info.get('reason')}): the uplink buffers; commands run in-process",
                        "yellow")
        for n in self.sims.notes:
            display.log(n, "yellow")
        return display

    def _connect(self, zone_port: int) -> None:
        """The base stations to the gateway, the gateway to the broker, the desk to either."""
        daemon, broker = self.daemon, self.broker
        self.sims.start_stations(zone_port)
        if not self.sims.site.wait_logged_in(10.0):
            self.display.log("some base stations did not log in", "magenta")
        if broker:
            deadline = time.monotonic() + 10.0
            while not (daemon.uplink and daemon.uplink.connected) and time.monotonic() < deadline:
                time.sleep(0.05)
        try:
            use_mqtt = broker is not None and daemon.uplink is not None and daemon.uplink.connected
            self.desk = Desk(daemon, broker.port if use_mqtt else None)
        except (DemoError, OSError) as e:
            self.display.log(f"{e}; commands run in-process", "yellow")
            self.desk = Desk(daemon, None)
        self.broker_info["requests"] = self.desk.via

    def _finish(self, script: Script, view: View, clock: DemoClock) -> dict:
        daemon, broker = self.daemon, self.broker
        # every expected alarm (bounded), then let the uplink deliver
        script.wait(lambda: all(c in view.raised for c in EXPECTED_ALARMS), 5.0, "the expected alarms")
        if broker and daemon.uplink:
            script.wait(lambda: daemon.uplink.backlog == 0, 10.0, "the uplink to drain")
        # With a broker: what the uplink reported once drained. Without one, the
        # journal itself says what waits (the uplink process reports with a lag).
        backlog = daemon.uplink.backlog if (broker and daemon.uplink) else None
        demo_minutes = clock.minutes()
        self.display.log("scenario complete, stopping the center")
        daemon.stop("demo finished")
        self.daemon = None
        if self.desk is not None:
            self.broker_info["alarm_messages"] = self.desk.alarm_messages
            self.broker_info["messages"] = self.desk.messages
        speed = self.opts.speed
        summary = summarize(daemon.config.journal_path, backlog, self.broker_info)
        summary.update(speed=speed, demo_minutes=round(demo_minutes, 1), wall_s=round(time.monotonic() - self.t0, 1),
                       problems=script.problems, demo_settings=demo_shortcuts(speed),
                       journal=str(daemon.config.journal_path) if self.opts.keep_dir else None)
        return summary

    def clean_up(self) -> None:
        for name, fn in (("display", lambda: self.display and self.display.stop()),
                         ("desk", lambda: self.desk and self.desk.close()),
                         ("gateway", lambda: self.daemon and self.daemon.stop("demo interrupted")),
                         ("simulators", self.sims.stop),
                         ("broker", lambda: self.broker and self.broker.stop())):
            try:
                fn()
            except BaseException as e:      # a second Ctrl-C must not skip the rest
                log.warning("clean-up of %s: %s", name, e)
