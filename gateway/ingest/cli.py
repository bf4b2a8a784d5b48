"""``casegate ingest`` command line (SPEC §5/§6). Needs no gateway config: the
central consumer runs at the province or city, not at a center."""
from __future__ import annotations

import argparse
import os
import sys


def add_parser(sub) -> argparse.ArgumentParser:
    env = os.environ.get
    sp = sub.add_parser(
        "ingest", help="central consumer: every center's events from MQTT into PostgreSQL/SQLite",
        description="Subscribe to casegate/+/events|alarms|state with a persistent session, verify each "
                    "center's hash chain, drop duplicates, repair seq gaps with events/resend, and store "
                    "every event once (SPEC §6). --status reads the database only.")
    sp.add_argument("--broker", default=env("CASEGATE_INGEST_BROKER", "mqtt://127.0.0.1:1883"),
                    help="mqtt://host:port or mqtts://host:port (user:password@ allowed; prefer --password-file)")
    sp.add_argument("--db", default=env("CASEGATE_INGEST_DB"),
                    help="postgresql://user@host/db or sqlite:///path.db (or $CASEGATE_INGEST_DB)")
    sp.add_argument("--centers", default=env("CASEGATE_INGEST_CENTERS", ""),
                    help="comma-separated center ids (default: every center)")
    sp.add_argument("--status", action="store_true", help="per center: last seq, gaps, chain state, lag")
    sp.add_argument("--json", action="store_true", help="machine-readable --status")
    sp.add_argument("--topic-prefix", default="casegate")
    sp.add_argument("--client-id", default=env("CASEGATE_INGEST_CLIENT_ID", "casegate-ingest"),
                    help="fixed: the broker keeps this session's queue while ingest is away")
    sp.add_argument("--share", metavar="GROUP", help="subscribe as $share/GROUP/... (MQTT 5 shared subscription)")
    sp.add_argument("--session-expiry-s", type=int, default=7 * 86400)
    sp.add_argument("--reorder-wait-s", type=float, default=2.0, help="wait this long before repairing a gap")
    sp.add_argument("--tail-probe-s", type=float, default=30.0,
                    help="ask a quiet center for anything after its last seq this often (0: never)")
    sp.add_argument("--keys", metavar="DIR", default=env("CASEGATE_INGEST_KEYS", ""),
                    help="pinned Ed25519 keys: one <center>.pub per center holding the base64 raw public key "
                         "(as P/state/identity publishes it); otherwise a key is pinned on first sight")
    sp.add_argument("--password-file", default="")
    sp.add_argument("--ca-file", default="")
    sp.add_argument("--cert-file", default="")
    sp.add_argument("--key-file", default="")
    sp.add_argument("--log-level", default=env("CASEGATE_LOG_LEVEL", "INFO"))
    # casegate ingest export <center> <case_id> --db URL --out FILE.zip (SPEC §8; gateway/ingest/export.py)
    sp.add_argument("export", nargs="*", metavar="export CENTER CASE_ID",
                    help="build a case bundle from the database instead of consuming")
    sp.add_argument("--out", metavar="FILE.zip", help="export: the bundle to write")
    sp.add_argument("--key", metavar="PUBKEY", help="export: the center's public key (default: its P/state/identity)")
    sp.add_argument("--timezone", default="Asia/Shanghai", help="export: the center's timezone for the report "
                    "(or give the center's config with casegate --config)")
    sp.set_defaults(fn=cmd_ingest)
    return sp


EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _fail(message: str, code: int) -> int:
    # Not gateway.cli.CliError: under `python -m gateway.cli` that module is __main__,
    # and an exception class imported from gateway.cli would not be the one it catches.
    print(f"casegate: {message}", file=sys.stderr)
    return code


def cmd_ingest(args) -> int:
    from gateway.cli import emit_json, table
    from gateway.ingest.consumer import IngestOptions, run, status
    from gateway.ingest.store import StoreError
    if args.export:
        if len(args.export) != 3 or args.export[0] != "export":
            return _fail("usage: casegate ingest export <center> <case_id> --db URL --out FILE.zip", EXIT_USAGE)
        if not args.db:
            return _fail("ingest export needs --db URL", EXIT_USAGE)
        from gateway.ingest.export import cmd_ingest_export
        return cmd_ingest_export(args, args.export[1], args.export[2])
    if not args.db:
        return _fail("ingest needs --db postgresql://user@host/db or sqlite:///path.db "
                     "(or $CASEGATE_INGEST_DB)", EXIT_USAGE)
    if args.status:
        try:
            rows = status(args.db)
        except StoreError as e:
            return _fail(str(e), EXIT_FAILED)
        if args.json:
            emit_json(rows)
        elif not rows:
            print("no center has sent anything yet")
        else:
            table("casegate ingest", ["center", "last seq", "gaps open", "missing", "chain", "signature", "lag",
                                      "duplicates", "rejected"],
                  [[r["center"], r["last_seq"], r["gaps_open"], r["missing"], r["chain"], r["signature"] or "-",
                    "-" if r["lag_s"] is None else f"{r['lag_s']:.1f} s", r["duplicates"], r["rejected"]]
                   for r in rows])
        # A broken chain, a bad signature or a changed key makes monitoring notice.
        bad = any(r["chain"] != "ok" or (r["signature"] or "").startswith("bad at")
                  or r["signature"] == "key changed" for r in rows)
        return EXIT_FAILED if bad else EXIT_OK
    from gateway.logging_setup import setup_logging
    setup_logging(args.log_level)
    opts = IngestOptions(broker=args.broker, db=args.db,
                         centers=tuple(c.strip() for c in args.centers.split(",") if c.strip()),
                         topic_prefix=args.topic_prefix, client_id=args.client_id, share=args.share,
                         session_expiry_s=args.session_expiry_s, reorder_wait_s=args.reorder_wait_s,
                         tail_probe_s=args.tail_probe_s, password_file=args.password_file,
                         ca_file=args.ca_file, cert_file=args.cert_file, key_file=args.key_file,
                         keys_dir=args.keys)
    try:
        return run(opts)
    except (StoreError, ValueError, OSError) as e:
        return _fail(str(e), EXIT_USAGE if isinstance(e, ValueError) else EXIT_FAILED)
