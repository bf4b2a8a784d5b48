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


def compute(events: Iterable[Event], since: float | None = None, until: float | None = None) -> dict[str, Any]:
    codes: dict[str, dict[str, Any]] = {}
    raised_at: dict[str, float] = {}              # alarm_id -> since (first raise in the period)
    code_of: dict[str, str] = {}
    cleared_at: dict[str, float] = {}
    raise_times: dict[str, list[float]] = {}      # code -> raise times
    announced: list[float] = []                   # new alarms not suppressed
    shelves: dict[tuple[str, str], float] = {}    # (code, scope) -> shelved at
    shelf_until: dict[tuple[str, str], float] = {}
    tta: dict[str, list[float]] = {}
    first = last = None

    def c(code: str) -> dict[str, Any]:
        x = codes.get(code)
        if x is None:
            x = codes[code] = {"raised": 0, "cleared": 0, "acknowledged": 0, "suppressed": 0,
                               "escalations": 0, "max_level": 0, "shelved_s": 0.0}
        return x

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
        if not isinstance(code, str):
            continue
        typ = ev.type
        if typ == "alarm.raised":
            aid = d.get("alarm_id")
            if aid in code_of:
                continue                     # an update of an alarm already counted
            code_of[aid] = code
            raised_at[aid] = _since_epoch(d, t)
            c(code)["raised"] += 1
            raise_times.setdefault(code, []).append(t)
            if d.get("shelved"):
                c(code)["suppressed"] += 1
            else:
                announced.append(t)
        elif typ == "alarm.cleared":
            c(code)["cleared"] += 1
            cleared_at[d.get("alarm_id")] = t
        elif typ == "alarm.acknowledged":
            x = c(code)
            x["acknowledged"] += 1
            tta.setdefault(code, []).append(max(0.0, t - _since_epoch(d, t)))
        elif typ == "alarm.escalated":
            x = c(code)
            x["escalations"] += 1
            if isinstance(d.get("level"), int):
                x["max_level"] = max(x["max_level"], d["level"])
        elif typ == "alarm.shelved":
            key = (code, d.get("scope") or "")
            if key in shelves:               # re-shelved (extended): close the running interval
                c(code)["shelved_s"] += max(0.0, t - shelves[key])
            shelves[key] = t
            try:
                shelf_until[key] = parse_ts(d.get("until"))
            except (TypeError, ValueError):
                shelf_until[key] = t
        elif typ == "alarm.unshelved":
            key = (code, d.get("scope") or "")
            at = shelves.pop(key, None)
            if at is not None:
                c(code)["shelved_s"] += max(0.0, t - at)
    end = until if until is not None else (last if last is not None else 0.0)
    for (code, _), at in shelves.items():            # still shelved at the end of the period
        c(code)["shelved_s"] += max(0.0, min(end, shelf_until.get((code, _), end)) - at)
    standing: dict[str, int] = {}
    for aid, t0 in raised_at.items():
        if cleared_at.get(aid, end) - t0 > STANDING_S:
            standing[code_of[aid]] = standing.get(code_of[aid], 0) + 1
    for code, x in codes.items():
        lst = tta.get(code, [])
        x["mean_ack_s"] = round(sum(lst) / len(lst), 3) if lst else None
        x["max_ack_s"] = round(max(lst), 3) if lst else None
        x["standing_24h"] = standing.get(code, 0)
        n, at = _worst(raise_times.get(code, []), CHATTER_WINDOW_S)
        x["max_raises_10min"] = n
        x["chattering"] = n > CHATTER_RAISES
        x["shelved_s"] = round(x["shelved_s"], 3)
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
