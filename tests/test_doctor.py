"""`casegate doctor` against broken set-ups (issue 18, SPEC §5): unreadable password file, missing
serial port, a port without permission for the service user (a real pty, chmod'ed; judged for
user `nobody` because tests run as root), a broker that does not speak TLS (real mosquitto), a
broker certificate expiring in 10 days (a real TLS mosquitto with a certificate made here),
an unsynchronised clock and a nearly full disk (injected probes). Exit 1 on a FAIL.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import pty
from pathlib import Path

import pytest
from helpers.brokers import Mosquitto
from helpers.daemon import cli
from helpers.doctor import healthy_probes

from gateway.doctor import run_checks

ROOMS = '[[rooms]]\nid = "waiting-1"\ntype = "waiting"\n'


def write(tmp_path: Path, body: str) -> Path:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    p = tmp_path / "casegate.toml"
    p.write_text(f'[center]\nid = "t-center"\n[storage]\ndir = "{state}"\n{body}\n{ROOMS}')
    return p


def by_check(findings, prefix: str):
    return [f for f in findings if f.check.startswith(prefix)]


def test_unreadable_password_file_for_the_service_user(tmp_path):
    pw = tmp_path / "mqtt.pass"
    pw.write_text("secret\n")
    os.chmod(pw, 0o600)                         # root only: the service user cannot read it
    cfg = write(tmp_path, f'[mqtt]\nport = 1\nusername = "u"\npassword_file = "{pw}"\n')
    r = cli("doctor", "--user", "nobody", config=cfg)
    assert r.returncode == 1
    assert f"FAIL mqtt.password_file: {pw}: not readable by uid 65534" in r.stdout
    assert f"chmod 0640 {pw}" in r.stdout
    j = json.loads(cli("doctor", "--user", "nobody", "--json", config=cfg).stdout)
    assert j["ok"] is False
    os.chmod(pw, 0o644)
    f = by_check(run_checks(str(cfg), healthy_probes(), user="nobody"), "mqtt.password_file")
    assert [x.level for x in f] == ["OK"]


def test_missing_serial_port_and_one_without_permission(tmp_path):
    master, slave = pty.openpty()
    try:
        tty = os.ttyname(slave)
        os.chmod(tty, 0o600)
        cfg = write(tmp_path, f"""[mqtt]\nenabled = false\n
[[devices]]
id = "card-gone"
driver = "card_reader"
port = "{tmp_path}/ttyUSB7"
room = "waiting-1"
[[devices]]
id = "card-locked"
driver = "card_reader"
port = "{tty}"
room = "waiting-1"
""")
        found = {f.check: f for f in run_checks(str(cfg), healthy_probes(), user="nobody")}
        assert found["serial card-gone"].level == "FAIL" and "no such device" in found["serial card-gone"].message
        locked = found["serial card-locked"]
        assert locked.level == "FAIL" and "nobody (" not in locked.message
        assert "cannot read/write it" in locked.message and "mode 0600" in locked.message
        assert "usermod -aG" in locked.fix
        os.chmod(tty, 0o666)
        found = {f.check: f for f in run_checks(str(cfg), healthy_probes(), user="nobody")}
        assert found["serial card-locked"].level == "OK"
        r = cli("doctor", "--user", "nobody", config=cfg)
        assert r.returncode == 1 and "FAIL serial card-gone" in r.stdout
    finally:
        os.close(master)
        os.close(slave)


def test_broker_that_does_not_speak_tls(tmp_path, mosquitto):
    cfg = write(tmp_path, f'[mqtt]\nport = {mosquitto.port}\ntls = true\n')
    [tls] = by_check(run_checks(str(cfg), healthy_probes()), "broker TLS")
    assert tls.level == "FAIL" and "TLS handshake failed" in tls.message, tls
    plain = write(tmp_path, f'[mqtt]\nport = {mosquitto.port}\n')
    [ok] = by_check(run_checks(str(plain), healthy_probes()), "broker")
    assert ok.level == "OK" and "TCP connect OK" in ok.message


def test_nobody_listening_on_the_broker_port(tmp_path):
    from helpers.brokers import free_port
    cfg = write(tmp_path, f'[mqtt]\nport = {free_port()}\n')
    [b] = by_check(run_checks(str(cfg), healthy_probes()), "broker")
    assert b.level == "FAIL" and "TCP connect failed" in b.message


def _pki(dir: Path, days: int):
    """A CA and a server certificate for 127.0.0.1 valid ``days`` more days."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    now = dt.datetime.now(dt.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def pem_key(k, p):
        p.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption()))
        os.chmod(p, 0o644)      # mosquitto may drop privileges before reading it

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("doctor CA")).issuer_name(name("doctor CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    (dir / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (dir / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem_key(key, dir / "server.key")
    return dir / "ca.crt", dir / "server.crt", dir / "server.key"


def test_broker_certificate_expiring_in_10_days(tmp_path):
    pki = tmp_path / "pki"
    pki.mkdir()
    ca, crt, key = _pki(pki, days=10)
    (tmp_path / "broker").mkdir()
    broker = Mosquitto(tmp_path / "broker", extra_conf=f"cafile {ca}\ncertfile {crt}\nkeyfile {key}\n"
                                                        "tls_version tlsv1.2\n").start()
    try:
        cfg = write(tmp_path, f'[mqtt]\nport = {broker.port}\ntls = true\nca_file = "{ca}"\n')
        found = run_checks(str(cfg), healthy_probes())
        [tls] = by_check(found, "broker TLS")
        assert tls.level == "OK" and "certificate verified" in tls.message, tls
        [cert] = by_check(found, "certificate")
        assert cert.level == "WARN" and "expires in 10 days" in cert.message, cert
        # and a year later it has expired
        later = healthy_probes(now=lambda: dt.datetime.now().timestamp() + 30 * 86400)
        [cert] = by_check(run_checks(str(cfg), later), "certificate")
        assert cert.level == "FAIL" and "expired" in cert.message
        # the wrong CA: not trusted
        other = write(tmp_path, f'[mqtt]\nport = {broker.port}\ntls = true\n')
        [tls] = by_check(run_checks(str(other), healthy_probes()), "broker TLS")
        assert tls.level == "FAIL" and "not trusted" in tls.message
    finally:
        broker.stop()


def test_clock_not_synchronised(tmp_path):
    cfg = write(tmp_path, "[mqtt]\nenabled = false\n")
    [c] = by_check(run_checks(str(cfg), healthy_probes()), "clock")
    assert c.level == "OK"
    p = healthy_probes()
    p.clock_synced = lambda: False
    [c] = by_check(run_checks(str(cfg), p), "clock")
    assert c.level == "FAIL" and "NOT synchronised" in c.message and "timedatectl" in c.fix
    p.clock_synced = lambda: None
    [c] = by_check(run_checks(str(cfg), p), "clock")
    assert c.level == "WARN"


@pytest.mark.parametrize("free_blocks,level", [(9_000_000, "OK"), (800_000, "WARN"), (1_000, "FAIL")])
def test_storage_on_a_nearly_full_disk(tmp_path, free_blocks, level):
    cfg = write(tmp_path, "[mqtt]\nenabled = false\n")
    seen = []

    def statvfs(path):
        seen.append(path)
        return os.statvfs_result((4096, 4096, 10_000_000, free_blocks, free_blocks, 1000, 900, 900, 0, 255))
    p = healthy_probes()
    p.statvfs = statvfs
    [d] = by_check(run_checks(str(cfg), p), "disk")
    assert d.level == level, d
    assert seen == [str(tmp_path / "state")]


def test_storage_dir_owned_by_someone_else(tmp_path):
    cfg = write(tmp_path, "[mqtt]\nenabled = false\n")
    [s] = by_check(run_checks(str(cfg), healthy_probes(), user="nobody"), "storage")
    assert s.level == "FAIL" and "owned by root, the service runs as nobody" in s.message
    assert s.fix.startswith("chown -R nobody:")


def test_systemd_unit_without_sandbox(tmp_path):
    unit = tmp_path / "casegate.service"
    unit.write_text("[Service]\nExecStart=/usr/local/bin/casegate run\nUser=casegate\n")
    cfg = write(tmp_path, "[mqtt]\nenabled = false\n")
    p = healthy_probes()
    p.unit_paths = (str(unit),)
    sandbox = by_check(run_checks(str(cfg), p), "sandbox")
    assert sandbox[0].level == "WARN" and "NoNewPrivileges" in sandbox[0].message
    from helpers.daemon import ROOT
    p.unit_paths = (str(ROOT / "systemd" / "casegate.service"),)
    assert by_check(run_checks(str(cfg), p), "sandbox")[0].level == "OK"


def test_invalid_config_is_a_fail_naming_the_key(tmp_path):
    cfg = write(tmp_path, "[mqtt]\nport = \"x\"\n")
    r = cli("doctor", config=cfg)
    assert r.returncode == 1 and "FAIL config: casegate.toml: mqtt.port: must be an integer" in r.stdout


def test_zone_reader_port_taken_by_another_process(tmp_path):
    import socket

    from helpers.brokers import free_port
    port = free_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen(1)
    try:
        cfg = write(tmp_path, f'[mqtt]\nenabled = false\n[[devices]]\nid = "zone"\ndriver = "zone_reader"\n'
                              f'listen = "127.0.0.1:{port}"\nstations = {{ "ST1" = "waiting-1" }}\n')
        [z] = by_check(run_checks(str(cfg), healthy_probes()), "device zone")
        assert z.level == "FAIL" and f"cannot listen on 127.0.0.1:{port}" in z.message
    finally:
        holder.close()
    [z] = by_check(run_checks(str(cfg), healthy_probes()), "device zone")
    assert z.level == "OK"
