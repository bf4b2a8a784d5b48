"""systemd/casegate-ingest.service: sandboxed like casegate.service (exposure <= 2.0), and it
starts what the CLI offers: `casegate ingest` reading its settings from the environment file."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers.daemon import cli

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "casegate-ingest.service"


def test_ingest_unit_sandbox_exposure_at_most_2():
    exe = shutil.which("systemd-analyze")
    if not exe:
        pytest.skip("systemd-analyze is not installed")
    r = subprocess.run([exe, "security", "--offline=true", "--no-pager", str(UNIT)], capture_output=True,
                       text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", r.stdout + r.stderr)
    assert m, (r.stdout + r.stderr)[-2000:]
    assert float(m.group(1)) <= 2.0


def test_unit_settings_match_the_cli(tmp_path):
    text = UNIT.read_text()
    assert "ExecStart=/usr/local/bin/casegate ingest\n" in text
    assert "Type=notify" in text and "EnvironmentFile=/etc/casegate/ingest.env" in text
    # The variables the unit's environment file sets are the ones `casegate ingest` reads.
    db = tmp_path / "central.db"
    r = cli("ingest", "--status", "--json", env={"CASEGATE_INGEST_DB": f"sqlite:///{db}"})
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr
    for var in re.findall(r"^#   (CASEGATE_INGEST_[A-Z_]+)=", text, re.M):
        assert var in (ROOT / "gateway" / "ingest" / "cli.py").read_text(), var


def test_ingest_without_a_database_says_how_to_fix_it():
    r = cli("ingest", "--status", env={"CASEGATE_INGEST_DB": ""})
    assert r.returncode == 2 and "--db postgresql://" in r.stderr
