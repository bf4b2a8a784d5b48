"""Shared fixtures: a real mosquitto on a free loopback port, MQTT helpers."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from helpers.brokers import Mosquitto, Subscriber
from helpers.daemon import DaemonProcess, write_config

# Strict event model (rules/model/checks.py): an emit of an undeclared type or of data its
# model refuses raises - in this process and in every daemon the tests start (they inherit
# the environment). Production journals what it is given.
os.environ["CASEGATE_STRICT_EVENTS"] = "1"

from drivers.base import PrintContext  # noqa: E402
from rules.model import check_strict  # noqa: E402

_print_emit = PrintContext.emit


def _checked_emit(self, type, data, ts=None):
    """Drivers under test emit into a PrintContext: held to the declarations too."""
    check_strict(type, data)
    return _print_emit(self, type, data, ts)


PrintContext.emit = _checked_emit

# The environment may set PYTHONDONTWRITEBYTECODE=1 (this machine's does, and uv installs without
# compiling): then every process a test starts - each `casegate` CLI call, each daemon, each driver
# child, each xdist worker - compiles pydantic, paho, sqlite_utils & co from source again: 0.85 s of
# CPU for `python -c "import gateway.daemon, gateway.cli"` against 0.35 s from a bytecode cache
# (measured on this 2-core machine). Set here, before xdist starts its workers, so all inherit it;
# the cache lives outside the source tree, so the tree stays clean as the setting meant.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ.setdefault("PYTHONPYCACHEPREFIX", os.path.join(tempfile.gettempdir(), f"casegate-test-pycache-{os.getuid()}"))


def pytest_configure(config):
    """The controller of an xdist run (not a worker, not a one-process run) fills the assert
    rewrite cache once before the workers start (helpers/warm_rewrite.py)."""
    if os.environ.get("PYTEST_XDIST_WORKER") or not getattr(config.option, "numprocesses", None):
        return
    from helpers import warm_rewrite
    warm_rewrite.warm(Path(__file__).resolve().parent)


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
    from helpers.pg import Postgres, missing_reason
    why = missing_reason()
    if why:
        pytest.skip(why)
    pg = Postgres(tmp_path).start()
    yield pg
    pg.stop()


@pytest.fixture
def daemon(tmp_path, mosquitto):
    """The real daemon, connected to its own mosquitto."""
    cfg = write_config(tmp_path, mosquitto.port)
    d = DaemonProcess(cfg).start()
    d.wait_status(lambda s: s["uplink"]["connected"])
    yield d
    d.stop()


# ---- the order files run in -------------------------------------------------------------------
# `-n 4 --dist loadfile` hands whole files to workers as they free up; xdist's default order
# (most tests first) put the slow end-to-end files, which have few tests, last, and one
# worker ran on alone for ~25 s at the end. Longest first instead, by each file's measured
# seconds (tests/file_weights.json: refresh with bench/file_weights.py); a file not
# in it counts as a slow one, so a new file is never the last to start.
_WEIGHTS_FILE = os.path.join(os.path.dirname(__file__), "file_weights.json")
_NEW_FILE_WEIGHT = 30.0


def pytest_collection_modifyitems(session, config, items):
    import json
    try:
        with open(_WEIGHTS_FILE) as f:
            weights = json.load(f)
    except (OSError, ValueError):
        return
    items.sort(key=lambda item: -weights.get(item.nodeid.split("::", 1)[0], _NEW_FILE_WEIGHT))
