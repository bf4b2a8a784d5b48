"""Checkpoints of the folded state (SPEC §7): restart is O(tail), not O(journal).

A checkpoint is the whole rule engine (``rules.engine.Engine``: State, alarms,
timers, memo, clock, ...) minus what ``Engine.configure`` derives from the
config, saved with the journal seq and hash it covers. Start = the newest
checkpoint that verifies + a replay of the journal after its seq; anything
wrong with it (corrupt, older format, other code, other config, seq/hash not
in the journal) means a full replay, and the log says why.

Generic on purpose: every plain-data attribute of the engine is captured
(``vars(engine)``), so a field another module adds to State or Engine is
checkpointed without an edit here. Which attributes are config-derived is
found by running ``configure`` on a bare object, so a new derived table is
left out automatically too.

File format (one file per checkpoint, ``<storage.dir>/checkpoints/<seq>.ckpt``)::

    CASEGATE-CHECKPOINT\\n
    {"format": 1, "code": ..., "config": ..., "seq": ..., "hash": ..., "created": ...,
     "payload_sha256": ..., "payload_bytes": ...}\\n
    zlib(pickle({"engine": {...}}))

Written to a temporary name, fsynced, renamed, directory fsynced: a kill -9
or power loss leaves either the whole file or no file under the final name,
and the payload hash catches anything else. Pickle is only ever read from
files this user owns in the 0700 storage dir (the journal's own trust level).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import threading
import time
import zlib
from dataclasses import dataclass
from heapq import heapify
from pathlib import Path
from typing import Any, Callable

from rules.model import format_ts

log = logging.getLogger("casegate.checkpoint")

MAGIC = b"CASEGATE-CHECKPOINT\n"
FORMAT_VERSION = 1
SUFFIX = ".ckpt"

# Per-event scratch of the engine (reset by every apply): not state.
SCRATCH = frozenset({"dirty_rooms", "dirty_people", "dirty_tags", "dirty_suspects", "_suspects", "event"})
# An index of ``timers``, rebuilt on load (it also holds stale entries nobody needs).
REBUILT = frozenset({"_heap"})
# Used only if probing configure() on a bare object fails (it reads other attributes).
DERIVED_FALLBACK = frozenset({"config", "settings", "room_types", "room_names", "adjacent", "rooms_by_type",
                              "device_rooms", "locker_purpose", "enabled", "dispatch"})

_ROOT = Path(__file__).resolve().parent.parent


def code_fingerprint() -> str:
    """Hash of the sources that define the folded state: rules/**/*.py (the event
    model rules/model and the folds rules/state included). An upgrade that changes
    them makes old checkpoints unusable (full replay)."""
    h = hashlib.sha256()
    files = sorted((_ROOT / "rules").rglob("*.py"))
    for p in files:
        h.update(p.relative_to(_ROOT).as_posix().encode())
        h.update(b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:16]


_derived_cache: dict[tuple[type, int], frozenset[str]] = {}


def config_derived(engine) -> frozenset[str]:
    """The engine attributes ``configure`` sets (rebuilt from the config at load).
    Probed once per engine class and config object (configure is not cheap)."""
    cls = type(engine)
    key = (cls, id(engine.config))
    got = _derived_cache.get(key)
    if got is not None:
        return got
    probe = cls.__new__(cls)
    try:
        cls.configure(probe, engine.config)
        got = frozenset(vars(probe))
    except Exception:
        got = DERIVED_FALLBACK
    if len(_derived_cache) > 16:
        _derived_cache.clear()
    _derived_cache[key] = got
    return got


def engine_state(engine) -> dict[str, Any]:
    """The engine's folded state: its attributes minus config-derived, scratch, indexes."""
    skip = config_derived(engine) | SCRATCH | REBUILT
    return {k: v for k, v in vars(engine).items() if k not in skip}


def restore_engine(engine, state: dict[str, Any]) -> None:
    """Load a checkpointed state into a freshly configured engine."""
    for k, v in state.items():
        setattr(engine, k, v)
    heap = [(d, n, k) for k, (d, n) in engine.timers.items()]
    heapify(heap)
    engine._heap = heap


def snapshot(engine) -> bytes:
    """The engine's state, pickled (done in the writer thread: a consistent copy)."""
    return pickle.dumps({"engine": engine_state(engine)}, protocol=pickle.HIGHEST_PROTOCOL)


@dataclass
class Loaded:
    seq: int
    hash: str
    path: Path
    state: dict[str, Any]
    created: str


class CheckpointStore:
    """The checkpoints directory: atomic writes, newest-first verified loads, pruning."""

    def __init__(self, folder: str | os.PathLike, config, keep: int = 3):
        self.dir = Path(folder)
        self.config = config
        self.keep = max(1, keep)
        self.code = code_fingerprint()
        self._busy = threading.Lock()
        self._thread: threading.Thread | None = None
        self.written = 0
        self.failed = 0
        self.last: dict[str, Any] | None = None      # {seq, created, bytes, pause_ms, write_ms}
        self.reloaded = False

    def config_reloaded(self) -> None:
        """A live config reload changed the engine in place (Engine.reconfigure keeps
        timers): from now on the state is not what a replay under any one config file
        gives, so checkpoints are marked never to match; the next start replays fully
        and checkpoints afresh."""
        self.reloaded = True

    # ---- writing ------------------------------------------------------------------
    def header(self, seq: int, hash_: str, payload: bytes) -> dict[str, Any]:
        config = self.config.rules_config_hash()
        return {"format": FORMAT_VERSION, "code": self.code,
                "config": f"reloaded-{config}" if self.reloaded else config,
                "seq": seq, "hash": hash_, "created": format_ts(time.time()),
                "payload_sha256": hashlib.sha256(payload).hexdigest(), "payload_bytes": len(payload)}

    def write(self, blob: bytes, seq: int, hash_: str, pause_ms: float = 0.0) -> Path | None:
        """Compress and store one snapshot (any thread). Returns its path, None on failure."""
        t0 = time.perf_counter()
        try:
            payload = zlib.compress(blob, 1)
            head = self.header(seq, hash_, payload)
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            final = self.dir / f"{seq:012d}{SUFFIX}"
            tmp = self.dir / f".{seq:012d}.{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(MAGIC)
                    f.write(json.dumps(head, sort_keys=True).encode() + b"\n")
                    f.write(payload)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, final)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
            dfd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except (OSError, pickle.PickleError) as e:
            self.failed += 1
            log.error("checkpoint at seq %d not written: %s (the next start replays more)", seq, e)
            return None
        self.written += 1
        write_ms = (time.perf_counter() - t0) * 1000
        self.last = {"seq": seq, "created": head["created"], "bytes": len(payload) + len(MAGIC),
                     "pause_ms": round(pause_ms, 2), "write_ms": round(write_ms, 1)}
        log.info("checkpoint at seq %d: %.1f MB (%.1f MB state), writer paused %.1f ms, written in %.0f ms",
                 seq, len(payload) / 1e6, len(blob) / 1e6, pause_ms, write_ms)
        self.prune()
        return final

    def write_async(self, blob: bytes, seq: int, hash_: str, pause_ms: float = 0.0) -> bool:
        """Compress and write off the writer's thread; False (skipped) if one is still being written."""
        if not self._busy.acquire(blocking=False):
            return False

        def run():
            try:
                self.write(blob, seq, hash_, pause_ms)
            finally:
                self._busy.release()
        self._thread = threading.Thread(target=run, name="checkpoint", daemon=True)
        self._thread.start()
        return True

    def wait(self, timeout: float = 30.0) -> None:
        t = self._thread
        if t is not None:
            t.join(timeout)

    def files(self) -> list[tuple[int, Path]]:
        out = []
        try:
            for p in self.dir.iterdir():
                if p.suffix == SUFFIX and p.stem.isdigit():
                    out.append((int(p.stem), p))
        except FileNotFoundError:
            return []
        return sorted(out, reverse=True)

    def prune(self) -> None:
        for _, p in self.files()[self.keep:]:
            try:
                p.unlink()
            except OSError:
                pass
        try:
            for p in self.dir.glob(".*.tmp"):     # left by a kill -9 mid-write
                if time.time() - p.stat().st_mtime > 60:
                    p.unlink()
        except OSError:
            pass

    # ---- loading --------------------------------------------------------------------
    def read(self, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        """(header, state) of one file; raises ValueError saying what is wrong."""
        st = path.stat()
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise ValueError("not owned by this user or writable by others (not trusted)")
        raw = path.read_bytes()
        if not raw.startswith(MAGIC):
            raise ValueError("not a checkpoint file")
        nl = raw.find(b"\n", len(MAGIC))
        if nl < 0:
            raise ValueError("truncated header")
        try:
            head = json.loads(raw[len(MAGIC):nl])
        except ValueError:
            raise ValueError("header is not JSON") from None
        if head.get("format") != FORMAT_VERSION:
            raise ValueError(f"format {head.get('format')!r}, this version reads {FORMAT_VERSION}")
        if head.get("code") != self.code:
            raise ValueError(f"written by other code (rules fingerprint {head.get('code')}, "
                             f"now {self.code}: upgraded)")
        if head.get("config") != self.config.rules_config_hash():
            raise ValueError("rooms, devices, rules or center changed since it was written")
        payload = raw[nl + 1:]
        if len(payload) != head.get("payload_bytes") or \
                hashlib.sha256(payload).hexdigest() != head.get("payload_sha256"):
            raise ValueError("payload damaged (length or sha256 differs)")
        try:
            body = pickle.loads(zlib.decompress(payload))
        except Exception as e:
            raise ValueError(f"payload unreadable: {e}") from None
        if not isinstance(body, dict) or not isinstance(body.get("engine"), dict):
            raise ValueError("payload has no engine state")
        return head, body["engine"]

    def load_newest(self, journal_hash: Callable[[int], str | None]) -> Loaded | None:
        """The newest checkpoint that verifies, or None (full replay). ``journal_hash(seq)``
        is the journal's hash at seq (None if the journal has no such event)."""
        files = self.files()
        if not files:
            log.info("no checkpoint: full replay")
            return None
        for seq, path in files:
            try:
                head, state = self.read(path)
                if head.get("seq") != seq:
                    raise ValueError(f"names seq {seq} but covers {head.get('seq')}")
                jh = journal_hash(seq)
                if jh is None:
                    raise ValueError(f"the journal has no event {seq} (journal behind the checkpoint)")
                if jh != head.get("hash"):
                    raise ValueError(f"the journal's hash at seq {seq} differs (another journal)")
            except (OSError, ValueError) as e:
                log.warning("checkpoint %s unusable: %s", path.name, e)
                continue
            # the newest checkpoint on disk is this one until the next is written: retention may
            # prune below it (it said "no checkpoint yet" right after loading one), status shows it
            self.last = {"seq": seq, "created": head.get("created", ""), "bytes": path.stat().st_size,
                         "loaded": True}
            return Loaded(seq, head["hash"], path, state, head.get("created", ""))
        log.warning("no usable checkpoint: full replay")
        return None
