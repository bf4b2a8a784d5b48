"""gateway/device_pools.py: work queued per device; one stuck device never holds another's."""
from __future__ import annotations

import threading

from gateway.device_pools import KeyedPools
from helpers.polling import poll


def _wait(pred, timeout: float = 5.0) -> bool:
    return bool(poll(pred, timeout))


def test_a_stuck_device_holds_only_its_own_queue():
    pools = KeyedPools("t", workers=1, max_queued=2)
    release = threading.Event()
    done = threading.Event()
    started = threading.Event()

    def stuck():
        started.set()
        release.wait(10)

    try:
        assert pools.submit("cam-1", stuck)
        assert started.wait(5)
        assert pools.submit("cam-1", stuck) and pools.submit("cam-1", stuck)
        assert not pools.submit("cam-1", stuck)          # its queue is full: refused at once
        assert pools.refused == 1
        assert pools.submit("locker-1", done.set)
        assert done.wait(5)                              # ran while cam-1 is stuck
        assert pools.busy()["cam-1"] == 3
    finally:
        release.set()
    assert _wait(lambda: not pools.busy())               # workers end with their queues
    pools.shutdown()
    assert not pools.submit("cam-1", stuck)


def test_keys_beyond_the_bound_share_one_queue():
    pools = KeyedPools("t", workers=1, max_queued=1, max_keys=1)
    release = threading.Event()
    try:
        assert pools.submit("a", release.wait, 10)
        assert pools.submit("b", release.wait, 10)        # a second key: the shared "(other)" queue
        assert pools.submit("c", release.wait, 10)        # waits in "(other)"
        assert not pools.submit("d", release.wait, 10)
        assert set(pools.busy()) == {"a", "(other)"}
    finally:
        release.set()


