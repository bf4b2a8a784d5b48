"""Snapshot files (视频联动), one way for every camera kind: a 0600 JPEG under a 0700
``<storage_dir>/snapshots``, written atomically (a reader never sees half a picture, a
crash leaves at most a ``.tmp``), named ``<camera>-<local stamp with offset>-<n>-<reason>.jpg``
(``cam-int1-20261206T082115.123+0800-3-alarm.jpg``): the center's local time, as every time a
person reads, with its offset so the name is still exact on a box whose clock is UTC."""
from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path


class SnapshotTooLarge(ValueError):
    pass


class NotAJpeg(ValueError):
    pass


def write_snapshot(snapshot_dir: Path, camera: str, reason: str, n: int, ts: float, jpeg: bytes,
                   tz: str | None = None) -> Path:
    """Write ``jpeg`` and return its path; ``n`` tells apart pictures of the same millisecond."""
    return write_snapshot_stream(snapshot_dir, camera, reason, n, ts, (jpeg,), max_bytes=None, tz=tz)


def snapshot_stamp(ts: float, tz: str | None) -> str:
    """``20261206T082115.123+0800`` in zone ``tz`` (UTC, ``…Z``, without one)."""
    from zoneinfo import ZoneInfo
    try:
        zone = ZoneInfo(tz) if tz else timezone.utc
    except (KeyError, ValueError):
        zone = timezone.utc
    t = datetime.fromtimestamp(ts, tz=zone)
    off = t.strftime("%z")
    return f"{t:%Y%m%dT%H%M%S}.{int(ts * 1000) % 1000:03d}" + ("Z" if off in ("+0000", "") else off)


def write_snapshot_stream(snapshot_dir: Path, camera: str, reason: str, n: int, ts: float,
                          chunks: Iterable[bytes], max_bytes: int | None, tz: str | None = None) -> Path:
    """Write a JPEG arriving in ``chunks`` straight to disk (a camera's answer is never held
    whole in memory), at most ``max_bytes``: :class:`SnapshotTooLarge` past it,
    :class:`NotAJpeg` if it does not start as one; either way no file is left."""
    snapshot_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(snapshot_dir, 0o700)           # mkdir's mode is masked by the umask
    path = snapshot_dir / f"{camera.replace(':', '-ch')}-{snapshot_stamp(ts, tz)}-{n}-{reason}.jpg"
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
