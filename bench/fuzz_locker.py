"""Throw random and mutated inputs at the lock-board and UHF parsers.

    uv run python bench/fuzz_locker.py [--n 1000000] [--seed 1]

Half of the inputs are random bytes, half are valid frames (status/unlock
replies and commands, single and multi-frame inventories) mutated by bit
flips, truncation, byte insertion/deletion, duplication and splicing. Each
input is fed in random-sized chunks to both parsers (board parser in host and
board role, UHF parser + inventory decoder). Any exception escaping a parser is
a bug: the script prints the input and exits 1. Otherwise it prints inputs/s.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from drivers.locker import protocol as p  # noqa: E402


def seeds(rng: random.Random) -> list[bytes]:
    out = [p.status_command(b) for b in range(16)]
    out += [p.unlock_command(rng.randrange(16), rng.randint(1, 16)) for _ in range(32)]
    out += [p.status_reply(rng.randrange(16), rng.getrandbits(16), rng.getrandbits(16)) for _ in range(32)]
    out += [p.unlock_reply(rng.randrange(16), rng.randrange(16), rng.random() < 0.5) for _ in range(32)]
    out.append(p.inventory_command())
    for _ in range(32):
        epcs = [rng.randbytes(rng.choice((4, 8, 12, 12, 12, 16))).hex().upper() for _ in range(rng.randint(0, 30))]
        ant = rng.choice((None, 1 << rng.randrange(4)))
        out.append(b"".join(p.inventory_responses(rng.randrange(256), epcs, rng.choice((None, 1, 3, 7)), ant)))
    return out


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        if op == 0 and b:                                   # bit flip
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:                                 # truncate
            del b[rng.randrange(len(b)):]
        elif op == 2:                                       # insert random bytes
            i = rng.randint(0, len(b))
            b[i:i] = rng.randbytes(rng.randint(1, 4))
        elif op == 3 and b:                                 # delete a byte
            del b[rng.randrange(len(b))]
        elif op == 4:                                       # duplicate
            b = b + b
        elif op == 5:                                       # splice with another frame
            o = rng.choice(pool)
            b = b[:rng.randint(0, len(b))] + o[rng.randint(0, len(o)):]
        elif op == 6 and b:                                 # interesting bytes
            b[rng.randrange(len(b))] = rng.choice((0x00, 0x02, 0x03, 0x04, 0x31, 0x35, 0xFB, 0xFF))
    return bytes(b[:1024])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="number of inputs (default 1,000,000)")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    pool = seeds(rng)
    host, board, uhf = p.BoardParser("host"), p.BoardParser("board"), p.UhfParser()
    frames = decoded = 0
    t0 = time.perf_counter()
    for n in range(args.n):
        data = rng.randbytes(rng.randint(0, 64)) if n % 2 else mutate(rng, rng.choice(pool), pool)
        try:
            i = 0
            while i < len(data):
                step = rng.randint(1, 32)
                chunk = data[i:i + step]
                i += step
                frames += len(host.feed(chunk)) + len(board.feed(chunk))
                for f in uhf.feed(chunk):
                    frames += 1
                    try:
                        p.decode_inventory(f, ant_byte=bool(n & 4))
                        decoded += 1
                    except p.ProtocolError:
                        pass
            if n % 3 == 0:                 # sometimes keep the stream, sometimes start afresh
                host.flush(), board.flush(), uhf.flush()
        except Exception as e:  # noqa: BLE001 - that is the point
            print(f"FAIL (seed {seed}, input {n}): {type(e).__name__}: {e}\n  input: {data.hex()}")
            return 1
    dt = time.perf_counter() - t0
    bad = sum(host.bad.values()) + sum(board.bad.values()) + sum(uhf.bad.values())
    print(f"{args.n} inputs in {dt:.1f} s = {args.n / dt:,.0f} inputs/s (seed {seed}); "
          f"{frames} frames parsed, {decoded} inventories decoded, {bad} bad frames counted, no exception")
    return 0


if __name__ == "__main__":
    sys.exit(main())
