"""Zone-reader (RFID) benchmark (a script, not a test): prints figures.

    cd /work/main && uv run python bench/rfid.py [--records N] [--stations 50] [--tags 20]
                                                  [--report-s 1.0] [--seconds 10]

1. decode: tag records/s through the zone-reader path without sockets:
   FrameParser (stream, CRC) + ZoneReaderDriver frame handling (TLV decode,
   cc check, presence per (tag, room), tag status, reply encoding), tags
   moving between stations now and then.
2. live: a station-simulator process (``--stations`` x ``--tags``, one report
   every ``--report-s``) talks real TCP to the driver in this process; prints
   tag records/s received and the driver process's CPU seconds per second of
   wall time, normalised per 1,000 tags/s.
"""
from __future__ import annotations

import argparse
import logging
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import Future

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from drivers.zone_reader import protocol as P  # noqa: E402
from drivers.zone_reader.driver import ZoneReaderDriver  # noqa: E402
from gateway.config import ZoneReaderConfig  # noqa: E402


class NullContext:
    """A DriverContext that counts events and drops them."""

    def __init__(self):
        self.device_id = "zone"
        self.center_id = "bench"
        self.timezone = "Asia/Shanghai"
        self.storage_dir = "/tmp"
        self.log = logging.getLogger("bench.zone")
        self.counts: dict[str, int] = {}
        self._done: Future = Future()
        self._done.set_result(None)

    def emit(self, type_, data, ts=None):
        self.counts[type_] = self.counts.get(type_, 0) + 1
        return self._done

    def person_for(self, tag):
        return None


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def decode_bench(records: int, n_st: int, n_tags: int) -> None:
    stations = {f"ST{i:03d}": f"room-{i}" for i in range(n_st)}
    cfg = ZoneReaderConfig(id="zone", driver="zone_reader", listen="127.0.0.1:0", stations=stations,
                           presence_timeout_s=10)
    ctx = NullContext()
    drv = ZoneReaderDriver(cfg, ctx)
    t6 = P.now6("Asia/Shanghai")
    # one second of traffic per "round": every station reports its tags; every 10th round
    # some tags move to the next station (out-of-range at the old one)
    rounds = max(1, records // (n_st * n_tags))
    streams = []
    seq = 1
    for r in range(min(rounds, 20)):
        out = []
        for i, dev in enumerate(stations):
            tlvs = []
            for k in range(n_tags):
                tid = (i * 1000 + k) if (r // 10) % 2 == 0 or k % 4 else (((i + 1) % n_st) * 1000 + k)
                tlvs.append(P.tlv(P.TLV_TAG, P.tag_value(tid, t6=t6, sos=(r == 5 and k == 0))))
            out.append(P.encode_frame(P.CMD_DATA, seq, dev, b"".join(tlvs)))
            seq += 1
        streams.append(b"".join(out))
    parser = P.FrameParser()
    t0, c0 = time.perf_counter(), cpu()
    now = 1000.0
    n_frames = 0
    for r in range(rounds):
        data = streams[r % len(streams)]
        # frames are re-sent with fresh seqs so duplicate absorption does not short-circuit them
        for f in parser.feed(data):
            f = f._replace(seq=f.seq + r * 1_000_000)
            drv._handle(None, f, now, now)
            n_frames += 1
        now += 1.0
        drv.tick(now, now)
    dt, dc = time.perf_counter() - t0, cpu() - c0
    n = drv.health.counters.get("tag_records", 0)
    print(f"decode: {n:,} tag records in {n_frames:,} frames, {dt:.2f} s wall -> {n / dt:,.0f} records/s "
          f"({n_frames / dt:,.0f} frames/s); {dc:.2f} CPU s -> {n / dc:,.0f} records per CPU second, "
          f"{dc / (n / 1000) * 1000:.2f} ms CPU per 1,000 records")
    print(f"        events: {dict(sorted(ctx.counts.items()))}")


def live_bench(n_st: int, n_tags: int, report_s: float, seconds: float) -> None:
    stations = {f"ST{i:03d}": f"room-{i}" for i in range(n_st)}
    cfg = ZoneReaderConfig(id="zone", driver="zone_reader", listen="127.0.0.1:0", stations=stations,
                           presence_timeout_s=10, heartbeat_s=30, max_connections=max(256, n_st * 2))
    ctx = NullContext()
    drv = ZoneReaderDriver(cfg, ctx)
    drv.start()
    if not drv.listening.wait(5):
        sys.exit(f"driver could not listen: {drv.listen_error}")
    port = drv.address[1]
    child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--_stations", str(port), str(n_st),
                              str(n_tags), str(report_s), str(seconds + 3)])
    try:
        # warm-up: every station connected and reporting
        deadline = time.monotonic() + 15
        while ctx.counts.get("presence.entered", 0) < n_st * n_tags and time.monotonic() < deadline:
            time.sleep(0.05)
        if ctx.counts.get("presence.entered", 0) < n_st * n_tags:
            print(f"live: only {ctx.counts.get('presence.entered', 0)} of {n_st * n_tags} tags seen in warm-up")
        r0 = drv.health.counters.get("tag_records", 0)
        t0, c0 = time.perf_counter(), cpu()
        time.sleep(seconds)
        dt, dc = time.perf_counter() - t0, cpu() - c0
        n = drv.health.counters.get("tag_records", 0) - r0
    finally:
        child.wait(seconds + 30)
        drv.stop()
    rate = n / dt
    per_k = (dc / dt) / (rate / 1000) if rate else float("nan")
    print(f"live:   {n_st} stations x {n_tags} tags every {report_s:g} s over real TCP: {rate:,.0f} tag records/s, "
          f"driver CPU {dc / dt * 100:.1f}% of one core -> {per_k:.4f} CPU s per second per 1,000 tags/s")
    h = drv.health
    print(f"        frames ok {h.frames_ok:,}, bad {h.frames_bad}, counters "
          f"{ {k: v for k, v in h.counters.items() if k != 'tag_records'} }, "
          f"presence.left {ctx.counts.get('presence.left', 0)} (expect 0)")


def run_stations(port: int, n_st: int, n_tags: int, report_s: float, seconds: float) -> None:
    from drivers.zone_reader.simulator import ZoneSite
    site = ZoneSite("127.0.0.1", port, [f"ST{i:03d}" for i in range(n_st)], report_s=report_s,
                    reply_timeout_s=2.0, heartbeat_s=30)
    for i, d in enumerate(site.stations):
        for k in range(n_tags):
            site[d].add_tag(i * 1000 + k)
    site.start()
    time.sleep(seconds)
    lost = sum(s.stats["unanswered"] for s in site.stations.values())
    site.stop()
    if lost:
        print(f"        (simulator: {lost} requests unanswered)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--stations", type=int, default=50)
    ap.add_argument("--tags", type=int, default=20)
    ap.add_argument("--report-s", type=float, default=1.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--skip-live", action="store_true")
    ap.add_argument("--_stations", nargs=5, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._stations:
        port, n_st, n_tags, rep, secs = a._stations
        run_stations(int(port), int(n_st), int(n_tags), float(rep), float(secs))
        return
    decode_bench(a.records, a.stations, a.tags)
    if not a.skip_live:
        live_bench(a.stations, a.tags, a.report_s, a.seconds)


if __name__ == "__main__":
    main()
