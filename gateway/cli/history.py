"""Verbs that read the journal's history: events, alarms (and their KPIs), trace, custody."""
from __future__ import annotations

import json
import time

from gateway.cli.common import (EXIT_OK, EXIT_USAGE, CliError, duration, emit_json, get_config, journal_path,
                                local, table, ts_arg, verb, with_archive)
from gateway.config import Config


def _check_event_types(conn, types: list[str]) -> None:
    """A type neither the event model nor this journal knows is a typo: exit 2 naming the known ones."""
    # the event model's own list (gateway/event_schemas.py), not a copy that new types miss
    from rules.model import EVENT_DATA as KNOWN_EVENT_TYPES
    for t in types:
        if t in KNOWN_EVENT_TYPES:
            continue
        if conn.execute("SELECT 1 FROM events WHERE type = ? LIMIT 1", (t,)).fetchone():
            continue      # a type added after this list (another driver, a newer version)
        seen = {r[0] for r in conn.execute("SELECT DISTINCT type FROM events")}
        known = sorted(set(KNOWN_EVENT_TYPES) | seen)
        import difflib
        close = difflib.get_close_matches(t, known, n=3)
        hint = f" — did you mean {' or '.join(close)}?" if close else ""
        raise CliError(f"unknown event type {t!r}{hint}\nknown types: {', '.join(known)}", EXIT_USAGE)


def cmd_events(args) -> int:
    from gateway.journal import iter_events, open_reader
    cfg, _ = get_config(args)
    conn = open_reader(journal_path(cfg))
    types = args.type or None
    if types:
        _check_event_types(conn, types)
    since = ts_arg(args.since, cfg)
    evs = list(iter_events(conn, types=types, since_ts=since))
    if args.limit:
        evs = evs[-args.limit:]
    last = evs[-1].seq if evs else (conn.execute("SELECT MAX(seq) FROM events").fetchone()[0] or 0)

    def show(ev):
        if args.json:
            print(ev.to_json(), flush=True)
        else:
            print(f"{ev.seq:>8} {local(ev.ts, cfg)} {ev.type:<26} {ev.source:<16} "
                  f"{json.dumps(ev.data, ensure_ascii=False, separators=(',', ':'))}", flush=True)

    for ev in evs:
        show(ev)
    if args.follow:
        try:
            while True:
                time.sleep(0.3)
                for ev in iter_events(conn, since_seq=last + 1, types=types):
                    show(ev)
                    last = ev.seq
        except KeyboardInterrupt:
            return EXIT_OK
    return EXIT_OK


def _alarm_state(a: dict) -> str:
    """ISA-18.2 state of a listed alarm, for people."""
    active = a.get("active", True)
    acked = bool(a.get("acknowledged"))
    text = ("active" if active else "cleared") + (", acked" if acked else ", unacked")
    if a.get("shelved"):
        text += ", maintenance" if a.get("suppressed_by") == "maintenance" else ", shelved"
    if a.get("escalation_level"):
        text += f", esc {a['escalation_level']}"
    return text


def _alarm_rows(alarms: list[dict], cfg: Config | None = None) -> list[list]:
    return [[a.get("alarm_id"), a.get("code"), a.get("severity"), _alarm_state(a), a.get("room"),
             ",".join(a.get("persons") or []), local(a.get("since"), cfg),
             (a.get("acknowledged") or {}).get("by", "") if isinstance(a.get("acknowledged"), dict) else "",
             (a.get("message") or {}).get("zh", "")] for a in alarms]


def cmd_alarms(args) -> int:
    from gateway.journal import iter_events, open_reader
    from rules.alarm_states import AlarmBook
    cfg, _ = get_config(args)
    conn = open_reader(journal_path(cfg))
    if args.stats:
        return _alarm_stats(args, cfg, conn)
    history: list[dict] = []
    # The same fold the daemon keeps (rules/alarm_states.py), from the journal alone.
    book = AlarmBook()
    for ev in iter_events(conn, types=["alarm.raised", "alarm.cleared", "alarm.acknowledged", "alarm.escalated",
                                       "alarm.shelved", "alarm.unshelved", "device.maintenance",
                                       "device.maintenance_ended"]):
        # The same alarm_id re-sent while active is an update (persons or room changed).
        aid = ev.data.get("alarm_id")
        kind = ev.type.split(".", 1)[1]
        if ev.type == "alarm.raised" and aid in book.standing and book.standing[aid]["active"]:
            kind = "updated"
        book.note(ev, cfg)
        if ev.domain == "alarm":
            history.append({"seq": ev.seq, "ts": ev.ts, "event": ev.type, "kind": kind, **ev.data})
    if args.active or args.standing:
        items = []
        for aid, rec in book.standing.items():
            if args.active and not rec["active"]:
                continue
            a = {k: v for k, v in rec["data"].items() if k not in ("acknowledged", "by", "note")}
            a.update(active=rec["active"], acknowledged=rec["ack"], shelved=bool(a.pop("shelved", False)),
                     escalation_level=rec["level"])
            items.append(a)
        if args.json:
            emit_json(items)
        else:
            what = "active alarms" if args.active else "standing alarms (active or unacknowledged)"
            table(f"{len(items)} {what}", ["alarm_id", "code", "severity", "state", "room", "persons", "since",
                                           "acked by", "message"], _alarm_rows(items, cfg))
        return EXIT_OK
    if args.json:
        emit_json(history)
    else:
        table(None, ["seq", "ts", "event", "code", "severity", "room", "persons", "alarm_id"],
              [[h["seq"], local(h["ts"], cfg), h["kind"], h.get("code"), h.get("severity"), h.get("room"),
                ",".join(h.get("persons") or []), h.get("alarm_id")] for h in history])
    return EXIT_OK


def _alarm_stats(args, cfg, conn) -> int:
    from gateway.alarm_stats import CHATTER_RAISES, FLOOD_ALARMS, STATS_TYPES, compute
    from rules.model import format_duration, format_local, parse_ts
    from gateway.journal import iter_events
    since = ts_arg(args.since, cfg)
    row = conn.execute("SELECT ts FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    until = parse_ts(row[0]) if row else None      # still-active alarms stand until the journal's end
    st = compute(iter_events(conn, types=STATS_TYPES, since_ts=since),
                 parse_ts(since) if since else None, until)
    if args.json:
        emit_json(st)
        return EXIT_OK
    tz = cfg.center.timezone

    def dur(x):
        return format_duration(x) if x is not None else "-"

    def local(ts):
        return format_local(parse_ts(ts), tz) if ts else "-"
    rows = []
    for code, x in st["codes"].items():
        rows.append([code, x["raised"], x["cleared"], x["acknowledged"], dur(x["mean_ack_s"]), dur(x["max_ack_s"]),
                     x["standing_24h"], f"{x['max_raises_10min']}{' CHATTERING' if x['chattering'] else ''}",
                     x["escalations"], x["suppressed"], dur(x["shelved_s"]) if x["shelved_s"] else "-"])
    table(f"alarms {local(st['from'])} .. {local(st['to'])}",
          ["code", "raised", "cleared", "acked", "mean to ack", "max to ack", "standing >24 h",
           f"max raises/10 min (>{CHATTER_RAISES} chatters)", "escalations", "suppressed", "shelved"], rows)
    t = st["totals"]
    w10, w60 = st["worst_10min"], st["worst_hour"]
    print(f"{t['raised']} alarms raised, {t['announced']} announced, {t['acknowledged']} acknowledged; "
          f"{t['standing_24h']} standing > 24 h; average {t['per_10min_avg'] if t['per_10min_avg'] is not None else '-'}"
          f" per 10 min")
    print(f"worst 10 min: {w10['alarms']} alarms from {local(w10['from'])}"
          f"{f' - FLOOD (> {FLOOD_ALARMS} per 10 min, ISA-18.2)' if st['flood'] else ''}")
    print(f"worst hour: {w60['alarms']} alarms from {local(w60['from'])}")
    if t["chattering_codes"]:
        print(f"chattering: {', '.join(t['chattering_codes'])}")
    return EXIT_OK


def cmd_trace(args) -> int:
    from gateway.journal import iter_events, open_reader
    from rules.replay import trace
    cfg, _ = get_config(args)
    conn = open_reader(journal_path(cfg))
    since = ts_arg(args.since, cfg)
    types = ["presence.entered", "presence.left", "person.registered", "person.left",
             "wristband.bound", "wristband.unbound"]
    # The whole history, then the visits still going on at --since or later: a person in the room
    # since before --since is in it at that time (filtering events first lost the entry).
    evs = with_archive(cfg, iter_events(conn, types=types), types)
    rows = [r for r in trace(evs, args.person) if since is None or r["left"] is None or r["left"] >= since]
    if not rows:
        known = conn.execute("SELECT 1 FROM events WHERE type = 'person.registered' AND "
                             "json_extract(data, '$.person') = ? LIMIT 1", (args.person,)).fetchone()
        if args.json:
            emit_json(rows)
        raise CliError(f"no room visits recorded for {args.person}" + (" since " + args.since if since else "")
                       if known else f"no such person {args.person!r} in the journal")
    if args.json:
        emit_json(rows)
    else:
        table(f"trace of {args.person}", ["room", "entered", "left", "stayed"],
              [[r["room"], local(r["entered"], cfg), local(r["left"], cfg) if r.get("left") else "(still there)",
                duration(r.get("seconds"))] for r in rows])
    return EXIT_OK


def cmd_custody(args) -> int:
    from gateway.custody import CUSTODY_TYPES, custody_history
    from gateway.journal import iter_events, open_reader
    cfg, _ = get_config(args)
    conn = open_reader(journal_path(cfg))
    rows = custody_history(with_archive(cfg, iter_events(conn, types=CUSTODY_TYPES), CUSTODY_TYPES),
                           args.item)
    if not rows:
        if args.json:
            emit_json(rows)
        raise CliError(f"no such item {args.item.upper()!r} in the journal (no order, deposit or removal "
                       f"names it)")
    if args.json:
        emit_json(rows)
    else:
        table(f"chain of custody of {args.item.upper()}", ["time", "event", "by", "locker", "compartment", "order / code"],
              [[local(r["ts"], cfg), r["event"], r.get("by") or r["source"], r.get("locker"), r.get("compartment"),
                r.get("order") or r.get("code") or ""] for r in rows])
    return EXIT_OK


def add_events(sub) -> None:
    sp = verb(sub, "events", "events from the journal", cmd_events)
    sp.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    sp.add_argument("--type", action="append", help="only this type (repeatable), e.g. presence.entered")
    sp.add_argument("--since", help="RFC 3339 time")
    sp.add_argument("--limit", type=int, help="only the last N")


def add_alarms(sub) -> None:
    sp = verb(sub, "alarms", "alarm history from the journal", cmd_alarms)
    sp.add_argument("--active", action="store_true", help="only alarms active now, with their states")
    sp.add_argument("--standing", action="store_true",
                    help="active or unacknowledged alarms (what P/state/alarms lists), with their states")
    sp.add_argument("--stats", action="store_true",
                    help="alarm KPIs per code: raised, cleared, acked, time to ack, standing, chattering, "
                         "shelved time, worst 10 min (ISA-18.2)")
    sp.add_argument("--since", help="RFC 3339 time (with --stats)")


def add_trace(sub) -> None:
    sp = verb(sub, "trace", "rooms a person visited with enter/leave times (轨迹回放)", cmd_trace)
    sp.add_argument("person")
    sp.add_argument("--since")


def add_custody(sub) -> None:
    sp = verb(sub, "custody", "chain of custody of an evidence item: orders, unlocks, opens, adds/removes",
              cmd_custody)
    sp.add_argument("item", help="the item's EPC")
