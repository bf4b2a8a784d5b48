"""Fuzz gateway.commands.parse_request with seeded random and mutated requests.

    uv run python bench/fuzz_requests.py                 # 1,000,000 inputs, seed 1
    uv run python bench/fuzz_requests.py --n 200000 --seed 7 --strict

Each input is a (command, payload) pair: a valid request of a random command, then
0-4 mutations (byte flips, truncation, splices, wrong-typed or odd-unicode values,
deep nesting, huge numbers, NaN, duplicate keys, oversize), sent to a valid, unknown
or random command. parse_request must never raise; every error code must be one of
SPEC §3's; an accepted request must carry ids inside [A-Za-z0-9_.-]. Prints inputs/s
and counts per outcome. Exit 1 if an exception escaped (or, with --strict, if an
invariant was broken). No dependencies beyond the project.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.core import RequestError  # noqa: E402
from gateway.commands import COMMANDS, norm_tag, parse_request  # noqa: E402

CODES = {"bad_request", "unknown_command", "not_found", "conflict", "forbidden"}
ID_FULL = re.compile(r"[A-Za-z0-9_.-]{1,64}")
ID_FIELDS = ("request_id", "person", "by", "locker", "case_id", "order", "camera", "visitor_kind")

# A valid request of every command: the command table's own examples.
VALID: dict[str, dict] = {name: dict(c.example) for name, c in COMMANDS.items()}

ODD_STRINGS = [
    "", " ", "\x00", "a\x00b", "\u202e", "p\u202e1", "😀", "\ud800", "\udfff", "\ud83d\ude00", "ｐ１", "\u200b",
    "e\u0301", "p\n", "\n", "\r\n", "\t", "İ", "\u2028", "a/b", "a#", "+", "../x", "x" * 65, "x" * 64, "a b",
    "${jndi:ldap://x/a}", "%s%n", "' OR 1=1 --", "<script>", "\\", "\"", "null", "true", "0", "-1", "1e999",
    "E3AF2232\n", "e3af2232", "E3AF223G", "٣", "\uffff", "\ufeff", "\x7f", "\x1b[31m",
]
ODD_VALUES = [None, True, False, 0, -1, 1, 2**31, 2**63, -(2**63), 10**30, 1.5, -0.0, 1e308, [], {}, [1], {"a": 1},
              "", "1", "yes", "true"] + ODD_STRINGS
RAW_VALUES = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"9" * 5000, b"0.0000000000000000000001",
              b"[" * 40 + b"]" * 40, b'{"a":' * 20 + b"1" + b"}" * 20, b'"\\ud800"', b'"\\u0000"', b"tru",
              b'"\\x41"', b"\xff", b"\xc0\xaf", b"\xed\xa0\x80"]
TOPIC_NOISE = ["", "/", "#", "+", "ping/", "/ping", "PING", "person", "person/register/x", "x" * 300,
               "ping\x00", "ping\n", "événement", "events/resend/../../ping", "😀"]


def dumps(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


def base_request(rng: random.Random, command: str) -> dict:
    d = {"request_id": f"r{rng.randrange(10**9)}"}
    d.update(VALID[command])
    return d


def mutate_obj(rng: random.Random, d: dict) -> dict:
    d = dict(d)
    op = rng.randrange(7)
    keys = list(d) or ["request_id"]
    k = rng.choice(keys)
    if op == 0:
        d[k] = rng.choice(ODD_VALUES)
    elif op == 1:
        d.pop(k, None)
    elif op == 2:
        d[rng.choice(keys + ["extra", "__proto__", "", "request_id"])] = rng.choice(ODD_VALUES)
    elif op == 3 and isinstance(d.get(k), str):
        s = d[k]
        i = rng.randrange(len(s) + 1)
        d[k] = s[:i] + rng.choice(ODD_STRINGS) + s[i:]
    elif op == 4:
        v = rng.choice(ODD_VALUES)
        for _ in range(rng.randrange(1, 12)):
            v = [v] if rng.random() < 0.5 else {"a": v}
        d[k] = v
    elif op == 5:
        d[k] = str(d.get(k))
    else:
        d = {kk: d[kk] for kk in rng.sample(list(d), len(d))}
    return d


def mutate_bytes(rng: random.Random, b: bytes) -> bytes:
    op = rng.randrange(8)
    n = len(b)
    if n == 0:
        return rng.choice(RAW_VALUES)
    i = rng.randrange(n)
    if op == 0:                                   # flip a bit
        return b[:i] + bytes([b[i] ^ (1 << rng.randrange(8))]) + b[i + 1:]
    if op == 1:                                   # truncate
        return b[:i]
    if op == 2:                                   # delete a span
        return b[:i] + b[i + rng.randrange(1, 9):]
    if op == 3:                                   # insert random bytes
        return b[:i] + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 6))) + b[i:]
    if op == 4:                                   # splice a raw JSON token in place of a value
        j = b.find(b":", i)
        if j < 0:
            return b + rng.choice(RAW_VALUES)
        end = min([x for x in (b.find(b",", j), b.find(b"}", j)) if x > 0] or [n])
        return b[:j + 1] + rng.choice(RAW_VALUES) + b[end:]
    if op == 5:                                   # duplicate a key (last one wins in json)
        return b[:-1] + b',"request_id":"dup","role":"king"}' if b.endswith(b"}") else b + b"}"
    if op == 6:                                   # duplicate a span
        j = min(n, i + rng.randrange(1, 32))
        return b[:j] + b[i:j] * rng.randrange(1, 4) + b[j:]
    return b" \t\r\n"[rng.randrange(4):] + b       # leading whitespace / BOM-ish noise


def make_input(rng: random.Random, max_bytes: int) -> tuple[str, bytes]:
    command = rng.choice(list(VALID))
    obj = base_request(rng, command)
    for _ in range(rng.randrange(0, 3)):
        obj = mutate_obj(rng, obj)
    payload = dumps(obj)
    for _ in range(rng.choice((0, 0, 1, 1, 2, 4))):
        payload = mutate_bytes(rng, payload)
    r = rng.random()
    if r < 0.0005:                                 # oversize
        payload = payload + b" " * (max_bytes - len(payload) + rng.randrange(1, 64))
    elif r < 0.02:                                 # pure garbage
        payload = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64)))
    t = rng.random()
    if t < 0.05:
        command = rng.choice(TOPIC_NOISE)
    elif t < 0.07:
        command = "".join(chr(rng.randrange(32, 0x3000)) for _ in range(rng.randrange(0, 12)))
    return command, payload


TAG_FULL = re.compile(r"[0-9A-F]{8}|[0-9A-F]{10}")


def check_invariants(command: str, result) -> tuple[str, str] | None:
    """(kind, detail) of a broken invariant, or None."""
    args, rid, err = result
    if err is not None:
        if err.code not in CODES:
            return "unexpected error code", repr(err.code)
        if not isinstance(err.message, str) or not err.message:
            return "error without message", ""
        if args is not None:
            return "both args and error", ""
    elif args is None:
        return "neither args nor error", ""
    if rid is not None and not ID_FULL.fullmatch(rid):
        return "returned request_id outside [A-Za-z0-9_.-]{1,64}", repr(rid)
    if args is not None:
        if command not in COMMANDS:
            return "accepted an unknown command", repr(command)
        for f in ID_FIELDS:
            v = getattr(args, f, None)
            if v is not None and not ID_FULL.fullmatch(v):
                return f"accepted {f} outside the id charset", repr(v)
        tag = getattr(args, "tag", None)
        if tag is not None:                        # handlers normalise tags with norm_tag()
            try:
                t = norm_tag(tag)
            except RequestError:
                pass
            else:
                if not TAG_FULL.fullmatch(t):
                    return "norm_tag() accepted a malformed tag", repr(tag)
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="inputs (default 1,000,000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-bytes", type=int, default=65536, help="[mqtt] max_request_bytes")
    ap.add_argument("--strict", action="store_true", help="exit 1 on invariant violations too")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    outcomes: Counter[str] = Counter()
    crashes: list[tuple[str, bytes, str]] = []
    violations: Counter[str] = Counter()
    examples: dict[str, tuple[str, bytes]] = {}
    gen_time = 0.0
    t0 = time.perf_counter()
    for i in range(args.n):
        g = time.perf_counter()
        command, payload = make_input(rng, args.max_bytes)
        gen_time += time.perf_counter() - g
        try:
            res = parse_request(command, payload, args.max_bytes)
        except Exception:
            outcomes["EXCEPTION"] += 1
            if len(crashes) < 10:
                crashes.append((command, payload[:200], traceback.format_exc(limit=4)))
            continue
        outcomes["ok" if res[2] is None else res[2].code] += 1
        v = check_invariants(command, res)
        if v is not None:
            violations[v[0]] += 1
            examples.setdefault(v[0], (command, payload[:160]))
        if (i + 1) % 200_000 == 0:
            el = time.perf_counter() - t0
            print(f"  {i + 1:>9,} inputs  {(i + 1) / el:,.0f}/s", file=sys.stderr, flush=True)
    el = time.perf_counter() - t0
    parse_el = max(1e-9, el - gen_time)
    print(f"fuzz_requests: {args.n:,} inputs, seed {args.seed}, max_bytes {args.max_bytes}")
    print(f"  wall {el:.1f} s: {args.n / el:,.0f} inputs/s end to end, "
          f"{args.n / parse_el:,.0f} inputs/s in parse_request alone")
    for k, v in sorted(outcomes.items(), key=lambda kv: -kv[1]):
        print(f"  {k:<16} {v:>10,}  {100 * v / args.n:5.1f} %")
    if violations:
        print("invariant violations:")
        for k, v in violations.most_common():
            c, p = examples[k]
            print(f"  {v:>8,}  {k}\n            e.g. command={c!r} payload={p!r}")
    else:
        print("invariants: none broken")
    for c, p, tb in crashes:
        print(f"EXCEPTION for command={c!r} payload={p!r}\n{tb}")
    if outcomes["EXCEPTION"]:
        return 1
    return 1 if (args.strict and violations) else 0


if __name__ == "__main__":
    sys.exit(main())
