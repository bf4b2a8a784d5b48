"""Verbs on the journal as a whole: verify (with the archive), backup, replay (of the journal
or of a file of events)."""
from __future__ import annotations

import json
import sys

from gateway.cli.common import (EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError, emit_json, get_config, journal_path,
                                local, table, ts_arg, verb, with_archive)
from gateway.config import Config


def cmd_journal_verify_archive(args, cfg: Config) -> int:
    from gateway.archive import archive_dir, verify_with_archive
    from gateway.journal import open_reader
    directory = archive_dir(cfg.storage.dir)
    conn = open_reader(journal_path(cfg))
    try:
        r = verify_with_archive(conn, directory)
    finally:
        conn.close()
    if args.json:
        emit_json(r.__dict__)
    elif r.ok:
        print(f"journal + archive OK: {r.checked} events, seq 1..{r.last_seq} "
              f"({r.archived} from {r.files} archive files in {directory}, {r.checked - r.archived} in the journal"
              + (f", {r.shed} shed telemetry payloads, links checked" if r.shed else "") + ")")
    else:
        where = f" (archive file {r.file})" if r.file else ""
        print(f"journal + archive BROKEN at seq {r.bad_seq}{where}: {r.reason}", file=sys.stderr)
    return EXIT_OK if r.ok else EXIT_FAILED


def cmd_journal_verify(args) -> int:
    from gateway.journal import JournalError, verify
    cfg, _ = get_config(args)
    if getattr(args, "archive", False):
        return cmd_journal_verify_archive(args, cfg)
    try:
        r = verify(journal_path(cfg))
    except JournalError as e:
        raise CliError(str(e))
    if args.json:
        emit_json(r.__dict__)
    elif r.ok:
        print(f"journal OK: {r.checked} events, seq {r.first_seq}..{r.last_seq}"
              + (f" ({r.shed} shed telemetry payloads, links checked)" if r.shed else "")
              + (f"; {r.pruned} older events pruned to archive/ in {r.holes} ranges, anchors linked"
                 " (`journal verify --archive` checks their contents)" if r.pruned else ""))
    else:
        print(f"journal BROKEN at seq {r.bad_seq}: {r.reason} ({r.checked} events verified before it)",
              file=sys.stderr)
    return EXIT_OK if r.ok else EXIT_FAILED


def cmd_journal_backup(args) -> int:
    """SPEC §5 v3: online, 0600, verified (gateway/backup.py)."""
    from gateway.backup import BackupError, backup_journal
    cfg, _ = get_config(args)
    try:
        r = backup_journal(journal_path(cfg), args.file)
    except BackupError as e:
        raise CliError(str(e))
    if args.json:
        emit_json(r.as_dict())
    else:
        print(f"backup OK: {r.path} (0600), {r.events} events, seq {r.first_seq}..{r.last_seq}, "
              f"{r.bytes / 1e6:.1f} MB, chain verified"
              + (" (taken while the daemon runs)" if r.daemon_running else ""))
    return EXIT_OK


def read_event_file(path: str, center: str, verify: bool = False, tz: str | None = None,
                    counts: dict | None = None) -> list:
    """Events from a JSON Lines file (SPEC §5 ``replay --input``): full envelopes
    as published on MQTT or bare {ts, type, source, data}. Each gets its place
    in a fresh chain; with ``verify`` the envelopes' own seq/prev/hash must hold.
    Bad lines are a usage error naming FILE:LINE. A line whose ``id`` came before
    is a duplicate (SPEC §3: a re-sent event keeps its id) and is dropped, counted
    in ``counts["duplicates"]``; a time a person gave without an offset in the
    data (``arrived_at`` ...) is read in ``tz``, as the live gateway reads it."""
    from rules.model import Draft, GENESIS, parse_ts, seal, verify_envelope
    from gateway.localtime import normalise_given_times
    seen_ids: set[str] = set()
    dropped = 0
    try:
        fh = open(path, encoding="utf-8")
    except OSError as e:
        raise CliError(f"{path}: {e.strerror}", EXIT_USAGE)
    out = []
    prev, last_seq, vprev = GENESIS, 0, None
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                raise CliError(f"{path}:{n}: not a JSON object", EXIT_USAGE)
            if not isinstance(obj, dict):
                raise CliError(f"{path}:{n}: not a JSON object", EXIT_USAGE)
            typ, ts, data = obj.get("type"), obj.get("ts"), obj.get("data")
            if not isinstance(typ, str) or not isinstance(ts, str) or not isinstance(data, dict):
                raise CliError(f"{path}:{n}: needs ts (RFC 3339), type and data (an object)", EXIT_USAGE)
            try:
                epoch = parse_ts(ts)
            except ValueError:
                raise CliError(f"{path}:{n}: ts {ts!r} is not an RFC 3339 time", EXIT_USAGE)
            eid = obj.get("id")
            if isinstance(eid, str):
                if eid in seen_ids:
                    dropped += 1
                    continue
                seen_ids.add(eid)
            if verify:
                if "hash" not in obj or "seq" not in obj:
                    raise CliError(f"{path}:{n}: --verify needs full envelopes (seq, prev, hash)", EXIT_USAGE)
                why = verify_envelope(obj, vprev)
                if why is None and last_seq and obj["seq"] != last_seq + 1:
                    why = f"seq {obj['seq']} follows {last_seq}"
                if why:
                    print(f"input BROKEN at line {n} (seq {obj.get('seq')}): {why}", file=sys.stderr)
                    raise SystemExit(EXIT_FAILED)
                vprev, last_seq = obj["hash"], obj["seq"]
            kw = {"id": obj["id"]} if isinstance(obj.get("id"), str) else {}
            normalise_given_times(typ, data, tz)
            d = Draft(typ, data, str(obj.get("source") or "input"), epoch, **kw)
            ev = seal(d, len(out) + 1, center, prev, epoch)
            prev = ev.hash
            out.append(ev)
    if counts is not None:
        counts["duplicates"] = dropped
    return out


def cmd_replay(args) -> int:
    from gateway.journal import iter_events, open_reader
    from rules.replay import replay
    if getattr(args, "replay_config", None):
        args.config = args.replay_config
    cfg, _ = get_config(args)
    if getattr(args, "input", None):
        return _replay_input(args, cfg)
    conn = open_reader(journal_path(cfg))
    evs = iter_events(conn, since_ts=ts_arg(args.since, cfg), until_ts=ts_arg(args.until, cfg))
    # After pruning, replay from the start is still the proof: archived ranges are read back.
    until = ts_arg(args.until, cfg)
    evs = (e for e in with_archive(cfg, evs, None, ts_arg(args.since, cfg)) if until is None or e.ts <= until)
    alarms = replay(evs, cfg)
    kinds, open_ids = [], set()
    for a in alarms:        # a re-sent alarm.raised of an active alarm is an update
        aid = a.data.get("alarm_id")
        kinds.append("updated" if a.type == "alarm.raised" and aid in open_ids else a.type.split(".")[1])
        if a.type == "alarm.raised":
            open_ids.add(aid)
        elif a.type == "alarm.cleared":
            open_ids.discard(aid)
    if args.json:
        emit_json([a.envelope() | {"seq": None, "prev": None, "hash": None} for a in alarms])
    else:
        table(f"{len(alarms)} alarm events from replay", ["ts", "event", "code", "room", "persons", "alarm_id"],
              [[local(a.ts, cfg), a.type.split(".")[1], a.data.get("code"), a.data.get("room"),
                ",".join(a.data.get("persons") or []), a.data.get("alarm_id")] for a in alarms])
    return EXIT_OK


def _replay_input(args, cfg) -> int:
    """SPEC §5 v2: the rule output and derived events the live daemon would have
    journaled from a file of events, under this config."""
    from rules.model import format_local, parse_ts
    from rules.replay import replay_input
    counts: dict = {}
    evs = read_event_file(args.input, cfg.center.id, verify=args.verify, tz=cfg.center.timezone, counts=counts)
    if counts.get("duplicates"):
        print(f"{args.input}: dropped {counts['duplicates']} duplicate events (an id seen before; "
              f"SPEC §3: a re-sent event keeps its id)", file=sys.stderr)
    # deadlines fire up to --until: by default the last input time; "now" = as of now
    if (args.until or "").strip().lower() == "now":
        import time as _time
        until = _time.time()
    elif args.until:
        until = parse_ts(ts_arg(args.until, cfg))
    else:
        until = max((e.epoch for e in evs), default=None)
    out = replay_input(evs, cfg, until=until)
    if args.json:
        for e in out:
            sys.stdout.write(json.dumps({"id": e.id, "ts": e.ts, "center": e.center, "type": e.type,
                                         "source": e.source, "data": e.data}, ensure_ascii=False) + "\n")
        return EXIT_OK
    tz = cfg.center.timezone
    table(f"{len(out)} events from replaying {len(evs)} input events ({args.input})",
          ["time", "event", "code", "room", "persons", "alarm_id"],
          [[format_local(e.epoch, tz), e.type, e.data.get("code"), e.data.get("room"),
            ",".join(e.data.get("persons") or ([e.data["person"]] if e.data.get("person") else [])),
            e.data.get("alarm_id")] for e in out])
    return EXIT_OK


def add_journal(sub) -> None:
    jp = sub.add_parser("journal", help="journal commands")
    jsub = jp.add_subparsers(dest="sub", metavar="<sub>", required=True)
    sp = jsub.add_parser("verify", help="check the hash chain and seq continuity")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--archive", action="store_true",
                    help="prove archive/ + journal end to end (every pruned range present and chained)")
    sp.set_defaults(fn=cmd_journal_verify)
    sp = jsub.add_parser("backup", help="online copy of the journal to FILE: SQLite backup API, 0600, verified")
    sp.add_argument("file", metavar="FILE", help="the new backup file (never overwritten; not in the storage dir)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_journal_backup)


def add_replay(sub) -> None:
    sp = verb(sub, "replay", "re-run the rules over the journal and print the alarms", cmd_replay)
    sp.add_argument("--since")
    sp.add_argument("--until", help="RFC 3339 (no offset: the center's local time); with --input deadlines "
                                    "fire up to it: default the last input time, `now` = as of now")
    sp.add_argument("--input", metavar="FILE.jsonl",
                    help="replay a file of events (envelopes or bare {ts,type,source,data}) instead of the journal")
    sp.add_argument("--config", dest="replay_config", metavar="PATH", help="the config to replay under")
    sp.add_argument("--verify", action="store_true", help="with --input: check the envelopes' seq/prev/hash")
