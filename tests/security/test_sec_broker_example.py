"""The deployment broker of config/mosquitto/ (mutual TLS + passwords + the shipped ACL)
against the real daemon: (a) TLS connect and state/gateway online, (c) ACLs keep requests
of a forbidden account away from the daemon, (d) the password never leaks, (e) file modes.
"""
from __future__ import annotations

import getpass
import json
import re
import secrets
import stat
import time
import uuid

import paho.mqtt.client as mqtt
import pytest

from helpers.security import (CENTRAL_USER, GATEWAY_USER, MONITOR_USER, MOSQ_EXAMPLE, P, Client,
                         ConnectRefused, Daemon, Mosquitto, cli, free_port, json_of,
                         mosquitto_passwd_file, stays, write_daemon_config)

EXAMPLE_CONF = MOSQ_EXAMPLE / "mosquitto.conf"
EXAMPLE_ACL = MOSQ_EXAMPLE / "acl"


def conf_settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        out.setdefault(key, []).append(value.strip())
    return out


def test_example_conf_has_the_required_settings():
    s = conf_settings(EXAMPLE_CONF.read_text())
    assert s["allow_anonymous"] == ["false"]
    assert s["persistence"] == ["true"]
    assert s["max_queued_messages"] == ["0"], "the default 1000 silently drops QoS 1 messages"
    assert s["password_file"] and s["acl_file"]
    assert s["listener"] == ["8883"], "exactly one listener, the TLS one (no plain 1883)"
    assert s["require_certificate"] == ["true"] and s["certfile"] and s["keyfile"] and s["cafile"]
    assert "tlsv1" not in s.get("tls_version", ["tlsv1.2"])[0].replace("tlsv1.2", "").replace("tlsv1.3", "")
    assert int(s["max_packet_size"][0]) <= 16 * 1024 * 1024
    acl = "\n".join(l for l in EXAMPLE_ACL.read_text().splitlines() if not l.lstrip().startswith("#"))
    assert "%u" not in acl and "%c" not in acl and not re.search(r"^\s*pattern\s", acl, re.M)
    assert "topic readwrite" not in acl and "topic #" not in acl


class Site:
    """Accounts, the broker from the example files, and a gateway daemon using it."""

    def __init__(self, tmp, pki):
        self.tmp = tmp
        self.pki = pki
        self.pw = {GATEWAY_USER: "gw-" + secrets.token_urlsafe(18), CENTRAL_USER: "c-" + secrets.token_urlsafe(12),
                   MONITOR_USER: "m-" + secrets.token_urlsafe(12)}
        passwd = mosquitto_passwd_file(tmp / "passwd", self.pw)
        self.port = free_port()
        bdir = tmp / "broker"
        bdir.mkdir()
        text = EXAMPLE_CONF.read_text()
        text = (text.replace("/etc/mosquitto/certs/ca.crt", str(pki.ca))
                .replace("/etc/mosquitto/certs/server.crt", str(pki.server.cert))
                .replace("/etc/mosquitto/certs/server.key", str(pki.server.key))
                .replace("/etc/mosquitto/passwd", str(passwd))
                .replace("/etc/mosquitto/acl", str(EXAMPLE_ACL))
                .replace("/var/lib/mosquitto/", f"{bdir}/")
                .replace("log_dest syslog", "log_dest stderr"))
        text = re.sub(r"^listener 8883$", f"listener {self.port} 127.0.0.1", text, flags=re.M)
        assert f"listener {self.port} 127.0.0.1" in text
        # as root mosquitto would switch to user "mosquitto" and lose access to the tmp dir
        text += f"\nuser {getpass.getuser()}\nlog_type debug\n"
        self.broker = Mosquitto(bdir, port=self.port)
        self.broker.conf.write_text(text)
        self.broker.start()
        self.pwfile = tmp / "mqtt.password"
        self.pwfile.write_text(self.pw[GATEWAY_USER] + "\n")
        self.pwfile.chmod(0o640)
        self.config = write_daemon_config(tmp / "gw", self.port, tls=True, ca=pki.ca, cert=pki.gateway,
                                          username=GATEWAY_USER, password_file=self.pwfile)
        # DEBUG logging: whatever paho or our code logs, the password must not be in it
        self.daemon = Daemon(self.config, env={"CASEGATE_LOG_LEVEL": "DEBUG"}, umask=0o000).start()

    def client(self, user: str, topics=(), cert=None, **kw) -> Client:
        certs = {GATEWAY_USER: self.pki.gateway, CENTRAL_USER: self.pki.central, MONITOR_USER: self.pki.monitor}
        return Client(self.port, topics=topics, ca=self.pki.ca, cert=cert or certs[user], username=user,
                      password=self.pw[user], **kw)

    def close(self):
        self.daemon.stop()
        self.broker.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory, pki):
    s = Site(tmp_path_factory.mktemp("site"), pki)
    try:
        s.daemon.wait_status(lambda st: st["uplink"]["connected"], timeout=20)
        yield s
    finally:
        s.close()


# ---- (a) TLS connect, state/gateway online ------------------------------------------------
def test_gateway_connects_with_tls_and_is_online(site):
    st = site.daemon.status()
    assert st["uplink"]["connected"] is True and st["uplink"]["connects"] >= 1
    c = site.client(CENTRAL_USER, [f"{P}/state/gateway"])
    try:
        msg = c.wait_for(lambda m: m.topic == f"{P}/state/gateway", 10)
        assert msg.retain, "state/gateway is retained"
        body = json_of(msg)
        assert body["state"] == "online" and body["version"]
    finally:
        c.close()


def test_listener_is_tls_only(site):
    """A plain-text MQTT client, even with the right password, gets nothing from the port."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    c.username_pw_set(CENTRAL_USER, site.pw[CENTRAL_USER])
    got = []
    c.on_connect = lambda *a: got.append(a[3])
    try:
        c.connect("127.0.0.1", site.port, keepalive=5)
        c.loop_start()
        assert stays(lambda: not got, 1.5), f"plain MQTT got a CONNACK: {got}"
    except OSError:
        pass
    finally:
        c.loop_stop()
        c.disconnect()


def test_client_without_certificate_is_refused(site):
    """require_certificate true: the right password without a client certificate is not enough."""
    with pytest.raises(ConnectRefused):
        Client(site.port, ca=site.pki.ca, cert=None, username=CENTRAL_USER, password=site.pw[CENTRAL_USER],
               timeout=5)


def test_client_certificate_of_another_ca_is_refused(site):
    with pytest.raises(ConnectRefused):
        Client(site.port, ca=site.pki.ca, cert=site.pki.rogue_client, username=CENTRAL_USER,
               password=site.pw[CENTRAL_USER], timeout=5)


# ---- (c) ACLs ----------------------------------------------------------------------------------
def _registered(daemon) -> set[str]:
    return {e["data"]["person"] for e in daemon.events() if e["type"] == "person.registered"}


def test_forbidden_account_request_never_reaches_the_daemon(site):
    central = site.client(CENTRAL_USER, [f"{P}/response/#"])
    monitor = site.client(MONITOR_USER, [f"{P}/response/#"])
    try:
        before = site.daemon.events()
        rid = "acl-denied-" + uuid.uuid4().hex[:8]
        monitor.publish(f"{P}/request/person/register",
                        json.dumps({"request_id": rid, "person": "intruder-1", "role": "officer"}))
        # the same through the 3.1.1 path (no PUBACK reason codes there)
        m311 = site.client(MONITOR_USER, protocol=mqtt.MQTTv311)
        m311.publish(f"{P}/request/person/register",
                     json.dumps({"request_id": rid + "b", "person": "intruder-2", "role": "officer"}))
        m311.close()
        assert stays(lambda: not central.received(lambda m: rid in m.payload.decode(errors="replace")), 3.0), \
            "the daemon answered a request the ACL forbids"
        after = site.daemon.events()
        assert len(after) == len(before), [e["type"] for e in after[len(before):]]
        assert not {"intruder-1", "intruder-2"} & _registered(site.daemon)
        # the allowed account, same command: answered and journaled
        ok_rid = "acl-ok-" + uuid.uuid4().hex[:8]
        central.publish(f"{P}/request/person/register",
                        json.dumps({"request_id": ok_rid, "person": "officer-7", "role": "officer"}))
        resp = json_of(central.wait_for(lambda m: json_of(m).get("request_id") == ok_rid, 10))
        assert resp["ok"] is True, resp
        assert "officer-7" in _registered(site.daemon)
        assert cli("journal", "verify", config=site.config).returncode == 0
    finally:
        central.close()
        monitor.close()


def _forge(site, user: str, topic: str, payload: str, protocol) -> None:
    """One publish from a fresh connection: mosquitto 2.0 drops an MQTT 5 client whose
    publish it denied, so each attempt gets its own client."""
    try:
        c = site.client(user, protocol=protocol)
    except ConnectRefused:
        return
    try:
        c.publish(topic, payload, timeout=3)
    except (RuntimeError, ValueError):
        pass  # disconnected by the broker after the denial: also a refusal
    finally:
        c.close()


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311], ids=["mqtt5", "mqtt311"])
def test_acl_matrix_of_the_example(site, protocol):
    """The shipped ACL: nobody can forge what another account is responsible for."""
    central = site.client(CENTRAL_USER, [f"{P}/#"])
    gw = site.client(GATEWAY_USER, [f"{P}/#", "casegate/other-center/#"], client_id="gw-acl-observer")
    mon = site.client(MONITOR_USER, [f"{P}/#"])
    try:
        tag = uuid.uuid4().hex[:8]
        forged = [
            (CENTRAL_USER, f"{P}/events/person/registered"),   # central forging an event
            (CENTRAL_USER, f"{P}/alarms/lone_interrogation"),  # ... or an alarm
            (CENTRAL_USER, f"{P}/state/gateway"),
            (CENTRAL_USER, f"{P}/response/ping"),
            (MONITOR_USER, f"{P}/events/person/registered"),   # read-only account
            (MONITOR_USER, f"{P}/request/ping"),
            (GATEWAY_USER, f"{P}/request/ping"),               # gateway injecting requests
            (GATEWAY_USER, "casegate/other-center/events/person/registered"),  # into another center
            (GATEWAY_USER, "casegate/other-center/request/ping"),
        ]
        for i, (user, topic) in enumerate(forged):
            _forge(site, user, topic, json.dumps({"forged": tag, "i": i, "request_id": f"forged-{tag}-{i}"}),
                   protocol)
        # an allowed publish after all of them: when it has arrived, the forged ones would have too
        _forge(site, CENTRAL_USER, f"{P}/request/ping", json.dumps({"request_id": f"allowed-{tag}"}), protocol)
        gw.wait_for(lambda m: m.topic == f"{P}/request/ping" and f"allowed-{tag}".encode() in m.payload, 10)
        central.wait_for(lambda m: m.topic == f"{P}/response/ping" and f"allowed-{tag}".encode() in m.payload, 10)
        time.sleep(0.5)
        for c in (central, gw, mon):
            leaked = c.received(lambda m: b'"forged"' in m.payload and tag.encode() in m.payload)
            assert not leaked, [(m.topic, m.payload) for m in leaked]
        # the monitor reads events/state but neither requests nor responses
        assert not mon.received(lambda m: "/request/" in m.topic or "/response/" in m.topic)
        assert mon.received(lambda m: m.topic == f"{P}/state/gateway")
    finally:
        for c in (central, gw, mon):
            c.close()


# ---- (d) secrets ---------------------------------------------------------------------------------
def test_password_never_in_logs_or_cli_output(site):
    pw = site.pw[GATEWAY_USER]
    # make sure something was logged at DEBUG, so the check below is meaningful
    log = site.daemon.log()
    assert "connected to" in log, log[-2000:]
    assert pw not in log
    outputs = []
    for args in (("config", "check"), ("config", "check", "--json"), ("status",), ("status", "--json"),
                 ("events", "--json")):
        r = cli(*args, config=site.config)
        assert r.returncode in (0, 1), (args, r.stderr)
        outputs.append(r.stdout + r.stderr)
    assert json.loads(outputs[1])["ok"] is True
    for args, out in zip(("check", "check --json", "status", "status --json", "events"), outputs):
        assert pw not in out, f"password printed by casegate {args}"
    # the broker saw the account name, never the secret
    blog = site.broker.log.read_text(errors="replace")
    assert GATEWAY_USER in blog and pw not in blog


def test_config_check_reports_missing_password_file_without_contents(tmp_path, pki):
    """A readable-by-mistake secret file path in the config is echoed as a path, never read out."""
    pwfile = tmp_path / "pw"
    secret = "s3cr3t-" + secrets.token_hex(8)
    pwfile.write_text(secret)
    cfg = write_daemon_config(tmp_path, 8883, tls=True, ca=pki.ca, username="u", password_file=pwfile)
    for extra in ((), ("--json",)):
        r = cli("config", "check", *extra, config=cfg)
        assert r.returncode == 0 and secret not in r.stdout + r.stderr


# ---- (e) file modes ---------------------------------------------------------------------------------
def test_state_file_modes(site):
    """Started with umask 000: the daemon must set the modes itself."""
    state = site.daemon.state_dir
    assert stat.S_IMODE(state.stat().st_mode) == 0o700, oct(state.stat().st_mode)
    journal = state / "journal.db"
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600, oct(journal.stat().st_mode)
    for suffix in ("-wal", "-shm"):
        p = state / f"journal.db{suffix}"
        if p.exists():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, (p, oct(p.stat().st_mode))
    sock = state / "casegate.sock"
    st = sock.stat()
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)
    # nothing in the state dir is group/world writable or world readable
    for p in state.rglob("*"):
        mode = stat.S_IMODE(p.lstat().st_mode)
        assert not mode & 0o007, f"{p} is accessible to others: {oct(mode)}"
