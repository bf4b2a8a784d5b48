"""The gateway's own clock: clock_unsynchronised. Subject: "clock".

The core journals ``clock.sync`` when the system clock's sync state changes
(gateway/timebase.py; the engine folds it as ``clock_synced``). Unsynchronised
for ``[clock] unsynced_alarm_s`` (default 300, counted on rule time, i.e.
elapsed time) raises 时钟未同步; synchronised again clears it. An unknown
state (no time-sync service to ask) raises nothing: there is nothing to act on.
"""
from __future__ import annotations

from rules.base import Facts, rule
from rules.declare import alarm

# v3 (SPEC §7): the gateway's clock not synchronised for [clock] unsynced_alarm_s
CODE = alarm("clock_unsynchronised", "major", "时钟未同步", "Clock not synchronised", order=370)
DEFAULT_S = 300.0


def _check(ctx, subject, t):
    if getattr(ctx, "clock_synced", None) is not False:
        return None
    since = (getattr(ctx, "unsynced_from", None) or (t, 0))[0]
    return Facts(None, [], "网关时钟未与时间服务器同步，办案时限按网关时钟计算可能不准：请检查NTP/RTC",
                 "the gateway's clock is not synchronised: detention limits are timed by it; check NTP and the RTC",
                 {"unsynchronised_since_s": round(max(0.0, t - since), 1)})


def _grace(ctx) -> float:
    clock = getattr(getattr(ctx, "config", None), "clock", None)
    v = getattr(clock, "unsynced_alarm_s", DEFAULT_S)
    return float(v) if isinstance(v, (int, float)) else DEFAULT_S


@rule(CODE, on=("clock.sync",), check=_check, grace=None)
def clock_unsynchronised(ctx, ev, t):
    """时钟未同步: raised after the clock has been unsynchronised for the grace time."""
    return ctx.hold(CODE, "clock", t, _check(ctx, "clock", t), grace=_grace(ctx))
