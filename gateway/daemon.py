"""``casegate run``: wires journal, core, rules, uplink, requests and drivers.

Start order matters: the journal is replayed into the state before any
driver or request can add to it, and the uplink starts before the drivers
so nothing waits for a connection (events are journaled regardless).
Stop order is the reverse: producers first, then the final commit, then a
few seconds to publish what is left, then ``state/gateway`` offline.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import socketserver
import threading
import time
from typing import Any

from gateway import __version__
from drivers.registry import has
from gateway.config import Config, ConfigError, load_config
from gateway.core import Core, RequestError
from gateway.device_pools import KeyedPools
from gateway.events import Draft, Event, format_ts
from gateway.journal import Journal, journal_stats

log = logging.getLogger("casegate")

# One control-socket request is one line; face/enroll's base64 photo may be ~8 MB.
CONTROL_MAX_LINE = 9 * 1024 * 1024

# Control verbs that are request commands under an older name (clients from before the
# "request" verb): they run as that command through the command table, nothing else.
# verb -> (command, the request's keys passed on as its args)
CONTROL_ALIASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "ack": ("alarm/ack", ("request_id", "alarm_id", "by", "note")),
    "reload": ("config/reload", ("request_id",)),
}


# ---- systemd notify (sd_notify(3)): a datagram to $NOTIFY_SOCKET ------------------
def sd_notify(message: str) -> bool:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(message.encode())
        return True
    except OSError as e:
        log.warning("sd_notify failed: %s", e)
        return False


def watchdog_interval() -> float | None:
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 1e6 / 2


class DeviceContext:
    """What a driver may do: emit events (journaled by the core), look up bindings."""

    def __init__(self, daemon: "Daemon", device_id: str):
        self.d = daemon
        self.device_id = device_id
        self.center_id = daemon.config.center.id
        self.timezone = daemon.config.center.timezone
        self.storage_dir = str(daemon.config.storage_dir)
        self.log = logging.getLogger(f"casegate.{device_id}")

    def emit(self, type: str, data: dict, ts: float | None = None):
        if ts is not None and self.d.clock is not time.time:
            # Drivers stamp with the wall clock; under a compressed demo clock keep
            # "how long ago" and re-express it on the core's clock.
            ts = self.d.clock() - (time.time() - ts)
        return self.d.core.submit(Draft(type, data, self.device_id, ts))

    def person_for(self, tag_or_card: str) -> str | None:
        return self.d.core.state.tag_owner.get(tag_or_card)

    def _rules(self) -> dict:
        """Every rule's settings, defaults filled in, for the config in force now (a reload
        applies). Cached per config object: the zone reader asks on every tag record, and
        validating the whole [rules] table each time would be work on the hot path."""
        from rules.catalog import rule_settings
        cfg = self.d.config
        cached = getattr(self, "_rules_cache", None)
        if cached is None or cached[0] is not cfg:
            cached = self._rules_cache = (cfg, rule_settings(cfg.rules))
        return cached[1]

    @property
    def vital_signs_bounds(self) -> tuple[float, float]:
        """[rules.vital_signs_abnormal] low_bpm/high_bpm: the zone reader sends tag.status at
        once when a heart rate crosses one of them."""
        s = self._rules()["vital_signs_abnormal"]
        return float(s.low_bpm), float(s.high_bpm)

    @property
    def missed_intervals(self) -> int:
        """[rules.device_offline] missed_intervals: a driver with a heartbeat (the zone reader's
        stations) declares a device offline after this many silent intervals. Drivers never
        import the rules; this is how the setting reaches them."""
        return int(self._rules()["device_offline"].missed_intervals)

    @property
    def low_battery_below_pct(self) -> float:
        """[rules.tag_low_battery] below_pct: the zone reader sends a battery crossing it at once."""
        return float(self._rules()["tag_low_battery"].below_pct)

    def present_tags(self) -> list[tuple[str, str, float]]:
        """(tag, room, since) of every tag the journal says is in a room now (what
        _start_driver hands a ``presence`` driver's restore_presence)."""
        def snap(core):
            return [(pr.tag, room, pr.since) for rooms in core.state.presence.values()
                    for room, pr in rooms.items() if pr.tag], []
        return self.d.core.call(snap).result(10).value


def _legal_disabled(cfg):
    from gateway.legal_disabled import legal_disabled
    return legal_disabled(cfg)


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
        self.stop_event = threading.Event()
        self.drivers: dict[str, Any] = {}
        self.uplink = None
        self.router = None
        self._ctl: socketserver.BaseServer | None = None
        self._state_dirty = threading.Event()
        self._stopped = False
        # Called in the writer thread after each commit (e.g. the demo's live view);
        # add before start(). Must not block.
        self.extra_listeners: list = []
        self._snapshots_asked: dict[str, None] = {}      # alarm ids a camera was asked to picture
        # per camera, two waiting at most: a camera that drips its answer delays only its own
        # alarms' pictures (gateway/device_pools.py)
        self._snapshot_pool = KeyedPools("alarm-snapshot", workers=1, max_queued=2)
        self.uplink_error: str | None = None             # why the uplink could not start (secrets)
        self._storage_lock = None                        # gateway/storage_lock.py, taken in start()

    # ---- start ---------------------------------------------------------------
    def start(self) -> None:
        from rules.engine import Engine
        cfg = self.config
        self._start_phase("opening the journal")
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
        self.core.on_replay_progress = self._replay_progress
        from gateway.signing import load_or_create
        self.signer = load_or_create(cfg.storage_dir, cfg.center.id)      # SPEC §8: created at first start
        self.core.enable_signing(self.signer, cfg.signing.every_s)
        self.core.on_start_phase = self._start_phase
        n = self.core.rebuild()
        self._start_phase("starting the uplink, the control socket and the devices")
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
        self.core.add_listener(self._on_committed)
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
        threading.Thread(target=self._state_publisher, name="state-pub", daemon=True).start()
        self._state_dirty.set()

    def _start_metrics(self) -> None:
        listen = self.config.metrics.listen
        if not listen:
            return
        from gateway.metrics import start_metrics_server
        try:
            self._metrics_server, _ = start_metrics_server(listen, self.metrics_snapshot)
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

    def uplink_status(self) -> dict:
        if self.uplink:
            return self.uplink.status()
        if self.uplink_error:
            m = self.config.mqtt
            return {"connected": False, "broker": f"{m.host}:{m.port}", "last_error": self.uplink_error}
        return {"connected": False, "disabled": True}

    # Each report extends systemd's start timeout by this much from now: a replay
    # that keeps making progress is never killed, one that hangs is (after 30 s).
    REPLAY_EXTEND_S = 30.0

    def _start_phase(self, what: str) -> None:
        """Every phase of a start extends systemd's start timeout from now (issue 28 item 3):
        a start that keeps making progress is never killed, one that hangs in a phase is."""
        sd_notify(f"EXTEND_TIMEOUT_USEC={int(self.REPLAY_EXTEND_S * 1e6)}\nSTATUS=starting: {what}")

    def _replay_progress(self, done: int, total: int, elapsed: float) -> None:
        """A long start (full replay of a big journal): tell systemd we are alive."""
        if elapsed < self.config.storage.replay_notify_after_s:
            return
        pct = 100.0 * done / total if total else 100.0
        sd_notify(f"EXTEND_TIMEOUT_USEC={int(self.REPLAY_EXTEND_S * 1e6)}\n"
                  f"STATUS=replaying journal {done}/{total} ({pct:.0f}%)")
        if int(elapsed) % 10 == 0:
            log.info("replaying journal: %d/%d events (%.0f%%), %.0f s", done, total, pct, elapsed)

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
        while self._signalled is None:
            time.sleep(0.2)
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
                self.prune_snapshots()
        self.stop_event.set()
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

    def prune_snapshots(self) -> int:
        """Camera snapshots follow the journal's retention (storage.retain_days) and
        stay under storage.snapshots_max_mb, oldest first: alarms in a busy center
        must not fill the disk the journal needs."""
        st = self.config.storage
        folder = self.config.storage_dir / "snapshots"
        cutoff = time.time() - st.retain_days * 86400
        files = []
        try:
            for p in folder.iterdir():
                try:
                    s = p.stat()
                    if p.is_file():
                        files.append((s.st_mtime, s.st_size, p))
                except OSError:
                    pass
        except FileNotFoundError:
            return 0
        files.sort()
        total = sum(f[1] for f in files)
        cap = st.snapshots_max_mb * 1024 * 1024
        old = full = 0
        for mtime, size, p in files:
            if mtime >= cutoff and total <= cap:
                break
            try:
                p.unlink()
            except OSError:
                continue
            total -= size
            if mtime < cutoff:
                old += 1
            else:
                full += 1
        if old:
            log.info("removed %d snapshots older than %d days", old, st.retain_days)
        if full:
            log.warning("snapshots above %g MB: removed the %d oldest", st.snapshots_max_mb, full)
        return old + full

    def _healthy(self) -> bool:
        # The watchdog is fed only while the writer thread is alive: a wedged
        # core gets the service restarted by systemd.
        t = self.core._thread
        return t is not None and t.is_alive()

    def stop(self, reason: str = "stop") -> None:
        if self._stopped:
            return
        self._stopped = True
        log.info("stopping (%s)", reason)
        for dev_id, drv in list(self.drivers.items()):
            try:
                drv.stop(2.0)
            except Exception as e:
                log.warning("device %s did not stop cleanly: %s", dev_id, e)
        if self.router:
            self.router.stop()
        self._snapshot_pool.shutdown()
        # bounded: a writer stuck on a full disk must not hold the stop past TimeoutStopSec
        self.core.submit(Draft("gateway.stopped", {"reason": reason}), timeout=5.0)
        self.core.stop()
        if self.uplink:
            self.uplink.stop(drain_s=3.0)
        if getattr(self, "_metrics_server", None):
            self._metrics_server.shutdown()
        if self._ctl:
            self._ctl.shutdown()
            self._ctl.server_close()
            # Only the lock's holder created the socket; only it removes it.
            if self._storage_lock is not None and self._storage_lock.held:
                try:
                    self.config.socket_path.unlink()
                except FileNotFoundError:
                    pass
        self.journal.close()
        if self._storage_lock is not None:
            self._storage_lock.release()
        log.info("stopped")

    # ---- reload ----------------------------------------------------------------
    def request_reload(self) -> str | None:
        """Re-read the config file; apply rules and devices. Returns problems or None."""
        if not self.config_path:
            return "no config file to reload (running on built-in defaults)"
        try:
            new = load_config(self.config_path)
        except ConfigError as e:
            return str(e)
        old = self.config
        if new.mqtt != old.mqtt or new.storage != old.storage or new.center != old.center:
            log.warning("reload: [center], [storage] and [mqtt] changes need a restart; ignored")
            new = new.model_copy(update={"mqtt": old.mqtt, "storage": old.storage, "center": old.center})
        self.config = new
        # Rules disabled by the new config clear their alarms, journaled like any other.
        self.core.call(lambda core: (None, self.engine.reconfigure(new))).result(10)
        if self.core.checkpoints is not None:
            self.core.checkpoints.config_reloaded()
        self.core.config = new
        old_devs = {d.id: d for d in old.devices}
        new_devs = {d.id: d for d in new.devices}
        for dev_id, dev in old_devs.items():
            if new_devs.get(dev_id) != dev and dev_id in self.drivers:
                self.drivers.pop(dev_id).stop(2.0)
        for dev_id, dev in new_devs.items():
            if old_devs.get(dev_id) != dev and dev.enabled:
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
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
        # The Correlation Data goes back on both topics: a client that matches answers
        # by it (MQTT 5 request/response) must find it on P/response/<command> too.
        corr = None
        if req.correlation is not None and self.config.mqtt.protocol == 5:
            corr = Properties(PacketTypes.PUBLISH)
            corr.CorrelationData = req.correlation
        self.uplink.respond(f"{self.config.prefix}/response/{req.command}", payload, corr)
        if req.response_topic and self._response_topic_allowed(req.response_topic):
            props = Properties(PacketTypes.PUBLISH)
            if req.correlation is not None:
                props.CorrelationData = req.correlation
            self.uplink.respond(req.response_topic, payload, props)

    def _response_topic_allowed(self, topic: str) -> bool:
        """An MQTT 5 Response Topic is honoured unless it has wildcards or points into the
        gateway's own tree outside response/: a requester must never make the gateway
        publish where consumers expect its events, alarms or state."""
        if "#" in topic or "+" in topic or "\0" in topic:
            return False
        own = self.config.prefix + "/"
        return not topic.startswith(own) or topic.startswith(own + "response/")

    def _on_committed(self, events: list[Event]) -> None:
        if not events:
            return
        for ev in events:
            if ev.domain in ("presence", "person", "alarm", "wristband"):
                self._state_dirty.set()
                if ev.type == "alarm.raised" and isinstance(ev.data, dict):
                    self._alarm_snapshot(ev.data)
            elif ev.domain == "device" and self.uplink and isinstance(ev.data, dict):
                dev = ev.data.get("device", ev.source)
                state = ev.action
                if state == "maintenance_ended":     # back to what the driver reports
                    drv = self.drivers.get(dev)
                    state = getattr(getattr(drv, "health", None), "state", None) or "online"
                self.uplink.publish_retained(f"state/devices/{dev}", {
                    "state": state, "last_seen": self._last_seen(dev), "error": ev.data.get("error")})

    def _alarm_snapshot(self, alarm: dict) -> None:
        """视频联动: a new critical alarm in a room a camera covers gets a JPEG.

        Runs in the writer thread, so the camera is asked on a pool; the
        camera journals ``camera.snapshot`` with the alarm id and the rules
        then re-send the alarm with its ``snapshot`` path (rules/engine.py)."""
        aid = alarm.get("alarm_id")
        if (alarm.get("severity") != "critical" or alarm.get("snapshot") or not alarm.get("room")
                or aid in self._snapshots_asked):
            return
        cams = [d.id for d in self.config.devices
                if has(d, "snapshot") and d.enabled and d.id in self.drivers
                and any(alarm["room"] in rooms for rooms in d.covered_rooms().values())]
        if not cams:
            return
        self._snapshots_asked[aid] = None
        while len(self._snapshots_asked) > 1000:      # alarm ids are unique; only bound memory
            del self._snapshots_asked[next(iter(self._snapshots_asked))]
        if not self._snapshot_pool.submit(cams[0], self._take_alarm_snapshot, cams, aid, alarm["room"]):
            log.warning("no snapshot for alarm %s: camera %s already has alarm pictures waiting", aid, cams[0])

    def _take_alarm_snapshot(self, cams: list[str], aid: str, room: str | None = None) -> None:
        for cam in cams:        # the first camera of the room that delivers a frame
            drv = self.drivers.get(cam)
            if drv is None or self._stopped:
                continue
            try:
                # the room: a device with several channels pictures the one watching it
                drv.command("camera/snapshot", {"camera": cam, "alarm_id": aid, "room": room}, timeout=5.0)
                return
            except Exception as e:      # CommandError, or the camera stopped meanwhile
                log.warning("snapshot for alarm %s from %s failed: %s", aid, cam, e)

    def _last_seen(self, dev_id: str) -> str | None:
        drv = self.drivers.get(dev_id)
        lf = drv.health.last_frame if drv is not None else None
        return format_ts(lf) if lf else None

    def _state_publisher(self) -> None:
        """Retained occupancy and active alarms, coalesced to ≤ 4 updates/s."""
        while not self.stop_event.is_set() and not self._stopped:
            if not self._state_dirty.wait(1.0):
                continue
            self._state_dirty.clear()
            try:
                snap = self.core.call(lambda core: (self._snapshot(core), [])).result(10).value
            except Exception:
                continue
            if self.uplink:
                self.uplink.publish_retained("state/occupancy", {"ts": snap["ts"], "rooms": snap["rooms"]})
                self.uplink.publish_retained("state/alarms", {"ts": snap["ts"], "active": snap["active"]})
            time.sleep(0.25)

    @staticmethod
    def _snapshot(core: Core) -> dict:
        st = core.state
        # v2: active alarms and cleared-unacknowledged ones, each with its states
        # (rules/alarm_states.py AlarmBook.listing)
        return {"ts": format_ts(time.time()), "rooms": st.occupancy(),
                "active": core.engine.book.listing()}

    # ---- control socket (CLI) ---------------------------------------------------
    def _start_control_socket(self) -> None:
        path = self.config.socket_path
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        daemon = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                self.connection.settimeout(30)
                try:
                    # face/enroll carries a base64 photo: the line may be megabytes.
                    line = self.rfile.readline(CONTROL_MAX_LINE)
                    req = json.loads(line)
                    resp = daemon.control(req, peer=_socket_peer(self.connection))
                except Exception as e:
                    resp = {"ok": False, "error": {"code": "bad_request", "message": str(e)}}
                self.wfile.write((json.dumps(resp, ensure_ascii=False, default=str) + "\n").encode())

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        old = os.umask(0o117)
        try:
            self._ctl = Server(str(path), Handler)
        finally:
            os.umask(old)
        os.chmod(path, 0o660)
        threading.Thread(target=self._ctl.serve_forever, name="control", daemon=True).start()

    def control(self, req: dict, peer: str | None = None) -> dict:
        cmd = req.get("cmd")
        if cmd == "status":
            return {"ok": True, "data": self.status()}
        if cmd == "devices":
            return {"ok": True, "data": self.devices()}
        if cmd == "alarms":
            try:
                snap = self.core.call(lambda core: (self._snapshot(core), [])).result(3).value
            except Exception as e:
                return {"ok": False, "error": {"code": "busy", "message": f"journal writer busy: {e}"}}
            return {"ok": True, "data": snap["active"]}
        if cmd == "request":
            return self.control_request(req.get("command"), req.get("args"), peer=peer)
        if cmd in CONTROL_ALIASES:
            command, keys = CONTROL_ALIASES[cmd]
            return self.control_request(command, {k: req[k] for k in keys if req.get(k) is not None}, peer=peer)
        if cmd == "metrics":
            return {"ok": True, "data": self.metrics_snapshot()}
        if cmd == "top":
            return self.top_snapshot()
        return {"ok": False, "error": {"code": "unknown_command", "message": f"unknown control command {cmd!r}"}}

    def control_request(self, command: Any, args: Any, peer: str | None = None) -> dict:
        """A P/request/<command> arriving on the control socket (casegate ack, person add,
        band bind, face enroll, ...): the same RequestRouter.dispatch as over MQTT, so its
        validation, idempotency and journal events are exactly those of the MQTT command;
        the answer comes back to the socket, not to P/response/. Source is ``cli``."""
        from gateway.commands import fail
        if not isinstance(command, str) or not isinstance(args, dict):
            return fail(None, RequestError("bad_request", "request needs a command and an args object"))
        args = dict(args)
        args.setdefault("request_id", f"cli-{time.time_ns()}")
        # peer: the socket's peer user, whose request_ids are its own (idempotency)
        return self.router.call(command, args, path="control", source="cli", timeout=60, client=peer)

    def top_snapshot(self) -> dict:
        """What `casegate top` draws: occupancy with roles and names, active alarms
        with their ack state, devices, uplink. One writer-thread call, so rooms and
        alarms are from the same instant."""
        def snap(core):
            st = core.state
            rooms = st.occupancy()
            for people in rooms.values():
                for entry in people:
                    p = st.persons.get(entry["person"])
                    entry["name"] = getattr(p, "name", "") or ""
            return {"ts": format_ts(time.time()), "rooms": rooms,
                    "active": [dict(a) for a in st.active_alarms.values()]}, []
        try:
            data = self.core.call(snap).result(3).value
        except Exception as e:
            return {"ok": False, "error": {"code": "busy", "message": f"journal writer busy: {e}"}}
        data.update({"center": self.config.center.id, "center_name": self.config.center.name,
                     "timezone": self.config.center.timezone,
                     "room_types": {r.id: r.type for r in self.config.rooms},
                     "room_names": {r.id: r.name for r in self.config.rooms},
                     "devices": self.devices(),
                     "uplink": self.uplink_status(),
                     "clock": self._clock_status()})
        return {"ok": True, "data": data}

    def metrics_snapshot(self) -> dict:
        """Numbers for the Prometheus collector (gateway/metrics.py). Read without the
        writer thread: a scrape must answer while the writer is stuck (disk full)."""
        try:
            st = journal_stats(self.config.journal_path)
        except Exception:
            st = {"bytes": None, "events": None, "backlog": None}
        up = self.uplink.status() if self.uplink else {}
        alarms: dict[tuple[str, str], int] = {}
        for a in list(self.core.state.active_alarms.values()):
            key = (str(a.get("code")), str(a.get("severity")))
            alarms[key] = alarms.get(key, 0) + 1
        ckpt = self._checkpoint_written_at()
        return {
            "last_seq": self.journal.last_seq, "journal_events": st.get("events"),
            "journal_bytes": st.get("bytes"),
            "backlog": up.get("backlog", st.get("backlog")), "delivered": up.get("delivered", 0) or 0,
            "connected": bool(up.get("connected")), "connects": up.get("connects", 0) or 0,
            "uplink_restarts": (up.get("process") or {}).get("restarts", 0) or 0,
            "devices": self.devices(),
            "alarms": [{"code": c, "severity": s, "count": n} for (c, s), n in sorted(alarms.items())],
            "checkpoint_age_s": (time.time() - ckpt) if ckpt else None,
            "uptime_s": time.time() - self.started,
            "journal_error": bool(self.core.error),
            "clock": self._clock_status(),
        }

    def status(self) -> dict:
        try:
            st = journal_stats(self.config.journal_path)
        except Exception as e:   # e.g. a full disk: status must still answer
            st = {"bytes": None, "events": None, "last_seq": self.journal.last_seq, "backlog": None,
                  "stats_error": str(e)}
        # Read without the writer thread: status must answer even while the
        # writer is stuck retrying a commit (disk full). len() of a dict is atomic.
        active = len(self.core.state.active_alarms)
        try:
            alarm_states = self.engine.book.counts()
        except RuntimeError:     # changed under us (read without the writer); next time
            alarm_states = None
        return {
            "version": __version__, "center": self.config.center.id, "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started, 1),
            "uplink": self.uplink_status(),
            "journal": {"path": str(self.config.journal_path), "bytes": st["bytes"],
                        "events": st["events"], "last_seq": st["last_seq"], "backlog": st["backlog"],
                        "error": self.core.error},
            "devices": self._with_maintenance(self.devices()),
            "active_alarms": active,
            "alarm_states": alarm_states,
            "start": self.core.replay_info,
            "clock": self._clock_status(),
            "checkpoint": self._checkpoint_status(),
            "legal_disabled": _legal_disabled(self.config),
        }

    def _with_maintenance(self, devs: list[dict]) -> list[dict]:
        """Devices under device/maintenance say until when (their being offline is expected)."""
        try:
            maint = dict(self.engine.book.maintenance)
        except RuntimeError:
            return devs
        for d in devs:
            m = maint.get(d["id"])
            if m:
                d["maintenance"] = {"until": format_ts(m["until"]), "reason": m.get("reason"), "by": m.get("by")}
        return devs

    def _clock_status(self) -> dict:
        from gateway.timebase import clock_synchronised
        out = clock_synchronised()
        status = getattr(self.clock, "status", None)
        if status is not None:
            out.update(status())
            out["source"] = self.clock.sync_source()      # the probe the state above came from
        return out

    def _checkpoint_written_at(self) -> float | None:
        """When the newest checkpoint was written (this run's, else the newest file's, as
        after a restart): casegate_checkpoint_age_seconds (issue 30 item 4)."""
        from gateway.events import parse_ts
        store = getattr(self.core, "checkpoints", None)
        if store is None:
            return None
        created = (store.last or {}).get("created")
        if created:
            try:
                return parse_ts(created)
            except ValueError:
                pass
        try:
            files = store.files()
            return max(p.stat().st_mtime for _, p in files) if files else None
        except OSError:
            return None

    def _checkpoint_status(self) -> dict | None:
        store = self.core.checkpoints
        if store is None:
            return None
        return {"last": store.last, "written": store.written, "failed": store.failed}

    def devices(self) -> list[dict]:
        out = []
        for dev in self.config.devices:
            drv = self.drivers.get(dev.id)
            h = drv.health.as_dict() if drv is not None else {"state": "disabled" if not dev.enabled else "failed"}
            out.append({"id": dev.id, "driver": dev.driver, **h})
        return out


def _socket_peer(conn) -> str | None:
    """``cli:uid=<n>`` of the control socket's peer (SO_PEERCRED): the client whose
    request_ids it may reuse (gateway/requests.py asked_key)."""
    import struct
    try:
        _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                               struct.calcsize("3i")))
    except (OSError, AttributeError):
        return None
    return f"cli:uid={uid}"


class LocalTimeFormatter(logging.Formatter):
    """Log times in the center's timezone with the UTC offset written out
    (``2026-12-06 15:04:11.123 +08:00``), as the CLI shows them: a box's clock is often UTC, and a
    technician comparing a log line with `casegate events` must not have to guess."""

    def __init__(self, fmt: str, timezone: str | None):
        super().__init__(fmt)
        from zoneinfo import ZoneInfo
        try:
            self.tz = ZoneInfo(timezone) if timezone else None
        except Exception:       # an invalid zone is reported by config check; log in host time meanwhile
            self.tz = None

    def formatTime(self, record, datefmt=None):  # noqa: N802 (logging's name)
        from datetime import datetime
        t = datetime.fromtimestamp(record.created, self.tz).astimezone(self.tz)
        off = t.strftime("%z")
        return f"{t:%Y-%m-%d %H:%M:%S}.{int(record.msecs):03d} {off[:3]}:{off[3:]}"


def setup_logging(level: str = "INFO", timezone: str | None = None) -> None:
    # Terse, mosquitto-like: journald adds the timestamp when run by systemd.
    fmt = "%(levelname)s %(name)s: %(message)s" if os.environ.get("INVOCATION_ID") \
        else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler = logging.StreamHandler()
    handler.setFormatter(LocalTimeFormatter(fmt, timezone))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])


def run(config: Config, config_path: str | None) -> int:
    d = Daemon(config, config_path)
    return d.serve()
