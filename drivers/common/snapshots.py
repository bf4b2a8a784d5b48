"""Snapshot files (视频联动), one way for every camera kind: a 0600 JPEG under a 0700
``<storage_dir>/snapshots``, written atomically (a reader never sees half a picture, a
crash leaves at most a ``.tmp``), named ``<camera>-<UTC stamp>-<n>-<reason>.jpg``."""
from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path


def write_snapshot(snapshot_dir: Path, camera: str, reason: str, n: int, ts: float, jpeg: bytes) -> Path:
    """Write ``jpeg`` and return its path; ``n`` tells apart pictures of the same millisecond."""
    snapshot_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(snapshot_dir, 0o700)           # mkdir's mode is masked by the umask
    stamp = datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y%m%dT%H%M%S")
    stamp += f"{int(ts * 1000) % 1000:03d}Z"
    path = snapshot_dir / f"{camera.replace(':', '-ch')}-{stamp}-{n}-{reason}.jpg"
    tmp = path.with_suffix(".jpg.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)                # an existing .tmp keeps its old mode otherwise
        os.write(fd, jpeg)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path
