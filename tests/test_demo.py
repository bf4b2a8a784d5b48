"""``casegate demo`` as a subprocess: it completes quickly, raises the scenario's alarms,
its journal verifies (and replays to the same alarms), every event it journals matches the
contract, and it cleans up after itself.

The tests that only read a finished demo's results share three runs, started together by one
module fixture (a demo run mostly waits on its devices: three at once take about as long as one):
``--json --no-broker --dir`` (the buffered summary, the kept journal, the contract),
``--no-broker`` in text mode (narration, the summary's text, the work dir's removal) and
``--json`` with a local broker."""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers.contract import journal_problems
from helpers.daemon import ROOT, cli

SPEED = "600"          # 10 demo minutes per wall second
# A hang guard, not a speed test (speed lives in bench/): ~20 s on an idle 2-core machine,
# over 80 s while other test workers load it.
HANG_S = 300.0
REQUIRED = {"lone_interrogation", "collusion_risk", "procedure_skipped", "evidence_unauthorized_removal",
            "belongings_forgotten"}


def _env() -> dict:
    e = dict(os.environ)
    e.pop("CASEGATE_CONFIG", None)     # the demo needs no config file
    return e


def have_mosquitto() -> bool:
    from gateway.demo import mosquitto_path
    return mosquitto_path() is not None


class DemoRun:
    """One ``casegate demo --speed 600 …`` started now; :meth:`result` waits for it (bounded)."""

    def __init__(self, *extra: str):
        self.args = [sys.executable, "-m", "gateway.cli", "demo", "--speed", SPEED, *extra]
        self.p = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  cwd=ROOT, env=_env())
        self.out = self.err = ""
        self.reader = threading.Thread(target=self._collect, daemon=True)
        self.reader.start()

    def _collect(self) -> None:
        try:
            self.out, self.err = self.p.communicate(timeout=HANG_S)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.out, self.err = self.p.communicate()
            self.err += f"\n[test] killed: still running after {HANG_S:.0f} s"

    def result(self) -> subprocess.CompletedProcess:
        self.reader.join()
        return subprocess.CompletedProcess(self.args, self.p.returncode, self.out, self.err)

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.reader.join(30)


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    """The three shared runs, started at once; each test waits only for the run it reads."""
    kept = tmp_path_factory.mktemp("demo-kept") / "demo"
    runs = {"kept": DemoRun("--json", "--no-broker", "--dir", str(kept)),
            "text": DemoRun("--no-broker")}
    if have_mosquitto():
        runs["broker"] = DemoRun("--json")
    runs["kept_dir"] = kept
    yield runs
    for r in runs.values():
        if isinstance(r, DemoRun):
            r.stop()


def check_summary(s: dict) -> None:
    assert set(s) >= {"events", "alarms_by_code", "backlog", "verify_ok", "broker"}
    assert REQUIRED <= set(s["alarms_by_code"]), s["alarms_by_code"]
    assert all(n >= 1 for n in s["alarms_by_code"].values())
    assert s["verify_ok"] is True
    assert s["events"] > 100
    assert s["missing_alarms"] == [] and s["ok"] is True


def test_demo_without_broker_runs_buffered(demos):
    r = demos["kept"].result()
    assert r.returncode == 0, r.stderr[-4000:]
    s = json.loads(r.stdout)
    check_summary(s)
    assert s["broker"]["running"] is False and s["broker"]["requests"] == "in-process"
    # nothing was delivered: everything but the final gateway.stopped waited in the backlog
    assert s["events"] - 2 <= s["backlog"] <= s["events"]
    assert "running buffered" in r.stderr or "no broker" in r.stderr


@pytest.mark.skipif(not have_mosquitto(), reason="mosquitto is not installed")
def test_demo_with_local_broker(demos):
    r = demos["broker"].result()
    assert r.returncode == 0, r.stderr[-4000:]
    s = json.loads(r.stdout)
    check_summary(s)
    b = s["broker"]
    assert b["running"] is True and b["address"].startswith("127.0.0.1:")
    assert b["requests"] == "mqtt"                    # registrations etc. were real MQTT requests
    assert s["backlog"] == 0                          # every event was PUBACKed
    raised = sum(s["alarms_by_code"].values())
    assert b["alarm_messages"] >= raised              # raised (and cleared) alarms reached the broker


def test_demo_keeps_a_journal_the_cli_can_read(demos):
    """Text output when not on a terminal; with --dir the journal stays, and replaying it
    under the config the demo wrote gives exactly the alarms the demo raised live."""
    text = demos["text"].result()
    assert text.returncode == 0, text.stderr[-4000:] + text.stdout[-4000:]
    assert "journal verify: OK" in text.stdout and "demo OK" in text.stdout
    for code in REQUIRED:
        assert code in text.stdout
    r = demos["kept"].result()
    assert r.returncode == 0, r.stderr[-4000:] + r.stdout[-4000:]
    work = demos["kept_dir"]
    cfg = work / "casegate.toml"
    assert cli("config", "check", config=cfg).returncode == 0
    assert cli("journal", "verify", config=cfg).returncode == 0
    tr = json.loads(cli("trace", "sus-liu", "--json", config=cfg).stdout)
    rooms = [x["room"] for x in tr]
    assert rooms[0] == "entrance" and rooms[-1] == "exit"
    assert rooms.index("security_check") < rooms.index("info_collection") < rooms.index("interrogation-1")
    live = [json.loads(x) for x in cli("events", "--json", "--type", "alarm.raised", "--type", "alarm.cleared",
                                       config=cfg).stdout.splitlines()]
    live = [(e["type"], e["data"]["alarm_id"]) for e in live if e["source"] == "rules"]
    replayed = [(a["type"], a["data"]["alarm_id"]) for a in json.loads(cli("replay", "--json", config=cfg).stdout)
                if a["type"] in ("alarm.raised", "alarm.cleared")]   # not escalations (rules/alarm_states.py)
    assert live and replayed == live
    # a second run into the same directory is refused rather than mixing two days
    again = cli("demo", "--dir", str(work), "--no-broker", timeout=30)
    assert again.returncode == 2 and "already holds" in again.stderr


def test_every_event_of_a_demo_day_matches_the_contract(demos):
    """Every event the demo day journaled (= published) matches docs/asyncapi.yaml
    (moved here from tests/central/test_contract.py to share the demo run)."""
    r = demos["kept"].result()
    assert r.returncode == 0, r.stderr[-3000:]
    journals = list(demos["kept_dir"].rglob("journal.db"))
    assert journals, "the demo kept no journal"
    n, types, bad = journal_problems(journals[0])
    assert n > 100 and {"presence.entered", "alarm.raised", "alarm.cleared"} <= types
    assert bad == [], "\n".join(bad[:20])


def test_demo_narrates_in_order_labels_its_shortcuts_and_says_what_it_removes(demos):
    """Text mode (not a terminal): start-up is not scaled (the first step is at 08:0x even at
    ×600), every line is stamped with when it happened and the stamps never go back, the
    demo's shortened limits are labelled, the alarm snapshot is shown, and the temporary
    work dir's removal is announced (and true)."""
    r = demos["text"].result()
    assert r.returncode == 0, r.stderr[-4000:] + r.stdout[-4000:]
    lines = r.stdout.splitlines()
    stamped = [(x[:5], x) for x in lines if len(x) > 6 and x[2] == ":" and x[5] == " " and x[6] == "["]
    first_step = next(x for _, x in stamped if "[ 1/" in x)
    assert first_step.startswith("08:0"), first_step
    minutes = [int(t[:2]) * 60 + int(t[3:]) for t, _ in stamped]
    back = [(stamped[i - 1][1], stamped[i][1]) for i in range(1, len(minutes)) if minutes[i] < minutes[i - 1] - 1]
    assert not back, back
    assert any("DEMO SETTING: administrative detention limit shortened to 1.5 h" in x for x in lines)
    if any("cam-int1" in x for x in lines) or "snapshot" in r.stdout:
        assert any("snapshot for lone_interrogation:" in x for x in lines), r.stdout[-3000:]
    gone = next(x for x in lines if x.startswith("removed the demo's work dir "))
    workdir = gone.split("removed the demo's work dir ", 1)[1].split(" ", 1)[0]
    assert workdir.startswith("/") and not Path(workdir).exists()


def test_demo_rejects_a_bad_speed():
    r = cli("demo", "--speed", "0", timeout=30)
    assert r.returncode == 2 and "--speed" in r.stderr
    r = cli("demo", "--speed", "fast", timeout=30)
    assert r.returncode == 2


def _processes_mentioning(text: str) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            if text.encode() in (p / "cmdline").read_bytes():
                out.append(int(p.name))
        except OSError:
            pass
    return out


def test_demo_cleans_up_on_ctrl_c():
    """SIGINT in the middle of the scenario: exit 130, the temporary directory is gone and
    no broker (or anything else started from it) is left running."""
    p = subprocess.Popen([sys.executable, "-m", "gateway.cli", "demo", "--speed", "60", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=_env())
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in iter(p.stderr.readline, "")], daemon=True)
    reader.start()
    workdir = None
    try:
        deadline = time.monotonic() + 75      # start-up runs in real time (not scaled) before step 1
        seen = []
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                assert p.poll() is None, "".join(seen)
                continue
            seen.append(line)
            if "workdir " in line and workdir is None:
                workdir = line.split("workdir ", 1)[1].split(" ·")[0].strip()
            if "[ 2/" in line:                      # the scenario is under way
                break
        else:
            pytest.fail("the demo did not reach step 2:\n" + "".join(seen))
        assert workdir and Path(workdir).exists()
        p.send_signal(signal.SIGINT)
        # a hang guard, not a duration: the clean-up stops the gateway, its device children and
        # the broker one after another, each with its own stop timeout, and under a loaded CI
        # machine (three demos of the module fixture beside it) it was seen past 30 s
        try:
            code = p.wait(120)
        except subprocess.TimeoutExpired:
            code = None
        if code is not None:
            reader.join(10)                 # stderr's last lines, up to its EOF
        tail = []
        while not lines.empty():
            tail.append(lines.get())
        if code is None:
            pytest.fail("the demo did not exit after SIGINT:\n" + "".join(seen[-20:] + tail))
        assert code == 130, f"exit {code} after SIGINT:\n" + "".join(seen[-20:] + tail)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    assert p.stdout.read() == ""                   # no summary after an interrupt
    assert not Path(workdir).exists()
    deadline = time.monotonic() + 5
    while _processes_mentioning(workdir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_mentioning(workdir) == []
