"""`casegate doctor` (SPEC §5): check a real installation and say how to fix each problem.

Each check yields Findings (OK / WARN / FAIL + fix). The machine-facing probes
(free space, clock synchronisation, time now) are injectable so tests can stage a
nearly full disk or an unsynchronised clock without root-only tricks. Permission
checks are made for the *service user* (User= of the unit, default ``casegate``),
judged from owner/group/mode bits: doctor is usually run by root, for whom
os.access() says yes to everything.
"""
from __future__ import annotations

import os
import pwd
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from gateway.checks import (FAIL, OK, WARN, Finding, _mode_allows, check_file_readable, check_legal_rules_enabled,
                            check_rule_references, device_files, secret_files, serial_ports)
from gateway.config import Config, ConfigError, load_config

UNIT_PATHS = ("/etc/systemd/system/casegate.service", "/lib/systemd/system/casegate.service",
              "/usr/lib/systemd/system/casegate.service")
SANDBOX_KEYS = ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "CapabilityBoundingSet",
                "RestrictAddressFamilies", "SystemCallFilter")
CERT_WARN_DAYS = 30


def clock_synchronised() -> bool | None:
    """The sync state the daemon itself acts on (gateway/timebase.py: timedatectl's
    NTPSynchronized, else the kernel's adjtimex STA_UNSYNC/TIME_ERROR); None = cannot tell."""
    from gateway.timebase import clock_synchronised as probe
    return probe(max_age_s=0)["synchronised"]


@dataclass
class Probes:
    statvfs: Callable[[str], os.statvfs_result] = os.statvfs
    clock_synced: Callable[[], bool | None] = clock_synchronised
    now: Callable[[], float] = time.time
    unit_paths: tuple[str, ...] = UNIT_PATHS
    timeout_s: float = 3.0
    extra: dict = field(default_factory=dict)


def service_uid(name: str | None) -> tuple[int | None, str]:
    """uid of the service user; None (= this process) when there is no such user."""
    for candidate in ([name] if name else ["casegate"]):
        try:
            return pwd.getpwnam(candidate).pw_uid, candidate
        except KeyError:
            if name:
                return None, f"{name} (no such user)"
    return None, f"{pwd.getpwuid(os.getuid()).pw_name} (no casegate user)"


# ---- the checks ---------------------------------------------------------------
def check_storage(cfg: Config, uid: int | None, user: str, probes: Probes) -> list[Finding]:
    d = cfg.storage_dir
    out = []
    if not d.exists():
        parent = next((p for p in d.parents if p.exists()), Path("/"))
        if uid is not None and not _mode_allows(parent, uid, 0o3):
            return [Finding(FAIL, "storage", f"{d} does not exist and {user} cannot create it in {parent}",
                            f"install -d -o {user.split()[0]} -m 0700 {d}")]
        out.append(Finding(WARN, "storage", f"{d} does not exist yet (created at first start)",
                           f"install -d -o {user.split()[0]} -m 0700 {d}"))
        stat_path = str(parent)
    else:
        st = d.stat()
        if os.statvfs(d).f_flag & os.ST_RDONLY:
            from gateway.checks import storage_not_writable_fix
            out.append(Finding(FAIL, "storage", f"{d} is on a read-only filesystem", storage_not_writable_fix(d)))
        elif uid is not None and st.st_uid != uid:
            owner = _user_name(st.st_uid)
            out.append(Finding(FAIL, "storage", f"{d} is owned by {owner}, the service runs as {user}",
                               f"chown -R {user.split()[0]}: {d}"))
        elif uid is None and not os.access(d, os.W_OK | os.X_OK):
            from gateway.checks import storage_not_writable_fix
            out.append(Finding(FAIL, "storage", f"{d} is not writable", storage_not_writable_fix(d)))
        else:
            out.append(Finding(OK, "storage", f"{d} owned by {user}, mode {st.st_mode & 0o777:04o}"))
        stat_path = str(d)
    try:
        vfs = probes.statvfs(stat_path)
    except OSError as e:
        return out + [Finding(WARN, "disk", f"cannot stat {stat_path}: {e.strerror}", "")]
    free = vfs.f_bavail * vfs.f_frsize
    total = vfs.f_blocks * vfs.f_frsize or 1
    need = cfg.storage.max_mb * 1024 * 1024          # room for the journal to grow to its cap
    pct = 100 * free / total
    text = f"{free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB ({pct:.0f}%) on {stat_path}"
    if free < min(need * 0.1, 512 * 2**20) or pct < 2:
        out.append(Finding(FAIL, "disk", text + " — nearly full",
                           "free space (old logs, /var/cache) or move [storage] dir to a bigger disk; "
                           "the journal sheds telemetry above storage.max_mb but alarms need room"))
    elif free < need or pct < 10:
        out.append(Finding(WARN, "disk", text + f", less than storage.max_mb ({cfg.storage.max_mb:g} MB)",
                           "free space or lower storage.max_mb"))
    else:
        out.append(Finding(OK, "disk", text))
    return out


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def check_serial(cfg: Config, uid: int | None, user: str) -> list[Finding]:
    out = []
    for dev, port in serial_ports(cfg):
        p = Path(port)
        if not p.exists():
            out.append(Finding(FAIL, f"serial {dev}", f"{port}: no such device",
                               "plug the adapter in (dmesg | tail shows it), use a /dev/serial/by-id/ name, "
                               "or disable the device (enabled = false)"))
            continue
        ok = _mode_allows(p, uid, 0o6) if uid is not None else os.access(p, os.R_OK | os.W_OK)
        if not ok:
            st = p.stat()
            out.append(Finding(FAIL, f"serial {dev}",
                               f"{port}: {user} cannot read/write it (owner {_user_name(st.st_uid)}, "
                               f"group {_group_name(st.st_gid)}, mode {st.st_mode & 0o777:04o})",
                               f"usermod -aG {_group_name(st.st_gid)} {user.split()[0]}, or a udev rule "
                               "(GROUP=\"dialout\", MODE=\"0660\")"))
        else:
            out.append(Finding(OK, f"serial {dev}", f"{port}: read/write for {user}"))
    return out


def _group_name(gid: int) -> str:
    import grp
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _tcp(host: str, port: int, timeout: float) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return e.strerror or str(e)


def check_devices(cfg: Config, probes: Probes, daemon_devices: list[dict] | None) -> list[Finding]:
    """Network devices reachable now; with a daemon running, its own view of each device."""
    out = []
    states = {d["id"]: d for d in daemon_devices or []}
    for d in cfg.devices:
        if not d.enabled:
            out.append(Finding(OK, f"device {d.id}", "disabled in the config"))
            continue
        if d.id in states:
            s = states[d.id]
            if s.get("state") == "online":
                out.append(Finding(OK, f"device {d.id}", f"online (frames ok {s.get('frames_ok', 0)}, "
                                   f"bad {s.get('frames_bad', 0)})"))
            else:
                out.append(Finding(WARN, f"device {d.id}", f"{s.get('state')}: {s.get('error') or 'no frames'}",
                                   f"casegate probe {d.id} --seconds 10 (stop the daemon first for serial ports)"))
            continue
        listen = d.listen_address()
        if listen:
            out.append(_check_listen(d.id, listen))
            continue
        target = d.endpoint()
        if target and target[0]:
            err = _tcp(target[0], target[1], probes.timeout_s)
            if err:
                out.append(Finding(FAIL, f"device {d.id}", f"{target[0]}:{target[1]} unreachable: {err}",
                                   "check power, cabling and the address in the config; "
                                   f"casegate probe {d.id}"))
            else:
                out.append(Finding(OK, f"device {d.id}", f"{target[0]}:{target[1]} accepts connections"))
    return out


def _check_listen(dev: str, listen: str) -> Finding:
    """The daemon is not running: the base stations' port must be free for it."""
    host, _, port = listen.rpartition(":")
    try:
        with socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET) as s:
            s.bind((host.strip("[]"), int(port)))
    except OSError as e:
        return Finding(FAIL, f"device {dev}", f"cannot listen on {listen}: {e.strerror or e}",
                       f"another process holds the port (ss -ltnp 'sport = :{port}'), or the address "
                       "is not on this machine")
    return Finding(OK, f"device {dev}", f"{listen} is free for the base stations to connect to")


def check_broker(cfg: Config, probes: Probes, uid: int | None = None) -> list[Finding]:
    m = cfg.mqtt
    if not m.enabled:
        return [Finding(WARN, "broker", "MQTT disabled ([mqtt] enabled = false): nothing leaves the center",
                        "enable [mqtt] once a broker is available")]
    out = [check_file_readable(k, v, uid) for k, v in secret_files(cfg)]
    where = f"{m.host}:{m.port}"
    try:
        sock = socket.create_connection((m.host, m.port), timeout=probes.timeout_s)
    except OSError as e:
        return out + [Finding(FAIL, "broker", f"{where}: TCP connect failed: {e.strerror or e}",
                              "is the broker running and reachable (firewall, [mqtt] host/port)?")]
    with sock:
        if not m.tls:
            note = " (no TLS: only on a trusted network, see docs/security.md)" if m.host not in (
                "127.0.0.1", "localhost", "::1") else ""
            out.append(Finding(WARN if note else OK, "broker", f"{where}: TCP connect OK{note}",
                               "set [mqtt] tls = true and ca_file" if note else ""))
            return out
        try:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=m.ca_file or None)
            if m.cert_file:
                ctx.load_cert_chain(m.cert_file, m.key_file or None)
        except (OSError, ssl.SSLError) as e:
            return out + [Finding(FAIL, "broker TLS", f"cannot load TLS files: {e}", "fix ca_file/cert_file/key_file")]
        sock.settimeout(probes.timeout_s)
        try:
            with ctx.wrap_socket(sock, server_hostname=m.host) as tls:
                der = tls.getpeercert(binary_form=True)
                version = tls.version()
        except ssl.SSLCertVerificationError as e:
            return out + [Finding(FAIL, "broker TLS", f"{where}: certificate not trusted: {e.verify_message}",
                                  "set [mqtt] ca_file to the CA that signed the broker's certificate")]
        except (ssl.SSLError, OSError) as e:
            return out + [Finding(FAIL, "broker TLS", f"{where}: TLS handshake failed: {e}",
                                  "the port may not speak TLS (8883 is usual), or the broker refuses us")]
    out.append(Finding(OK, "broker TLS", f"{where}: {version}, certificate verified"))
    out += check_cert_expiry(der, f"broker certificate {where}", probes.now())
    if m.cert_file:
        try:
            out += check_cert_expiry(_pem_to_der(Path(m.cert_file).read_bytes()), f"client certificate {m.cert_file}",
                                     probes.now())
        except (OSError, ValueError):
            pass
    return out


def _pem_to_der(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode())


def check_cert_expiry(der: bytes, what: str, now: float) -> list[Finding]:
    from cryptography import x509
    cert = x509.load_der_x509_certificate(der)
    not_after = cert.not_valid_after_utc.timestamp()
    days = (not_after - now) / 86400
    when = time.strftime("%Y-%m-%d", time.gmtime(not_after))
    if days < 0:
        return [Finding(FAIL, "certificate", f"{what} expired on {when}", "renew it now")]
    if days < CERT_WARN_DAYS:
        return [Finding(WARN, "certificate", f"{what} expires in {days:.0f} days ({when})",
                        "renew it before it expires (the uplink stops when it does)")]
    return [Finding(OK, "certificate", f"{what} valid until {when} ({days:.0f} days)")]


def check_clock(probes: Probes) -> list[Finding]:
    synced = probes.clock_synced()
    if synced is None:
        return [Finding(WARN, "clock", "cannot tell whether the clock is synchronised",
                        "timedatectl status; install chrony or systemd-timesyncd")]
    if not synced:
        return [Finding(FAIL, "clock", "system clock is NOT synchronised (NTP)",
                        "timedatectl set-ntp true (or configure chrony) and give the box an RTC with a battery; "
                        "detention limits are timed by this clock: casegate raises clock_unsynchronised "
                        "after [clock] unsynced_alarm_s and re-bases its times when NTP corrects it "
                        "(docs/operations.md \"Time\")")]
    return [Finding(OK, "clock", "synchronised (NTP)")]


def check_systemd(probes: Probes) -> list[Finding]:
    unit = next((Path(p) for p in probes.unit_paths if Path(p).exists()), None)
    if unit is None:
        return [Finding(WARN, "systemd", "casegate.service is not installed",
                        "install -m 0644 systemd/casegate.service /etc/systemd/system/ (docs/operations.md)")]
    text = unit.read_text()
    keys = {line.split("=", 1)[0].strip() for line in text.splitlines() if "=" in line and not line.startswith("#")}
    missing = [k for k in SANDBOX_KEYS if k not in keys]
    out = [Finding(OK, "systemd", f"{unit} installed")]
    if missing:
        out.append(Finding(WARN, "sandbox", f"{unit} lacks {', '.join(missing)}",
                           "use the shipped unit; local changes go in a drop-in (systemctl edit casegate)"))
    else:
        out.append(Finding(OK, "sandbox", "hardening directives present"))
    if shutil.which("systemctl"):
        r = subprocess.run(["systemctl", "is-enabled", "casegate"], capture_output=True, text=True, timeout=5)
        state = r.stdout.strip() or r.stderr.strip()
        if state != "enabled":
            out.append(Finding(WARN, "systemd", f"casegate.service is {state or 'not enabled'}",
                               "systemctl enable --now casegate"))
    return out


def _config_fix(problem: str) -> str:
    """The fix for one config problem, as specific as the problem allows."""
    if "file not found" in problem:
        return ("install a config: cp config/small-center.toml /etc/casegate/casegate.toml and edit it "
                "(config/reference.toml lists every key), or pass --config PATH")
    if "cannot read" in problem:
        return "let the service user read it: chgrp casegate FILE && chmod 0640 FILE"
    if "TOML syntax error" in problem:
        return "correct the TOML at the line and column given"
    return "edit the key named above (config/reference.toml documents it); casegate config check lists every problem"


def run_checks(config_file: str, probes: Probes | None = None, user: str | None = None,
               daemon_status: Callable[[Config], dict | None] | None = None) -> list[Finding]:
    probes = probes or Probes()
    try:
        cfg = load_config(config_file)
    except ConfigError as e:
        return [Finding(FAIL, "config", p, _config_fix(p)) for p in e.problems]
    out = [Finding(OK, "config", f"{config_file}: valid (center {cfg.center.id})")]
    out += check_rule_references(cfg)
    out += check_legal_rules_enabled(cfg)       # DOMAIN v3: a disabled legal alarm is reported, with its reason
    uid, who = service_uid(user)
    out += check_storage(cfg, uid, who, probes)
    status = daemon_status(cfg) if daemon_status else None
    if status is None:
        out.append(Finding(WARN, "daemon", "not running (no control socket)", "systemctl start casegate"))
    else:
        out.append(Finding(OK, "daemon", f"running, pid {status.get('pid')}, journal at seq "
                           f"{status.get('journal', {}).get('last_seq')}"))
        taken = (status.get("uplink") or {}).get("client_id_taken")
        if taken:       # gateway/uplink_takeover.py: not network trouble, a second client
            from gateway.uplink_takeover import TakeoverDetector
            out.append(Finding(FAIL, "broker client id", taken, TakeoverDetector.FIX))
    out += check_serial(cfg, uid, who)
    out += [check_file_readable(k, v, uid) for k, v in device_files(cfg)]
    out += check_devices(cfg, probes, status.get("devices") if status else None)
    out += check_broker(cfg, probes, uid)
    out += check_clock(probes)
    out += check_systemd(probes)
    return out
