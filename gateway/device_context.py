"""What a driver may do with the gateway (drivers/base.py ``DriverContext``): emit events, which
the core journals; look up who a tag or card belongs to; read the rule settings that reach
drivers (drivers never import the rules). One per running device, made by the daemon."""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from rules.model import Draft, check_strict

if TYPE_CHECKING:
    from gateway.daemon import Daemon


class DeviceContext:
    """What a driver may do: emit events (journaled by the core), look up bindings."""

    def __init__(self, daemon: Daemon, device_id: str):
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
        check_strict(type, data)          # the test suite's strict mode; production journals as emitted
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

