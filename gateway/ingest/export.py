"""``casegate ingest export <center> <case_id> --db URL --out FILE.zip`` (SPEC §5, §8):
the case bundle from the central database, for cases whose events the gateway has
pruned. Same builder as ``casegate case export`` (gateway/bundle.py); reads the
``events`` and ``state`` tables as docs/central-schema.sql documents them."""
from __future__ import annotations

import json
import sys
from typing import Iterator

from gateway.bundle import REGISTRY_TYPES, BundleError, Source, export_case

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def central_source(store, center: str, public_key: bytes | None = None) -> Source:
    """A bundle Source over one center's events in the central database (read-only)."""
    pg = store.dialect == "postgresql"
    data_col = "data::text" if pg else "data"
    p = store.p

    def registry():
        types = ",".join([p] * len(REGISTRY_TYPES))
        for seq, typ, data in store._rows(f"SELECT seq, type, {data_col} FROM events WHERE center = {p} "
                                          f"AND type IN ({types}) ORDER BY seq", (center, *REGISTRY_TYPES)):
            yield seq, typ, json.loads(data) if isinstance(data, (str, bytes)) else data

    def stream(sql: str, args: tuple) -> Iterator[tuple]:
        cur = store.conn.cursor(name="casegate_bundle") if pg else store.conn.cursor()
        try:
            cur.execute(sql, args)
            while True:
                batch = cur.fetchmany(10_000)
                if not batch:
                    break
                yield from batch
        finally:
            cur.close()
            store.conn.commit()

    def candidates(from_seq: int, needles: list[str], types: tuple[str, ...]) -> Iterator[tuple]:
        # the database scans the data text; jsonb's text form keeps every string quoted as JSON
        find = "strpos(data::text, %s) > 0" if pg else "instr(data, ?) > 0"
        cond = " OR ".join([f"type IN ({','.join([p] * len(types))})"] + [find] * len(needles))
        yield from stream(f"SELECT seq, id, ts, center, type, source, {data_col}, prev, hash, 0 FROM events "
                          f"WHERE center = {p} AND seq >= {p} AND ({cond}) ORDER BY seq",
                          (center, from_seq, *types, *needles))

    def links(from_seq: int, to_seq: int) -> Iterator[tuple[int, str, str]]:
        yield from stream(f"SELECT seq, prev, hash FROM events WHERE center = {p} AND seq >= {p} AND seq <= {p} "
                          f"ORDER BY seq", (center, from_seq, to_seq))

    if public_key is None:
        got = store._rows(f"SELECT payload FROM state WHERE center = {p} AND topic = {p}", (center, "identity"))
        if got:
            payload = got[0][0]
            try:
                payload = json.loads(payload) if isinstance(payload, (str, bytes)) else payload
                from gateway.signing import load_public_key
                public_key = load_public_key(payload["public_key"])
            except (ValueError, KeyError, TypeError):
                public_key = None
    return Source(center, registry, candidates, links, public_key, origin="central database")


def cmd_ingest_export(args, center: str, case_id: str) -> int:
    from gateway.cli import emit_json
    from gateway.case_cli import report_export
    from gateway.ingest.store import Store, StoreError
    if not args.out:
        return _fail("ingest export needs --out FILE.zip", EXIT_USAGE)
    key = None
    if args.key:
        from gateway.signing import load_public_key
        try:
            key = load_public_key(args.key)
        except ValueError as e:
            return _fail(f"--key: {e}", EXIT_USAGE)
    tz, name, room_names, room_types = args.timezone, "", {}, {}
    if getattr(args, "config", None):             # the center's own config names its rooms
        from gateway.config import ConfigError, load_config
        try:
            cfg = load_config(args.config)
        except ConfigError as e:
            return _fail(str(e), EXIT_USAGE)
        tz, name = cfg.center.timezone, cfg.center.name
        room_names = {r.id: r.name for r in cfg.rooms if r.name}
        room_types = {r.id: r.type for r in cfg.rooms}
    try:
        store = Store.open(args.db)
    except StoreError as e:
        return _fail(str(e), EXIT_FAILED)
    try:
        res = export_case(central_source(store, center, key), case_id, args.out, timezone_name=tz,
                          center_name=name, room_names=room_names, room_types=room_types)
    except BundleError as e:
        return _fail(str(e), EXIT_FAILED)
    except OSError as e:
        return _fail(f"--out {args.out}: cannot write it ({e.strerror or e})", EXIT_FAILED)
    finally:
        store.close()
    return report_export(res, case_id, args.json, emit_json)


def _fail(message: str, code: int) -> int:
    print(f"casegate: {message}", file=sys.stderr)
    return code
