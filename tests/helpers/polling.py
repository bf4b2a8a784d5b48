"""Waiting for a thing to happen, bounded: the one way tests wait (never a bare sleep for an event).

A test that sleeps N seconds and then looks either waits too long on a quiet machine or too
short on a loaded one (this 2-core machine runs seven suites at once); polling the thing
itself returns as soon as it is true and fails, saying what it waited for, only at the bound."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")

INTERVAL_S = 0.05       # a poll costs microseconds in-process; 50 ms keeps a waiting test's CPU near zero


def poll(pred: Callable[[], T], timeout: float, interval: float = INTERVAL_S) -> T:
    """pred() once it is truthy, or its last (falsy) value at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def wait_for(pred: Callable[[], T], timeout: float, what: str, interval: float = INTERVAL_S) -> T:
    """pred()'s first truthy value; AssertionError naming ``what`` if it is not true within ``timeout`` s."""
    value = poll(pred, timeout, interval)
    if not value:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")
    return value
