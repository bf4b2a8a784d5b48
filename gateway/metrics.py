"""Prometheus metrics (SPEC §5, ``[metrics] listen``): a custom collector that reads the
daemon's live state at scrape time, so nothing on the hot path counts anything twice.

Names are prefixed ``casegate_``. Counters are the journal's and the uplink's own
totals (since the journal began / the uplink process started), gauges are now.
"""
from __future__ import annotations

import logging
from typing import Callable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

log = logging.getLogger("casegate.metrics")

DEVICE_STATES = ("starting", "online", "offline", "error", "stopped", "disabled", "failed")


class DaemonCollector(Collector):
    """Turns DaemonViews.metrics() (gateway/views.py) into metric families."""

    def __init__(self, snapshot: Callable[[], dict]):
        self.snapshot = snapshot

    def collect(self):
        s = self.snapshot()
        yield _counter("casegate_events_journaled", "Events in the journal (its last seq)", s["last_seq"])
        if s.get("journal_bytes") is not None:
            yield _gauge("casegate_journal_bytes", "Size of journal.db on disk", s["journal_bytes"])
        if s.get("backlog") is not None:
            yield _gauge("casegate_uplink_backlog", "Journaled events not yet PUBACKed by the broker", s["backlog"])
        yield _counter("casegate_uplink_delivered", "Events PUBACKed since the uplink started", s["delivered"])
        yield _gauge("casegate_uplink_connected", "1 while the MQTT uplink is connected", int(s["connected"]))
        yield _counter("casegate_uplink_connects", "MQTT (re)connections since the uplink started", s["connects"])
        yield _counter("casegate_uplink_process_restarts", "Uplink child process restarts", s["uplink_restarts"])
        yield _gauge("casegate_journal_error", "1 while the journal cannot commit (disk full ...)",
                     int(s["journal_error"]))
        yield _gauge("casegate_uptime_seconds", "Seconds since the daemon started", s["uptime_s"])
        ok = CounterMetricFamily("casegate_device_frames_ok", "Good frames decoded per device", labels=["device", "driver"])
        bad = CounterMetricFamily("casegate_device_frames_bad", "Bad frames (CRC, framing) per device",
                                  labels=["device", "driver"])
        rec = CounterMetricFamily("casegate_device_reconnects", "Reconnects per device", labels=["device", "driver"])
        state = GaugeMetricFamily("casegate_device_state", "1 for the device's current state",
                                  labels=["device", "driver", "state"])
        for d in s["devices"]:
            lab = [d["id"], d["driver"]]
            ok.add_metric(lab, d.get("frames_ok", 0) or 0)
            bad.add_metric(lab, d.get("frames_bad", 0) or 0)
            rec.add_metric(lab, d.get("reconnects", 0) or 0)
            cur = d.get("state") or "unknown"
            for st in sorted(set(DEVICE_STATES) | {cur}):
                state.add_metric(lab + [st], 1 if st == cur else 0)
        yield from (ok, bad, rec, state)
        alarms = GaugeMetricFamily("casegate_alarms_active", "Active alarms by code and severity",
                                   labels=["code", "severity"])
        for a in s["alarms"]:
            alarms.add_metric([a["code"], a["severity"]], a["count"])
        yield alarms
        clock = s.get("clock") or {}
        if clock.get("synchronised") is not None:         # absent when it cannot be told
            yield _gauge("casegate_clock_synchronised", "1 while the system clock is synchronised (NTP)",
                         int(bool(clock["synchronised"])))
        if "steps" in clock:
            yield _counter("casegate_clock_steps", "Wall-clock steps journaled (clock.stepped) since start",
                           clock.get("steps") or 0)
        # Absent until checkpoints exist (issue 12): a missing series, not a fake 0 age.
        if s.get("checkpoint_age_s") is not None:
            yield _gauge("casegate_checkpoint_age_seconds", "Seconds since the last state checkpoint",
                         s["checkpoint_age_s"])


def _gauge(name, doc, value):
    g = GaugeMetricFamily(name, doc)
    g.add_metric([], value)
    return g


def _counter(name, doc, value):
    c = CounterMetricFamily(name, doc)
    c.add_metric([], value)
    return c


def start_metrics_server(listen: str, snapshot: Callable[[], dict]):
    """Serve /metrics on ``host:port`` in a daemon thread; returns (server, thread).
    Bounded connections and an idle timeout (gateway/metrics_server.py), not
    prometheus-client's thread per connection."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from gateway.metrics_server import MetricsServer
    host, _, port = listen.rpartition(":")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(snapshot))
    server = MetricsServer(host.strip("[]"), int(port), lambda: (generate_latest(registry), CONTENT_TYPE_LATEST))
    server.start()
    log.info("metrics on http://%s/metrics", listen)
    return server, server.thread
