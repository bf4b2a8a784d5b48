"""(g) The systemd unit: sandbox exposure, offline verification, the settings the daemon
needs (serial ports, cameras, IPv4/IPv6), the sysusers file, and that MemoryDenyWriteExecute=
does not break the camera stack."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import sec_mdwe
from helpers.security import ROOT

UNIT = ROOT / "systemd" / "casegate.service"
SYSUSERS = ROOT / "systemd" / "casegate.sysusers"
MAX_EXPOSURE = 2.0
HELPERS_PARENT = str(ROOT / "tests")      # a child imports helpers.sec_mdwe


def analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if not exe:
        pytest.skip("systemd-analyze is not installed")
    return exe


def unit_settings() -> dict[str, list[str]]:
    """Key -> values of the [Service] section (repeated keys accumulate)."""
    out: dict[str, list[str]] = {}
    section = None
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}{key.strip()}", []).append(value.strip())
    return out


def svc(s: dict, key: str) -> list[str]:
    return s.get(f"[Service]{key}", [])


def test_exposure_at_most_2():
    r = subprocess.run([analyze(), "security", "--offline=true", "--no-pager", str(UNIT)],
                       capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", out)
    assert m, out[-3000:]
    exposure = float(m.group(1))
    print(f"systemd-analyze security --offline=true: exposure {exposure}")
    assert exposure <= MAX_EXPOSURE, out


def test_unit_verifies_offline(tmp_path):
    """systemd-analyze verify in a fake root (so /usr/local/bin/casegate exists);
    unknown keys only warn there, so warnings fail the test too."""
    exe = analyze()
    root = tmp_path / "root"
    (root / "usr/local/bin").mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "usr/lib/systemd").mkdir(parents=True)
    fake = root / "usr/local/bin/casegate"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    shutil.copy("/bin/kill", root / "bin/kill")
    sysunits = next((p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir()), None)
    if sysunits is None:
        pytest.skip("no system unit directory to build the fake root from")
    shutil.copytree(sysunits, root / "usr/lib/systemd/system", symlinks=True)
    unit = root / "etc/systemd/system/casegate.service"
    shutil.copy(UNIT, unit)
    r = subprocess.run([exe, "verify", "--man=no", f"--root={root}", str(unit)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    bad = [l for l in (r.stdout + r.stderr).splitlines() if l.strip()]
    assert not bad, bad


def test_unit_gives_the_daemon_what_it_needs():
    s = unit_settings()
    assert svc(s, "Type") == ["notify"]
    assert svc(s, "ExecStart") == ["/usr/local/bin/casegate run"]
    assert svc(s, "ExecReload") == ["/bin/kill -HUP $MAINPID"]
    assert svc(s, "WatchdogSec") == ["30"] and svc(s, "Restart") == ["on-failure"] and svc(s, "RestartSec")
    assert svc(s, "TimeoutStopSec") == ["15"]
    assert svc(s, "User") == ["casegate"]
    assert set(" ".join(svc(s, "SupplementaryGroups")).split()) == {"dialout", "video"}
    assert svc(s, "StateDirectory") == ["casegate"] and svc(s, "StateDirectoryMode") == ["0700"]
    assert svc(s, "ConfigurationDirectory") == ["casegate"]
    assert svc(s, "UMask") == ["0077"]
    # devices: an ACL instead of PrivateDevices (which would hide the serial ports)
    assert svc(s, "PrivateDevices") in ([], ["no"])
    assert svc(s, "DevicePolicy") == ["closed"]
    allow = {v.split()[0]: v.split()[1] if len(v.split()) > 1 else "rwm" for v in svc(s, "DeviceAllow")}
    for dev in ("char-ttyUSB", "char-ttyACM", "char-ttyS", "char-video4linux"):
        assert dev in allow and "r" in allow[dev] and "w" in allow[dev], (dev, allow)
    assert not any(v.startswith("block-") or v.startswith("/dev/sd") for v in allow), allow
    # network: the remote broker, RTSP/HTTP cameras, Modbus TCP, zone stations; v4 and v6
    fams = set(" ".join(svc(s, "RestrictAddressFamilies")).split())
    assert fams == {"AF_UNIX", "AF_INET", "AF_INET6"}, fams
    assert not svc(s, "IPAddressDeny") and not svc(s, "PrivateNetwork")
    assert svc(s, "PrivateUsers") in ([], ["no"]), "a user namespace would unmap dialout/video"
    for key, want in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                      ("PrivateTmp", "yes"), ("CapabilityBoundingSet", ""), ("SystemCallArchitectures", "native"),
                      ("LockPersonality", "yes"), ("RestrictRealtime", "yes"), ("RestrictNamespaces", "yes"),
                      ("ProtectKernelTunables", "yes"), ("ProtectKernelModules", "yes"),
                      ("ProtectKernelLogs", "yes"), ("ProtectControlGroups", "yes"), ("ProtectClock", "yes"),
                      ("ProtectHostname", "yes")]:
        assert svc(s, key) == [want], (key, svc(s, key))
    assert "@system-service" in svc(s, "SystemCallFilter")
    # the daemon writes only below its state dir
    assert not svc(s, "ReadWritePaths"), "ProtectSystem=strict + StateDirectory= should be enough"


def test_sysusers_creates_user_with_device_groups(tmp_path):
    exe = shutil.which("systemd-sysusers")
    if not exe:
        pytest.skip("systemd-sysusers is not installed")
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\ndialout:x:20:\nvideo:x:44:\n")
    r = subprocess.run([exe, f"--root={tmp_path}", str(SYSUSERS)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    passwd = (etc / "passwd").read_text()
    group = (etc / "group").read_text()
    user = next(l for l in passwd.splitlines() if l.startswith("casegate:"))
    fields = user.split(":")
    assert 0 < int(fields[2]) < 1000, "a system user"
    assert fields[5] == "/var/lib/casegate" and fields[6].endswith("nologin")
    members = {l.split(":")[0]: l.split(":")[3].split(",") for l in group.splitlines()}
    assert "casegate" in members["dialout"] and "casegate" in members["video"]
    assert "casegate" in members


CAMERA_STACK = r"""
import os, warnings, tempfile
from helpers import sec_mdwe
sec_mdwe.install(deny_resources=True)
assert sec_mdwe.active(), "filter not in force"
if sec_mdwe.platform.machine() == "x86_64":
    try:
        os.sched_setaffinity(0, os.sched_getaffinity(0))
        raise SystemExit("@resources not refused")
    except PermissionError:
        pass
import numpy as np
a = np.random.default_rng(1).random((300, 300)); float((a @ a).sum()); np.linalg.svd(a[:80, :80])
import cv2
from skimage import data
face = cv2.cvtColor(np.ascontiguousarray(data.astronaut()[0:240, 100:340]), cv2.COLOR_RGB2BGR)
path = os.path.join(tempfile.mkdtemp(), "v.avi")
w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 4.0, (320, 240), True)
assert w.isOpened()
for i in range(8):                       # a face moving across a grey room
    frame = np.full((240, 320, 3), 120, np.uint8)
    frame[:, 10 * i:10 * i + 240] = face[:, :min(240, 320 - 10 * i)]
    w.write(frame)
w.release()
cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
frames = []
while len(frames) < 8:
    ok, f = cap.read()
    if not ok:
        break
    frames.append(f)
assert frames, "no frames decoded"
grey = cv2.cvtColor(frames[0], cv2.COLOR_BGR2GRAY)
diff = cv2.absdiff(grey, cv2.cvtColor(frames[-1], cv2.COLOR_BGR2GRAY))
ok, jpg = cv2.imencode(".jpg", frames[0]); assert ok
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import face_recognition, dlib
rgb = cv2.cvtColor(frames[0], cv2.COLOR_BGR2RGB)
boxes = face_recognition.face_locations(rgb, 1, model="hog")
enc = face_recognition.face_encodings(rgb, boxes)
import sqlite3, ssl, ctypes
sqlite3.connect(":memory:").execute("select 1")
ssl.create_default_context()
cb = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda x: x + 1); assert cb(1) == 2
print("OK frames=%d faces=%d encodings=%d" % (len(frames), len(boxes), len(enc)))
"""


def test_memory_deny_write_execute_keeps_the_camera_stack_working():
    """The unit sets MemoryDenyWriteExecute=yes and SystemCallFilter=~@resources; under the same
    seccomp rules (emulated: see sec_mdwe.py) numpy, OpenCV/FFmpeg, dlib/face_recognition, sqlite,
    ssl and ctypes must work."""
    if not sec_mdwe.supported():
        pytest.skip("MDWE emulation supports x86_64 and aarch64 only")
    s = unit_settings()
    assert svc(s, "MemoryDenyWriteExecute") == ["yes"]
    assert "~@privileged @resources" in svc(s, "SystemCallFilter") and svc(s, "SystemCallErrorNumber") == ["EPERM"]
    r = subprocess.run([sys.executable, "-c", CAMERA_STACK], capture_output=True, text=True, timeout=120, cwd=ROOT,
                       env={**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": HELPERS_PARENT})
    assert r.returncode == 0 and "OK frames=" in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]
    assert "faces=0" not in r.stdout, "dlib found no face under MDWE: " + r.stdout


def test_mdwe_emulation_really_refuses_wx_memory():
    """The emulation must bite, or the test above proves nothing."""
    if not sec_mdwe.supported():
        pytest.skip("MDWE emulation supports x86_64 and aarch64 only")
    code = ("from helpers import sec_mdwe; import ctypes, mmap\n"
            "assert not sec_mdwe.active()\n"
            "sec_mdwe.install(); assert sec_mdwe.active()\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "libc.mmap.restype = ctypes.c_void_p\n"
            "libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,"
            " ctypes.c_int, ctypes.c_long]\n"
            "p = libc.mmap(None, 4096, 3, 0x22, -1, 0)\n"
            "assert libc.mprotect(ctypes.c_void_p(p), 4096, 5) == -1 and ctypes.get_errno() == 1\n"
            "assert libc.mprotect(ctypes.c_void_p(p), 4096, 1) == 0\n"
            "print('REFUSED')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                       env={**os.environ, "PYTHONPATH": HELPERS_PARENT})
    assert r.returncode == 0 and "REFUSED" in r.stdout, r.stdout + r.stderr
