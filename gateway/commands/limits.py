"""Rate limits of the MQTT path: token buckets per client and in total (SPEC §3)."""
from __future__ import annotations

from typing import Callable


class TokenBuckets:
    """Token buckets by key (``per_min`` tokens a minute, as many in store), plus one
    shared bucket of twice that for all keys together: a client that names itself
    anew for every request still cannot exceed the total. Keys are bounded."""

    MAX_KEYS = 1024
    exhausted = ""        # after a refused take(): "own" (the key's bucket) or "total" (the shared one)

    def __init__(self, per_min: float, clock: Callable[[], float] | None = None):
        import time as _time
        self.per_min = float(per_min)
        self.clock = clock or _time.monotonic
        self.buckets: dict[str, list[float]] = {}      # key -> [tokens, last refill]
        self.total = [2 * self.per_min, self.clock()]

    def _refill(self, b: list[float], cap: float, now: float) -> None:
        b[0] = min(cap, b[0] + (now - b[1]) * cap / 60.0)
        b[1] = now

    def left(self, key: str) -> float:
        """Tokens left in ``key``'s bucket (as of its last refill), rounded down."""
        b = self.buckets.get(key)
        return float(int(b[0])) if b is not None else self.per_min

    def take(self, key: str, cost: float) -> float:
        """Take ``cost`` tokens for ``key``: 0.0 if granted, else the seconds to wait."""
        now = self.clock()
        cost = min(float(cost), self.per_min)           # one maximal request always fits eventually
        b = self.buckets.get(key)
        if b is None:
            if len(self.buckets) >= self.MAX_KEYS:     # forget the fullest (idlest) bucket
                del self.buckets[max(self.buckets, key=lambda k: self.buckets[k][0])]
            b = self.buckets[key] = [self.per_min, now]
        self._refill(b, self.per_min, now)
        self._refill(self.total, 2 * self.per_min, now)
        own = (cost - b[0]) * 60.0 / self.per_min
        total = (cost - self.total[0]) * 60.0 / (2 * self.per_min)
        wait = max(own, total)
        if wait > 0:
            self.exhausted = "own" if own > 0 else "total"
            return wait
        b[0] -= cost
        self.total[0] -= cost
        return 0.0


RESEND_MAX = 100_000       # SPEC §3: at most 100,000 events per events/resend
