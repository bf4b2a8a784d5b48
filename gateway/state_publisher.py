"""The retained state topics (SPEC §7): ``state/occupancy`` and ``state/alarms`` republished
after a commit that changes them (coalesced to ≤ 4 updates/s), ``state/devices/<id>`` on
every device event."""
from __future__ import annotations

import threading
import time
from typing import Any

from gateway.core import Core
from rules.model import Event, format_ts
from gateway.views import alarm_snapshot

# Domains whose events change occupancy or the alarm listing.
STATE_DOMAINS = ("presence", "person", "alarm", "wristband")


class StatePublisher:
    """``dirty`` is shared with whoever wants a republish (state/republish sets it)."""

    def __init__(self, core: Core, uplink: Any, drivers: dict[str, Any], dirty: threading.Event):
        self.core = core
        self.uplink = uplink            # None with MQTT off: only the flag is kept
        self.drivers = drivers          # the daemon's running drivers, by device id
        self.dirty = dirty
        self._stopped = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name="state-pub", daemon=True).start()
        self.dirty.set()

    def stop(self) -> None:
        self._stopped.set()

    def on_committed(self, events: list[Event]) -> None:
        """Core listener (writer thread): mark the state dirty, publish device states."""
        for ev in events:
            if ev.domain in STATE_DOMAINS:
                self.dirty.set()
            elif ev.domain == "device" and self.uplink and isinstance(ev.data, dict):
                dev = ev.data.get("device", ev.source)
                state = ev.action
                if state == "maintenance_ended":     # back to what the driver reports
                    drv = self.drivers.get(dev)
                    state = getattr(getattr(drv, "health", None), "state", None) or "online"
                self.uplink.publish_retained(f"state/devices/{dev}", {
                    "state": state, "last_seen": self._last_seen(dev), "error": ev.data.get("error")})

    def _last_seen(self, dev_id: str) -> str | None:
        drv = self.drivers.get(dev_id)
        lf = drv.health.last_frame if drv is not None else None
        return format_ts(lf) if lf else None

    def _run(self) -> None:
        """Retained occupancy and active alarms, coalesced to ≤ 4 updates/s."""
        while not self._stopped.is_set():
            if not self.dirty.wait(1.0):
                continue
            self.dirty.clear()
            try:
                snap = self.core.call(lambda core: (alarm_snapshot(core), [])).result(10).value
            except Exception:
                continue
            if self.uplink:
                self.uplink.publish_retained("state/occupancy", {"ts": snap["ts"], "rooms": snap["rooms"]})
                self.uplink.publish_retained("state/alarms", {"ts": snap["ts"], "active": snap["active"]})
            time.sleep(0.25)
