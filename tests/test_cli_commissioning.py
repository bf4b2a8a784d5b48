"""Commissioning from the CLI through the daemon (issue 18 items 6-8): `person add|update|checkout`,
`band bind|unbind`, `face enroll`, `ack` all go over the control socket into the same request
handlers as P/request/<command>. One real daemon (MQTT disabled: the CLI must not need a broker);
every assertion reads the journal the daemon wrote.
"""
from __future__ import annotations

import json

import cv2
import pytest
from helpers.daemon import DaemonProcess, cli, write_config

from gateway.journal import iter_events, open_reader

ROOMS = """
[[rooms]]
id = "waiting-1"
type = "waiting"
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("commissioning")
    d = DaemonProcess(write_config(tmp, None, ROOMS)).start()
    yield d
    d.stop()


def journal(d: DaemonProcess, type_: str) -> list:
    conn = open_reader(d.state_dir / "journal.db")
    try:
        return list(iter_events(conn, types=[type_]))
    finally:
        conn.close()


def test_person_add_journals_person_registered_with_source_cli(daemon):
    r = cli("person", "add", "off-7", "--role", "officer", "--name", "张三", "--gender", "male",
            config=daemon.config)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "registered off-7 as officer"
    [ev] = [e for e in journal(daemon, "person.registered") if e.data["person"] == "off-7"]
    assert ev.source == "cli" and ev.data["role"] == "officer" and ev.data["name"] == "张三"


def test_person_add_twice_is_the_mqtt_conflict(daemon):
    """Re-registration in the same stay is an update (the clock keeps arrived_at); another
    role for a person inside is the MQTT command's conflict."""
    cli("person", "add", "off-8", "--role", "officer", config=daemon.config, check=True)
    r = cli("person", "add", "off-8", "--role", "officer", config=daemon.config)
    assert r.returncode == 0, r.stderr
    r = cli("person", "add", "off-8", "--role", "suspect", "--case-type", "criminal", config=daemon.config)
    assert r.returncode == 1
    assert "conflict: person off-8 is already registered as officer" in r.stderr
    assert [e.data["role"] for e in journal(daemon, "person.registered") if e.data["person"] == "off-8"] == \
        ["officer", "officer"]


def test_suspect_with_case_fields_and_json_answer(daemon):
    r = cli("person", "add", "sus-1", "--role", "suspect", "--gender", "male", "--case-id", "A-2026-1", "--case-type",
            "administrative", "--limit-h", "8", "--minor", "--json", config=daemon.config)
    assert r.returncode == 0, r.stderr
    answer = json.loads(r.stdout)
    assert answer["ok"] is True and answer["data"]["person"] == "sus-1"
    [ev] = [e for e in journal(daemon, "person.registered") if e.data["person"] == "sus-1"]
    assert ev.id == answer["data"]["event_id"]
    assert (ev.data["case_type"], ev.data["limit_h"], ev.data["minor"]) == ("administrative", 8.0, True)


def test_band_bind_unbind_and_validation(daemon):
    cli("person", "add", "off-9", "--role", "officer", config=daemon.config, check=True)
    r = cli("band", "bind", "e3af0009", "off-9", config=daemon.config)
    assert r.returncode == 0 and r.stdout.strip() == "tag E3AF0009 bound to off-9", r.stderr
    bad = cli("band", "bind", "xyz", "off-9", config=daemon.config)
    assert bad.returncode == 2 and "bad_request: tag must be 8 (wristband) or 10 (card) hex digits" in bad.stderr
    nobody = cli("band", "bind", "E3AF0010", "nobody", config=daemon.config)
    assert nobody.returncode == 1 and "not_found: no registered person nobody" in nobody.stderr
    r = cli("band", "unbind", "E3AF0009", config=daemon.config)
    assert r.returncode == 0 and "unbound from off-9" in r.stdout
    assert [e.data["tag"] for e in journal(daemon, "wristband.bound")] == ["E3AF0009"]
    assert [e.data["person"] for e in journal(daemon, "wristband.unbound")] == ["off-9"]


def test_person_checkout_needs_a_registered_approver(daemon):
    cli("person", "add", "sus-2", "--role", "suspect", "--gender", "male", "--case-type", "criminal", config=daemon.config, check=True)
    r = cli("person", "checkout", "sus-2", "--by", "ghost", config=daemon.config)
    assert r.returncode == 1 and "forbidden: a checkout needs a registered officer" in r.stderr, r.stderr
    cli("person", "add", "off-10", "--role", "officer", config=daemon.config, check=True)
    r = cli("person", "checkout", "sus-2", "--by", "off-10", config=daemon.config)
    assert r.returncode == 0, r.stderr
    assert [(e.data["person"], e.data["by"]) for e in journal(daemon, "person.checkout_approved")] == [
        ("sus-2", "off-10")]


def test_person_update_reaches_the_daemon_and_its_answer_is_shown(daemon):
    """person/update through the daemon: the MQTT command's checks (a registered officer
    as by) and its journal event; a refusal is one clean line (no traceback)."""
    cli("person", "add", "sus-3", "--role", "suspect", "--gender", "male", "--case-type", "administrative",
        config=daemon.config, check=True)
    r = cli("person", "update", "sus-3", "--by", "nobody-7", "--reason", "wrong case type",
            "--case-type", "criminal", config=daemon.config)
    assert "Traceback" not in r.stderr and r.returncode == 1
    assert r.stderr.startswith("casegate: person/update refused: forbidden"), r.stderr
    cli("person", "add", "off-7", "--role", "officer", "--approver", config=daemon.config, check=True)
    # administrative (8 h) -> criminal (12 h) lengthens the limit: an approver (DOMAIN v3)
    r = cli("person", "update", "sus-3", "--by", "off-7", "--reason", "wrong case type",
            "--case-type", "criminal", "--approved-by", "off-7", config=daemon.config)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "updated sus-3"
    assert [(e.data["person"], e.data["changes"], e.data["by"]) for e in journal(daemon, "person.updated")] == \
        [("sus-3", {"case_type": "criminal", "limit_h": 12.0}, "off-7")]


def test_ack_with_a_bad_officer_id_is_one_line(daemon):
    r = cli("ack", "lone_interrogation:0000", "--by", "bad id!", config=daemon.config)
    assert r.returncode == 2
    assert r.stderr.strip() == ("casegate: alarm/ack refused: bad_request: by: not a valid id 'bad id!' "
                                "(letters, digits, '_', '.', '-')")


def test_face_enroll_goes_through_the_daemon(daemon, tmp_path):
    from drivers.camera.simulator import astronaut_face
    photo = tmp_path / "face.png"
    ok, buf = cv2.imencode(".png", cv2.cvtColor(astronaut_face(), cv2.COLOR_RGB2BGR))
    assert ok
    photo.write_bytes(buf.tobytes())
    r = cli("face", "enroll", "nobody", str(photo), config=daemon.config)
    assert r.returncode == 1 and "not_found: no registered person nobody" in r.stderr
    assert not (daemon.state_dir / "faces").exists() or not any((daemon.state_dir / "faces").iterdir())
    cli("person", "add", "sus-4", "--role", "suspect", "--gender", "male", "--case-type", "criminal", config=daemon.config, check=True)
    r = cli("face", "enroll", "sus-4", str(photo), config=daemon.config, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("enrolled face of sus-4")
    assert [e.data["person"] for e in journal(daemon, "face.enrolled")] == ["sus-4"]
    missing = cli("face", "enroll", "sus-4", str(tmp_path / "none.png"), config=daemon.config)
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_commissioning_without_a_daemon_says_so(tmp_path):
    cfg = write_config(tmp_path, None, ROOMS)
    r = cli("person", "add", "x", "--role", "officer", config=cfg)
    assert r.returncode == 3 and "no daemon on" in r.stderr


def test_run_refuses_without_its_config_file(tmp_path):
    missing = tmp_path / "nope.toml"
    r = cli("--config", str(missing), "run", timeout=30)    # a daemon that ran instead: TimeoutExpired
    assert r.returncode == 2
    assert f"{missing}: config file not found" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "state").exists()


def test_run_with_an_uncreatable_storage_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[storage]\ndir = "{blocker}/state"\n[mqtt]\nenabled = false\n')
    r = cli("run", config=cfg, timeout=30)
    assert r.returncode == 2, r.stderr
    assert "storage.dir" in r.stderr and "cannot create it" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_daemon_that_hangs_up_is_a_clear_error(tmp_path):
    """A socket that accepts and closes (a daemon stopping): one line, exit 1, no traceback."""
    import socket
    import threading
    cfg = write_config(tmp_path, None, ROOMS)
    state = tmp_path / "state"
    state.mkdir()
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(state / "casegate.sock"))
    srv.listen(4)

    def hang_up():
        for _ in range(2):
            conn, _ = srv.accept()
            conn.recv(65536)
            conn.close()
    t = threading.Thread(target=hang_up, daemon=True)
    t.start()
    try:
        r = cli("status", config=cfg)
        assert r.returncode == 1 and "closed the connection" in r.stderr and "Traceback" not in r.stderr
        r = cli("person", "add", "x", "--role", "officer", config=cfg)
        assert r.returncode == 1 and "closed the connection" in r.stderr
    finally:
        srv.close()
