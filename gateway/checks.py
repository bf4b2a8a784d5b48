"""Checks of a loaded config against the machine it will run on.

Shared by `casegate config check` (secrets, serial ports, rule references) and
`casegate doctor` (which adds live checks). A Finding is one line a
technician reads: a level (OK / WARN / FAIL), what, and how to fix it.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from gateway.config import Config

OK, WARN, FAIL = "OK", "WARN", "FAIL"


@dataclass
class Finding:
    level: str              # OK | WARN | FAIL
    check: str              # short name: "mqtt.password_file", "serial card-int1", ...
    message: str            # what was found
    fix: str = ""           # what to do about it (empty for OK)

    def as_dict(self) -> dict:
        return asdict(self)


def uplink_secret_files(cfg: Config) -> list[tuple[str, str]]:
    """(config key, path) of the files the MQTT client needs: one missing blocks the uplink."""
    m = cfg.mqtt
    return [(f"mqtt.{key}", getattr(m, key)) for key in ("password_file", "ca_file", "cert_file", "key_file")
            if m.enabled and getattr(m, key)]


def secret_files(cfg: Config) -> list[tuple[str, str]]:
    """(config key, path) of every secret file the daemon reads: the uplink's, and the devices'
    (a device's missing password file fails that device alone, as its device.error says)."""
    return uplink_secret_files(cfg) + [f for d in cfg.devices if d.enabled for f in d.secret_files()]


def device_files(cfg: Config) -> list[tuple[str, str]]:
    """(config key, path) of the non-secret files enabled devices read at start (CA certificates)."""
    return [f for d in cfg.devices if d.enabled for f in d.public_files()]


def check_file_readable(key: str, path: str, as_uid: int | None = None) -> Finding:
    """A file the daemon reads: exists, is a file, readable (by the service user when known)."""
    p = Path(path)
    if not p.exists():
        return Finding(FAIL, key, f"{path}: no such file",
                       f"create it, readable by the service user (chgrp casegate {path}; chmod 0640 {path}), "
                       f"or fix {key} in the config")
    if not p.is_file():
        return Finding(FAIL, key, f"{path}: not a regular file", f"point {key} at the file itself")
    if not readable(p, as_uid):
        who = f"uid {as_uid}" if as_uid is not None else "this user"
        return Finding(FAIL, key, f"{path}: not readable by {who}",
                       f"chgrp casegate {path} && chmod 0640 {path}")
    return Finding(OK, key, f"{path}: readable")


def readable(p: Path, as_uid: int | None = None) -> bool:
    """Readable by ``as_uid`` judged from the mode bits (tests run as root, for whom
    os.access is always true), else by this process (os.access plus an actual open)."""
    if as_uid is not None:
        return _mode_allows(p, as_uid, 0o4)
    if not os.access(p, os.R_OK):
        return False
    try:
        with open(p, "rb"):
            return True
    except OSError:
        return False


def _mode_allows(p: Path, uid: int, bit: int) -> bool:
    import grp
    import pwd
    st = p.stat()
    if uid == 0:
        return True
    if st.st_uid == uid:
        return bool(st.st_mode & (bit << 6))
    try:
        user = pwd.getpwuid(uid)
        groups = {user.pw_gid} | {g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem}
    except KeyError:
        groups = set()
    if st.st_gid in groups:
        return bool(st.st_mode & (bit << 3))
    return bool(st.st_mode & bit)


def serial_ports(cfg: Config) -> list[tuple[str, str]]:
    """(device id, local serial path) of every enabled device on a local serial port.
    pyserial URLs (socket://, rfc2217://) are network devices, not ports here."""
    out = [p for d in cfg.devices if d.enabled for p in d.serial_ports()]
    return [(dev, port) for dev, port in out if "://" not in port]


def check_serial_port(dev: str, port: str, as_uid: int | None = None) -> Finding:
    p = Path(port)
    if not p.exists():
        return Finding(WARN, f"serial {dev}", f"{port}: not present now",
                       "plug the adapter in, or use a stable name from /dev/serial/by-id/ "
                       "(ttyUSB numbers change between boots)")
    ok = _mode_allows(p, as_uid, 0o6) if as_uid is not None else os.access(p, os.R_OK | os.W_OK)
    if not ok:
        return Finding(FAIL, f"serial {dev}", f"{port}: no read/write permission",
                       "add the service user to the dialout group (usermod -aG dialout casegate) "
                       "or a udev rule giving it the port")
    return Finding(OK, f"serial {dev}", f"{port}: present, read/write")


def check_rule_references(cfg: Config) -> list[Finding]:
    """Rule settings that name things the center does not have."""
    from rules.catalog import rule_settings
    out = []
    types = {r.type for r in cfg.rooms}
    settings = rule_settings(cfg.rules)
    ps = settings.get("procedure_skipped")
    # Only a center with interrogation rooms runs this rule; there, a required type
    # the center lacks raises procedure_skipped for every suspect questioned.
    if ps is not None and ps.enabled and "interrogation" in types:
        for t in getattr(ps, "required", []):
            if t not in types:
                out.append(Finding(FAIL, "rules.procedure_skipped.required",
                                   f"requires a {t!r} step but the center has no room of type {t!r}",
                                   f"add a [[rooms]] entry with type = \"{t}\", or remove {t!r} from "
                                   "[rules.procedure_skipped] required"))
    return out


def check_legal_rules_enabled(cfg: Config) -> list[Finding]:
    from rules.catalog import CATALOG, rule_settings
    from rules.legal_bounds import disabled_legal
    out = []
    _, reason = disabled_legal(cfg.rules)
    for code, s in rule_settings(cfg.rules).items():
        spec = CATALOG[code]
        if getattr(spec, "legal", False) and not s.enabled:
            # DOMAIN v3: legal alarms may be tuned, not disabled, except with a stated reason
            # ([rules] legal_disabled_reason; config validation refuses it without one), said out loud.
            out.append(Finding(WARN, f"rules.{code}", f"legal alarm disabled: {code} ({'; '.join(spec.legal_basis) or 'DOMAIN v3'}); "
                                                      f"reason: {reason}",
                               f"remove enabled = false from [rules.{code}] unless the oversight department "
                               "approved it"))
    return out


def config_findings(cfg: Config) -> list[Finding]:
    """What `config check` adds to validation: secrets (FAIL), serial ports (WARN when
    absent), rule references (FAIL), disabled legal alarms (WARN)."""
    out = [check_file_readable(k, v) for k, v in secret_files(cfg) + device_files(cfg)]
    out += [check_serial_port(dev, port) for dev, port in serial_ports(cfg)]
    out += check_rule_references(cfg)
    out += check_legal_rules_enabled(cfg)
    out += check_stillness_knobs(cfg)
    return out


def check_stillness_knobs(cfg: Config) -> list[Finding]:
    """A camera's `still_s` and `[rules.suspect_motionless] after_s` time one behaviour.

    The rule counts from when the room went still, but hears of it only when the camera says
    so: a camera with still_s = 300 makes a rule with after_s = 120 fire at 300 s. Said, with
    which value wins, so the knobs cannot disagree silently."""
    from rules.catalog import rule_settings
    rule = rule_settings(cfg.rules).get("suspect_motionless")
    if rule is None or not rule.enabled:
        return []
    out = []
    for i, dev in enumerate(cfg.devices):
        still_s = getattr(dev, "still_s", None)
        if still_s is not None and still_s > rule.after_s:
            out.append(Finding(
                WARN, f"devices[{i}].still_s",
                f"{dev.id}: still_s = {still_s:g} s is longer than [rules.suspect_motionless] after_s = "
                f"{rule.after_s:g} s — this camera reports stillness only after {still_s:g} s, so the alarm "
                f"comes at {still_s:g} s in its rooms (the camera's still_s wins)",
                f"set still_s ≤ {rule.after_s:g} on {dev.id}"))
    return out


def rule_thresholds(cfg: Config) -> list[tuple[str, bool, str]]:
    """(code, enabled, "key=value ...") of every rule, with what is in effect."""
    from rules.catalog import rule_settings
    rows = []
    for code, s in sorted(rule_settings(cfg.rules).items()):
        d = s.model_dump()
        enabled = d.pop("enabled", True)
        given = set((cfg.rules.get(code) or {}).keys())
        parts = []
        def show(x):
            return f"{x:g}" if isinstance(x, float) else str(x)
        for k, v in d.items():
            text = ",".join(show(x) for x in v) if isinstance(v, (list, tuple)) else show(v)
            parts.append(f"{k}={text}" + ("*" if k in given else ""))
        rows.append((code, enabled, " ".join(parts)))
    return rows


def storage_not_writable_fix(d) -> str:
    """Why a storage dir is not writable, and the fix: a read-only filesystem is not fixed by chown."""
    try:
        if os.statvfs(d).f_flag & os.ST_RDONLY:
            return (f"{d} is on a read-only filesystem — remount it read-write (mount -o remount,rw "
                    f"<its mount point>; see dmesg for why it went read-only) or set [storage] dir to a writable disk")
        st = os.stat(d)
    except OSError as e:
        return f"{d}: {e.strerror}"
    if st.st_uid == os.getuid():
        return f"{d} is owned by this user but mode {st.st_mode & 0o777:04o} forbids writing — chmod 0700 {d}"
    return f"chown it to the service user: chown -R casegate: {d}"
