"""Shared fixtures: a real mosquitto on a free loopback port, MQTT helpers."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from brokers import Mosquitto, Subscriber, free_port, wait_port  # noqa: E402,F401


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
