"""Replaying a scenario's journal (the CLI as a subprocess) and a hypothesis script of center events."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hypothesis import strategies as st

from helpers.scenario import Scenario, arrive, bind, config_dict, enter, leave, register, tag_of, to_toml

ROOT = Path(__file__).resolve().parents[2]
INT = "interrogation-1"


def replay_cli(tmp_path: Path, journal, rules: dict | None, bare: bool = False) -> list[dict]:
    """``casegate replay --input FILE --config CFG --json`` as a real subprocess."""
    cfg = tmp_path / "replay.toml"
    cfg.write_text(to_toml(config_dict(rules)))
    inp = tmp_path / "day.jsonl"
    with inp.open("w") as f:
        for e in journal:
            env = e.envelope()
            if bare:
                env = {k: env[k] for k in ("ts", "type", "source", "data")}
            f.write(json.dumps(env, ensure_ascii=False) + "\n")
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "replay", "--input", str(inp), "--config", str(cfg),
                        "--json"] + ([] if bare else ["--verify"]),
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def produced(s: Scenario) -> list[tuple]:
    """What the live run journaled besides its inputs: rule output and derived events."""
    return [(e.ts, e.type, e.data) for e in s.journal
            if e.source == "rules" or (e.type == "person.left" and e.source == "gateway")]


PEOPLE = ["S1", "S2", "S3", "O1", "O2", "ST1", "V1"]


ROLE = {"S1": "suspect", "S2": "suspect", "S3": "suspect", "O1": "officer", "O2": "officer", "ST1": "staff",
        "V1": "visitor"}


ROOMS = ["waiting-1", "waiting-2", INT, "security-1", "exit", "identification-1", "waiting-3", "toilet-1"]


def _setup():
    s = []
    for p, role, kw in [("S1", "suspect", {"case_id": "C1", "gender": "female"}),
                        ("S2", "suspect", {"case_id": "C1", "minor": True}),
                        ("S3", "suspect", {"case_id": "C2", "case_type": "administrative", "limit_h": 0.05}),
                        ("O1", "officer", {}), ("O2", "officer", {"gender": "female"}), ("ST1", "staff", {}),
                        ("V1", "visitor", {"visitor_kind": "guardian"})]:
        s += arrive(0, p, role, **kw)
    return s


step = st.one_of(
    st.tuples(st.just("enter"), st.sampled_from(PEOPLE), st.sampled_from(ROOMS)),
    st.tuples(st.just("leave"), st.sampled_from(PEOPLE), st.sampled_from(ROOMS)),
    st.tuples(st.just("status"), st.sampled_from(PEOPLE),
              st.fixed_dictionaries({"heart_rate": st.sampled_from([None, 40, 80, 150]),
                                     "battery": st.sampled_from([5, 50, 100]),
                                     "tamper": st.booleans(), "sos": st.booleans()})),
    st.tuples(st.just("door"), st.sampled_from(["door.opened", "door.closed"]), st.just("exit")),
    st.tuples(st.just("checkout"), st.sampled_from(PEOPLE), st.just("")),
    st.tuples(st.just("camera"), st.integers(0, 4), st.sampled_from([0, 100, 400])),
    st.tuples(st.sampled_from(["bind", "unbind", "left", "register"]), st.sampled_from(PEOPLE), st.just("")),
    # DOMAIN v2 (issue 13): updates during the stay, recorded rest, door passages
    st.tuples(st.just("update"), st.sampled_from(PEOPLE),
              st.sampled_from([{"case_type": "inquiry"}, {"limit_h": 24}, {"detained_at": "2026-11-26T00:00:30Z"},
                               {"vulnerable": True}, {"case_type": "administrative", "limit_h": 12}])),
    st.tuples(st.just("rest"), st.sampled_from(PEOPLE), st.sampled_from([None, "2026-11-26T00:20:00Z"])),
    st.tuples(st.just("passed"), st.sampled_from(PEOPLE), st.sampled_from(["in", "out"])),
)


def _to_events(script):
    from helpers.scenario import status
    out = []
    t = 1.0
    for (kind, a, b), dt in script:
        t += dt
        if kind == "enter":
            out.append(enter(t, a, b))
        elif kind == "leave":
            out.append(leave(t, a, b))
        elif kind == "status":
            out.append(status(t, a, **b))
        elif kind == "door":
            out.append((t, a, {"door": "exit-door", "room": b}))
        elif kind == "checkout":
            out.append((t, "person.checkout_approved", {"person": a, "by": "O1"}))
        elif kind == "bind":
            out.append(bind(t, a))
        elif kind == "unbind":
            out.append((t, "wristband.unbound", {"tag": tag_of(a), "person": a}))
        elif kind == "left":
            out.append((t, "person.left", {"person": a}))
        elif kind == "register":
            out.append(register(t, a, ROLE[a], case_id="C1" if ROLE[a] == "suspect" else None))
        elif kind == "update":
            out.append((t, "person.updated", {"person": a, "changes": b, "by": "O1", "reason": "r"}))
        elif kind == "rest":
            out.append((t, "person.rest", {"person": a, "kind": "meal", "from": "2026-11-26T00:10:00Z",
                                           "to": b, "by": "O1"}))
        elif kind == "passed":
            out.append((t, "door.passed", {"door": "side-door", "room": "corridor", "tag": tag_of(a),
                                           "person": a, "direction": b}))
        else:
            out.append((t, "camera.headcount", {"camera": "cam-int1", "room": INT, "count": a}))
            out.append((t, "camera.still", {"camera": "cam-int1", "room": INT, "seconds": b}))
    return out
