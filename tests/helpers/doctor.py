"""Probes for gateway.doctor that report a healthy host, to vary one at a time."""
from __future__ import annotations

import os

from gateway.doctor import Probes


def healthy_probes(**kw) -> Probes:
    big = os.statvfs_result((4096, 4096, 10_000_000, 9_000_000, 9_000_000, 1000, 900, 900, 0, 255))
    return Probes(statvfs=lambda path: big, clock_synced=lambda: True, unit_paths=(), **kw)
