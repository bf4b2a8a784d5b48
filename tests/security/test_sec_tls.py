"""(b) The daemon refuses brokers it cannot authenticate, and says why.

Each scenario: a TLS mosquitto (password file), the real daemon, and an observer
that is allowed to see everything. A refused uplink must stay disconnected, publish
nothing (not even its Last Will: it never connected), and keep journaling locally.
"""
from __future__ import annotations

import re
import secrets
import ssl

import pytest

from helpers.security import (CENTRAL_USER, GATEWAY_USER, P, Client, Daemon, json_of, mosquitto_passwd_file,
                         stays, tls_broker, write_daemon_config)

OBSERVE_S = 4.0   # paho retries after 1 s, 2 s, ...: several attempts fit in this window


class Scenario:
    def __init__(self, tmp, pki, *, server, daemon_ca, daemon_cert=None, require_certificate=False,
                 daemon_password: str | None = None):
        self.pw = {GATEWAY_USER: "gw-" + secrets.token_urlsafe(16), CENTRAL_USER: "c-" + secrets.token_urlsafe(12)}
        passwd = mosquitto_passwd_file(tmp / "passwd", self.pw)
        self.broker = tls_broker(tmp / "broker", server, pki.ca, passwd=passwd,
                                 require_certificate=require_certificate).start()
        # The observer trusts the real CA and skips the host-name check (so it can watch
        # even the wrong-host broker); it presents a client cert in case one is required.
        self.observer = Client(self.broker.port, topics=["#"], ca=pki.ca, cert=pki.central,
                               username=CENTRAL_USER, password=self.pw[CENTRAL_USER],
                               check_hostname=False)
        self.password = daemon_password if daemon_password is not None else self.pw[GATEWAY_USER]
        pwfile = tmp / "mqtt.password"
        pwfile.write_text(self.password + "\n")
        cfg = write_daemon_config(tmp / "gw", self.broker.port, tls=True, ca=daemon_ca, cert=daemon_cert,
                                  username=GATEWAY_USER, password_file=pwfile)
        self.daemon = Daemon(cfg).start(wait=False)
        self.status: dict = {}

    def down(self) -> bool:
        self.status = self.daemon.status()
        return self.status["uplink"]["connected"] is False and self.status["uplink"]["connects"] == 0

    def assert_nothing_published(self) -> None:
        leaked = self.observer.received(lambda m: m.topic.startswith(P + "/"))
        assert not leaked, [(m.topic, m.payload[:80]) for m in leaked]

    def tls_attempts(self) -> int:
        """Failed TLS connections the broker logged (proves the daemon did try)."""
        return len(re.findall(r"Client connection from 127\.0\.0\.1 failed|OpenSSL Error|"
                              r"Socket error on client <unknown>", self.broker.log.read_text(errors="replace")))

    def close(self):
        self.daemon.stop()
        self.observer.close()
        self.broker.stop()


@pytest.fixture(scope="module")
def refusals(tmp_path_factory, pki):
    """All refusal scenarios at once (started together, observed in one window):

    rogue_ca    the daemon trusts a CA that did not sign the broker's certificate
    wrong_host  the broker's certificate is signed by the trusted CA but names another host
    no_cert     the broker requires a client certificate (require_certificate); the daemon has none
    bad_pw      TLS is fine, the password is wrong
    """
    wrong_pw = "wrong-" + secrets.token_urlsafe(12)
    specs = {
        "rogue_ca": dict(server=pki.server, daemon_ca=pki.rogue_ca, daemon_cert=pki.gateway),
        "wrong_host": dict(server=pki.wrong_host, daemon_ca=pki.ca, daemon_cert=pki.gateway),
        "no_cert": dict(server=pki.server, daemon_ca=pki.ca, require_certificate=True),
        "bad_pw": dict(server=pki.server, daemon_ca=pki.ca, daemon_cert=pki.gateway, daemon_password=wrong_pw),
    }
    out: dict[str, Scenario] = {}
    try:
        for name, kw in specs.items():
            out[name] = Scenario(tmp_path_factory.mktemp(name.replace("_", "")), pki, **kw)
        for sc in out.values():
            sc.daemon.wait_ready()
        bad = []

        def all_down():
            for name, sc in out.items():
                if not sc.down():
                    bad.append((name, sc.status["uplink"]))
                    return False
            return True
        assert stays(all_down, OBSERVE_S, step=0.5), f"uplink connected: {bad}"
        yield out
    finally:
        for sc in out.values():          # SIGTERM all first: they drain in parallel
            if sc.daemon.proc and sc.daemon.proc.poll() is None:
                sc.daemon.proc.terminate()
        for sc in out.values():
            sc.close()


@pytest.fixture
def rogue_ca(refusals):
    return refusals["rogue_ca"]


@pytest.fixture
def wrong_host(refusals):
    return refusals["wrong_host"]


@pytest.fixture
def no_cert(refusals):
    return refusals["no_cert"]


def test_untrusted_ca_refused_and_nothing_published(rogue_ca):
    rogue_ca.assert_nothing_published()
    assert rogue_ca.tls_attempts() >= 1, rogue_ca.broker.log.read_text()[-2000:]
    # journaling goes on locally: gateway.started is in the journal, waiting for a trusted broker
    assert rogue_ca.status["journal"]["events"] >= 1 and rogue_ca.status["journal"]["backlog"] >= 1


def test_wrong_host_name_refused_and_nothing_published(wrong_host):
    wrong_host.assert_nothing_published()
    assert wrong_host.tls_attempts() >= 1, wrong_host.broker.log.read_text()[-2000:]


REASON = {
    "rogue_ca": re.compile(r"certificate verify failed|CERTIFICATE_VERIFY_FAILED|unable to get local issuer|"
                           r"self.signed certificate", re.I),
    "wrong_host": re.compile(r"hostname mismatch|IP address mismatch|not valid for", re.I),
    "no_cert": re.compile(r"cert_file|client certificate|certificate required", re.I),
}


@pytest.mark.parametrize("which", ["rogue_ca", "wrong_host", "no_cert"])
def test_refusal_reason_is_logged_and_in_status(which, request):
    s = request.getfixturevalue(which)
    log = s.daemon.log()
    last_error = s.daemon.status()["uplink"]["last_error"] or ""
    assert REASON[which].search(log), f"daemon log does not say why:\n{log[-1500:]}"
    assert REASON[which].search(last_error), f"status uplink.last_error: {last_error!r}"


def test_missing_client_certificate_refused(no_cert):
    """Broker with require_certificate: a daemon without cert_file never gets in."""
    no_cert.assert_nothing_published()
    assert no_cert.tls_attempts() >= 1 or "certificate" in no_cert.broker.log.read_text(errors="replace")


def test_wrong_password_refused_reason_reported_secret_not_logged(refusals):
    s = refusals["bad_pw"]
    s.assert_nothing_published()
    last_error = s.daemon.status()["uplink"]["last_error"] or ""
    assert re.search(r"not authori[sz]ed|bad user name or password", last_error, re.I), last_error
    log = s.daemon.log()
    assert re.search(r"refused", log, re.I), log[-1500:]
    assert s.password not in log and s.pw[GATEWAY_USER] not in log
    assert s.password not in s.broker.log.read_text(errors="replace")


def test_control_right_setup_connects(tmp_path_factory, pki):
    """The same harness with the right CA connects: the refusals above are not artefacts."""
    tmp = tmp_path_factory.mktemp("good")
    s = Scenario(tmp, pki, server=pki.server, daemon_ca=pki.ca, daemon_cert=pki.gateway)
    try:
        s.daemon.wait_ready()
        s.daemon.wait_status(lambda st: st["uplink"]["connected"], timeout=15)
        msg = s.observer.wait_for(lambda m: m.topic == f"{P}/state/gateway", 10)
        assert json_of(msg)["state"] == "online"
        assert s.observer.c._ssl_context is not None and isinstance(s.observer.c._ssl_context, ssl.SSLContext)
    finally:
        s.close()
