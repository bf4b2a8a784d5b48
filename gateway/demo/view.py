"""What the demo shows: a fold of the committed events and the terminal that draws it."""
from __future__ import annotations

import sys
import time
from collections import Counter, deque

from gateway.demo.center import ROOMS
from gateway.demo.runtime import DemoClock
from rules.model import Event


# ---- what the demo knows: a fold of the committed events ------------------------------------------
class View:
    def __init__(self):
        self.events: list[Event] = []
        self.rooms: dict[str, dict[str, float]] = {r[0]: {} for r in ROOMS}
        self.names: dict[str, tuple[str, str]] = {}     # person -> (name, role)
        self.active: dict[str, dict] = {}
        self.raised: dict[str, set[str]] = {}
        self.types: Counter = Counter()

    def fold(self, ev: Event) -> list[tuple[str, str]]:
        """Returns display lines (text, style) worth showing for this event (the
        caller stamps them with the event's own time, so they read in order)."""
        self.events.append(ev)
        self.types[ev.type] += 1
        d = ev.data if isinstance(ev.data, dict) else {}
        out: list[tuple[str, str]] = []
        if ev.type == "person.registered":
            self.names[d["person"]] = (d.get("name") or d["person"], d.get("role", ""))
        elif ev.type == "presence.entered":
            who = d.get("person") or f"tag:{d.get('tag')}"
            self.rooms.setdefault(d.get("room"), {})[who] = ev.epoch
        elif ev.type == "presence.left":
            who = d.get("person") or f"tag:{d.get('tag')}"
            occ = self.rooms.get(d.get("room"), {})
            occ.pop(who, None)
            occ.pop(f"tag:{d.get('tag')}", None)
        elif ev.type == "person.left":
            for occ in self.rooms.values():
                occ.pop(d.get("person"), None)
            out.append((f"{self.label(d.get('person'))} has left the center", "green"))
        elif ev.type == "wristband.bound":
            tag = d.get("tag")
            for occ in self.rooms.values():
                if f"tag:{tag}" in occ:
                    occ[d["person"]] = occ.pop(f"tag:{tag}")
        elif ev.type == "alarm.raised":
            aid, code = d.get("alarm_id"), d.get("code")
            new = aid not in self.active
            old = self.active.get(aid)
            self.active[aid] = d
            self.raised.setdefault(code, set()).add(aid)
            msg = (d.get("message") or {}).get("en", "")
            if new:
                out.append((f"ALARM {code} [{d.get('severity')}] {msg}", "bold red"))
            elif d.get("snapshot") and d.get("snapshot") != (old or {}).get("snapshot"):
                # 视频联动: the camera's picture is attached to the alarm by an update
                out.append((f"snapshot for {code}: {d['snapshot']}", "cyan"))
        elif ev.type == "alarm.cleared":
            a = self.active.pop(d.get("alarm_id"), None)
            if a is not None:
                out.append((f"cleared {a.get('code')} ({a.get('room') or '-'})", "yellow"))
        elif ev.type == "device.error":
            out.append((f"device {d.get('device')}: {d.get('error')}", "magenta"))
        return out

    def label(self, who: str | None) -> str:
        if not who:
            return "?"
        n = self.names.get(who)
        return f"{n[0]}({who})" if n else who

    def room_of(self, who: str) -> set[str]:
        return {r for r, occ in self.rooms.items() if who in occ}

    def find(self, type_: str, since: int, **match) -> Event | None:
        for ev in self.events[since:]:
            if ev.type == type_ and all(ev.data.get(k) == v for k, v in match.items()):
                return ev
        return None

    def alarm_active(self, code: str, person: str | None = None) -> bool:
        return any(a.get("code") == code and (person is None or person in (a.get("persons") or []))
                   for a in self.active.values())


# ---- the terminal ------------------------------------------------------------------------------
ROLE_STYLE = {"suspect": "bold red", "officer": "bold blue", "staff": "green", "visitor": "cyan"}
SEV_STYLE = {"critical": "bold red", "major": "red", "minor": "yellow", "warning": "yellow"}


class Display:
    """Rich Live screen on a terminal; concise lines otherwise (stderr with --json)."""

    def __init__(self, json_mode: bool, total_steps: int, clock: DemoClock):
        from rich.console import Console
        self.json_mode = json_mode
        self.clock = clock
        self.total = total_steps
        self.step = 0
        self.step_text = "starting"
        self.header = ""
        self.lines: deque[tuple[str, str]] = deque(maxlen=14)
        self.view: View | None = None
        self.live = None
        self._last = 0.0
        tty = sys.stdout.isatty() and not json_mode
        self.console = Console(file=sys.stderr if json_mode else sys.stdout, highlight=False,
                               force_terminal=tty if tty else None, soft_wrap=not tty)
        self.mode = "live" if tty else "lines"

    def start(self) -> None:
        if self.mode == "live":
            from rich.live import Live
            self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
            self.live.start()

    def stop(self) -> None:
        if self.live is not None:
            try:
                self.live.update(self._render(), refresh=True)
                self.live.stop()
            except Exception:
                pass
            self.live = None

    def log(self, text: str, style: str = "", at: float | None = None) -> None:
        # The story reads forward: an event committed just before a step began can reach the
        # screen after that step's title (08:28 [22/34] then 08:27 … ALARM); it is shown at the
        # latest time already on screen. Its journaled time is unchanged.
        at = self.clock() if at is None else at
        self._last_at = at = max(at, getattr(self, "_last_at", at))
        stamp = self.clock.hhmm(at)
        self.lines.append((f"{stamp}  {text}", style))
        if self.mode == "lines":
            self.console.print(f"{stamp} [{self.step:>2}/{self.total}] {text}", style=style or None,
                               markup=False)
        else:
            self.refresh(force=True)

    def set_step(self, i: int, text: str) -> None:
        self.step, self.step_text = i, text
        self.log(text, "bold")

    def refresh(self, force: bool = False) -> None:
        if self.live is None:
            return
        now = time.monotonic()
        if force or now - self._last >= 0.2:
            self._last = now
            self.live.update(self._render())

    def _render(self):
        from rich.console import Group
        from rich.panel import Panel
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text
        width, height = self.console.size
        head = Text.assemble(("casegate demo", "bold"), f"  ·  demo time {self.clock.hhmm()} ",
                             (f"(×{self.clock.speed:g})", "dim"), f"  ·  {self.header}")
        bar = Table.grid(padding=(0, 1))
        bar.add_row(ProgressBar(total=max(1, self.total), completed=self.step, width=min(40, width // 3)),
                    Text(f"{self.step}/{self.total}  {self.step_text}", overflow="ellipsis", no_wrap=True))
        v = self.view or View()
        rooms = [(rid, name, v.rooms.get(rid, {})) for rid, _, name, _ in ROOMS]
        short = height < 40
        shown = [r for r in rooms if r[2]] if short else rooms
        occ = Table(title="occupancy 实时人数", box=None, header_style="bold", title_justify="left",
                    caption=f"{len(rooms) - len(shown)} rooms empty" if short else None)
        occ.add_column("room 房间", no_wrap=True)
        occ.add_column("#", justify="right")
        occ.add_column("people")
        for rid, name, people in shown:
            txt = Text()
            for who in people:
                n = v.names.get(who)
                if txt:
                    txt.append(" ")
                txt.append(n[0] if n else who, ROLE_STYLE.get(n[1] if n else "", "dim"))
            occ.add_row(Text.assemble(name, (f" {rid}", "dim")), str(len(people)) if people else "", txt)
        alarms = Table(title=f"active alarms 报警 ({len(v.active)})", box=None, header_style="bold",
                       title_justify="left")
        for c in ("code", "severity", "room", "persons"):
            alarms.add_column(c, no_wrap=c != "persons")
        names = {r[0]: r[2] for r in ROOMS}
        for a in list(v.active.values())[-8:]:
            alarms.add_row(a.get("code", ""), Text(a.get("severity", ""), SEV_STYLE.get(a.get("severity"), "")),
                           names.get(a.get("room"), a.get("room") or "-"),
                           ", ".join(v.names.get(p, (p,))[0] for p in a.get("persons") or []))
        if width >= 125:
            grid = Table.grid(padding=(0, 3))
            grid.add_row(occ, alarms)
            used = 2 + max(len(shown) + 2 + (1 if short else 0), min(8, len(v.active)) + 2)
            body = [grid]
        else:
            used = 2 + len(shown) + 2 + (1 if short else 0) + min(8, len(v.active)) + 2
            body = [occ, alarms]
        n = max(3, min(len(self.lines), height - used - 3))
        logs = Text("\n".join(t for t, _ in list(self.lines)[-n:]) or " ", overflow="ellipsis", no_wrap=True)
        return Group(head, bar, *body, Panel(logs, title="log", border_style="dim"))
