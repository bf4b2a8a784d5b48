"""Case bundle speed (SPEC §8, issue 25): export one case from a 1,000,000-event journal
(target ≤ 5 s) and verify the bundle (target ≤ 2 s).

    uv run python bench/case_bundle.py [--events 1000000] [--case-at 0.5] [--case-hours 12] [--dir DIR]

The journal: a busy center over ~30 days - wristband telemetry, presence of many
suspects of other cases, a chain.signed every 60 s of journal time - and, from
``--case-at`` (fraction of the journal) on, one case's suspect for 12 hours. Events are
sealed and appended through gateway.journal.Journal (the real table, prev elided as
the daemon writes it), not through the rules: the figure is the bundle's, not the
rules'. Export runs as `casegate case export` does (journal_source + export_case),
verify as `casegate case verify` (verify_bundle). Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.bundle import export_case, verify_bundle  # noqa: E402
from gateway.case_cli import journal_source  # noqa: E402
from rules.model import Draft, seal  # noqa: E402
from gateway.journal import Journal  # noqa: E402
from gateway.signing import load_or_create  # noqa: E402

CENTER = "bench-center"
CASE = "C-BENCH-1"


def build(storage: Path, n: int, case_at: float, case_h: float = 12) -> int:
    j = Journal(storage / "journal.db", "normal")
    signer = load_or_create(storage, CENTER)
    t = 1_780_000_000.0
    step = 30 * 86400 / n
    case_from = int(n * case_at)
    case_to = case_from + int(case_h * 3600 / step)
    batch = []
    seq, prev = j.last_seq, j.last_hash
    next_sign = t + 60
    others = 0

    def put(d: Draft, ts: float):
        nonlocal seq, prev
        seq += 1
        ev = seal(d, seq, CENTER, prev, ts)
        prev = ev.hash
        batch.append(ev)

    i = 0
    while seq < n:
        i += 1
        t += step
        k = i % 10
        if case_from <= seq < case_to and k == 0:
            if seq - case_from < 10:
                put(Draft("person.registered", {"person": "SX", "role": "suspect", "name": "测试人",
                                                "case_id": CASE, "case_type": "criminal"}), t)
            else:
                room = "interrogation-1" if (seq // 1000) % 2 else "waiting-1"
                put(Draft("tag.status", {"tag": "0000BEEF", "person": "SX", "battery": 80, "tamper": False,
                                         "sos": False, "heart_rate": 70 + seq % 20, "room": room}, "zone"), t)
        elif k == 1 and i % 1000 == 1:
            others += 1
            put(Draft("person.registered", {"person": f"P{others}", "role": "suspect", "name": f"某人{others}",
                                            "case_id": f"C-OTHER-{others}", "case_type": "administrative"}), t)
        elif k in (2, 3):
            put(Draft("presence.entered", {"person": f"P{others}", "tag": f"{others:08X}", "room": "waiting-2"},
                      "zone"), t)
        else:
            put(Draft("tag.status", {"tag": f"{others:08X}", "person": f"P{others}", "battery": 90, "tamper": False,
                                     "sos": False, "heart_rate": 60 + i % 30}, "zone"), t)
        if t >= next_sign and seq < n:
            next_sign = t + 60
            put(Draft("chain.signed", signer.sign_head(seq, prev)), t)
        if len(batch) >= 20_000:
            j.append(batch)
            batch = []
    if batch:
        j.append(batch)
    seq, h = j.last_seq, j.last_hash
    j.append([seal(Draft("chain.signed", signer.sign_head(seq, h)), seq + 1, CENTER, h, t + 1)])
    last = j.last_seq
    j.close()
    return last


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--case-at", type=float, default=0.5, help="where the case starts, as a fraction of the journal")
    ap.add_argument("--case-hours", type=float, default=12,
                    help="how long the case's suspect stays (720 = the whole month: a chain of ~1M links)")
    ap.add_argument("--dir", help="keep the journal here (default: a temporary dir)")
    args = ap.parse_args()
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="case-bundle-bench-"))
    storage = base / "state"
    storage.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if not (storage / "journal.db").exists():
        last = build(storage, args.events, args.case_at, args.case_hours)
        print(f"built a {last:,}-event journal in {time.perf_counter() - t0:.1f} s ({base})")
    source, conn = journal_source(storage, storage / "journal.db", CENTER)
    out = base / "case.zip"
    t0, c0 = time.perf_counter(), time.process_time()
    res = export_case(source, CASE, out, timezone_name="Asia/Shanghai")
    export_s, export_cpu = time.perf_counter() - t0, time.process_time() - c0
    conn.close()
    t0, c0 = time.perf_counter(), time.process_time()
    v = verify_bundle(out)
    verify_s, verify_cpu = time.perf_counter() - t0, time.process_time() - c0
    # wall time on a shared machine includes waiting for a core; CPU time is this process's own
    print(f"export: {export_s:.2f} s wall, {export_cpu:.2f} s CPU (target <= 5 s) - {res.events:,} events of the case, chain seq "
          f"{res.first_seq:,}..{res.signed_seq:,} ({res.signed_seq - res.first_seq + 1:,} links), "
          f"{out.stat().st_size / 1e6:.1f} MB")
    print(f"verify: {verify_s:.2f} s wall, {verify_cpu:.2f} s CPU (target <= 2 s) - {v.message}")


if __name__ == "__main__":
    main()
