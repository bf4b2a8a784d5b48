"""The demo's verdict: alarms raised against those expected, the journal verified."""
from __future__ import annotations

from pathlib import Path

from gateway.demo.center import EXPECTED_ALARMS


def summarize(journal_path: Path, backlog: int | None, broker: dict, expected=None) -> dict:
    from gateway.journal import iter_events, journal_stats, open_reader, verify
    expected = EXPECTED_ALARMS if expected is None else expected
    st = journal_stats(journal_path)
    by_code: dict[str, set[str]] = {}
    conn = open_reader(journal_path)
    try:
        for ev in iter_events(conn, types=["alarm.raised"]):
            by_code.setdefault(ev.data.get("code"), set()).add(ev.data.get("alarm_id"))
    finally:
        conn.close()
    v = verify(journal_path)
    alarms = {k: len(v_) for k, v_ in sorted(by_code.items())}
    missing = [c for c in expected if c not in alarms]
    # Every alarm of the day is part of the story: one the script did not plan is a fault of the
    # demo's center (or of a rule), not a detail to skip.
    unexpected = [c for c in alarms if c not in expected]
    return {
        "events": st["events"],
        "alarms_by_code": alarms,
        "backlog": backlog if backlog is not None else st["backlog"],
        "verify_ok": v.ok,
        "verify": {"checked": v.checked, "first_seq": v.first_seq, "last_seq": v.last_seq,
                   "bad_seq": v.bad_seq, "reason": v.reason},
        "broker": broker,
        "expected_alarms": list(expected),
        "missing_alarms": missing,
        "unexpected_alarms": unexpected,
        "ok": v.ok and not missing and not unexpected,
    }


def print_summary(console, s: dict) -> None:
    from rich.table import Table
    t = Table(title="alarms by code", box=None, header_style="bold")
    t.add_column("code")
    t.add_column("raised", justify="right")
    t.add_column("expected")
    for code in sorted(set(s["alarms_by_code"]) | set(s["expected_alarms"])):
        n = s["alarms_by_code"].get(code, 0)
        exp = code in s["expected_alarms"]
        t.add_row(code, str(n), ("[green]yes ✓[/]" if n else "[red]MISSING ✗[/]") if exp else "[red]NOT EXPECTED ✗[/]")
    console.print(t)
    b = s["broker"]
    console.print(f"events journaled: {s['events']} · uplink backlog: {s['backlog']} · "
                  f"broker: {b.get('address') or 'none'}"
                  + (f" ({b.get('alarm_messages', 0)} alarm messages received)" if b.get("running") else
                     f" — ran buffered: {b.get('reason')}"))
    v = s["verify"]
    if s["verify_ok"]:
        console.print(f"journal verify: [green]OK[/] ({v['checked']} events, seq {v['first_seq']}..{v['last_seq']})")
    else:
        console.print(f"journal verify: [red]BROKEN at seq {v['bad_seq']}[/]: {v['reason']}")
    for p in s.get("problems", []):
        console.print(f"[magenta]note:[/] {p}", markup=True)
    for text in s.get("demo_settings", []):
        console.print(text, style="yellow", markup=False)
    if s["missing_alarms"]:
        console.print(f"[red]missing alarms:[/] {', '.join(s['missing_alarms'])}")
    if s.get("unexpected_alarms"):
        console.print(f"[red]alarms the story did not expect:[/] {', '.join(s['unexpected_alarms'])}")
    console.print(("[bold green]demo OK[/]" if s["ok"] else "[bold red]demo FAILED[/]")
                  + f" in {s['wall_s']:.1f} s ({s['demo_minutes']:.0f} demo minutes at ×{s['speed']:g})")
