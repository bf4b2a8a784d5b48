"""Checkpoints of the folded state (SPEC §7): restart is O(tail), not O(journal).

A checkpoint is the whole rule engine (``rules.engine.Engine``: State, alarms,
timers, memo, clock, ...) minus what ``Engine.configure`` derives from the
config, saved with the journal seq and hash it covers, the config it was
written under, and the *shape* of its state. Start = the newest checkpoint that
verifies + a replay of the journal after its seq; anything wrong with it
(corrupt, older format, another state shape, seq/hash not in the journal)
means a full replay, and the log says why.

Upgrades (issue 24 item 3). A checkpoint stays usable across code versions as
long as the state it holds has the same shape: the names and fields of every
class found in it (recorded while pickling) and ``STATE_REVISION``, which a
release bumps when a fold computes something different from the same events.
Classes are loaded by name, not module path (``StateUnpickler``), so moving a
module (rules/state.py into a package, the event model under rules/) does not
orphan old checkpoints. A class whose fields changed loads through a migration
registered in ``MIGRATIONS`` (old field values -> new), else full replay. The
engine's own attributes (``engine``: names, not a class) must include every one
this code's engine keeps.

Config changes. The checkpoint carries the config sections ``configure`` reads
(``CONFIG_SECTIONS``, the ones ``Config.rules_config_hash`` covers). Start under
another config = restore under the config the checkpoint was written under,
replay the tail under it (what the live daemon ran), then ``Engine.reconfigure``
to the new one, exactly as a live reload does (gateway/core.py ``rebuild``).
Only a changed ``[center]`` (which a live reload cannot apply either) or an old
config the code no longer validates falls back to a full replay.

Generic on purpose: every plain-data attribute of the engine is captured
(``vars(engine)``), so a field another module adds to State or Engine is
checkpointed without an edit here. Which attributes are config-derived is
found by running ``configure`` on a bare object, so a new derived table is
left out automatically too.

File format (one file per checkpoint, ``<storage.dir>/checkpoints/<seq>.ckpt``)::

    CASEGATE-CHECKPOINT\\n
    {"format": 2, "code": ..., "revision": ..., "shape": {...}, "modules": {...}, "engine": [...],
     "source": ..., "config": ...,
     "seq": ..., "hash": ..., "created": ..., "payload_sha256": ..., "payload_bytes": ...}\\n
    zlib(pickle({"engine": {...}, "config": {...}}))

``code`` is the fingerprint of ``revision`` + ``shape``; ``source`` the hash of
the rules' sources (informational: an upgrade that changes it alone keeps the
checkpoint). Written to a temporary name, fsynced, renamed, directory fsynced:
a kill -9 or power loss leaves either the whole file or no file under the final
name, and the payload hash catches anything else. Pickle is only ever read from
files this user owns in the 0700 storage dir (the journal's own trust level).
"""
from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import importlib
import io
import json
import logging
import os
import pickle
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from heapq import heapify
from pathlib import Path
from typing import Any, Callable, Iterable

from rules.model import format_ts

log = logging.getLogger("casegate.checkpoint")

MAGIC = b"CASEGATE-CHECKPOINT\n"
FORMAT_VERSION = 2
SUFFIX = ".ckpt"

# Bump when a fold computes something different from the same events (the state's
# shape unchanged, its meaning not): checkpoints of earlier revisions are then refused.
STATE_REVISION = 1

# (class name, its fields as the checkpoint recorded them) -> fn(old field values) -> new
# field values (fields it leaves out take their defaults). A release that changes a
# state class's fields adds an entry here (with ``migration``) or accepts a full replay.
MIGRATIONS: dict[tuple[str, tuple[str, ...]], Callable[[dict[str, Any]], dict[str, Any]]] = {}

# Where the state's classes live: looked up by name across these packages. The event model
# lived in gateway/events.py and gateway/event_schemas.py before it moved to rules/model:
# a checkpoint naming those modules resolves its classes by name (resolve: ImportError).
STATE_PACKAGES = ("rules", "gateway.events", "gateway.event_schemas")
# What Engine.configure reads: the config sections Config.rules_config_hash covers.
CONFIG_SECTIONS = frozenset({"center", "rooms", "devices", "rules"})

# Per-event scratch of the engine (reset by every apply): not state.
SCRATCH = frozenset({"dirty_rooms", "dirty_people", "dirty_tags", "dirty_suspects", "_suspects", "event"})
# An index of ``timers``, rebuilt on load (it also holds stale entries nobody needs).
REBUILT = frozenset({"_heap"})
# Used only if probing configure() on a bare object fails (it reads other attributes).
DERIVED_FALLBACK = frozenset({"config", "settings", "room_types", "room_names", "adjacent", "rooms_by_type",
                              "device_rooms", "locker_purpose", "enabled", "dispatch"})

_ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def code_fingerprint() -> str:
    """Hash of the sources of the rules and the event model. Informational since
    checkpoints carry their state's shape: an upgrade that changes it alone keeps
    the checkpoint (logged). Once per process: the code a process runs does not change
    under it (2.3 ms a store, 4 s of the rule cases' restarts)."""
    h = hashlib.sha256()
    files = sorted((_ROOT / "rules").rglob("*.py"))
    for p in files:
        h.update(p.relative_to(_ROOT).as_posix().encode())
        h.update(b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:16]


# ---- the state's shape and classes ------------------------------------------------------
def migration(cls_name: str, old_fields: Iterable[str]):
    """Register ``fn(old values) -> new values`` for checkpoints whose ``cls_name``
    had exactly ``old_fields``."""
    def deco(fn):
        MIGRATIONS[(cls_name, tuple(old_fields))] = fn
        return fn
    return deco


def _ours(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in STATE_PACKAGES)


def fields_of(cls: type) -> list[str]:
    """What a class's instances hold, as far as the class declares it."""
    if dataclasses.is_dataclass(cls):
        return [f.name for f in dataclasses.fields(cls)]
    if issubclass(cls, tuple) and hasattr(cls, "_fields"):
        return list(cls._fields)
    if issubclass(cls, enum.Enum):
        return list(cls.__members__)
    slots = getattr(cls, "__slots__", ())
    return [slots] if isinstance(slots, str) else list(slots)


def state_classes() -> dict[str, list[type]]:
    """Every class defined in the state's packages, by qualified name (some names,
    ``Door`` say, are both a state class and an event's data model)."""
    import rules.engine  # noqa: F401  (imports every rule module and the state)
    found: dict[str, list[type]] = {}
    for modname, mod in list(sys.modules.items()):
        if mod is None or not _ours(modname):
            continue
        for obj in list(vars(mod).values()):
            if isinstance(obj, type) and obj.__module__ == modname and obj not in found.get(obj.__qualname__, ()):
                found.setdefault(obj.__qualname__, []).append(obj)
    return found


def resolve(name: str, module: str | None, fields: list[str], classes: dict[str, list[type]]) -> type:
    """The class a checkpoint's ``module.name`` is now: where it was if it is still there,
    else the one class of that name (of those, the one with the recorded fields).
    Raises ValueError when there is none or no telling which."""
    if module and _ours(module):
        try:
            obj = getattr(importlib.import_module(module), name, None)
        except ImportError:
            obj = None
        if isinstance(obj, type) and obj.__qualname__ == name:
            return obj
    found = classes.get(name, [])
    if len(found) > 1:
        found = [c for c in found if fields_of(c) == list(fields)] or found
    if not found:
        raise ValueError(f"written by other code (its state holds a {name}, which this code does not define)")
    if len(found) > 1:
        raise ValueError(f"written by other code (its state holds a {name}, and "
                         f"{', '.join(sorted(c.__module__ for c in found))} each define one)")
    return found[0]


def shape_code(shape: dict[str, list[str]], revision: int = STATE_REVISION) -> str:
    raw = json.dumps({"revision": revision, "shape": shape}, sort_keys=True).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


class _ShapePickler(pickle.Pickler):
    """Pickles as usual and notes every class of the state's packages it meets."""

    def __init__(self, f):
        super().__init__(f, protocol=pickle.HIGHEST_PROTOCOL)
        self.classes: set[type] = set()

    def reducer_override(self, obj):
        cls = obj if isinstance(obj, type) else type(obj)
        if _ours(cls.__module__):
            self.classes.add(cls)
        return NotImplemented


def _migrating(cls: type, fn: Callable[[dict[str, Any]], dict[str, Any]]) -> type:
    """A stand-in that unpickles an old-shape instance of ``cls`` through ``fn`` and
    then becomes a ``cls`` (same layout: it adds no slots)."""
    fields = dataclasses.fields(cls) if dataclasses.is_dataclass(cls) else ()

    def __setstate__(self, state):
        d, slots = state if isinstance(state, tuple) else (state, None)
        values = fn({**(d or {}), **(slots or {})})
        for f in fields:
            if f.name not in values:
                if f.default is not dataclasses.MISSING:
                    values[f.name] = f.default
                elif f.default_factory is not dataclasses.MISSING:
                    values[f.name] = f.default_factory()
                else:
                    raise ValueError(f"migration of {cls.__qualname__} gives no {f.name}")
        self.__class__ = cls
        for k, v in values.items():
            object.__setattr__(self, k, v)
    return type(cls.__name__, (cls,), {"__slots__": (), "__setstate__": __setstate__})


class StateUnpickler(pickle.Unpickler):
    """Loads the state's classes by name (a class that moved module still loads),
    old-shape ones through their migration; anything else as pickle does."""

    def __init__(self, f, classes: dict[str, type]):
        super().__init__(f)
        self.classes = classes

    def find_class(self, module: str, name: str):
        if _ours(module):
            cls = self.classes.get(name)
            if cls is not None:
                return cls
        return super().find_class(module, name)


def plan_load(head: dict[str, Any], classes: dict[str, list[type]]) -> tuple[dict[str, type], list[str]]:
    """Whether this code can load a checkpoint's state: the class each recorded name
    loads as (a migrating stand-in where its fields changed), and the names migrated.
    Raises ValueError saying why not."""
    shape = head.get("shape")
    if not isinstance(shape, dict):
        raise ValueError("written by other code (no state shape recorded)")
    if head.get("revision") != STATE_REVISION:
        raise ValueError(f"written by other code (state revision {head.get('revision')}, this code folds "
                         f"revision {STATE_REVISION}: the folds compute something else now)")
    modules = head.get("modules") or {}
    loads: dict[str, type] = {}
    migrating: list[str] = []
    for name, old in sorted(shape.items()):
        cls = loads[name] = resolve(name, modules.get(name), old, classes)
        now = fields_of(cls)
        if list(old) == now:
            continue
        fn = MIGRATIONS.get((name, tuple(old)))
        if fn is None or not dataclasses.is_dataclass(cls):
            added, gone = sorted(set(now) - set(old)), sorted(set(old) - set(now))
            raise ValueError(f"written by other code ({name}'s fields changed: added {added or 'none'}, "
                             f"removed {gone or 'none'}; no migration registered)")
        loads[name] = _migrating(cls, fn)
        migrating.append(name)
    if not migrating and head.get("code") != shape_code(shape):
        raise ValueError(f"written by other code (state fingerprint {head.get('code')}, "
                         f"now {shape_code(shape)})")
    return loads, migrating


# ---- the config a checkpoint was written under ------------------------------------------
def written_config(config) -> dict[str, Any] | None:
    """What ``configure`` needs, as plain data (None for a config object that is not a Config)."""
    dump = getattr(config, "model_dump", None)
    return dump(mode="json", include=set(CONFIG_SECTIONS)) if dump is not None else None


def config_code(sections: dict[str, Any] | None) -> str | None:
    """The hash ``Config.rules_config_hash`` gives for these sections."""
    if sections is None:
        return None
    return hashlib.sha256(json.dumps(sections, sort_keys=True).encode()).hexdigest()[:16]


def config_as_written(current, sections: dict[str, Any]):
    """The config a checkpoint was written under: ``current`` with its rule-relevant
    sections as they were. Raises ValueError when a live reload could not have
    gone from it to ``current`` (the center changed) or it no longer validates."""
    if sections.get("center") != current.model_dump(mode="json", include={"center"}).get("center"):
        raise ValueError("rooms, devices, rules or center changed since it was written, and [center] "
                         "cannot be reloaded (a live reload ignores it too)")
    try:
        return type(current).model_validate({**current.model_dump(mode="json"), **sections})
    except Exception as e:
        raise ValueError(f"the config it was written under no longer validates: {e}") from None


# ---- engine state -------------------------------------------------------------------------
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


class Snapshot(bytes):
    """A pickled engine state, with what the checkpoint header says about it (``meta``)."""
    meta: dict[str, Any]


def snapshot(engine) -> Snapshot:
    """The engine's state and config, pickled (done in the writer thread: a consistent
    copy), noting the shape of every state class in it."""
    buf = io.BytesIO()
    p = _ShapePickler(buf)
    sections = written_config(engine.config)
    state = engine_state(engine)
    p.dump({"engine": state, "config": sections})
    met = sorted(p.classes, key=lambda c: (c.__qualname__, c.__module__))
    shape = {c.__qualname__: fields_of(c) for c in met}
    blob = Snapshot(buf.getvalue())
    # ``modules`` only helps find a class (it may have moved): not part of the state's code
    blob.meta = {"code": shape_code(shape), "revision": STATE_REVISION, "shape": shape,
                 "modules": {c.__qualname__: c.__module__ for c in met}, "config": config_code(sections),
                 "engine": sorted(state)}
    return blob


@dataclass
class Loaded:
    seq: int
    hash: str
    path: Path
    state: dict[str, Any]
    created: str
    config: Any = None            # the config it was written under (restore under it)
    config_changed: bool = False  # ... which is not the current one: reconfigure after the tail


class CheckpointStore:
    """The checkpoints directory: atomic writes, newest-first verified loads, pruning."""

    def __init__(self, folder: str | os.PathLike, config, keep: int = 3):
        self.dir = Path(folder)
        self.config = config
        self.keep = max(1, keep)
        self.source = code_fingerprint()
        self._busy = threading.Lock()
        self._thread: threading.Thread | None = None
        self.written = 0
        self.failed = 0
        self.last: dict[str, Any] | None = None      # {seq, created, bytes, pause_ms, write_ms}
        self.reloaded = False

    def config_reloaded(self) -> None:
        """A live config reload changed the engine in place (Engine.reconfigure keeps
        timers). Checkpoints carry the config the engine runs under, so the next one
        restores under the reloaded config and replays its tail under it: what this
        daemon does. Nothing to mark any more (the daemon's hook is kept; the flag
        only records that it happened)."""
        self.reloaded = True

    # ---- writing ------------------------------------------------------------------
    def header(self, seq: int, hash_: str, payload: bytes, meta: dict[str, Any]) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, **meta, "source": self.source,
                "seq": seq, "hash": hash_, "created": format_ts(time.time()),
                "payload_sha256": hashlib.sha256(payload).hexdigest(), "payload_bytes": len(payload)}

    def write(self, blob: Snapshot, seq: int, hash_: str, pause_ms: float = 0.0) -> Path | None:
        """Compress and store one snapshot (any thread). Returns its path, None on failure."""
        t0 = time.perf_counter()
        try:
            payload = zlib.compress(blob, 1)
            head = self.header(seq, hash_, payload, blob.meta)
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

    def write_async(self, blob: Snapshot, seq: int, hash_: str, pause_ms: float = 0.0) -> bool:
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
        """(header, engine state) of one file; raises ValueError saying what is wrong."""
        head, body = self.read_body(path)
        return head, body["engine"]

    def read_body(self, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        """(header, body) of one file; raises ValueError saying what is wrong. The body's
        ``engine`` is the state, its ``config`` the config sections it was written under."""
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
            raise ValueError(f"format {head.get('format')!r}, this version reads {FORMAT_VERSION}"
                             + (" (format 1 records neither its state's shape nor its config)"
                                if head.get("format") == 1 else ""))
        loads, migrating = plan_load(head, state_classes())
        self.check_engine(head)
        payload = raw[nl + 1:]
        if len(payload) != head.get("payload_bytes") or \
                hashlib.sha256(payload).hexdigest() != head.get("payload_sha256"):
            raise ValueError("payload damaged (length or sha256 differs)")
        try:
            body = StateUnpickler(io.BytesIO(zlib.decompress(payload)), loads).load()
        except Exception as e:
            raise ValueError(f"payload unreadable: {e}") from None
        if not isinstance(body, dict) or not isinstance(body.get("engine"), dict):
            raise ValueError("payload has no engine state")
        if config_code(body.get("config")) != head.get("config"):
            raise ValueError("rooms, devices, rules or center: the config it carries is not the one "
                             "its header names (damaged)")
        if migrating:
            log.info("checkpoint %s: migrated %s to this code's fields", path.name, ", ".join(sorted(migrating)))
        return head, body

    def check_engine(self, head: dict[str, Any]) -> None:
        """The engine's own attributes are plain names, not a class: every one this code's
        engine keeps must be in the checkpoint (one it lacks, renamed or new, would stay
        at its initial value). Extra ones (an attribute a sweep adds when it first runs,
        one this code dropped) load harmlessly."""
        from rules.engine import Engine
        recorded = head.get("engine")
        if not isinstance(recorded, list):
            raise ValueError("written by other code (no engine attributes recorded)")
        missing = sorted(set(engine_state(Engine(self.config))) - set(recorded))
        if missing:
            raise ValueError(f"written by other code (the engine now keeps {missing}, which it lacks)")

    def restore_config(self, head: dict[str, Any], body: dict[str, Any]) -> tuple[Any, bool]:
        """(config to restore under, whether it differs from the current one)."""
        if head.get("config") == self.config.rules_config_hash():
            return self.config, False
        return config_as_written(self.config, body["config"]), True

    def load_newest(self, journal_hash: Callable[[int], str | None]) -> Loaded | None:
        """The newest checkpoint that verifies, or None (full replay). ``journal_hash(seq)``
        is the journal's hash at seq (None if the journal has no such event)."""
        files = self.files()
        if not files:
            log.info("no checkpoint: full replay")
            return None
        for seq, path in files:
            try:
                head, body = self.read_body(path)
                if head.get("seq") != seq:
                    raise ValueError(f"names seq {seq} but covers {head.get('seq')}")
                jh = journal_hash(seq)
                if jh is None:
                    raise ValueError(f"the journal has no event {seq} (journal behind the checkpoint)")
                if jh != head.get("hash"):
                    raise ValueError(f"the journal's hash at seq {seq} differs (another journal)")
                config, changed = self.restore_config(head, body)
            except (OSError, ValueError) as e:
                log.warning("checkpoint %s unusable: %s", path.name, e)
                continue
            if head.get("source") != self.source:
                log.info("checkpoint %s was written by other code (sources %s, now %s); its state's "
                         "shape is this code's: used", path.name, head.get("source"), self.source)
            if changed:
                log.info("checkpoint %s was written under another config (rooms, devices, rules): restored "
                         "under that one, its tail replayed under it, then reloaded to this one", path.name)
            # the newest checkpoint on disk is this one until the next is written: retention may
            # prune below it (it said "no checkpoint yet" right after loading one), status shows it
            self.last = {"seq": seq, "created": head.get("created", ""), "bytes": path.stat().st_size,
                         "loaded": True}
            return Loaded(seq, head["hash"], path, body["engine"], head.get("created", ""), config, changed)
        log.warning("no usable checkpoint: full replay")
        return None
