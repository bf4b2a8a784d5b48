"""MQTT 5 request/response as central developers send it (SPEC §3 v2): the real
``mosquitto_rr`` client against a real daemon through a real mosquitto.

Correlation Data without a ``request_id`` is the idempotency key; it comes back
in the response's Correlation Data on the Response Topic. ``state/republish``
and the re-publishing of retained state after a reconnect."""
from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from helpers.brokers import Subscriber
from helpers.daemon import DaemonProcess, cli, write_config

PREFIX = "casegate/t-center"
RR = shutil.which("mosquitto_rr")
pytestmark = pytest.mark.skipif(RR is None, reason="mosquitto_rr (package mosquitto-clients) is not installed")


def rr(port: int, command: str, body: dict | str, correlation: str | None = None,
       response_topic: str = "central/replies/rr") -> tuple[dict, str]:
    """One request with mosquitto_rr; returns (response payload, correlation data it carried)."""
    cmd = [RR, "-h", "127.0.0.1", "-p", str(port), "-V", "5", "-q", "1", "-t", f"{PREFIX}/request/{command}",
           "-e", response_topic, "-m", body if isinstance(body, str) else json.dumps(body), "-W", "15",
           "-F", "%D\t%p"]
    if correlation is not None:
        cmd += ["-D", "publish", "correlation-data", correlation]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, f"mosquitto_rr failed: {out.stderr}"
    corr, _, payload = out.stdout.rstrip("\n").partition("\t")
    return json.loads(payload), corr


@pytest.fixture
def daemon(tmp_path, mosquitto):
    d = DaemonProcess(write_config(tmp_path, mosquitto.port)).start()
    d.wait_status(lambda st: st["uplink"]["connected"])
    yield d
    d.stop()


@pytest.fixture
def thread_daemon(tmp_path, mosquitto):
    """The uplink in the daemon's own process ([mqtt] uplink_process = false)."""
    cfg = write_config(tmp_path, mosquitto.port)
    cfg.write_text(cfg.read_text().replace("keepalive_s = 5\n", "keepalive_s = 5\nuplink_process = false\n"))
    d = DaemonProcess(cfg).start()
    d.wait_status(lambda st: st["uplink"]["connected"])
    yield d
    d.stop()


def journal_types(d: DaemonProcess, type_: str) -> list[dict]:
    r = cli("events", "--json", "--type", type_, config=d.config, check=True)
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def test_correlation_data_is_the_request_id_and_comes_back(daemon, mosquitto):
    resp, corr = rr(mosquitto.port, "ping", {}, correlation="rr-ping-1")
    assert resp["ok"] is True, resp
    assert resp["request_id"] == "rr-ping-1"
    assert corr == "rr-ping-1"
    assert "version" in resp["data"]


def test_correlation_data_with_the_uplink_in_the_daemon_process(thread_daemon, mosquitto):
    assert "process" not in thread_daemon.status()["uplink"]        # really the in-process Uplink
    resp, corr = rr(mosquitto.port, "ping", {}, correlation="rr-thread-1")
    assert resp["ok"] and resp["request_id"] == "rr-thread-1" and corr == "rr-thread-1"
    resp, _ = rr(mosquitto.port, "state/republish", {}, correlation="rr-thread-2")
    assert resp["ok"] and resp["data"]["topics"] >= 3


def test_correlation_data_makes_a_state_change_idempotent(daemon, mosquitto):
    body = {"person": "p-101", "role": "officer", "name": "王警官"}
    first, c1 = rr(mosquitto.port, "person/register", body, correlation="reg-p-101")
    again, c2 = rr(mosquitto.port, "person/register", body, correlation="reg-p-101")
    assert first["ok"] and c1 == "reg-p-101" and c2 == "reg-p-101"
    # The re-sent request got the stored answer, not a "conflict": it acted once.
    assert again == first
    assert [e["data"]["person"] for e in journal_types(daemon, "person.registered")] == ["p-101"]
    # A different key is a different request: now the person exists (as an officer).
    other, _ = rr(mosquitto.port, "person/register", dict(body, role="staff"), correlation="reg-p-101-b")
    assert other["ok"] is False and other["error"]["code"] == "conflict"


def test_binary_correlation_data_gets_a_derived_key(daemon, mosquitto):
    # mosquitto_rr sends the string as bytes; '+' and spaces are not request_id characters.
    resp, corr = rr(mosquitto.port, "ping", {}, correlation="a b+c")
    assert resp["ok"] and corr == "a b+c"
    assert resp["request_id"].startswith("cd-") and len(resp["request_id"]) == 43


def test_no_request_id_and_no_correlation_data_is_refused_with_the_fix(daemon, mosquitto):
    resp, _ = rr(mosquitto.port, "ping", {})
    assert resp["ok"] is False and resp["error"]["code"] == "bad_request"
    assert "request_id" in resp["error"]["message"] and "Correlation Data" in resp["error"]["message"]


def test_request_id_in_the_body_wins_over_correlation_data(daemon, mosquitto):
    resp, corr = rr(mosquitto.port, "ping", {"request_id": "body-1"}, correlation="corr-1")
    assert resp["request_id"] == "body-1" and corr == "corr-1"


def retained(port: int, topic: str, timeout: float = 5.0) -> dict | None:
    """The retained message on ``topic`` as a fresh subscriber gets it, or None."""
    s = Subscriber(port, [topic])
    try:
        try:
            msg = s.wait_for(lambda m: m.retain, timeout)
        except TimeoutError:
            return None
        return json.loads(msg.payload)
    finally:
        s.close()


def test_state_republish_restores_a_lost_retained_topic(daemon, mosquitto):
    assert retained(mosquitto.port, f"{PREFIX}/state/occupancy") is not None
    # Someone (an operator, a broker migration) removed the retained copy.
    subprocess.run(["mosquitto_pub", "-p", str(mosquitto.port), "-t", f"{PREFIX}/state/occupancy",
                    "-r", "-n", "-q", "1"], check=True, timeout=10)
    assert retained(mosquitto.port, f"{PREFIX}/state/occupancy", 1.0) is None
    resp, _ = rr(mosquitto.port, "state/republish", {}, correlation="rp-1")
    assert resp["ok"] and resp["data"]["topics"] >= 3, resp
    occ = retained(mosquitto.port, f"{PREFIX}/state/occupancy")
    assert occ is not None and "rooms" in occ
    # Not stored under the key: the same request re-publishes again.
    subprocess.run(["mosquitto_pub", "-p", str(mosquitto.port), "-t", f"{PREFIX}/state/alarms",
                    "-r", "-n", "-q", "1"], check=True, timeout=10)
    rr(mosquitto.port, "state/republish", {}, correlation="rp-1")
    assert retained(mosquitto.port, f"{PREFIX}/state/alarms") is not None


def test_retained_state_is_republished_after_every_reconnect(daemon, mosquitto):
    """A broker without persistence loses every retained message when it restarts:
    the gateway must put its state back as soon as it is connected again."""
    for _ in range(2):
        mosquitto.stop()
        daemon.wait_status(lambda st: not st["uplink"]["connected"])
        time.sleep(0.5)
        mosquitto.start()
        daemon.wait_status(lambda st: st["uplink"]["connected"], timeout=40)
        for suffix in ("gateway", "occupancy", "alarms"):
            got = retained(mosquitto.port, f"{PREFIX}/state/{suffix}")
            assert got is not None, f"state/{suffix} not re-published after reconnect"
        assert retained(mosquitto.port, f"{PREFIX}/state/gateway")["state"] == "online"
