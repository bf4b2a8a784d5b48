"""``casegate run``: wires journal, core, rules, uplink, requests and drivers.

Start order matters: the journal is replayed into the state before any
driver or request can add to it, and the uplink starts before the drivers
so nothing waits for a connection (events are journaled regardless).
Stop order is the reverse: producers first, then the final commit, then a
few seconds to publish what is left, then ``state/gateway`` offline.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

from gateway import __version__
from drivers.registry import has
from gateway.alarm_snapshots import AlarmSnapshots
from gateway.config import Config
from gateway.control_socket import ControlSocket, ControlVerbs
from gateway.core import Core, RequestError
from gateway.device_context import DeviceContext
from rules.model import Draft, Event, format_ts
from gateway.journal import Journal
from gateway.mqtt_responses import respond
from gateway.reload import changed_devices, read_reloaded_config
from gateway.state_publisher import StatePublisher
from gateway.systemd import StartProgress, sd_notify, watchdog_interval
from gateway.views import DaemonViews

log = logging.getLogger("casegate")


def _warn_legal_disabled(settings) -> None:
    """DOMAIN: a legal alarm may be tuned, not disabled; the log says so at every start."""
    from rules.catalog import CATALOG
    for code, st in sorted(settings.items()):
        if not st.enabled and CATALOG[code].legal:
            log.warning("legal alarm disabled by config: %s (%s)", code, "; ".join(CATALOG[code].legal_basis))


def derive_person_left(core: Core, ev: Event) -> list[Draft]:
    """person.left: an approved person leaves through the exit or hands back the
    wristband. One implementation shared with ``casegate replay --input``."""
    from rules.replay import derive
    return derive(core.engine, ev)


class Daemon:
    def __init__(self, config: Config, config_path: str | None = None,
                 clock=time.time):
        self.config = config
        self.config_path = config_path
        # Injectable so `casegate demo --speed` can compress a day into minutes:
        # every journal timestamp and every rule deadline follows this clock.
        self.clock = clock
        self.started = time.time()
        self.drivers: dict[str, Any] = {}
        self.uplink = None
        self.router = None
        self._ctl: ControlSocket | None = None
        self._state_dirty = threading.Event()            # set: republish state/occupancy, state/alarms
        self._state_publisher: StatePublisher | None = None
        self._stopped = False
        # Called in the writer thread after each commit (e.g. the demo's live view);
        # add before start(). Must not block.
        self.extra_listeners: list = []
        self.alarm_snapshots = AlarmSnapshots(lambda: self.config, self.drivers, lambda: self._stopped)
        self.views = DaemonViews(self)
        self.uplink_error: str | None = None             # why the uplink could not start (secrets)
        self._storage_lock = None                        # gateway/storage_lock.py, taken in start()

    # ---- start ---------------------------------------------------------------
    def start(self) -> None:
        from rules.engine import Engine
        cfg = self.config
        self._progress = StartProgress(cfg.storage.replay_notify_after_s)
        self._progress.phase("opening the journal")
        cfg.storage_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # One daemon per storage dir, before anything in it is opened (gateway/storage_lock.py).
        from gateway.storage_lock import StorageLock
        self._storage_lock = StorageLock(cfg.storage_dir).acquire()
        self.journal = Journal(cfg.journal_path, cfg.storage.synchronous)
        from gateway.archive import clean_archive_at_start
        clean_archive_at_start(cfg.storage_dir, self.journal.conn)     # an interrupted pruning pass's leftovers
        self.engine = Engine(cfg)
        if self.clock is time.time:
            # Journal time from a monotonic base: wall-clock steps are journaled
            # (clock.stepped) and rule timers count real elapsed time (gateway/timebase.py).
            from gateway.timebase import TimeBase
            self.clock = TimeBase(step_s=cfg.storage.clock_step_s)
        self.core = Core(cfg, self.journal, self.engine, clock=self.clock)
        self.core.add_derivation(derive_person_left)
        from gateway.checkpoint import CheckpointStore
        self.core.enable_checkpoints(CheckpointStore(cfg.storage_dir / "checkpoints", cfg,
                                                     cfg.storage.checkpoint_keep))
        self.core.on_replay_progress = self._progress.replay
        from gateway.signing import load_or_create
        self.signer = load_or_create(cfg.storage_dir, cfg.center.id)      # SPEC §8: created at first start
        self.core.enable_signing(self.signer, cfg.signing.every_s)
        self.core.on_start_phase = self._progress.phase
        n = self.core.rebuild()
        self._progress.phase("starting the uplink, the control socket and the devices")
        log.info("journal %s: %d events, last seq %d", cfg.journal_path, n, self.journal.last_seq)
        from gateway.commands import RequestRouter, daemon_services
        # One router for every path (MQTT, control socket, demo): it exists with MQTT
        # disabled too, as the CLI's commissioning commands need it.
        self.router = RequestRouter(daemon_services(self), self.core, self._respond, cfg.mqtt.max_request_bytes)
        if cfg.mqtt.enabled and not self._uplink_blocked():
            if cfg.mqtt.uplink_process:
                from gateway.uplink_process import UplinkProcess as Uplink
            else:
                from gateway.uplink import Uplink
            self.uplink = Uplink(cfg, cfg.journal_path, self.core.mark_delivered,
                                 on_request=self._on_request, version=__version__,
                                 started=format_ts(self.started))
            self.core.add_listener(self.uplink.on_committed)
            self.uplink.publish_retained("state/identity", self.signer.identity())
        self._state_publisher = StatePublisher(self.core, self.uplink, self.drivers, self._state_dirty)
        self.core.add_listener(self._state_publisher.on_committed)
        self.core.add_listener(self.alarm_snapshots.on_committed)
        for fn in self.extra_listeners:
            self.core.add_listener(fn)
        if self.uplink:
            # Before the core runs: the uplink reads the backlog from the journal,
            # and every later commit reaches it through on_committed exactly once.
            self.uplink.start()
        self.core.start()
        self.core.submit(Draft("gateway.started", {"version": __version__,
                                                   "config_hash": cfg.config_hash()}))
        self._journal_legal_disabled("start")
        self._start_control_socket()
        self._start_metrics()
        for dev in cfg.devices:
            if dev.enabled:
                self._start_driver(dev)
        self._state_publisher.start()

    def _start_control_socket(self) -> None:
        self._ctl = ControlSocket(self.config.socket_path, ControlVerbs(self.views, self.router))

    def _start_metrics(self) -> None:
        listen = self.config.metrics.listen
        if not listen:
            return
        from gateway.metrics import start_metrics_server
        try:
            self._metrics_server, _ = start_metrics_server(listen, self.views.metrics)
        except OSError as e:      # port taken: the center runs without metrics, and says so
            log.error("metrics: cannot listen on %s: %s — change [metrics] listen", listen, e.strerror or e)

    def _uplink_blocked(self) -> bool:
        """A secret file the MQTT client needs is missing or unreadable: starting the
        uplink would only crash-loop with tracebacks. Keep journaling (nothing is lost:
        the backlog waits in the journal) and say once, in the log and in `status`,
        what to fix."""
        from gateway.checks import FAIL, check_file_readable, uplink_secret_files
        bad = [f for f in (check_file_readable(k, v) for k, v in uplink_secret_files(self.config)) if f.level == FAIL]
        if not bad:
            return False
        self.uplink_error = "; ".join(f"{f.check}: {f.message}" for f in bad) + \
            " — uplink not started; fix it, then systemctl restart casegate"
        log.error("MQTT uplink not started: %s (%s); events are journaled and wait for it",
                  self.uplink_error, "; ".join(f.fix for f in bad))
        return True

    def _start_driver(self, dev) -> None:
        from drivers.registry import driver_class
        try:
            cls = driver_class(dev.driver)
            ctx = DeviceContext(self, dev.id)
            drv = cls(dev, ctx)
            if has(dev, "presence"):    # who the journal says is in its rooms (drivers/base.py)
                drv.restore_presence(ctx.present_tags())
            drv.start()
            self.drivers[dev.id] = drv
            log.info("device %s (%s) started", dev.id, dev.driver)
        except Exception as e:  # one broken device never stops the center
            log.error("device %s (%s) failed to start: %s", dev.id, dev.driver, e)
            self.core.submit(Draft("device.error", {"device": dev.id, "error": f"start failed: {e}"}, dev.id))

    # ---- main loop -----------------------------------------------------------
    def serve(self) -> int:
        # Handlers only assign a flag: calling Event.set() from a handler can
        # deadlock when the signal lands while the main thread holds that
        # Event's lock inside wait() (seen once in CI: SIGTERM ignored).
        self._signalled: str | None = None

        def on_signal(signum, frame):
            if signum == signal.SIGHUP:
                self._reload_requested = True
            else:
                self._signalled = signal.Signals(signum).name
        self._reload_requested = False
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, on_signal)
        self.start()
        sd_notify(f"READY=1\nSTATUS=journal at seq {self.journal.last_seq}\nMAINPID={os.getpid()}")
        log.info("casegate %s running for center %s", __version__, self.config.center.id)
        _warn_legal_disabled(self.engine.settings)
        wd = watchdog_interval()
        last_wd = 0.0
        last_prune = 0.0
        next_tick = 0.0
        while self._signalled is None:
            # A signal does not cut a sleep short (PEP 475: the sleep resumes after the handler),
            # so a stop waited up to this sleep: 0.05 s; the work below stays at every 0.2 s.
            time.sleep(0.05)
            if time.monotonic() < next_tick:
                continue
            next_tick = time.monotonic() + 0.2
            if self._reload_requested:
                self._reload_requested = False
                problems = self.request_reload()
                if problems:
                    log.error("reload refused, keeping the running config: %s", problems)
            if wd and time.monotonic() - last_wd >= wd and self._healthy():
                sd_notify("WATCHDOG=1")
                last_wd = time.monotonic()
            if self.uplink:
                self.uplink.set_gateway_error(self.core.error)
                if hasattr(self.clock, "synchronised"):          # SPEC §7 v3: in state/gateway
                    self.uplink.set_clock_synchronised(self.clock.synchronised)
                self._record_client_id_taken()
            if time.monotonic() - last_prune > 600:
                last_prune = time.monotonic()
                self.alarm_snapshots.prune()
        sd_notify("STOPPING=1")
        self.stop("signal")
        return 0

    def _record_client_id_taken(self) -> None:
        """Put a client-id takeover on the record (gateway/uplink_takeover.py): one
        ``device.error`` for device ``uplink`` when an episode begins, ``device.online``
        when the connection has been stable again."""
        cause = self.uplink.status().get("client_id_taken")
        was = getattr(self, "_client_id_taken", None)
        if cause == was or (cause and was):
            return
        self._client_id_taken = cause
        from gateway.uplink_takeover import TakeoverDetector
        if cause:
            self.core.submit(Draft("device.error", {"device": "uplink", "error": cause, "cause": "client_id_taken",
                                                    "fix": TakeoverDetector.FIX}, "uplink"))
        else:
            self.core.submit(Draft("device.online", {"device": "uplink"}, "uplink"))

    def _healthy(self) -> bool:
        # The watchdog is fed only while the writer thread is alive: a wedged
        # core gets the service restarted by systemd.
        t = self.core._thread
        return t is not None and t.is_alive()

    def stop(self, reason: str = "stop") -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._state_publisher:
            self._state_publisher.stop()
        log.info("stopping (%s)", reason)
        for dev_id, drv in list(self.drivers.items()):
            try:
                drv.stop(2.0)
            except Exception as e:
                log.warning("device %s did not stop cleanly: %s", dev_id, e)
        if self.router:
            self.router.stop()
        self.alarm_snapshots.shutdown()
        # bounded: a writer stuck on a full disk must not hold the stop past TimeoutStopSec
        self.core.submit(Draft("gateway.stopped", {"reason": reason}), timeout=5.0)
        self.core.stop()
        if self.uplink:
            self.uplink.stop(drain_s=3.0)
        if getattr(self, "_metrics_server", None):
            self._metrics_server.shutdown()
        if self._ctl:
            # Only the lock's holder created the socket; only it removes it.
            self._ctl.close(remove=self._storage_lock is not None and self._storage_lock.held)
        self.journal.close()
        if self._storage_lock is not None:
            self._storage_lock.release()
        log.info("stopped")

    # ---- reload ----------------------------------------------------------------
    def request_reload(self) -> str | None:
        """Re-read the config file; apply rules and devices (gateway/reload.py). Returns
        problems or None."""
        old = self.config
        new = read_reloaded_config(self.config_path, old)
        if isinstance(new, str):
            return new
        self.config = new
        # Rules disabled by the new config clear their alarms, journaled like any other.
        self.core.call(lambda core: (None, self.engine.reconfigure(new))).result(10)
        if self.core.checkpoints is not None:
            self.core.checkpoints.config_reloaded()
        self.core.config = new
        to_stop, to_start = changed_devices(old, new)
        for dev_id in to_stop:
            if dev_id in self.drivers:
                self.drivers.pop(dev_id).stop(2.0)
        for dev in to_start:
            self._start_driver(dev)
        log.info("configuration reloaded (%d devices)", len(self.drivers))
        _warn_legal_disabled(self.engine.settings)
        self._journal_legal_disabled("reload")
        return None

    def _journal_legal_disabled(self, trigger: str) -> None:
        """DOMAIN v3: legal alarms disabled by the config are journaled at every start and reload."""
        from gateway.legal_disabled import legal_disabled_draft
        d = legal_disabled_draft(self.config, trigger)
        if d is not None:
            self.core.submit(d)

    # ---- helpers used by request handlers --------------------------------------
    def device_config(self, dev_id: str):
        for d in self.config.devices:
            if d.id == dev_id:
                return d
        return None

    def driver(self, dev_id: str, capability: str, what: str):
        """The running driver of ``dev_id`` if its device declares ``capability``
        (drivers/common/config.py), else not_found naming ``what`` was looked for."""
        drv = self.drivers.get(dev_id)
        if drv is None or not has(drv.cfg, capability):
            raise RequestError("not_found", f"no {what} {dev_id}")
        return drv

    def resend(self, lo: int, hi: int) -> int:
        return self.uplink.resend(lo, hi) if self.uplink else 0

    def republish_state(self) -> int:
        """state/republish: every retained state topic again, as after a reconnect;
        returns how many topics the uplink holds (gateway state included)."""
        if not self.uplink:
            return 0
        self._state_dirty.set()
        return self.uplink.republish_retained()

    def ping_data(self) -> dict:
        return {"version": __version__, "uptime_s": round(time.time() - self.started, 1),
                "backlog": self.uplink.backlog if self.uplink else None}

    def enroll_face(self, person: str, image: bytes, source: str) -> dict:
        from drivers.camera.enroll import enroll_in_child
        if person not in self.core.state.persons:
            raise RequestError("not_found", f"no registered person {person}")
        # In a one-shot child: dlib's models and its GIL-holding encoder stay out of the daemon.
        enroll_in_child(self.config.storage_dir, person, image)
        for drv in self.drivers.values():
            if has(drv.cfg, "faces"):
                drv.reload_faces()
        ev = self.core.submit(Draft("face.enrolled", {"person": person}, source)).result(30)
        return {"person": person, "event_id": ev.id}

    # ---- MQTT plumbing ----------------------------------------------------------
    def _on_request(self, msg) -> None:
        self.router.on_message(self.config.prefix, msg)

    def _respond(self, req, payload: dict) -> None:
        respond(self.uplink, self.config, req, payload)


def run(config: Config, config_path: str | None) -> int:
    d = Daemon(config, config_path)
    return d.serve()
