"""One daemon per storage dir (SPEC §5/§7 v3): an exclusive ``flock`` on
``<storage.dir>/casegate.lock``, taken before the journal, the checkpoints or
the control socket are opened.

Why a lock and not a pid file: two daemons on one journal was seen in the field
(a second ``casegate run`` wrote seq 29-32 into the live journal, removed the
first one's socket on exit, and the first then failed every commit with
``UNIQUE constraint failed: events.seq``). A pid file can go stale after a
kill -9 or a power loss; a ``flock`` is released by the kernel when its holder
dies, so there is never a stale lock to clean up by hand. The file also holds
the holder's pid, for the message the second daemon prints (the pid is
informational; the flock is what decides).

The lock file is never removed: removing it while another process waits on it
would let a third process lock a fresh inode beside the second one.
"""
from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

LOCK_NAME = "casegate.lock"


class StorageLocked(Exception):
    """Another live process holds the storage dir's lock."""

    def __init__(self, path: Path, pid: int | None):
        self.path = path
        self.pid = pid
        who = f"pid {pid}" if pid else "another process (pid unknown)"
        super().__init__(
            f"{path.parent}: another casegate daemon ({who}) holds {path} — one daemon per storage dir. "
            f"Stop it first (systemctl stop casegate, or kill {pid or '<pid>'}), or give this one its own "
            f"[storage] dir")


def read_holder(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class StorageLock:
    """Hold ``<dir>/casegate.lock`` for the life of the daemon (``acquire`` / ``release``)."""

    def __init__(self, directory: str | os.PathLike):
        self.path = Path(directory) / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "StorageLock":
        """Take the lock or raise StorageLocked naming the holder's pid. Never blocks."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StorageLocked(self.path, read_holder(self.path)) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            os.close(fd)
