"""`casegate top`: the duty room's live view (SPEC §5).

Full screen (rich Live on the alternate screen), refreshed from the daemon's
control socket (`top` verb) every ``--interval`` seconds: rooms with who is
inside and since when (center local time), alarms with unacknowledged first
and critical first, devices, uplink and backlog. ``q`` quits; so does Ctrl-C.
When the daemon goes away the view says so and keeps trying.
"""
from __future__ import annotations

import os
import select
import sys
import termios
import time
import tty

from rules.model import format_duration, format_local, parse_ts

SEVERITY_ORDER = {"critical": 0, "major": 1, "minor": 2, "warning": 3}
SEVERITY_STYLE = {"critical": "bold red", "major": "red", "minor": "yellow", "warning": "cyan"}


def sort_alarms(alarms: list[dict]) -> list[dict]:
    """Unacknowledged before acknowledged, then by severity, then oldest first."""
    return sorted(alarms, key=lambda a: (bool(a.get("acknowledged")),
                                         SEVERITY_ORDER.get(a.get("severity"), 9), a.get("since") or ""))


def devices_down(devices: list[dict]) -> list[str]:
    """Ids of devices not online; one in maintenance is expected to be down (not counted)."""
    return [d.get("id", "?") for d in devices if d.get("state") != "online" and not d.get("maintenance")]


def _local(ts: str | None, tz: str, now: float) -> str:
    if not ts:
        return "-"
    try:
        epoch = parse_ts(ts)
    except ValueError:
        return ts
    # Within today a clock time is enough; the offset is in the header once.
    same_day = format_local(epoch, tz, offset=False)[:10] == format_local(now, tz, offset=False)[:10]
    return format_local(epoch, tz, offset=False)[11:] if same_day else format_local(epoch, tz, offset=False)


def _ago(ts: str | None, now: float) -> str:
    try:
        return format_duration(now - parse_ts(ts)) if ts else ""
    except ValueError:
        return ""


# Below this many columns the view drops what a duty officer can look up elsewhere (alarm text,
# room type, driver, frame counters) so that ids, codes and names are shown whole: at 80×24 the
# full table cut both officers to `off-10…` and codes to `lone_interrogati…`.
NARROW_COLS = 120
SEVERITY_SHORT = {"critical": "CRIT", "major": "MAJ", "minor": "MIN", "warning": "WARN"}


def render(data: dict | None, error: str | None, now: float | None = None, width: int | None = None):
    """The whole screen as a rich renderable (pure: tested without a terminal too).

    ``width``: the terminal's columns (None: wide)."""
    from rich.console import Group
    from rich.text import Text
    now = time.time() if now is None else now
    if data is None:
        return Group(Text(f"casegate top — {format_local(now, None)}", style="bold"),
                     Text(f"no daemon: {error}", style="bold red"),
                     Text("retrying every second · q quits", style="dim"))
    tz = data.get("timezone") or "UTC"
    narrow = width is not None and width < NARROW_COLS
    footer = Text(f"refreshed {format_local(now, tz, offset=False)[11:]} · q quits" +
                  (f" · {error}" if error else ""), style="dim")
    return Group(_header(data, tz, now), Text(""), _alarm_table(data, narrow, tz, now), Text(""),
                 _room_table(data, narrow, tz, now), Text(""), _device_table(data, narrow, tz, now), Text(""),
                 footer)


def _uplink_line(up: dict):
    from rich.text import Text
    if up.get("disabled"):
        return Text("uplink disabled", style="dim")
    if up.get("connected"):
        return Text(f"uplink connected {up.get('broker', '')} · backlog {up.get('backlog', '?')}", style="green")
    return Text(f"uplink DISCONNECTED {up.get('broker', '')} · backlog {up.get('backlog', '?')}"
                + (f" · {up['last_error']}" if up.get("last_error") else ""), style="bold red")


def _header(data: dict, tz: str, now: float):
    from rich.text import Text
    uplink = _uplink_line(data.get("uplink") or {})
    clock = data.get("clock") or {}
    synced = clock.get("synchronised")
    clock_text = ("", "") if synced is True or not clock else (
        ("   clock NOT synchronised (NTP): detention times may be off", "bold red") if synced is False
        else ("   clock sync unknown", "yellow"))
    return Text.assemble((f"{data.get('center_name') or ''} {data.get('center', '')}", "bold"),
                         f"  {format_local(now, tz)} ({tz})   ", uplink, clock_text)


def _alarm_state(a: dict, narrow: bool) -> str:
    ack = a.get("acknowledged")
    if narrow:
        return ("ack" if ack else "UNACK") + (" clr" if a.get("active") is False else "") \
            + (" shlv" if a.get("shelved") else "")
    state = f"acked {ack.get('by', '')}" if isinstance(ack, dict) else ("acked" if ack else "UNACKED")
    # alarm states (SPEC v2 P/state/alarms): a cleared alarm still waiting for its ack, shelved ones
    if a.get("active") is False:
        state += ", cleared"
    if a.get("shelved"):
        state += ", shelved"
    return state


def _alarm_table(data: dict, narrow: bool, tz: str, now: float):
    from rich.table import Table
    from rich.text import Text
    alarms = sort_alarms(data.get("active") or [])
    unacked = sum(1 for a in alarms if not a.get("acknowledged"))
    at = Table(title=f"alarms: {len(alarms)} active, {unacked} unacknowledged", title_justify="left",
               expand=True, box=None, header_style="bold")
    # Narrow: room and persons share a column, one id a line, so the longest alarm code (33) and
    # the longest person id fit 80 columns whole.
    alarm_cols = ("state", "sev", "code", "room/persons", "since") if narrow else \
        ("state", "severity", "code", "room", "persons", "since", "for", "message")
    if narrow:
        at.pad_edge = False
    who_width = max([len(a.get("room") or "") for a in alarms]
                    + [len(p) for a in alarms for p in a.get("persons") or []] + [6])
    for c in alarm_cols:
        at.add_column(c, overflow="ellipsis", no_wrap=c != "message",
                      min_width={"code": max([len(a.get("code") or "") for a in alarms] + [4]),
                                 "room/persons": who_width, "sev": 4, "since": 8}.get(c))
    for a in alarms:
        state = Text(_alarm_state(a, narrow), style="bold" if not a.get("acknowledged") else "dim")
        sev = a.get("severity") or ""
        persons = a.get("persons") or []
        if narrow:
            at.add_row(state, Text(SEVERITY_SHORT.get(sev, sev), style=SEVERITY_STYLE.get(sev, "")),
                       a.get("code") or "", "\n".join([a.get("room") or "-"] + persons),
                       _local(a.get("since"), tz, now))
            continue
        at.add_row(state, Text(sev, style=SEVERITY_STYLE.get(sev, "")),
                   a.get("code") or "", a.get("room") or "", ",".join(persons),
                   _local(a.get("since"), tz, now), _ago(a.get("since"), now),
                   (a.get("message") or {}).get("zh", ""))
    if not alarms:
        at.add_row(*(["", "", Text("no active alarms", style="green")] + [""] * (len(alarm_cols) - 3)))
    return at


def _room_table(data: dict, narrow: bool, tz: str, now: float):
    from rich.table import Table
    from rich.text import Text
    rooms = data.get("rooms") or {}
    names, types = data.get("room_names") or {}, data.get("room_types") or {}
    down = devices_down(data.get("devices") or [])
    # Occupancy comes from the readers: with any of them down it may be incomplete, and an
    # empty table must not read as "nobody is here" while alarms place people in rooms.
    caveat = f" — {len(down)} device(s) down, may be incomplete" if down else ""
    rt = Table(title=f"rooms: {sum(len(v) for v in rooms.values())} people in {len(rooms)} rooms{caveat}",
               title_justify="left", expand=True, box=None, header_style="bold")
    room_cols = ("room", "person", "role", "name", "since") if narrow else \
        ("room", "type", "person", "role", "name", "since", "for")
    for c in room_cols:
        rt.add_column(c, overflow="ellipsis", no_wrap=True,
                      min_width=max([len(p.get("person") or "") for v in rooms.values() for p in v] + [6])
                      if c == "person" else None)
    for room in sorted(rooms):
        label = room + (f" {names[room]}" if names.get(room) and not narrow else "")
        for i, p in enumerate(rooms[room]):
            row = {"room": label if i == 0 else "", "type": types.get(room, "") if i == 0 else "",
                   "person": p.get("person") or "", "role": p.get("role") or "", "name": p.get("name") or "",
                   "since": _local(p.get("since"), tz, now), "for": _ago(p.get("since"), now)}
            rt.add_row(*(row[c] for c in room_cols))
    if not rooms:
        empty = (f"nobody seen in any room — {', '.join(down)} down: who is where is unknown "
                 "(the alarms above name the last known rooms)") if down else "nobody in any room"
        rt.add_row(*([Text(empty, style="bold yellow" if down else "dim")] + [""] * (len(room_cols) - 1)))
    return rt


def _device_table(data: dict, narrow: bool, tz: str, now: float):
    from rich.table import Table
    from rich.text import Text
    dt = Table(title="devices", title_justify="left", expand=True, box=None, header_style="bold")
    dev_cols = ("device", "state", "last frame", "error") if narrow else \
        ("device", "driver", "state", "last frame", "ok", "bad", "reconnects", "error")
    devices = data.get("devices") or []
    for c in dev_cols:
        dt.add_column(c, overflow="ellipsis", no_wrap=True,
                      min_width=max([len(d.get("id", "")) for d in devices] + [6]) if c == "device" else
                      (7 if c == "state" else None))
    for d in devices:
        st = d.get("state") or ""
        lf = d.get("last_frame")
        row = {"device": d.get("id", ""), "driver": d.get("driver", ""),
               "state": Text(st, style="green" if st == "online" else "bold red"),
               "last frame": _local(format_local_utc(lf), tz, now) if lf else "-",
               "ok": str(d.get("frames_ok", 0)), "bad": str(d.get("frames_bad", 0)),
               "reconnects": str(d.get("reconnects", 0)), "error": d.get("error") or ""}
        dt.add_row(*(row[c] for c in dev_cols))
    return dt


def format_local_utc(epoch: float) -> str:
    from rules.model import format_ts
    return format_ts(epoch)


def run_top(fetch, interval: float = 1.0, once: bool = False) -> int:
    """``fetch()`` returns the daemon's top data or raises; draws until q."""
    from rich.console import Console
    from rich.live import Live
    console = Console()

    def frame():
        try:
            return render(fetch(), None, width=console.width)
        except Exception as e:          # daemon gone, busy: say so, keep trying
            return render(None, str(e), width=console.width)

    if once or not sys.stdin.isatty():
        console.print(frame())
        return 0
    fd = sys.stdin.fileno()
    old = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        with Live(frame(), console=console, screen=True, auto_refresh=False) as live:
            next_at = time.monotonic() + interval
            while True:
                r, _, _ = select.select([fd], [], [], max(0.0, next_at - time.monotonic()))
                if r:
                    ch = os.read(fd, 1)
                    if ch in (b"q", b"Q", b"\x1b", b""):
                        break
                    if ch in (b" ", b"r"):
                        next_at = 0          # refresh now
                if time.monotonic() >= next_at:
                    live.update(frame(), refresh=True)
                    next_at = time.monotonic() + interval
    except KeyboardInterrupt:
        pass
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)
    return 0
