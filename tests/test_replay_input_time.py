"""`casegate replay --input` as an auditor uses it (issue 22, SPEC §5, §3 v3), and time flags
without an offset: a real CLI subprocess on a center in Asia/Shanghai.

- a late duplicate (same id) is dropped and counted, and invents no second stay;
- deadlines after the last input line fire up to ``--until`` (default: the last input time);
- an ``arrived_at`` without offset in the file is the center's local time, as live;
- ``events --since`` without offset is the center's local time."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


from gateway.core import Core  # noqa: E402
from rules.model import Draft, parse_ts  # noqa: E402
from gateway.journal import Journal  # noqa: E402
from rules.engine import Engine  # noqa: E402
from helpers.scenario import config_dict, tag_of, to_toml  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TZ = "Asia/Shanghai"


def config_file(tmp: Path) -> Path:
    d = config_dict()
    d["center"]["timezone"] = TZ
    p = tmp / "c.toml"
    p.write_text(to_toml(d) + f'[storage]\ndir = "{tmp / "store"}"\n')
    return p


def line(eid: str, ts: str, type: str, data: dict, source: str = "api") -> str:
    return json.dumps({"id": eid, "ts": ts, "type": type, "source": source, "data": data}, ensure_ascii=False)


def suspect(pid: str, arrived_at: str) -> dict:
    return {"person": pid, "role": "suspect", "name": "", "case_type": "criminal", "arrived_at": arrived_at}


INPUT = [
    line("e1", "2026-12-06T02:00:00.000Z", "person.registered", suspect("S1", "2026-12-06T10:00:00")),
    line("e2", "2026-12-06T02:00:01.000Z", "wristband.bound", {"tag": tag_of("S1"), "person": "S1"}),
    line("e3", "2026-12-06T02:00:02.000Z", "person.registered",
         {"person": "O1", "role": "officer", "name": ""}),
    # S2: 到案 11:00 Beijing time = 03:00Z, so the 12 h limit ends 15:00Z
    line("e4", "2026-12-06T03:00:00.000Z", "person.registered", suspect("S2", "2026-12-06T11:00:00")),
    line("e5", "2026-12-06T03:30:00.000Z", "person.checkout_approved", {"person": "S1", "by": "O1"}),
    line("e6", "2026-12-06T03:30:05.000Z", "wristband.unbound", {"tag": tag_of("S1"), "person": "S1"}),
    # the uplink re-sent S1's registration late (QoS 1): same id
    line("e1", "2026-12-06T02:00:00.000Z", "person.registered", suspect("S1", "2026-12-06T10:00:00")),
    line("e7", "2026-12-06T05:00:00.000Z", "presence.entered",
         {"person": "O1", "tag": tag_of("O1"), "room": "corridor"}),
]


def replay(tmp: Path, *extra: str) -> tuple[list[dict], str]:
    inp = tmp / "in.jsonl"
    inp.write_text("\n".join(INPUT) + "\n")
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "replay", "--input", str(inp),
                        "--config", str(config_file(tmp)), "--json", *extra],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    return [json.loads(x) for x in r.stdout.splitlines() if x.strip()], r.stderr


def codes(out: list[dict], code: str) -> list[dict]:
    return [e for e in out if e["type"] == "alarm.raised" and e["data"]["code"] == code]


def test_duplicates_dropped_and_deadlines_fire_up_to_until(tmp_path):
    out, err = replay(tmp_path)
    assert "dropped 1 duplicate" in err
    assert codes(out, "consecutive_summons") == []              # no second stay invented
    assert [e["type"] for e in out].count("person.left") == 1
    assert codes(out, "detention_timeout") == []                # last input 05:00Z, due 15:00Z

    out, _ = replay(tmp_path, "--until", "2026-12-06 23:30")    # Beijing time = 15:30Z
    (timeout,) = codes(out, "detention_timeout")
    assert timeout["data"]["persons"] == ["S2"]
    assert timeout["ts"] == "2026-12-06T15:00:00.000Z"          # arrived_at read as 11:00 +08:00
    assert timeout["data"]["details"]["arrived_at"] == "2026-12-06T03:00:00.000Z"

    out, _ = replay(tmp_path, "--until", "now")                 # as of now: long past
    assert len(codes(out, "detention_timeout")) == 1


def test_events_since_without_offset_is_local_time(tmp_path):
    cfg_path = config_file(tmp_path)
    from gateway.config import load_config
    cfg = load_config(cfg_path)
    cfg.storage_dir.mkdir(parents=True)
    now = [parse_ts("2026-12-06T19:00:00Z")]                      # 03:00 Beijing, 7 Dec
    j = Journal(cfg.journal_path, "normal")
    core = Core(cfg, j, Engine(cfg), clock=lambda: now[0])
    core.rebuild()
    for t, pid in (("2026-12-06T19:00:00Z", "A"), ("2026-12-06T19:10:00Z", "B")):
        now[0] = parse_ts(t)
        core.submit(Draft("person.registered", {"person": pid, "role": "officer", "name": ""}, "test"))
        core._process(core._q.take(100, 0))
    j.close()
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(cfg_path), "events",
                        "--since", "2026-12-07 03:05", "--json"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    evs = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
    assert [e["data"]["person"] for e in evs if e["type"] == "person.registered"] == ["B"]
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(cfg_path), "events",
                        "--since", "07.12.2026"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and "Asia/Shanghai" in r.stderr
