"""Helpers for tests/security: a throw-away PKI, a TLS/password/ACL mosquitto,
MQTT clients with credentials, and the real daemon as a subprocess.

Everything binds 127.0.0.1. Keys are EC P-256 (fast to generate).
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import queue
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from helpers import daemon as daemon_util
from helpers.brokers import Mosquitto, first_message, free_port, wait_port  # noqa: F401  (re-exported to tests/security)
from helpers.daemon import DaemonProcess

ROOT = Path(__file__).resolve().parents[2]

# The environment may set PYTHONDONTWRITEBYTECODE=1: then every CLI subprocess recompiles
# pydantic, sqlite_utils & co (~1.5 s each). Cache bytecode outside the source tree instead.
SUBPROCESS_ENV = {"PYTHONDONTWRITEBYTECODE": "",
                  "PYTHONPYCACHEPREFIX": os.path.join(tempfile.gettempdir(), f"casegate-sec-pycache-{os.getuid()}")}


def cli(*args, config: Path | None = None, timeout: float = 60, check: bool = False,
        env: dict | None = None) -> subprocess.CompletedProcess:
    """daemon_util.cli with the bytecode cache above."""
    return daemon_util.cli(*args, config=config, timeout=timeout, check=check,
                           env={**SUBPROCESS_ENV, **(env or {})})


CENTER = "demo-center"            # the center of config/mosquitto/acl
P = f"casegate/{CENTER}"
GATEWAY_USER = f"casegate-{CENTER}"
CENTRAL_USER = "central-platform"
MONITOR_USER = "monitor-demo"     # may read, may not publish anything
MOSQ_EXAMPLE = ROOT / "config" / "mosquitto"


# ---- PKI -------------------------------------------------------------------------
@dataclass
class CertPair:
    cert: Path
    key: Path


class PKI:
    """A CA, certificates it signs, and a second CA that signed nothing we use."""

    def __init__(self, dir: Path):
        from cryptography.hazmat.primitives.asymmetric import ec
        self.dir = dir
        dir.mkdir(parents=True, exist_ok=True)
        self._ec = ec
        self.ca_key, self.ca_cert, self.ca = self._make_ca("casegate test CA", "ca")
        self.rogue_key, self.rogue_cert, self.rogue_ca = self._make_ca("rogue CA", "rogue-ca")

    def _write_key(self, key, path: Path) -> None:
        from cryptography.hazmat.primitives import serialization
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
        os.chmod(path, 0o600)

    def _write_cert(self, cert, path: Path) -> None:
        from cryptography.hazmat.primitives import serialization
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def _builder(self, subject_cn: str, issuer_name, pubkey):
        from cryptography import x509
        from cryptography.x509.oid import NameOID
        now = dt.datetime.now(dt.timezone.utc)
        return (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
                .issuer_name(issuer_name)
                .public_key(pubkey)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=2)))

    def _make_ca(self, cn: str, stem: str):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.x509.oid import NameOID
        key = self._ec.generate_private_key(self._ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        b = self._builder(cn, name, key.public_key())
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                          content_commitment=False, key_encipherment=False,
                                          data_encipherment=False, key_agreement=False,
                                          encipher_only=False, decipher_only=False), critical=True)
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        cert = b.sign(key, hashes.SHA256())
        path = self.dir / f"{stem}.crt"
        self._write_cert(cert, path)
        self._write_key(key, self.dir / f"{stem}.key")
        return key, cert, path

    def issue(self, stem: str, cn: str, *, server: bool, ips=(), dns=(), rogue: bool = False) -> CertPair:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.x509.oid import ExtendedKeyUsageOID
        ca_key, ca_cert = (self.rogue_key, self.rogue_cert) if rogue else (self.ca_key, self.ca_cert)
        key = self._ec.generate_private_key(self._ec.SECP256R1())
        b = self._builder(cn, ca_cert.subject, key.public_key())
        b = b.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        b = b.add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                            critical=False)
        sans = [x509.IPAddress(ipaddress.ip_address(i)) for i in ips] + [x509.DNSName(d) for d in dns]
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        pair = CertPair(self.dir / f"{stem}.crt", self.dir / f"{stem}.key")
        self._write_cert(cert, pair.cert)
        self._write_key(key, pair.key)
        return pair


# ---- broker ----------------------------------------------------------------------
def mosquitto_passwd_file(path: Path, accounts: dict[str, str]) -> Path:
    exe = shutil.which("mosquitto_passwd")
    if not exe:
        pytest.skip("mosquitto_passwd not installed (apt-get install mosquitto-clients / mosquitto): "
                    "password tests need mosquitto's PBKDF2 hash format")
    first = True
    for user, pw in accounts.items():
        args = [exe, "-b"] + (["-c"] if first else []) + [str(path), user, pw]
        subprocess.run(args, check=True, capture_output=True, timeout=20)
        first = False
    os.chmod(path, 0o600)
    return path


def tls_broker(workdir: Path, server: CertPair, ca: Path, *, passwd: Path | None = None,
               acl: Path | None = None, require_certificate: bool = False) -> "Mosquitto":
    """The conftest Mosquitto, its listener turned into TLS (+ password file, ACL)."""
    workdir.mkdir(parents=True, exist_ok=True)
    extra = (f"cafile {ca}\ncertfile {server.cert}\nkeyfile {server.key}\n"
             "tls_version tlsv1.2\n"
             f"require_certificate {'true' if require_certificate else 'false'}\n"
             "log_type all\nconnection_messages true\n")
    if passwd is not None:
        extra += f"allow_anonymous false\npassword_file {passwd}\n"
    if acl is not None:
        extra += f"acl_file {acl}\n"
    return Mosquitto(workdir, extra_conf=extra)


# ---- MQTT clients ------------------------------------------------------------------
class ConnectRefused(Exception):
    pass


class Client:
    """A paho client (TLS and credentials optional) that records messages."""

    def __init__(self, port: int, *, topics=(), ca: Path | None = None, cert: CertPair | None = None,
                 username: str | None = None, password: str | None = None,
                 protocol=mqtt.MQTTv5, client_id: str = "", timeout: float = 10.0,
                 check_hostname: bool = True):
        self.messages: "queue.Queue[mqtt.MQTTMessage]" = queue.Queue()
        self.all: list[mqtt.MQTTMessage] = []
        self.acks: dict[int, object] = {}
        self._lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
        if username is not None:
            self.c.username_pw_set(username, password)
        if ca is not None:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
            ctx.check_hostname = check_hostname   # the chain is verified either way
            if cert is not None:
                ctx.load_cert_chain(str(cert.cert), str(cert.key))
            self.c.tls_set_context(ctx)
        self.topics = list(topics)
        self._connack = threading.Event()
        self.reason = None
        self.disconnects = 0        # counted: paho reconnects by itself, so is_connected() can flip back fast

        def on_connect(c, u, f, rc, p=None):
            self.reason = rc
            if not rc.is_failure:
                for t in self.topics:
                    c.subscribe(t, qos=1)
            self._connack.set()

        def on_message(c, u, msg):
            with self._lock:
                self.all.append(msg)
            self.messages.put(msg)

        def on_publish(c, u, mid, rc=None, props=None):
            with self._lock:
                self.acks[mid] = rc

        def on_disconnect(c, u, flags, rc, p=None):
            self.disconnects += 1
            if not self._connack.is_set():      # dropped before CONNACK (e.g. TLS client auth failed)
                self.reason = rc
                self._connack.set()

        self.c.on_connect = on_connect
        self.c.on_disconnect = on_disconnect
        self.c.on_message = on_message
        self.c.on_publish = on_publish
        try:
            self.c.connect("127.0.0.1", port, keepalive=10)
        except (OSError, ssl.SSLError) as e:
            raise ConnectRefused(f"connect failed: {e}") from e
        self.c.loop_start()
        if not self._connack.wait(timeout):
            self.close()
            raise ConnectRefused("no CONNACK")
        if self.reason is None or getattr(self.reason, "is_failure", True) or not self.c.is_connected():
            self.close()
            raise ConnectRefused(f"refused: {self.reason}")
        if self.topics:
            time.sleep(0.3)  # SUBACKs

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, props=None, retain=False,
                timeout: float = 10):
        info = self.c.publish(topic, payload, qos=qos, properties=props, retain=retain)
        info.wait_for_publish(timeout)
        return info

    def drain(self) -> None:
        while True:
            try:
                self.messages.get_nowait()
            except queue.Empty:
                return

    def wait_for(self, pred, timeout: float = 10.0):
        return first_message(self.messages, pred, timeout)

    def received(self, pred) -> list:
        with self._lock:
            return [m for m in self.all if pred(m)]

    def close(self) -> None:
        try:
            self.c.disconnect()
            self.c.loop_stop()
        except Exception:
            pass


def json_of(msg) -> dict:
    return json.loads(msg.payload)


# ---- the daemon -------------------------------------------------------------------------
def write_daemon_config(dir: Path, port: int, *, tls: bool = False, ca: Path | None = None,
                        cert: CertPair | None = None, username: str = "", password_file: Path | None = None,
                        center: str = CENTER, extra_mqtt: str = "") -> Path:
    dir.mkdir(parents=True, exist_ok=True)
    lines = [f'[center]\nid = "{center}"\n', f'[storage]\ndir = "{dir / "state"}"\nsynchronous = "normal"\n',
             "[mqtt]", 'host = "127.0.0.1"', f"port = {port}", "keepalive_s = 5"]
    if tls:
        lines.append("tls = true")
    if ca is not None:
        lines.append(f'ca_file = "{ca}"')
    if cert is not None:
        lines += [f'cert_file = "{cert.cert}"', f'key_file = "{cert.key}"']
    if username:
        lines.append(f'username = "{username}"')
    if password_file is not None:
        lines.append(f'password_file = "{password_file}"')
    if extra_mqtt:
        lines.append(extra_mqtt)
    p = dir / "casegate.toml"
    p.write_text("\n".join(lines) + "\n")
    return p


class Daemon(DaemonProcess):
    """DaemonProcess started with a chosen umask (default 000: the daemon must set its own modes)."""

    def __init__(self, config: Path, env: dict | None = None, umask: int = 0o000):
        super().__init__(config, {**SUBPROCESS_ENV, **(env or {})}, umask)

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def events(self) -> list[dict]:
        r = cli("events", "--json", config=self.config, timeout=60)
        assert r.returncode == 0, r.stderr
        return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def stays(pred, seconds: float, step: float = 0.25) -> bool:
    """True if pred() holds at every check for ``seconds`` (bounded loop)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not pred():
            return False
        time.sleep(step)
    return pred()
