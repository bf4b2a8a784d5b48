"""Tag health and the volume bound on ``tag.status`` (SPEC §4.1 v2 volume).

A band reports every second and its heart rate jitters: reporting every change
made millions of events a day. :class:`TagStatusBook` keeps what casegate knows
of each tag and emits ``tag.status`` [tag, person, battery, tamper, sos,
heart_rate] only on a change that matters: at once when tamper, SOS or
battery-low change, when a value first appears or goes away, when the heart rate
crosses a vital_signs_abnormal bound or moves ``hr_step_bpm`` from the last value
SENT; any other change at most once per ``status_every_s`` (the held change goes
out then, from the timer, even if the band falls silent). Held changes are
counted (``status_held``).

``battery`` is ``"low"`` while the status byte's low-battery bit is set, else
the last wristband percentage (int), else null. ``tamper`` = strap opened
(0x8A01 kind 2) or reader removed (0x8801); ``sos`` = status bit4 or 0x8A01
kind 4; ``heart_rate`` = last bpm or null.

Runs on the reader's event-loop thread only (no locks); ``now`` is monotonic.
"""
from __future__ import annotations

from typing import Any, Callable

DEFAULT_STATUS = (None, False, False, None)
DEFAULT_VITAL_BOUNDS = (45.0, 130.0)   # rules.catalog.VitalSigns defaults, when the context gives none
DEFAULT_LOW_BATTERY_PCT = 20.0         # rules.catalog.LowBattery default, likewise
TAG_PRUNE_S = 3600.0                   # forget the status of a quiet, healthy tag after this long


class TagStatus:
    """What casegate knows about one tag's health; ``snapshot()`` is what
    ``tag.status`` carries (minus ids)."""

    __slots__ = ("low_bit", "pct", "strap", "removed", "sos_bit", "band_sos", "hr", "last", "seen",
                 "sent_at")

    def __init__(self, now: float = 0.0):
        self.low_bit = False
        self.pct: int | None = None
        self.strap = False
        self.removed = False
        self.sos_bit = False
        self.band_sos = False
        self.hr: int | None = None
        self.last = DEFAULT_STATUS        # what the last tag.status SENT said
        self.seen = now
        self.sent_at = float("-inf")      # monotonic time of the last tag.status

    def snapshot(self) -> tuple:
        return ("low" if self.low_bit else self.pct, self.strap or self.removed,
                self.sos_bit or self.band_sos, self.hr)


class TagStatusBook:
    """Every tag's :class:`TagStatus`, and when a change of it is journaled.

    ``ctx`` is the driver's context (``person_for`` and the rules' bounds, if the
    daemon gives them); ``count(name)`` and ``emit(type, data, wall)`` are the driver's."""

    def __init__(self, cfg: Any, ctx: Any, count: Callable[[str], None],
                 emit: Callable[[str, dict, float], None]):
        self.cfg = cfg
        self.ctx = ctx
        self.count = count
        self.emit = emit
        self.tags: dict[str, TagStatus] = {}

    def tag(self, tag: str, now: float) -> TagStatus:
        """The tag's status, created on first sight; marks it heard now."""
        ts = self.tags.get(tag)
        if ts is None:
            ts = self.tags[tag] = TagStatus(now)
        else:
            ts.seen = now
        return ts

    def report(self, tag: str, ts: TagStatus, wall: float, now: float) -> None:
        """Journal the tag's status if it changed and the bound allows; else hold it."""
        snap = ts.snapshot()
        if snap == ts.last:
            return
        if not self.due(ts.last, snap, now - ts.sent_at):
            self.count("status_held")
            return
        ts.last = snap
        ts.sent_at = now
        battery, tamper, sos, hr = snap
        self.emit("tag.status", {"tag": tag, "person": self.ctx.person_for(tag), "battery": battery,
                                 "tamper": tamper, "sos": sos, "heart_rate": hr}, wall)

    def vital_bounds(self) -> tuple[float, float]:
        """[rules.vital_signs_abnormal] low_bpm/high_bpm, as the daemon's context gives them."""
        b = getattr(self.ctx, "vital_signs_bounds", None)
        return b if b else DEFAULT_VITAL_BOUNDS

    def battery_low(self, battery) -> bool:
        """The low-battery bit, or a percentage under [rules.tag_low_battery] below_pct."""
        if battery == "low":
            return True
        below = getattr(self.ctx, "low_battery_below_pct", None)
        return isinstance(battery, int) and battery < (DEFAULT_LOW_BATTERY_PCT if below is None else below)

    def due(self, last: tuple, snap: tuple, since_sent: float) -> bool:
        """Whether a change from ``last`` (sent ``since_sent`` s ago) to ``snap`` goes out now."""
        battery, tamper, sos, hr = snap
        l_battery, l_tamper, l_sos, l_hr = last
        if tamper != l_tamper or sos != l_sos or self.battery_low(battery) != self.battery_low(l_battery):
            return True
        if (battery is None) != (l_battery is None) or (hr is None) != (l_hr is None):
            return True                       # a first reading, or one that went away
        if hr is not None:
            low, high = self.vital_bounds()
            zone = (hr > high) - (hr < low)   # the rule's in-range test: low <= hr <= high
            if zone != (l_hr > high) - (l_hr < low):
                return True
            if abs(hr - l_hr) >= self.cfg.hr_step_bpm:
                return True
        return since_sent >= self.cfg.status_every_s

    def flush_held(self, now: float, wall: float) -> None:
        """Send changes held back by the rate bound once it allows (the timer's part)."""
        every = self.cfg.status_every_s
        for tag, ts in self.tags.items():
            if now - ts.sent_at >= every and ts.snapshot() != ts.last:
                self.report(tag, ts, wall, now)

    def prune(self, now: float) -> None:
        """Forget quiet tags whose last status said nothing worth keeping."""
        quiet = [t for t, s in self.tags.items() if now - s.seen > TAG_PRUNE_S and s.last == DEFAULT_STATUS]
        for t in quiet:
            del self.tags[t]
