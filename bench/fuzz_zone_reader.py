"""Fuzz the MR7901 zone-reader parser and frame handler (a script, not a test).

    cd /work/main && uv run python bench/fuzz_zone_reader.py [--n 1000000] [--seed 1]

Throws N seeded, randomly mutated inputs (valid frames with flipped/dropped/
inserted bytes, corrupted length fields, truncations, splices, pure noise) at
one long-lived FrameParser, in random chunk sizes, and hands every frame that
survives the CRC to ZoneReaderDriver's frame handler (TLV decode, presence,
tag status, reply). Checks the byte accounting and the reply invariants as it
goes; prints inputs/s and the counters. Exit 1 on any exception or broken
invariant.
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

from drivers.zone_reader import protocol as P  # noqa: E402
from drivers.zone_reader.driver import ZoneReaderDriver  # noqa: E402
from gateway.config import ZoneReaderConfig  # noqa: E402


class NullContext:
    def __init__(self):
        self.device_id, self.center_id, self.timezone, self.storage_dir = "z", "fuzz", "Asia/Shanghai", "/tmp"
        self.log = logging.getLogger("fuzz.zone")
        self.log.disabled = True
        self.counts: dict[str, int] = {}
        self._f: Future = Future()
        self._f.set_result(None)

    def emit(self, type_, data, ts=None):
        self.counts[type_] = self.counts.get(type_, 0) + 1
        return self._f

    def person_for(self, tag):
        return None


def base_frames(rng: random.Random) -> list[bytes]:
    out = []
    devs = ["S1", "S2", "UNKNOWN", "861694034205896"]
    t6 = bytes([26, 11, 26, 12, 0, 0])
    for i in range(300):
        dev = rng.choice(devs)
        kind = rng.random()
        if kind < 0.6:
            tlvs = []
            for _ in range(rng.randint(0, 20)):
                r = rng.random()
                tid = rng.choice([0xE3AF2232, rng.getrandbits(32), rng.randrange(50)])
                if r < 0.6:
                    tlvs.append(P.tlv(rng.choice([P.TLV_TAG, P.TLV_DOOR]), P.tag_value(
                        tid, in_range=rng.random() < 0.8, stop=rng.random() < 0.05, exciter=rng.choice([0, 12, 7]),
                        low_battery=rng.random() < 0.1, sos=rng.random() < 0.1, rssi=rng.randint(-128, 127), t6=t6)))
                elif r < 0.8:
                    tlvs.append(P.tlv(P.TLV_WRISTBAND, P.wristband_value(tid, rng.randint(0, 6), rng.getrandbits(16),
                                                                         acq6=t6, recv6=t6)))
                elif r < 0.9:
                    tlvs.append(P.tlv(P.TLV_READER, P.reader_value(1, rng.randint(0, 2), tid, t6=t6)))
                else:
                    tlvs.append(P.tlv(rng.getrandbits(16), rng.randbytes(rng.randint(0, 20))))
            out.append(P.encode_frame(P.CMD_DATA, i, dev, b"".join(tlvs)))
        elif kind < 0.75:
            out.append(P.encode_frame(P.CMD_HEARTBEAT, i, dev, P.heartbeat_content(rng.getrandbits(16), 0, 0, 1, t6)))
        elif kind < 0.85:
            out.append(P.encode_frame(P.CMD_REGISTER, i, dev, P.register_content(1, rng.getrandbits(32))))
        elif kind < 0.95:
            out.append(P.encode_frame(P.CMD_LOGIN, i, dev, P.login_content(1, 0)))
        else:
            out.append(P.encode_frame(rng.getrandbits(16), i, dev, rng.randbytes(rng.randint(0, 40))))
    return out


def mutate(rng: random.Random, pool: list[bytes]) -> bytes:
    r = rng.random()
    base = rng.choice(pool)
    if r < 0.25:
        return base                                   # valid
    data = bytearray(base)
    if r < 0.45:
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif r < 0.55:
        data[2:4] = rng.choice([0, 27, 0xFFFF, P.MAX_LEN + 1, rng.getrandbits(16)]).to_bytes(2, "big")
    elif r < 0.65:
        del data[rng.randrange(2, len(data)):]        # truncated
    elif r < 0.75:
        i = rng.randrange(len(data))
        data[i:i] = rng.randbytes(rng.randint(1, 10))
    elif r < 0.85:
        other = rng.choice(pool)
        data = data[:rng.randrange(len(data))] + other[rng.randrange(len(other)):]   # splice
    elif r < 0.95:
        data = bytearray(rng.randbytes(rng.randint(1, 64)))
        if rng.random() < 0.5:
            data[0:0] = b"\x55\xaa"
    else:
        i = rng.randrange(len(data))
        del data[i:i + rng.randint(1, 5)]
    return bytes(data)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="inputs (default 1,000,000)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    pool = base_frames(rng)
    cfg = ZoneReaderConfig(id="z", driver="zone_reader", listen="127.0.0.1:0",
                           stations={"S1": "r1", "S2": "r2", "861694034205896": "r3"}, exciters={"12": "exit"},
                           presence_timeout_s=5)
    ctx = NullContext()
    drv = ZoneReaderDriver(cfg, ctx)
    parser = P.FrameParser(on_error=drv._parse_error)
    now = 1000.0
    frames = replies = 0
    t0 = time.perf_counter()
    try:
        for i in range(a.n):
            data = mutate(rng, pool)
            # split the input at random points, like TCP does
            if len(data) > 8 and rng.random() < 0.3:
                k = rng.randrange(1, len(data))
                got = parser.feed(data[:k]) + parser.feed(data[k:])
            else:
                got = parser.feed(data)
            for f in got:
                frames += 1
                f = f._replace(seq=(f.seq + i * 1000) & 0xFFFFFFFF)    # fresh seq: no duplicate short-cut
                reply = drv._handle(None, f, now, now)
                if reply is not None:
                    replies += 1
                    (r,) = P.FrameParser().feed(reply)
                    if (r.cmd, r.seq, r.dev_id) != (f.cmd | P.REPLY, f.seq, f.dev_id):
                        raise AssertionError(f"bad reply to {f}")
            if i % 1000 == 0:
                now += 1.0
                drv.tick(now, now)
                if parser.bytes_fed != parser.frame_bytes + parser.noise_bytes + parser.pending:
                    raise AssertionError("byte accounting broken")
                if parser.pending > P.MAX_LEN + 4:
                    raise AssertionError("parser buffer unbounded")
    except Exception:
        traceback.print_exc()
        print(f"FAILED after {i:,} inputs (seed {a.seed})")
        return 1
    dt = time.perf_counter() - t0
    print(f"zone_reader fuzz: {a.n:,} inputs in {dt:.1f} s -> {a.n / dt:,.0f} inputs/s, "
          f"{parser.bytes_fed / dt / 1e6:.1f} MB/s; 0 exceptions")
    print(f"  parser: frames={parser.frames:,} bad_crc={parser.bad_crc:,} bad_length={parser.bad_length:,} "
          f"truncated={parser.truncated:,} noise_bytes={parser.noise_bytes:,} pending={parser.pending}")
    h = drv.health
    print(f"  handler: frames_ok={h.frames_ok:,} replies={replies:,} counters={dict(sorted(h.counters.items()))}")
    print(f"  events: {dict(sorted(ctx.counts.items()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
