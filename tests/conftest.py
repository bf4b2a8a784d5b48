"""Shared fixtures: a real mosquitto on a free loopback port, MQTT helpers."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

# Strict event model (rules/model/checks.py): an emit of an undeclared type or of data its
# model refuses raises - in this process and in every daemon the tests start (they inherit
# the environment). Production journals what it is given.
os.environ["CASEGATE_STRICT_EVENTS"] = "1"

from brokers import Mosquitto, Subscriber, free_port, wait_port  # noqa: E402,F401
from drivers.base import PrintContext  # noqa: E402
from rules.model import check_strict  # noqa: E402

_print_emit = PrintContext.emit


def _checked_emit(self, type, data, ts=None):
    """Drivers under test emit into a PrintContext: held to the declarations too."""
    check_strict(type, data)
    return _print_emit(self, type, data, ts)


PrintContext.emit = _checked_emit


@pytest.fixture
def mosquitto(tmp_path):
    if not (shutil.which("mosquitto") or os.path.exists("/usr/sbin/mosquitto")):
        pytest.fail("mosquitto is not installed (apt-get install mosquitto)")
    m = Mosquitto(tmp_path).start()
    yield m
    m.stop()


@pytest.fixture
def persistent_mosquitto(tmp_path):
    """A broker that keeps sessions across its own restart (the deployment setting)."""
    m = Mosquitto(tmp_path, persistence=True).start()
    yield m
    m.stop()


@pytest.fixture
def subscriber_factory():
    subs = []

    def make(port, topics=("#",), **kw):
        s = Subscriber(port, topics, **kw)
        subs.append(s)
        return s
    yield make
    for s in subs:
        s.close()


@pytest.fixture
def postgres(tmp_path):
    """A real PostgreSQL (initdb in tmp_path); skipped, saying why, when the binaries are absent."""
    from central.pg import Postgres, missing_reason
    why = missing_reason()
    if why:
        pytest.skip(why)
    pg = Postgres(tmp_path).start()
    yield pg
    pg.stop()
