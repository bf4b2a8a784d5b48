"""Work that waits on a device, queued per device (issue 30 item 2).

One shared pool let a slow device hold every worker: four camera snapshots dripping a byte
every 4 s held all four device-command workers and a ``locker/open`` waited 106 s. Here
each key (a device id, or a command's name for work that names no device) has its own
queue and at most ``workers`` threads, started on demand and ended when its queue is empty;
a full queue refuses at once (the caller answers ``busy``) instead of growing. Device
commands for different devices never wait on each other.
"""
from __future__ import annotations

import collections
import logging
import threading
from typing import Any, Callable

log = logging.getLogger(__name__)


class KeyedPools:
    def __init__(self, name: str, workers: int = 1, max_queued: int = 8, max_keys: int = 256):
        self.name = name
        self.workers = workers          # threads per key
        self.max_queued = max_queued    # waiting jobs per key (not counting the running ones)
        self.max_keys = max_keys        # keys come from configured devices; beyond: one shared key
        self._queues: dict[str, collections.deque] = {}
        self._running: dict[str, int] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.refused = 0

    def submit(self, key: str, fn: Callable[..., Any], *args: Any) -> bool:
        """Queue ``fn(*args)`` behind ``key``'s earlier jobs; False (nothing queued) when
        ``key`` already has ``max_queued`` waiting or the pools are shut down."""
        with self._lock:
            if self._closed:
                return False
            if key not in self._queues and len(self._queues) >= self.max_keys:
                key = "(other)"
            q = self._queues.setdefault(key, collections.deque())
            if len(q) >= self.max_queued:
                self.refused += 1
                return False
            q.append((fn, args))
            start = self._running.get(key, 0) < self.workers
            if start:
                self._running[key] = self._running.get(key, 0) + 1
        if start:
            threading.Thread(target=self._work, args=(key,), name=f"{self.name}-{key}"[:60], daemon=True).start()
        return True

    def _work(self, key: str) -> None:
        while True:
            with self._lock:
                q = self._queues.get(key)
                if not q or self._closed:
                    self._running[key] -= 1
                    if not self._running[key]:
                        del self._running[key]
                        if not q:
                            self._queues.pop(key, None)
                    return
                fn, args = q.popleft()
            try:
                fn(*args)
            except Exception:
                log.exception("%s job for %s failed", self.name, key)

    def busy(self) -> dict[str, int]:
        """Jobs running or waiting, per key (status output, tests)."""
        with self._lock:
            return {k: self._running.get(k, 0) + len(self._queues.get(k, ())) for k in
                    set(self._running) | set(self._queues)}

    def shutdown(self) -> None:
        """Drop what waits; running jobs end on their own deadline."""
        with self._lock:
            self._closed = True
            for q in self._queues.values():
                q.clear()
