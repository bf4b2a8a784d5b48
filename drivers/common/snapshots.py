"""Snapshot files (视频联动), one way for every camera kind: a 0600 JPEG under a 0700
``<storage_dir>/snapshots``, written atomically (a reader never sees half a picture, a
crash leaves at most a ``.tmp``), named ``<camera>-<UTC stamp>-<n>-<reason>.jpg``."""
from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path


class SnapshotTooLarge(ValueError):
    pass


class NotAJpeg(ValueError):
    pass


def write_snapshot(snapshot_dir: Path, camera: str, reason: str, n: int, ts: float, jpeg: bytes) -> Path:
    """Write ``jpeg`` and return its path; ``n`` tells apart pictures of the same millisecond."""
    return write_snapshot_stream(snapshot_dir, camera, reason, n, ts, (jpeg,), max_bytes=None)


def write_snapshot_stream(snapshot_dir: Path, camera: str, reason: str, n: int, ts: float,
                          chunks: Iterable[bytes], max_bytes: int | None) -> Path:
    """Write a JPEG arriving in ``chunks`` straight to disk (a camera's answer is never held
    whole in memory), at most ``max_bytes``: :class:`SnapshotTooLarge` past it,
    :class:`NotAJpeg` if it does not start as one; either way no file is left."""
    snapshot_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(snapshot_dir, 0o700)           # mkdir's mode is masked by the umask
    stamp = datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y%m%dT%H%M%S")
    stamp += f"{int(ts * 1000) % 1000:03d}Z"
    path = snapshot_dir / f"{camera.replace(':', '-ch')}-{stamp}-{n}-{reason}.jpg"
    tmp = path.with_suffix(".jpg.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    done = False
    try:
        os.fchmod(fd, 0o600)                # an existing .tmp keeps its old mode otherwise
        size = 0
        head = b""
        for chunk in chunks:
            if len(head) < 2:
                head = (head + chunk)[:2]
                if len(head) == 2 and head != b"\xff\xd8":
                    raise NotAJpeg("not a JPEG")
            size += len(chunk)
            if max_bytes is not None and size > max_bytes:
                raise SnapshotTooLarge(f"larger than {max_bytes // (1 << 20)} MB")
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
        if head != b"\xff\xd8":
            raise NotAJpeg("not a JPEG")
        os.fsync(fd)
        done = True
    finally:
        os.close(fd)
        if not done:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    os.replace(tmp, path)
    return path
