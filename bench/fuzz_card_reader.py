"""Fuzz the EM4100 card-reader parser (a script, not a test).

    cd /work/main && uv run python bench/fuzz_card_reader.py [--n 1000000] [--seed 1]

Throws N seeded, randomly mutated inputs (valid frames, flipped/dropped/
inserted bytes, bad checksums, non-hex digits, missing 03, stray 02, noise)
at one long-lived CardParser in random chunk sizes, and every decoded card
through CardReaderDriver.handle_bytes' repeat filter. Checks the byte
accounting as it goes; prints inputs/s and the counters. Exit 1 on any
exception or broken invariant.
"""
from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import time
import traceback
from concurrent.futures import Future

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from drivers.card_reader.driver import CardReaderDriver  # noqa: E402
from drivers.card_reader.protocol import encode  # noqa: E402
from gateway.config import CardReaderConfig  # noqa: E402


class NullContext:
    def __init__(self):
        self.device_id, self.center_id, self.timezone, self.storage_dir = "c", "fuzz", "Asia/Shanghai", "/tmp"
        self.log = logging.getLogger("fuzz.card")
        self.swipes = 0
        self._f: Future = Future()
        self._f.set_result(None)

    def emit(self, type_, data, ts=None):
        self.swipes += 1
        return self._f

    def person_for(self, card):
        return None


def mutate(rng: random.Random, pool: list[bytes]) -> bytes:
    r = rng.random()
    data = bytearray(rng.choice(pool))
    if r < 0.3:
        return bytes(data)
    if r < 0.45:
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif r < 0.55:
        data[rng.randrange(1, 13)] = rng.choice(b"GZxyz -.:\x00\xff")          # non-hex
    elif r < 0.65:
        data[-1] = rng.choice([0x00, 0x0D, 0x02, 0x04])                      # no 03
    elif r < 0.75:
        del data[rng.randrange(1, len(data)):]                               # truncated
    elif r < 0.85:
        i = rng.randrange(len(data))
        data[i:i] = rng.choice([b"\x02", b"\r\n", rng.randbytes(rng.randint(1, 6))])
    elif r < 0.95:
        data = bytearray(rng.randbytes(rng.randint(1, 20)))                  # noise
    else:
        data[11:13] = f"{(int(data[11:13], 16) + 1) & 0xFF:02X}".encode()    # bad checksum
    return bytes(data)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="inputs (default 1,000,000)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    pool = [encode(f"{rng.getrandbits(40):010X}") for _ in range(200)] + [encode("14008EC793")]
    cfg = CardReaderConfig(id="c", driver="card_reader", port="/dev/null", room="r1", repeat_ms=1000)
    ctx = NullContext()
    drv = CardReaderDriver(cfg, ctx)
    p = drv.parser
    now = 0.0
    t0 = time.perf_counter()
    i = 0
    try:
        for i in range(a.n):
            data = mutate(rng, pool)
            now += 0.01
            if len(data) > 2 and rng.random() < 0.3:
                k = rng.randrange(1, len(data))
                drv.handle_bytes(data[:k], now, now)
                drv.handle_bytes(data[k:], now, now)
            else:
                drv.handle_bytes(data, now, now)
            if i % 1000 == 0:
                if p.bytes_fed != 14 * p.frames + p.noise_bytes + p.dropped_bytes + p.pending:
                    raise AssertionError("byte accounting broken")
                if p.pending >= 14:
                    raise AssertionError("parser buffer unbounded")
    except Exception:
        traceback.print_exc()
        print(f"FAILED after {i:,} inputs (seed {a.seed})")
        return 1
    dt = time.perf_counter() - t0
    h = drv.health
    print(f"card_reader fuzz: {a.n:,} inputs in {dt:.1f} s -> {a.n / dt:,.0f} inputs/s, "
          f"{p.bytes_fed / dt / 1e6:.1f} MB/s; 0 exceptions")
    print(f"  parser: frames={p.frames:,} bad_checksum={p.bad_checksum:,} non_hex={p.non_hex:,} "
          f"truncated={p.truncated:,} no_etx={p.no_etx:,} noise_bytes={p.noise_bytes:,} "
          f"dropped_bytes={p.dropped_bytes:,} pending={p.pending}")
    print(f"  driver: frames_ok={h.frames_ok:,} frames_bad={h.frames_bad:,} swipes={ctx.swipes:,} "
          f"repeats={h.counters.get('repeats', 0):,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
