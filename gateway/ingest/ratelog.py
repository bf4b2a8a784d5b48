"""Log lines about one center, rate-limited (issue 29): the first occurrence of
a kind is logged at once, later ones are counted and summarised once a minute
("center c-x: 29,999 more: chain broken ... in the last 60 s"). A center whose
chain broke sent 30,000 identical lines before this."""
from __future__ import annotations

import logging
import time


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, every_s: float = 60.0, clock=time.monotonic,
                 max_keys: int = 10_000):
        self.log, self.every_s, self.clock, self.max_keys = logger, every_s, clock, max_keys
        # (center, kind) -> [window start, suppressed count, last message, level]
        self._seen: dict[tuple[str, str], list] = {}
        self.suppressed_total = 0

    def __call__(self, level: int, center: str, kind: str, message: str) -> None:
        key = (center, kind)
        now = self.clock()
        ent = self._seen.get(key)
        if ent is None:
            if len(self._seen) >= self.max_keys:      # bounded: a flood of fake centers
                self.flush(force=True)
            self._seen[key] = [now, 0, message, level]
            self.log.log(level, "center %s: %s", center, message)
            return
        ent[1] += 1
        ent[2], ent[3] = message, level
        self.suppressed_total += 1

    def flush(self, force: bool = False) -> None:
        """Summaries for windows that are over; forgets quiet keys."""
        now = self.clock()
        for key, ent in list(self._seen.items()):
            if not force and now - ent[0] < self.every_s:
                continue
            if ent[1]:
                self.log.log(ent[3], "center %s: %d more %s in the last %d s (latest: %s)", key[0], ent[1],
                             key[1], round(now - ent[0]), ent[2])
                self._seen[key] = [now, 0, ent[2], ent[3]]
            else:
                del self._seen[key]
