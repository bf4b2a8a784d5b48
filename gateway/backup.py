"""``casegate journal backup FILE`` (SPEC §5 v3): an online copy of the journal.

* SQLite's online backup API from a read-only connection: consistent while the
  daemon keeps writing (WAL readers never block the writer).
* The copy is created 0600 before a byte is written (it holds personal data; the
  old one-liner in operations.md gave 0644 under a default umask), under a
  temporary name beside FILE, and renamed into place only once verified: a
  failed backup leaves no file that looks like one.
* The copy is a self-contained rollback-journal database (``journal_mode=DELETE``):
  opening it to verify or restore creates no ``-wal``/``-shm`` beside it.
* Nothing is left beside the source either: a read-only connection to a WAL
  database that has no ``-wal`` file (daemon stopped cleanly) would create
  ``-wal``/``-shm`` and cannot remove them. So when the daemon is not running
  (its storage lock is free, and we hold it for the copy so none starts) and no
  ``-wal`` exists, the source is opened ``immutable=1``: nothing to merge, nothing
  created. While the daemon runs, its own ``-wal``/``-shm`` are used.
* Verified: ``PRAGMA quick_check``, then the hash chain and seq continuity
  (``gateway.journal.verify``) of the copy, which must end at the source's last
  seq at the moment of the copy.
"""
from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path

from gateway.journal import verify
from gateway.storage_lock import LOCK_NAME


class BackupError(Exception):
    pass


@dataclass
class BackupResult:
    path: str
    events: int
    first_seq: int | None
    last_seq: int | None
    bytes: int
    daemon_running: bool

    def as_dict(self) -> dict:
        return asdict(self)


def _hold_if_free(storage_dir: Path) -> int | None:
    """The storage lock's fd if no daemon holds it (we then hold it), else None.
    Opened read-only and never created: a backup run as root must not leave a
    root-owned lock file the casegate daemon could not open."""
    try:
        fd = os.open(storage_dir / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return -1          # no daemon of this release ever ran here
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd


def backup_journal(source: str | os.PathLike, dest: str | os.PathLike) -> BackupResult:
    src = Path(source)
    out = Path(dest)
    if not src.exists():
        raise BackupError(f"{src}: no journal here — check [storage] dir in the config")
    if out.exists():
        raise BackupError(f"{out}: exists — choose a new name (e.g. journal-$(date +%F).db); "
                          f"a backup never overwrites one")
    if out.resolve().parent == src.resolve().parent:
        raise BackupError(f"{out}: in the storage dir itself — write backups to another disk or folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise BackupError(f"{out.parent}: cannot create it ({e.strerror})") from None
    tmp = out.with_name(f".{out.name}.{os.getpid()}.part")
    lock_fd = _hold_if_free(src.parent)
    running = lock_fd is None
    try:
        wal = Path(str(src) + "-wal")
        uri = f"file:{src}?mode=ro" + ("" if running or wal.exists() else "&immutable=1")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise BackupError(f"{tmp}: cannot create ({e.strerror})") from None
        os.close(fd)
        try:
            s = sqlite3.connect(uri, uri=True, timeout=10)
            try:
                s.execute("PRAGMA busy_timeout=10000")
                d = sqlite3.connect(str(tmp))
                try:
                    # One step (pages=-1): the copy is one consistent snapshot even while
                    # the daemon commits (a stepwise copy restarts on every source write).
                    s.backup(d)
                    d.execute("PRAGMA journal_mode=DELETE")
                    ok = d.execute("PRAGMA quick_check").fetchone()[0]
                    d.commit()
                finally:
                    d.close()
                src_last = s.execute("SELECT MAX(seq) FROM events").fetchone()[0]
            finally:
                s.close()
            if ok != "ok":
                raise BackupError(f"the copy fails SQLite's quick_check: {ok}")
            r = verify(tmp)
            if not r.ok:
                raise BackupError(f"the copy does not verify: BROKEN at seq {r.bad_seq}: {r.reason} "
                                  f"(run `casegate journal verify` on the live journal)")
            if r.last_seq != src_last:
                raise BackupError(f"the copy ends at seq {r.last_seq}, the journal did at {src_last}")
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, out)
            dfd = os.open(out.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except BaseException:
            for p in (tmp, Path(str(tmp) + "-journal")):
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass
            raise
    except sqlite3.Error as e:
        raise BackupError(f"{src}: {e}") from None
    finally:
        if lock_fd is not None and lock_fd >= 0:
            os.close(lock_fd)
    return BackupResult(str(out), r.checked, r.first_seq, r.last_seq, out.stat().st_size, running)
