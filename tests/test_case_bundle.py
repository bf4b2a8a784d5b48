"""The case bundle (SPEC §8, issue 25): a scripted day with two cases interleaved in the
same rooms (tests/case_day.py, a real Core, journal, rules and device key), exported for
one case through the real CLI; verified; each kind of tampering detected and named; the
other case's names in no file; the same bundle from the central database after the
gateway pruned the range; report.html rendered in headless Chromium."""
from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from helpers.case_day import CASE_A, CASE_B_SECRETS, config_toml, play_day, start_core
from helpers.daemon import cli

from gateway.bundle import read_zip_member, rewrite_zip, verify_bundle
from rules.model import canonical, chain_hash
from gateway.journal import Journal, open_reader
from gateway.signing import key_id_of, load_public_key, verify_head


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    """The day, journaled and signed at stop; the config the CLI reads; the exported bundle."""
    base = tmp_path_factory.mktemp("caseday")
    state = base / "state"
    cfg, journal, core, clock = start_core(state)
    got = play_day(core, clock, state)
    core.stop()
    journal.close()
    toml = config_toml(base / "casegate.toml", state)
    out = base / "case-a.zip"
    r = cli("case", "export", CASE_A, "--out", out, "--json", config=toml)
    assert r.returncode == 0, r.stderr
    return {"base": base, "state": state, "toml": toml, "zip": out, "export": json.loads(r.stdout), "got": got}


def public_key(day) -> str:
    return (day["state"] / "keys" / "device.pub").read_text().strip()


def lines(z: Path, name: str) -> list[dict]:
    return [json.loads(x) for x in read_zip_member(z, name).decode().splitlines() if x.strip()]


def dump(envs: list[dict]) -> bytes:
    return "".join(json.dumps(e, ensure_ascii=False, separators=(",", ":")) + "\n" for e in envs).encode()


def verify_cli(z: Path, *key: str):
    return cli("case", "verify", z, *(("--key", key[0]) if key else ()))


def verify_fast(z: Path, *key: str):
    """verify_bundle in-process, shaped like the CLI's result (the CLI itself is tested above and below)."""
    from types import SimpleNamespace
    res = verify_bundle(z, load_public_key(key[0]) if key else None)
    return SimpleNamespace(returncode=0 if res.ok else 1, stdout=res.message + "\n", stderr=res.warning or "")


# ---- the device key and chain.signed -------------------------------------------------------

def test_keys_show_prints_the_key_that_signed_the_journal(day):
    r = cli("keys", "show", "--json", config=day["toml"])
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    raw = load_public_key(shown["public_key"])
    assert shown["key_id"] == key_id_of(raw) == hashlib.sha256(raw).hexdigest()[:16]
    assert (day["state"] / "keys" / "device.key").stat().st_mode & 0o777 == 0o600
    conn = open_reader(day["state"] / "journal.db")
    rows = conn.execute("SELECT seq, prev, hash, data FROM events WHERE type = 'chain.signed'").fetchall()
    last = conn.execute("SELECT MAX(seq) FROM events").fetchone()[0]
    assert rows and rows[-1][0] == last, "the stop did not sign the head"
    for seq, prev, _, data in rows:
        d = json.loads(data)
        head = conn.execute("SELECT hash FROM events WHERE seq = ?", (seq - 1,)).fetchone()[0]
        assert d["seq"] == seq - 1 and d["hash"] == head
        assert verify_head("t-center", d, raw) is None
        assert verify_head("other-center", d, raw) == "signature bad"


def test_signing_every_s_while_the_journal_advances_and_never_signs_itself(tmp_path):
    cfg, journal, core, clock = start_core(tmp_path / "state", every_s=0.05)
    try:
        from rules.model import Draft
        core.submit(Draft("door.opened", {"door": "d1", "room": "waiting-1"}, "doors", ts=clock.t)).result(10)
        deadline = time.monotonic() + 10
        while not core.journal.conn.execute("SELECT 1 FROM events WHERE type = 'chain.signed'").fetchone():
            assert time.monotonic() < deadline, "no chain.signed within 10 s at every_s = 0.05"
            core.call(lambda c: (None, [])).result(10)       # a writer round
        n = core.journal.conn.execute("SELECT COUNT(*) FROM events WHERE type = 'chain.signed'").fetchone()[0]
        core.sign_every_s = 0.0                                   # due at every round from now on
        for _ in range(20):                                       # idle rounds: nothing new to sign
            core.call(lambda c: (None, [])).result(10)
        assert core.journal.conn.execute("SELECT COUNT(*) FROM events WHERE type = 'chain.signed'"
                                         ).fetchone()[0] == n, "signatures kept the journal 'advancing'"
        assert core.call(lambda c: (c.sign_head(), [])).result(10).value is None
        core.submit(Draft("door.closed", {"door": "d1", "room": "waiting-1"}, "doors", ts=clock.t)).result(10)
        ev = core.call(lambda c: (c.sign_head() or "signed before", [])).result(10).value
        assert core.journal.conn.execute("SELECT COUNT(*) FROM events WHERE type = 'chain.signed'"
                                         ).fetchone()[0] == n + 1, ev
    finally:
        core.stop()
        journal.close()


def test_replay_ignores_chain_signed(day, tmp_path):
    """casegate replay --input of the day gives the same output with and without the signatures."""
    conn = open_reader(day["state"] / "journal.db")
    from gateway.config import parse_config
    from gateway.journal import iter_events
    from rules.replay import alarm_rows, replay, replay_input
    from helpers.case_day import config_dict
    events = list(iter_events(conn))
    assert any(e.type == "chain.signed" for e in events)
    cfg = parse_config(config_dict(tmp_path))
    unsigned = [e for e in events if e.type != "chain.signed"]
    a = list(alarm_rows(replay_input(events, cfg)))
    assert sum(1 for k in a if k[0] == "alarm.raised") > 3
    assert a == list(alarm_rows(replay_input(unsigned, cfg)))
    # and the journal replay (casegate replay) raises and clears what the live core did
    def raised_cleared(rows):
        return [r for r in rows if r[0] in ("alarm.raised", "alarm.cleared")]
    assert raised_cleared(alarm_rows(replay(events, cfg))) == raised_cleared(
        alarm_rows(e for e in events if e.source == "rules"))


# ---- export and verify ----------------------------------------------------------------------

def test_the_bundle_verifies_and_holds_the_case(day):
    z = day["zip"]
    r = verify_cli(z, public_key(day))
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.fullmatch(rf"ok: \d+ events of case {CASE_A}, seq \d+\.\.\d+, signed 2026-12-06 \d\d:\d\d:\d\d "
                        rf"\+08:00 by key [0-9a-f]{{16}}\n", r.stdout), r.stdout
    assert "warning" not in r.stderr
    own = verify_cli(z)                       # the bundle's own key: ok, with the warning to compare it
    assert own.returncode == 0 and "compare it with the key the center publishes" in own.stderr
    names = set(zipfile.ZipFile(z).namelist())
    assert {"events.jsonl", "chain.jsonl", "signatures.jsonl", "report.html", "manifest.json",
            "README.txt"} <= names and any(n.startswith("snapshots/") for n in names)
    envs = lines(z, "events.jsonl")
    persons = {e["data"].get("person") for e in envs}
    assert {"SA1", "VA1"} <= persons
    types = {e["type"] for e in envs}
    assert {"person.registered", "presence.entered", "person.rest", "alarm.raised", "alarm.acknowledged",
            "custody.ordered", "evidence.added", "recording.started", "recording.stopped", "person.left",
            "camera.snapshot"} <= types
    chain = lines(z, "chain.jsonl")
    assert [c["seq"] for c in chain] == list(range(envs[0]["seq"], chain[-1]["seq"] + 1))
    sigs = lines(z, "signatures.jsonl")
    assert sigs[-1]["seq"] == chain[-1]["seq"] and sigs[-1]["type"] == "chain.signed"
    manifest = json.loads(read_zip_member(z, "manifest.json"))
    assert manifest["case"] == CASE_A and manifest["center"] == "t-center"
    assert manifest["key_id"] == key_id_of(load_public_key(public_key(day)))
    for name, digest in manifest["files"].items():
        assert hashlib.sha256(read_zip_member(z, name)).hexdigest() == digest
    assert manifest["withheld"] >= 1 and day["export"]["withheld"] == manifest["withheld"]


def test_no_file_names_the_other_case(day):
    with zipfile.ZipFile(day["zip"]) as zf:
        for name in zf.namelist():
            text = zf.read(name).decode("utf-8", errors="replace")
            for secret in CASE_B_SECRETS:
                assert secret not in text, f"{name} contains {secret!r} of the other case"
    report = read_zip_member(day["zip"], "report.html").decode()
    withheld = json.loads(read_zip_member(day["zip"], "manifest.json"))["withheld"]
    assert f"{withheld} 条涉及其他案件人员的事件" in report


def _copy(day, tmp_path) -> Path:
    z = tmp_path / "bundle.zip"
    shutil.copy(day["zip"], z)
    return z


def _reason(r) -> tuple[int, str]:
    m = re.match(r"bad at seq (\d+): ([a-z ]+) \(", r.stdout)
    assert r.returncode == 1 and m, r.stdout + r.stderr
    return int(m.group(1)), m.group(2)


def _pick(envs, type_):
    return next(i for i, e in enumerate(envs) if e["type"] == type_)


def test_one_byte_of_data_changed_is_named(day, tmp_path):
    z = _copy(day, tmp_path)
    raw = read_zip_member(z, "events.jsonl").decode().splitlines(keepends=True)
    i = _pick([json.loads(x) for x in raw], "person.rest")
    seq = json.loads(raw[i])["seq"]
    assert '"kind":"meal"' in raw[i]
    raw[i] = raw[i].replace('"kind":"meal"', '"kind":"mean"')          # one byte
    rewrite_zip(z, {"events.jsonl": "".join(raw).encode()})
    assert _reason(verify_cli(z, public_key(day))) == (seq, "data changed")


def test_an_event_removed_is_named(day, tmp_path):
    z = _copy(day, tmp_path)
    envs = lines(z, "events.jsonl")
    i = _pick(envs, "alarm.acknowledged")
    gone = envs.pop(i)
    rewrite_zip(z, {"events.jsonl": dump(envs)})
    assert _reason(verify_fast(z, public_key(day))) == (gone["seq"], "event missing")


def test_two_events_swapped_are_named(day, tmp_path):
    z = _copy(day, tmp_path)
    envs = lines(z, "events.jsonl")
    i = _pick(envs, "presence.entered")
    envs[i], envs[i + 1] = envs[i + 1], envs[i]
    rewrite_zip(z, {"events.jsonl": dump(envs)})
    assert _reason(verify_fast(z, public_key(day))) == (min(envs[i]["seq"], envs[i + 1]["seq"]), "order")


def _rechain(z: Path, mutate, signer=None) -> int:
    """What root on the box (or anyone holding the bundle) can do without the key: change an
    event, recompute every hash and link after it, and re-sign the head - with garbage, or
    with ``sign`` (another key). Returns the first changed seq."""
    envs = {e["seq"]: e for e in lines(z, "events.jsonl")}
    sigs = {e["seq"]: e for e in lines(z, "signatures.jsonl")}
    chain = lines(z, "chain.jsonl")
    changed = mutate(envs)
    manifest = json.loads(read_zip_member(z, "manifest.json"))
    prev = chain[0]["prev"]
    out = []
    for link in chain:
        s = link["seq"]
        env = envs.get(s) or sigs.get(s)
        if s in sigs:
            env["data"] = dict(env["data"], hash=out[-1]["hash"])
            if signer is not None:
                env["data"].update(signer.sign_head(s - 1, out[-1]["hash"]))
            else:
                env["data"]["sig"] = base64.b64encode(b"x" * 64).decode()
        if env is not None and s >= changed:
            env["prev"] = prev
            env["hash"] = chain_hash(prev, canonical(env))
            h = env["hash"]
        elif s >= changed:
            h = hashlib.sha256((prev + "withheld").encode()).hexdigest()   # a withheld link: any value links
        else:
            h = link["hash"]
        out.append({"seq": s, "prev": prev, "hash": h})
        prev = h
    files = {"events.jsonl": dump([envs[s] for s in sorted(envs)]),
             "signatures.jsonl": dump([sigs[s] for s in sorted(sigs)]), "chain.jsonl": dump(out)}
    manifest["files"].update({n: hashlib.sha256(b).hexdigest() for n, b in files.items()})
    files["manifest.json"] = json.dumps(manifest).encode()
    rewrite_zip(z, files)
    return changed


def _edit_meal(envs) -> int:
    seq = next(s for s, e in envs.items() if e["type"] == "person.rest")
    envs[seq]["data"]["to"] = "2026-12-06T05:00:00.000Z"         # a longer meal than recorded
    return seq


def test_a_forged_chain_signed_is_named(day, tmp_path):
    z = _copy(day, tmp_path)
    _rechain(z, _edit_meal)
    seq, reason = _reason(verify_fast(z, public_key(day)))
    assert reason == "signature bad"
    assert seq in {e["seq"] for e in lines(z, "signatures.jsonl")}
    # and without --key too: the bundle's own key does not sign the forged head
    assert _reason(verify_fast(z))[1] == "signature bad"


def test_another_key_is_named(day, tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from gateway.signing import Signer
    other = Signer("t-center", Ed25519PrivateKey.generate())
    # the genuine bundle checked against another center's key
    z = _copy(day, tmp_path)
    assert _reason(verify_fast(z, other.public_b64))[1] == "key differs"
    # a forger with their own key: rewrites, re-signs, puts their key in the manifest
    forged = tmp_path / "forged.zip"
    shutil.copy(day["zip"], forged)
    _rechain(forged, _edit_meal, other)
    m = json.loads(read_zip_member(forged, "manifest.json"))
    m.update(key_id=other.key_id, public_key=other.public_b64)
    rewrite_zip(forged, {"manifest.json": json.dumps(m).encode()})
    own = verify_fast(forged)
    assert own.returncode == 0 and other.key_id in own.stdout and "compare it" in own.stderr
    assert _reason(verify_fast(forged, public_key(day)))[1] == "key differs"


def test_a_file_changed_outside_the_chain_fails_the_manifest(day, tmp_path):
    z = _copy(day, tmp_path)
    rewrite_zip(z, {"report.html": read_zip_member(z, "report.html").replace("张三".encode(), "某某".encode())})
    r = verify_cli(z, public_key(day))
    assert r.returncode == 1 and r.stdout.startswith("bad at the bundle: manifest (report.html"), r.stdout


def test_a_bundle_relabelled_as_another_case_fails_the_manifest(day, tmp_path):
    z = _copy(day, tmp_path)
    m = json.loads(read_zip_member(z, "manifest.json"))
    m["case"] = "C-2026-999"
    rewrite_zip(z, {"manifest.json": json.dumps(m).encode()})
    r = verify_fast(z, public_key(day))
    assert r.returncode == 1 and "no event of the bundle names case 'C-2026-999'" in r.stdout, r.stdout


def test_verify_api_on_a_good_bundle(day):
    res = verify_bundle(day["zip"], load_public_key(public_key(day)))
    assert res.ok and res.warning is None


# ---- from the central database after the gateway pruned ----------------------------------------

def _central_db(day, url: str) -> str:
    """The day's events stored as `casegate ingest` stores them (docs/central-schema.sql)."""
    from gateway.ingest.store import Store
    store = Store.open(url)
    store.migrate()
    conn = open_reader(day["state"] / "journal.db")
    from gateway.journal import iter_events
    at = "2026-12-06T06:00:00.000+00:00"
    rows = [(e.center, e.seq, e.id, e.ts, e.type, e.source, json.dumps(e.data, ensure_ascii=False), e.prev,
             e.hash, True, at) for e in iter_events(conn)]
    ident = {"center": "t-center", "key_id": day["export"]["key_id"], "public_key": public_key(day)}
    cast = "::jsonb" if store.dialect == "postgresql" else ""
    cur = store.conn.cursor()
    cur.executemany(f"INSERT INTO events (center, seq, id, ts, type, source, data, prev, hash, chain_ok, "
                    f"received_at) VALUES (?,?,?,?,?,?,?{cast},?,?,?,?)".replace("?", store.p), rows)
    cur.execute(f"INSERT INTO state (center, topic, payload, received_at) VALUES (?,?,?{cast},?)".replace(
        "?", store.p), ("t-center", "identity", json.dumps(ident), at))
    store.conn.commit()
    store.close()
    return url


def test_the_same_bundle_from_the_central_database_after_pruning(day, tmp_path):
    url = _central_db(day, f"sqlite:///{tmp_path / 'central.db'}")
    # the gateway prunes the whole day (archived), then loses the archive too
    state = tmp_path / "state"
    shutil.copytree(day["state"], state)
    j = Journal(state / "journal.db")
    j.conn.execute("UPDATE events SET delivered = 1")
    res = j.prune(time.time(), j.last_seq, state / "archive")
    j.close()
    assert res.archived > 100
    toml = config_toml(tmp_path / "casegate.toml", state)
    from_archive = tmp_path / "from-archive.zip"
    r = cli("case", "export", CASE_A, "--out", from_archive, config=toml)
    assert r.returncode == 0, r.stderr
    shutil.rmtree(state / "archive")
    gone = cli("case", "export", CASE_A, "--out", tmp_path / "gone.zip", config=toml)
    assert gone.returncode == 1 and "no person or evidence item" in gone.stderr
    central = tmp_path / "central.zip"
    r = cli("ingest", "export", "t-center", CASE_A, "--db", url, "--out", central, config=toml)
    assert r.returncode == 0, r.stderr
    assert verify_cli(central, public_key(day)).returncode == 0
    for name in ("events.jsonl", "chain.jsonl", "signatures.jsonl"):
        original = read_zip_member(day["zip"], name)
        assert read_zip_member(from_archive, name) == original, name
        assert read_zip_member(central, name) == original, name
    assert json.loads(read_zip_member(central, "manifest.json"))["public_key"] == public_key(day)


def test_the_same_bundle_from_postgresql(day, tmp_path, postgres):
    url = _central_db(day, postgres.url)
    central = tmp_path / "central.zip"
    r = cli("ingest", "export", "t-center", CASE_A, "--db", url, "--out", central, config=day["toml"])
    assert r.returncode == 0, r.stderr
    for name in ("events.jsonl", "chain.jsonl", "signatures.jsonl"):
        assert read_zip_member(central, name) == read_zip_member(day["zip"], name), name
    assert verify_fast(central, public_key(day)).returncode == 0


# ---- report.html in a real browser ------------------------------------------------------------

def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_report_renders_with_a_timeline_per_person(day, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium here (apt-get install -y chromium)")
    report = tmp_path / "report.html"
    report.write_bytes(read_zip_member(day["zip"], "report.html"))
    assert "http://" not in report.read_text().replace("http://www.w3.org/2000/svg", "")   # self-contained
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "shot.png"
    subprocess.run([browser, *flags, "--window-size=900,1600", f"--screenshot={shot}", report.as_uri()],
                   capture_output=True, timeout=90, cwd=tmp_path)
    import cv2
    img = cv2.imread(str(shot))
    assert img is not None, "no screenshot"
    assert img.std() > 20, "the screenshot is blank"
    dom = subprocess.run([browser, *flags, "--dump-dom", report.as_uri()], capture_output=True, text=True,
                         timeout=90, cwd=tmp_path).stdout
    for person, rooms in (("SA1", ("waiting-1", "interrogation-1", "interrogation-2", "exit")),
                          ("VA1", ("waiting-1",))):
        m = re.search(rf"<svg[^>]*data-person=\"{person}\".*?</svg>", dom, re.S)
        assert m, f"no timeline for {person}"
        svg = m.group(0)
        for room in rooms:
            assert f"({room})" in svg, f"{person}'s timeline lacks {room}"
        assert svg.count("<rect") >= len(rooms)
    sa1 = re.search(r"<svg[^>]*data-person=\"SA1\".*?</svg>", dom, re.S).group(0)
    assert "刑事诉讼法 第119条" in sa1 and "12 h" in sa1          # the detention clock against its limit
    assert "100%" in dom and "0%" in dom                           # recording coverage per interrogation


# ---- a real daemon: identity on MQTT, the head signed at stop ----------------------------------

def test_daemon_publishes_its_identity_and_signs_its_head_at_stop(tmp_path, mosquitto):
    from helpers.brokers import Subscriber
    from helpers.contract import problems
    from helpers.daemon import DaemonProcess, write_config
    sub = Subscriber(mosquitto.port, ["casegate/t-center/state/identity", "casegate/t-center/events/chain/#"])
    toml = write_config(tmp_path, mosquitto.port, extra="[signing]\nevery_s = 0.2\n")
    d = DaemonProcess(toml).start()
    try:
        msg = sub.wait_for(lambda m: m.topic.endswith("/state/identity"), timeout=30)
        ident = json.loads(msg.payload)
        assert problems(msg.topic, ident) == []
        shown = json.loads(cli("keys", "show", "--json", config=toml, check=True).stdout)
        assert ident == {"center": "t-center", "key_id": shown["key_id"], "public_key": shown["public_key"]}
        signed = sub.wait_for(lambda m: m.topic == "casegate/t-center/events/chain/signed", timeout=30)
        env = json.loads(signed.payload)
        assert problems(signed.topic, env) == []
        assert verify_head("t-center", env["data"], load_public_key(shown["public_key"])) is None
    finally:
        assert d.terminate() == 0
    conn = open_reader(tmp_path / "state" / "journal.db")
    last = conn.execute("SELECT seq, type, data FROM events ORDER BY seq DESC LIMIT 2").fetchall()
    assert last[0][1] == "chain.signed" and last[1][1] == "gateway.stopped"
    assert json.loads(last[0][2])["seq"] == last[1][0]
    # the signature at stop went out before the uplink stopped (central gets the signed head)
    sub.wait_for(lambda m: m.topic.endswith("/chain/signed") and json.loads(m.payload)["seq"] == last[0][0],
                 timeout=10)


def test_export_waits_for_a_signature_over_the_case(day, tmp_path):
    """An event of the case after the last chain.signed: export refuses and says what to do."""
    from gateway.bundle import BundleError, export_case
    from gateway.case_cli import journal_source
    from rules.model import Draft, seal
    state = tmp_path / "state"
    shutil.copytree(day["state"], state)
    j = Journal(state / "journal.db")
    j.append([seal(Draft("person.rest", {"person": "SA1", "kind": "rest", "from": "2026-12-06T06:00:00Z",
                                         "by": "O1"}, "test"), j.last_seq + 1, "t-center", j.last_hash, time.time())])
    j.close()
    source, conn = journal_source(state, state / "journal.db", "t-center")
    with pytest.raises(BundleError, match=r"no chain.signed covers seq \d+ yet.*every_s"):
        export_case(source, CASE_A, tmp_path / "x.zip")
    conn.close()
    assert not (tmp_path / "x.zip").exists()


def test_a_damaged_device_key_stops_run_with_how_to_fix(tmp_path):
    from helpers.daemon import write_config
    toml = write_config(tmp_path, None)
    keys = tmp_path / "state" / "keys"
    keys.mkdir(parents=True)
    (keys / "device.key").write_text("not a key\n")
    r = cli("run", config=toml, timeout=60)
    assert r.returncode == 2 and "device.key: cannot read the device key" in r.stderr \
        and "restore it from the backup" in r.stderr, r.stderr
    assert (keys / "device.key").read_text() == "not a key\n"          # never silently replaced
