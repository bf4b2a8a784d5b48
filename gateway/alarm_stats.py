"""Alarm-management KPIs from the journal (`casegate alarms --stats`, SPEC §5 v2).

The figures ISA-18.2 / EEMUA 191 ask an alarm system to be judged by,
computed from journaled events only (no daemon needed):

* per code: alarms raised (new alarm ids; updates are not new alarms),
  cleared, acknowledged, mean and max time to acknowledge (ack time minus the
  alarm's ``since``), standing alarms (active for more than 24 h, up to the
  end of the period if still active), chattering (the most raises of the code
  in any 10-minute window; chattering when > 5), escalations and the highest
  level, raises while suppressed (shelved or maintenance), shelved time
  (summed over the code's shelves, clipped to the period);
* overall: the worst 10-minute and the worst 1-hour window (new alarms
  actually announced, i.e. not suppressed) and the ISA-18.2 flood flag
  (> 10 alarms in 10 minutes).

Pure: ``compute(events, since, until)`` over any iterable of Events.
"""
from __future__ import annotations

from bisect import bisect_left
from typing import Any, Iterable

from rules.model import Event, format_ts, parse_ts

STANDING_S = 24 * 3600.0
CHATTER_WINDOW_S = 600.0
CHATTER_RAISES = 5          # more than this many raises in the window = chattering
FLOOD_WINDOW_S = 600.0
FLOOD_ALARMS = 10           # more than this many new alarms in 10 min = flood (ISA-18.2)
STATS_TYPES = ["alarm.raised", "alarm.cleared", "alarm.acknowledged", "alarm.escalated",
               "alarm.shelved", "alarm.unshelved"]


def _worst(times: list[float], width: float) -> tuple[int, float | None]:
    """Most timestamps in any window [t, t + width) starting at one of them."""
    times = sorted(times)
    best, start = 0, None
    for i, t in enumerate(times):
        n = bisect_left(times, t + width, i) - i
        if n > best:
            best, start = n, t
    return best, start


def _since_epoch(d: dict, default: float) -> float:
    try:
        return parse_ts(d["since"])
    except (KeyError, TypeError, ValueError):
        return default


class _Tally:
    """What the period's alarm events add up to, one handler per event type."""

    def __init__(self):
        self.codes: dict[str, dict[str, Any]] = {}
        self.raised_at: dict[str, float] = {}              # alarm_id -> since (first raise in the period)
        self.code_of: dict[str, str] = {}
        self.cleared_at: dict[str, float] = {}
        self.raise_times: dict[str, list[float]] = {}      # code -> raise times
        self.announced: list[float] = []                   # new alarms not suppressed
        self.shelves: dict[tuple[str, str], float] = {}    # (code, scope) -> shelved at
        self.shelf_until: dict[tuple[str, str], float] = {}
        self.tta: dict[str, list[float]] = {}
        self.handlers = {"alarm.raised": self.raised, "alarm.cleared": self.cleared,
                         "alarm.acknowledged": self.acknowledged, "alarm.escalated": self.escalated,
                         "alarm.shelved": self.shelved, "alarm.unshelved": self.unshelved}

    def c(self, code: str) -> dict[str, Any]:
        x = self.codes.get(code)
        if x is None:
            x = self.codes[code] = {"raised": 0, "cleared": 0, "acknowledged": 0, "suppressed": 0,
                                    "escalations": 0, "max_level": 0, "shelved_s": 0.0}
        return x

    def raised(self, code: str, d: dict, t: float) -> None:
        aid = d.get("alarm_id")
        if aid in self.code_of:
            return                           # an update of an alarm already counted
        self.code_of[aid] = code
        self.raised_at[aid] = _since_epoch(d, t)
        self.c(code)["raised"] += 1
        self.raise_times.setdefault(code, []).append(t)
        if d.get("shelved"):
            self.c(code)["suppressed"] += 1
        else:
            self.announced.append(t)

    def cleared(self, code: str, d: dict, t: float) -> None:
        self.c(code)["cleared"] += 1
        self.cleared_at[d.get("alarm_id")] = t

    def acknowledged(self, code: str, d: dict, t: float) -> None:
        self.c(code)["acknowledged"] += 1
        self.tta.setdefault(code, []).append(max(0.0, t - _since_epoch(d, t)))

    def escalated(self, code: str, d: dict, t: float) -> None:
        x = self.c(code)
        x["escalations"] += 1
        if isinstance(d.get("level"), int):
            x["max_level"] = max(x["max_level"], d["level"])

    def shelved(self, code: str, d: dict, t: float) -> None:
        key = (code, d.get("scope") or "")
        if key in self.shelves:              # re-shelved (extended): close the running interval
            self.c(code)["shelved_s"] += max(0.0, t - self.shelves[key])
        self.shelves[key] = t
        try:
            self.shelf_until[key] = parse_ts(d.get("until"))
        except (TypeError, ValueError):
            self.shelf_until[key] = t

    def unshelved(self, code: str, d: dict, t: float) -> None:
        at = self.shelves.pop((code, d.get("scope") or ""), None)
        if at is not None:
            self.c(code)["shelved_s"] += max(0.0, t - at)

    def close(self, end: float) -> dict[str, int]:
        """The period ends at ``end``: shelves still running count up to it, the per-code
        figures are finished; returns the standing alarms by code."""
        for (code, scope), at in self.shelves.items():            # still shelved at the end of the period
            self.c(code)["shelved_s"] += max(0.0, min(end, self.shelf_until.get((code, scope), end)) - at)
        standing: dict[str, int] = {}
        for aid, t0 in self.raised_at.items():
            if self.cleared_at.get(aid, end) - t0 > STANDING_S:
                standing[self.code_of[aid]] = standing.get(self.code_of[aid], 0) + 1
        for code, x in self.codes.items():
            lst = self.tta.get(code, [])
            x["mean_ack_s"] = round(sum(lst) / len(lst), 3) if lst else None
            x["max_ack_s"] = round(max(lst), 3) if lst else None
            x["standing_24h"] = standing.get(code, 0)
            n, _at = _worst(self.raise_times.get(code, []), CHATTER_WINDOW_S)
            x["max_raises_10min"] = n
            x["chattering"] = n > CHATTER_RAISES
            x["shelved_s"] = round(x["shelved_s"], 3)
        return standing


def compute(events: Iterable[Event], since: float | None = None, until: float | None = None) -> dict[str, Any]:
    tally = _Tally()
    first = last = None
    for ev in events:
        t = ev.epoch
        if since is not None and t < since:
            continue
        if until is not None and t > until:
            break
        first = t if first is None else first
        last = t
        d = ev.data if isinstance(ev.data, dict) else {}
        code = d.get("code")
        handler = tally.handlers.get(ev.type)
        if isinstance(code, str) and handler is not None:
            handler(code, d, t)
    end = until if until is not None else (last if last is not None else 0.0)
    standing = tally.close(end)
    codes, announced = tally.codes, tally.announced
    w10, w10_at = _worst(announced, FLOOD_WINDOW_S)
    w60, w60_at = _worst(announced, 3600.0)
    span = (end - first) if first is not None else 0.0
    total = sum(x["raised"] for x in codes.values())
    return {
        "from": format_ts(since if since is not None else first) if (since is not None or first is not None) else None,
        "to": format_ts(end) if first is not None else None,
        "codes": dict(sorted(codes.items())),
        "totals": {"raised": total, "announced": len(announced),
                   "acknowledged": sum(x["acknowledged"] for x in codes.values()),
                   "standing_24h": sum(standing.values()),
                   "chattering_codes": sorted(k for k, x in codes.items() if x["chattering"]),
                   "per_10min_avg": round(len(announced) / (span / FLOOD_WINDOW_S), 3) if span > 0 else None},
        "worst_10min": {"alarms": w10, "from": format_ts(w10_at) if w10_at is not None else None},
        "worst_hour": {"alarms": w60, "from": format_ts(w60_at) if w60_at is not None else None},
        "flood": w10 > FLOOD_ALARMS,
    }
