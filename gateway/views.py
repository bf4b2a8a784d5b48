"""What the daemon shows of itself: ``status``, ``devices``, ``alarms``, ``top`` (what
`casegate top` draws) and ``metrics`` (what the Prometheus collector in gateway/metrics.py
reads). Read-only; the control socket (gateway/control_socket.py) and the metrics server ask."""
from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from gateway import __version__
from gateway.core import Core
from rules.model import format_ts
from gateway.journal import journal_stats

if TYPE_CHECKING:
    from gateway.daemon import Daemon


def _legal_disabled(cfg):
    from gateway.legal_disabled import legal_disabled
    return legal_disabled(cfg)


def alarm_snapshot(core: Core) -> dict:
    """Occupancy and the alarm listing from one writer-thread instant (run inside ``core.call``)."""
    st = core.state
    # v2: active alarms and cleared-unacknowledged ones, each with its states
    # (rules/alarm_states.py AlarmBook.listing)
    return {"ts": format_ts(time.time()), "rooms": st.occupancy(),
            "active": core.engine.book.listing()}


class DaemonViews:
    """The daemon's state as the CLI and the metrics see it."""

    def __init__(self, daemon: Daemon):
        self.d = daemon

    def alarms(self) -> dict:
        try:
            snap = self.d.core.call(lambda core: (alarm_snapshot(core), [])).result(3).value
        except Exception as e:
            return {"ok": False, "error": {"code": "busy", "message": f"journal writer busy: {e}"}}
        return {"ok": True, "data": snap["active"]}

    def uplink_status(self) -> dict:
        d = self.d
        if d.uplink:
            return d.uplink.status()
        if d.uplink_error:
            m = d.config.mqtt
            return {"connected": False, "broker": f"{m.host}:{m.port}", "last_error": d.uplink_error}
        return {"connected": False, "disabled": True}

    def top(self) -> dict:
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
            data = self.d.core.call(snap).result(3).value
        except Exception as e:
            return {"ok": False, "error": {"code": "busy", "message": f"journal writer busy: {e}"}}
        cfg = self.d.config
        data.update({"center": cfg.center.id, "center_name": cfg.center.name,
                     "timezone": cfg.center.timezone,
                     "room_types": {r.id: r.type for r in cfg.rooms},
                     "room_names": {r.id: r.name for r in cfg.rooms},
                     "devices": self.devices(),
                     "uplink": self.uplink_status(),
                     "clock": self.clock_status()})
        return {"ok": True, "data": data}

    def metrics(self) -> dict:
        """Numbers for the Prometheus collector (gateway/metrics.py). Read without the
        writer thread: a scrape must answer while the writer is stuck (disk full)."""
        d = self.d
        try:
            st = journal_stats(d.config.journal_path)
        except Exception:
            st = {"bytes": None, "events": None, "backlog": None}
        up = d.uplink.status() if d.uplink else {}
        alarms: dict[tuple[str, str], int] = {}
        for a in list(d.core.state.active_alarms.values()):
            key = (str(a.get("code")), str(a.get("severity")))
            alarms[key] = alarms.get(key, 0) + 1
        ckpt = self._checkpoint_written_at()
        return {
            "last_seq": d.journal.last_seq, "journal_events": st.get("events"),
            "journal_bytes": st.get("bytes"),
            "backlog": up.get("backlog", st.get("backlog")), "delivered": up.get("delivered", 0) or 0,
            "connected": bool(up.get("connected")), "connects": up.get("connects", 0) or 0,
            "uplink_restarts": (up.get("process") or {}).get("restarts", 0) or 0,
            "devices": self.devices(),
            "alarms": [{"code": c, "severity": s, "count": n} for (c, s), n in sorted(alarms.items())],
            "checkpoint_age_s": (time.time() - ckpt) if ckpt else None,
            "uptime_s": time.time() - d.started,
            "journal_error": bool(d.core.error),
            "clock": self.clock_status(),
        }

    def status(self) -> dict:
        d = self.d
        try:
            st = journal_stats(d.config.journal_path)
        except Exception as e:   # e.g. a full disk: status must still answer
            st = {"bytes": None, "events": None, "last_seq": d.journal.last_seq, "backlog": None,
                  "stats_error": str(e)}
        # Read without the writer thread: status must answer even while the
        # writer is stuck retrying a commit (disk full). len() of a dict is atomic.
        active = len(d.core.state.active_alarms)
        try:
            alarm_states = d.engine.book.counts()
        except RuntimeError:     # changed under us (read without the writer); next time
            alarm_states = None
        return {
            "version": __version__, "center": d.config.center.id, "pid": os.getpid(),
            "uptime_s": round(time.time() - d.started, 1),
            "uplink": self.uplink_status(),
            "journal": {"path": str(d.config.journal_path), "bytes": st["bytes"],
                        "events": st["events"], "last_seq": st["last_seq"], "backlog": st["backlog"],
                        "error": d.core.error},
            "devices": self._with_maintenance(self.devices()),
            "active_alarms": active,
            "alarm_states": alarm_states,
            "start": d.core.replay_info,
            "clock": self.clock_status(),
            "checkpoint": self._checkpoint_status(),
            "legal_disabled": _legal_disabled(d.config),
        }

    def _with_maintenance(self, devs: list[dict]) -> list[dict]:
        """Devices under device/maintenance say until when (their being offline is expected)."""
        try:
            maint = dict(self.d.engine.book.maintenance)
        except RuntimeError:
            return devs
        for dev in devs:
            m = maint.get(dev["id"])
            if m:
                dev["maintenance"] = {"until": format_ts(m["until"]), "reason": m.get("reason"), "by": m.get("by")}
        return devs

    def clock_status(self) -> dict:
        from gateway.timebase import clock_synchronised
        out = clock_synchronised()
        clock = self.d.clock
        status = getattr(clock, "status", None)
        if status is not None:
            out.update(status())
            out["source"] = clock.sync_source()      # the probe the state above came from
        return out

    def _checkpoint_written_at(self) -> float | None:
        """When the newest checkpoint was written (this run's, else the newest file's, as
        after a restart): casegate_checkpoint_age_seconds (issue 30 item 4)."""
        from rules.model import parse_ts
        store = getattr(self.d.core, "checkpoints", None)
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
        store = self.d.core.checkpoints
        if store is None:
            return None
        return {"last": store.last, "written": store.written, "failed": store.failed}

    def devices(self) -> list[dict]:
        out = []
        for dev in self.d.config.devices:
            drv = self.d.drivers.get(dev.id)
            h = drv.health.as_dict() if drv is not None else {"state": "disabled" if not dev.enabled else "failed"}
            out.append({"id": dev.id, "driver": dev.driver, **h})
        return out
