"""``casegate case export|verify`` and ``casegate keys show`` (SPEC §5, §8).

``case verify`` needs no config: a prosecutor runs it on a laptop.
``case export`` reads the journal (and its archive of pruned ranges) read-only,
beside a running daemon; it never writes to the journal.
"""
from __future__ import annotations

import heapq
import json
import sys
from pathlib import Path
from typing import Iterator

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_parsers(sub) -> None:
    cp = sub.add_parser("case", help="the case bundle (一案一打包): export one case, verify a bundle")
    csub = cp.add_subparsers(dest="sub", metavar="<sub>", required=True)
    sp = csub.add_parser("export", help="export one case from the journal (archive included) as a verifiable zip")
    sp.add_argument("case_id")
    sp.add_argument("--out", required=True, metavar="FILE.zip")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_case_export)
    sp = csub.add_parser("verify", help="verify a case bundle offline (no config needed)")
    sp.add_argument("bundle", metavar="FILE.zip")
    sp.add_argument("--key", metavar="PUBKEY",
                    help="the center's public key (base64 as `casegate keys show` prints it, or a file with it)")
    sp.set_defaults(fn=cmd_case_verify)
    kp = sub.add_parser("keys", help="the device key that signs the chain (SPEC §8)")
    ksub = kp.add_subparsers(dest="sub", metavar="<sub>", required=True)
    sp = ksub.add_parser("show", help="print the public key and its key_id")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_keys_show)


def _fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"casegate: {message}", file=sys.stderr)
    return code


def _config(args):
    from gateway.config import ConfigError, config_path, load_config
    path = config_path(args.config)
    try:
        return load_config(path)
    except ConfigError as e:
        raise SystemExit(_fail(str(e), EXIT_USAGE))


def cmd_keys_show(args) -> int:
    import base64

    from gateway.cli import emit_json
    from gateway.signing import key_id_of, keys_dir, read_public
    cfg = _config(args)
    raw = read_public(cfg.storage_dir)
    if raw is None:
        return _fail(f"no device key in {keys_dir(cfg.storage_dir)}/ yet: `casegate run` creates it at its "
                     f"first start")
    out = {"center": cfg.center.id, "key_id": key_id_of(raw), "public_key": base64.b64encode(raw).decode()}
    if args.json:
        emit_json(out)
    else:
        print(f"center      {out['center']}\nkey_id      {out['key_id']}\npublic_key  {out['public_key']}")
    return EXIT_OK


def journal_source(storage_dir: Path, journal_path: Path, center: str):
    """A bundle Source over a gateway's journal + archive/ (read-only)."""
    from gateway.archive import FILE_RE, archive_dir, archive_files, iter_with_archive, read_envelopes
    from gateway.bundle import REGISTRY_TYPES, Source
    from gateway.journal import EVENT_COLUMNS, iter_events, open_reader
    from gateway.signing import read_public
    conn = open_reader(journal_path)
    adir = archive_dir(storage_dir)

    def registry():
        for ev in iter_with_archive(iter_events(conn, types=REGISTRY_TYPES), adir, REGISTRY_TYPES):
            yield ev.seq, ev.type, ev.data

    def archived(from_seq: int, to_seq: int | None = None) -> Iterator[list]:
        its = [read_envelopes(p) for p in archive_files(adir) if int(FILE_RE.match(p.name).group(2)) >= from_seq
               and (to_seq is None or int(FILE_RE.match(p.name).group(1)) <= to_seq)]
        return heapq.merge(*its, key=lambda e: e["seq"]) if its else iter(())

    def has_archive(from_seq: int, to_seq: int | None = None) -> bool:
        return any(int(FILE_RE.match(p.name).group(2)) >= from_seq and (
            to_seq is None or int(FILE_RE.match(p.name).group(1)) <= to_seq) for p in archive_files(adir))

    def candidates(from_seq: int, needles: list[str], types: tuple[str, ...]) -> Iterator[tuple]:
        wanted = set(types)

        def from_archive():
            for env in archived(from_seq):
                if env["seq"] < from_seq or env.get("shed"):
                    continue
                text = json.dumps(env.get("data"), ensure_ascii=False)
                if env["type"] in wanted or any(n in text for n in needles):
                    yield (env["seq"], env["id"], env["ts"], env["center"], env["type"], env["source"],
                           env.get("data"), env["prev"], env["hash"], 0)

        def from_journal():
            # the database scans the data text (C speed); only the hits are read into Python
            cond = " OR ".join(["type IN (" + ",".join("?" * len(types)) + ")"] +
                               ["instr(data, ?) > 0"] * len(needles))
            cur = conn.execute(f"SELECT {EVENT_COLUMNS}, shed FROM events WHERE seq >= ? AND shed = 0 "
                               f"AND ({cond}) ORDER BY seq", (from_seq, *types, *needles))
            while True:
                rows = cur.fetchmany(5000)
                if not rows:
                    return
                yield from rows

        if not has_archive(from_seq):
            yield from from_journal()
            return
        last = 0
        for r in heapq.merge(from_archive(), from_journal(), key=lambda r: r[0]):
            if r[0] != last:       # archived twice, or archived and still in the journal: one row
                last = r[0]
                yield r

    def links(from_seq: int, to_seq: int) -> Iterator[tuple[int, str, str]]:
        def from_journal():
            cur = conn.execute("SELECT seq, prev, hash FROM events WHERE seq BETWEEN ? AND ? ORDER BY seq",
                               (from_seq, to_seq))
            prev_hash = None
            while True:
                rows = cur.fetchmany(20_000)
                if not rows:
                    return
                for seq, prev, h in rows:
                    if prev is None:        # elided: the row before's hash (stored wherever that row is absent)
                        if prev_hash is None:
                            got = conn.execute("SELECT hash FROM events WHERE seq = ?", (seq - 1,)).fetchone()
                            prev_hash = got[0] if got else None
                        prev = prev_hash
                    prev_hash = h
                    yield seq, prev, h

        def from_archive():
            for env in archived(from_seq, to_seq):
                if from_seq <= env["seq"] <= to_seq:
                    yield env["seq"], env["prev"], env["hash"]

        if not has_archive(from_seq, to_seq):
            yield from from_journal()
            return
        last = 0
        for r in heapq.merge(from_archive(), from_journal(), key=lambda r: r[0]):
            if r[0] != last:
                last = r[0]
                yield r

    root = storage_dir.resolve()

    def snapshot(path: str) -> bytes | None:
        try:
            p = Path(path)
            p = (p if p.is_absolute() else root / "snapshots" / p).resolve()
            if root not in p.parents or not p.is_file():
                return None
            return p.read_bytes()
        except OSError:
            return None

    return Source(center, registry, candidates, links, read_public(storage_dir), snapshot, "journal",
                  canonical_data=True), conn


def cmd_case_export(args) -> int:
    from gateway.bundle import BundleError, export_case
    from gateway.cli import emit_json
    from gateway.journal import JournalError
    cfg = _config(args)
    try:
        source, conn = journal_source(cfg.storage_dir, cfg.journal_path, cfg.center.id)
    except JournalError as e:
        return _fail(str(e))
    try:
        res = export_case(source, args.case_id, args.out, timezone_name=cfg.center.timezone,
                          center_name=cfg.center.name, room_names={r.id: r.name for r in cfg.rooms if r.name},
                          room_types={r.id: r.type for r in cfg.rooms})
    except BundleError as e:
        return _fail(str(e))
    except OSError as e:
        return _fail(f"--out {args.out}: cannot write it ({e.strerror or e})")
    finally:
        conn.close()
    return report_export(res, args.case_id, args.json, emit_json)


def report_export(res, case_id: str, as_json: bool, emit_json) -> int:
    out = {"file": str(res.path), "case": case_id, "events": res.events, "withheld": res.withheld,
           "first_seq": res.first_seq, "signed_seq": res.signed_seq, "key_id": res.key_id}
    if as_json:
        emit_json(out)
    else:
        print(f"{res.path}: {res.events} events of case {case_id}, seq {res.first_seq}..{res.signed_seq}"
              f"{f', {res.withheld} withheld (they name persons of other cases)' if res.withheld else ''}; "
              f"signed by key {res.key_id}")
    return EXIT_OK


def cmd_case_verify(args) -> int:
    from gateway.bundle import verify_bundle
    from gateway.signing import load_public_key
    key = None
    if args.key:
        text = args.key
        p = Path(text)
        try:
            if len(text) < 4096 and p.is_file():
                text = p.read_text(encoding="utf-8")
            key = load_public_key(text)
        except (OSError, ValueError) as e:
            return _fail(f"--key: {e}", EXIT_USAGE)
    if not Path(args.bundle).is_file():
        return _fail(f"{args.bundle}: no such file", EXIT_USAGE)
    res = verify_bundle(args.bundle, key)
    print(res.message)
    if res.warning:
        print(res.warning, file=sys.stderr)
    return EXIT_OK if res.ok else EXIT_FAILED
