"""camera_events over https (SPEC §4.7): the simulators served with a real self-signed
certificate (cryptography, EC P-256, SAN IP 127.0.0.1), as cameras ship them.

Verified by default: trusted through ``ca_file``; without it a clear device.error (the stream
is never opened, the password digest never sent); ``tls_verify = false`` accepts it and says
so in the log. ONVIF covers both paths: onvif-zeep-async's setup calls and the httpx
PullMessages loop.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
from pathlib import Path

import pytest

from drivers.base import PrintContext
from drivers.camera_events.config import CameraEventsConfig
from drivers.camera_events.driver import CameraEventsDriver
from drivers.camera_events.simulator import DahuaSimulator, HikvisionSimulator, OnvifSimulator
from helpers.polling import poll

SIMS = {"hikvision": HikvisionSimulator, "dahua": DahuaSimulator, "onvif": OnvifSimulator}


def self_signed(dir: Path, stem: str, cn: str = "IP Camera") -> tuple[str, str]:
    """(cert, key) PEM files of a self-signed certificate for 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    c, k = dir / f"{stem}.crt", dir / f"{stem}.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return str(c), str(k)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    return {"camera": self_signed(d, "camera"), "other": self_signed(d, "other", "another camera")}


def wait(pred, timeout: float) -> bool:
    return bool(poll(pred, timeout))


def events(ctx, type_):
    return [d for t, d in list(ctx.events) if t == type_]


def make(vendor, sim, tmp_path, **kw):
    cfg = CameraEventsConfig(id="cam1", driver="camera_events", vendor=vendor, url=sim.url, username="admin",
                             password_file=str(tmp_path / "pw"), channels={"1": "int-1"}, offline_s=3,
                             reconnect_step_s=0.3, pull_timeout_s=1, **kw)
    ctx = PrintContext("cam1", storage_dir=str(tmp_path / "state"))
    return CameraEventsDriver(cfg, ctx, password="cam-secret"), ctx


@pytest.mark.parametrize("vendor", sorted(SIMS))
def test_verified_with_ca_file(vendor, certs, tmp_path):
    with SIMS[vendor](heartbeat_s=0.5, tls=certs["camera"]) as sim:
        assert sim.url.startswith("https://")
        drv, ctx = make(vendor, sim, tmp_path, ca_file=certs["camera"][0])
        drv.start()
        try:
            assert wait(lambda: events(ctx, "device.online") and sim.connected(), 15), ctx.events
            sim.motion(1, True)
            assert wait(lambda: events(ctx, "camera.motion"), 5)
            r = drv.command("camera/snapshot", {"camera": "cam1"}, 5)
            assert open(r["file"], "rb").read(2) == b"\xff\xd8"
            assert not events(ctx, "device.error") and sim.tls_refused == 0
        finally:
            drv.stop(2.0)


@pytest.mark.parametrize("vendor", sorted(SIMS))
def test_refused_without_ca_file_is_a_clear_device_error(vendor, certs, tmp_path):
    with SIMS[vendor](heartbeat_s=0.5, tls=certs["camera"]) as sim:
        drv, ctx = make(vendor, sim, tmp_path)
        drv.start()
        try:
            assert wait(lambda: events(ctx, "device.error"), 15), ctx.events
            err = events(ctx, "device.error")[0]["error"]
            assert f"TLS certificate of {sim.url} not trusted" in err
            assert "self-signed certificate" in err and "set ca_file" in err
            assert not events(ctx, "device.online")
            assert sim.streams_opened == 0 and sim.unauthorized == 0    # nothing reached the camera's API
            # the simulator counts a refused handshake when its side of it ends, which may be after
            # the driver has already reported the error
            assert wait(lambda: sim.tls_refused >= 1, 10), sim.tls_refused
        finally:
            drv.stop(2.0)


def test_another_certificate_in_ca_file_is_refused(certs, tmp_path):
    with HikvisionSimulator(heartbeat_s=0.5, tls=certs["camera"]) as sim:
        drv, ctx = make("hikvision", sim, tmp_path, ca_file=certs["other"][0])
        drv.start()
        try:
            assert wait(lambda: events(ctx, "device.error"), 15)
            assert f"ca_file {certs['other'][0]} does not match" in events(ctx, "device.error")[0]["error"]
        finally:
            drv.stop(2.0)


@pytest.mark.parametrize("vendor", ["hikvision", "onvif"])
def test_accepted_with_tls_verify_false_and_said_in_the_log(vendor, certs, tmp_path, caplog):
    with SIMS[vendor](heartbeat_s=0.5, tls=certs["camera"]) as sim:
        drv, ctx = make(vendor, sim, tmp_path, tls_verify=False)
        with caplog.at_level(logging.WARNING):
            drv.start()
        try:
            assert wait(lambda: events(ctx, "device.online") and sim.connected(), 15), ctx.events
            sim.motion(1, True)
            assert wait(lambda: events(ctx, "camera.motion"), 5)
            assert any("tls_verify = false" in r.getMessage() for r in caplog.records)
        finally:
            drv.stop(2.0)


def test_unreadable_ca_file_fails_the_start(tmp_path):
    cfg = CameraEventsConfig(id="cam1", driver="camera_events", vendor="hikvision", url="https://127.0.0.1:9",
                             password_file="x", channels={"1": "r"}, ca_file=str(tmp_path / "nope.crt"))
    with pytest.raises(ValueError, match="cannot read ca_file .*nope.crt: no such file"):
        CameraEventsDriver(cfg, PrintContext("cam1"), password="p").start()
    (tmp_path / "junk.crt").write_text("not a certificate\n")
    cfg = cfg.model_copy(update={"ca_file": str(tmp_path / "junk.crt")})
    with pytest.raises(ValueError, match="cannot read ca_file .*junk.crt"):
        CameraEventsDriver(cfg, PrintContext("cam1"), password="p").start()


def test_config_check_reports_a_missing_ca_file_without_calling_it_secret(tmp_path):
    from helpers.daemon import cli
    (tmp_path / "cam.pw").write_text("cam-secret\n")
    p = tmp_path / "casegate.toml"
    p.write_text(f'[center]\nid = "t-center"\n[storage]\ndir = "{tmp_path}/state"\n[mqtt]\nenabled = false\n'
                 '[[rooms]]\nid = "waiting-1"\ntype = "waiting"\n'
                 '[[devices]]\nid = "cam1"\ndriver = "camera_events"\nvendor = "hikvision"\n'
                 f'url = "https://10.0.0.31"\npassword_file = "{tmp_path}/cam.pw"\n'
                 f'ca_file = "{tmp_path}/cam1.crt"\nchannels = {{ "1" = "waiting-1" }}\n')
    r = cli("config", "check", "--json", config=p)
    assert r.returncode == 2, r.stdout + r.stderr
    [problem] = json.loads(r.stdout)["problems"]
    assert problem["check"] == "devices.cam1.ca_file" and "no such file" in problem["message"]
    from gateway.checks import secret_files
    from gateway.config import load_config
    assert [k for k, _ in secret_files(load_config(str(p)))] == ["devices.cam1.password_file"]
