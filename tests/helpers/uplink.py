"""The uplink tests' topic prefix and their bounded wait."""
from __future__ import annotations

from helpers.polling import wait_for

PREFIX = "casegate/t-center"


def wait(pred, timeout=30.0, what="condition") -> None:
    wait_for(pred, timeout, what)
