"""Retention that follows the law (SPEC §7): what pruning must keep, and the archive.

Pruning removes old, delivered events from the journal, except what an open
matter still needs: every event naming a person still in the center (their
registration, bands, presence, status), the whole chain of custody of every
item still in custody (its orders, additions and removals, and the unlocks,
opens and closes of the compartment while it was inside), and active or
unacknowledged alarms. What is removed is first written to
``<storage.dir>/archive/`` as gzip-compressed JSON Lines, one file per pruning
pass, named by the seq range it spans. The first line of a file is its header
with the chain anchors (``first_prev`` = prev of its first event, ``last_hash``
= hash of its last, and the same per contiguous run); every other line is one
event envelope exactly as journaled (a shed row has ``data: null, shed: true``).

Kept events stay in the journal with their original seq/prev/hash, so the
journal's chain has holes that the archive fills; the journal records each hole
with its anchors (table ``pruned``) so plain ``journal verify`` still checks
every link it can, and ``journal verify --archive`` proves the whole history.
"""
from __future__ import annotations

import gzip
import heapq
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any, Iterable, Iterator

from rules.model import GENESIS, Event, canonical, chain_hash, parse_ts

ARCHIVE_FORMAT = 1
ENDS_CUSTODY = frozenset({"release", "dispose"})     # custody.ordered actions after which an item is gone
FILE_RE = re.compile(r"^journal-(\d{12})-(\d{12})(?:-(\d+))?\.jsonl\.gz$")


def archive_dir(storage_dir: str | os.PathLike) -> Path:
    return Path(storage_dir) / "archive"


def latest_checkpoint_seq(storage_dir: str | os.PathLike) -> int | None:
    """The seq covered by the newest checkpoint of the folded state, or None.

    The seam for the checkpoint work (issue 12 part 1): pruning may only remove
    events the newest checkpoint already covers, else a restart (checkpoint +
    tail, or a full replay without a checkpoint) would lose state. Until
    ``gateway.checkpoint`` provides ``latest_checkpoint_seq(storage_dir)``,
    there is no checkpoint and the daemon does not prune. (The daemon's Core
    passes the seq of the checkpoint it wrote itself instead: see
    ``Core.enable_checkpoints``.)
    """
    try:
        from gateway import checkpoint  # type: ignore[attr-defined]
    except ImportError:
        return None
    fn = getattr(checkpoint, "latest_checkpoint_seq", None)
    return fn(storage_dir) if fn is not None else None


# ---- what an open matter needs ----------------------------------------------------------

@dataclass
class OpenMatters:
    """What the law still needs in the journal, from the folded state."""
    persons: set[str] = field(default_factory=set)     # registered and not yet left
    items: set[str] = field(default_factory=set)       # in a compartment or out on a removal (upper case)
    alarm_ids: set[str] = field(default_factory=set)   # active

    @classmethod
    def from_state(cls, state) -> "OpenMatters":
        """``state``: a rules.state.State (read in the writer thread)."""
        persons = {pid for pid, p in state.persons.items() if not p.left}
        items = {str(i).upper() for c in state.compartments.values() for i in c.items}
        for item, removal in state.removed.items():
            # Out of its compartment: still in custody unless released or disposed of under an order.
            order = state.orders.get(removal.order) if removal.order else None
            if order is None or order.action not in ENDS_CUSTODY:
                items.add(str(item).upper())
        return cls(persons, items, set(state.active_alarms))


class Keeper:
    """``keeper(event) -> True`` if pruning must keep it. Feed events in seq order
    (it follows each open item from compartment to compartment, like
    gateway.custody.custody_history, so the chain it keeps is the one shown)."""

    def __init__(self, matters: OpenMatters, acknowledged: set[str]):
        self.m = matters
        self.acknowledged = acknowledged
        self.orders: set[str] = set()                       # orders for open items
        self.where: dict[tuple[Any, Any], str] = {}          # compartment -> open item inside
        self.unlocked: set[tuple[Any, Any]] = set()          # unlocked under an open item's order, not closed

    def __call__(self, ev: Event) -> bool:
        d = ev.data
        if not isinstance(d, dict):
            return False          # a shed telemetry row: its payload is gone already
        try:
            return self._needed(ev.type, d)
        except TypeError:         # odd field types (a list where an id belongs): keep it, to be safe
            return True

    def _needed(self, t: str, d: dict) -> bool:
        m = self.m
        if d.get("person") in m.persons or d.get("for") in m.persons:
            return True
        persons = d.get("persons")
        if isinstance(persons, list) and any(p in m.persons for p in persons if isinstance(p, str)):
            return True
        if t.startswith("alarm."):
            aid = d.get("alarm_id")
            if aid in m.alarm_ids or aid not in self.acknowledged:
                return True
            details = str(d.get("details", "")).upper()
            return any(i in details for i in m.items) if m.items else False
        item = str(d.get("item", "")).upper()
        if t == "custody.ordered":
            if item in m.items:
                self.orders.add(d.get("order"))
                return True
            return False
        place = (d.get("locker"), d.get("compartment"))
        if t in ("evidence.added", "evidence.removed"):
            if item not in m.items:
                return False
            if t == "evidence.added":
                self.where[place] = item
            elif self.where.get(place) == item:
                del self.where[place]
            return True
        if t == "locker.unlock_requested":
            if d.get("order") in self.orders:     # opened to deposit or take it: part of its chain
                self.unlocked.add(place)
                return True
            return place in self.where
        if t in ("locker.opened", "locker.closed"):
            keep = place in self.where or place in self.unlocked
            if t == "locker.closed":
                self.unlocked.discard(place)
            return keep
        return False


# ---- archive files ------------------------------------------------------------------------

def row_envelope(seq, id_, ts, center, type_, source, data, prev, h, shed) -> dict:
    env = {"id": id_, "seq": seq, "ts": ts, "center": center, "type": type_, "source": source,
           "data": json.loads(data) if data is not None else None, "prev": prev, "hash": h}
    if shed:
        env["shed"] = True
    return env


def runs_of(links: Iterable[tuple[int, str, str]]) -> list[list]:
    """Contiguous seq runs of (seq, prev, hash) in seq order: [from_seq, to_seq, prev of first, hash of last]."""
    runs: list[list] = []
    for seq, prev, h in links:
        if runs and seq == runs[-1][1] + 1:
            runs[-1][1] = seq
            runs[-1][3] = h
        else:
            runs.append([seq, seq, prev, h])
    return runs


def _s(x: str) -> str:
    return encode_basestring(str(x))     # json's C string quoting (ensure_ascii=False): 5x json.dumps


def row_line(seq, id_, ts, center, type_, source, data, prev, h, shed) -> str:
    """One journal row as its archive line: the envelope, with the journaled data text
    as is (already canonical JSON: no parse and re-dump on the writer's thread)."""
    tail = ',"shed":true}\n' if shed else "}\n"
    body = data if data is not None else "null"
    return (f'{{"id":{_s(id_)},"seq":{seq},"ts":{_s(ts)},"center":{_s(center)},"type":{_s(type_)},'
            f'"source":{_s(source)},"data":{body},"prev":{_s(prev)},"hash":{_s(h)}') + tail


def write_archive(directory: Path, center: str, rows: list[tuple], created: str) -> Path:
    """Write journal ``rows`` (seq, id, ts, center, type, source, data, prev, hash, shed;
    sorted by seq, non-empty) as one file; durable before it returns."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    lo, hi = rows[0][0], rows[-1][0]
    name = f"journal-{lo:012d}-{hi:012d}.jsonl.gz"
    n = 1
    while (directory / name).exists():      # a pass that re-archives rows kept earlier may repeat a range
        n += 1
        name = f"journal-{lo:012d}-{hi:012d}-{n}.jsonl.gz"
    header = {"casegate_archive": ARCHIVE_FORMAT, "center": center, "from_seq": lo, "to_seq": hi,
              "count": len(rows), "first_prev": rows[0][7], "last_hash": rows[-1][8],
              "runs": runs_of((r[0], r[7], r[8]) for r in rows), "created": created}
    final = directory / name
    tmp = directory / (name + ".tmp")
    old_umask = os.umask(0o077)
    try:
        with open(tmp, "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz:
                gz.write((json.dumps(header, ensure_ascii=False) + "\n").encode())
                for i in range(0, len(rows), 5000):
                    gz.write("".join(row_line(*r) for r in rows[i:i + 5000]).encode())
            raw.flush()
            os.fsync(raw.fileno())
    finally:
        os.umask(old_umask)
    os.replace(tmp, final)
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return final


def clean_archive(directory: Path, conn) -> dict[str, list[str]]:
    """What an interrupted pruning pass leaves, removed at start (issue 30 item 8):

    * ``*.tmp`` — a file being written when the process died (never renamed: no event of
      it was deleted from the journal);
    * an archive file whose every event is still in the journal with the same hash — the
      pass died between the durable archive and the delete; the next pass archives those
      rows again, and would otherwise leave two files for one range;
    * an archive file whose events another kept file already holds, hash for hash (such a
      second pass that completed).

    Only files whose first seq is still in the journal, or whose range another file
    shares, are read: the start stays O(what is suspect), not O(archive). Returns the
    names removed per reason."""
    out: dict[str, list[str]] = {"tmp": [], "still_in_journal": [], "duplicate": []}
    if not directory.is_dir():
        return out
    for p in directory.iterdir():
        if p.name.endswith(".tmp") and p.name.startswith("journal-"):
            p.unlink(missing_ok=True)
            out["tmp"].append(p.name)
    def order(p: Path) -> tuple[int, int, int]:      # the first of a range before its "-2" copy
        m = FILE_RE.match(p.name)
        return int(m.group(1)), int(m.group(2)), int(m.group(3) or 1)
    files = sorted(archive_files(directory), key=order)
    ranges: dict[tuple[int, int], int] = {}
    for p in files:
        m = FILE_RE.match(p.name)
        ranges[(int(m.group(1)), int(m.group(2)))] = ranges.get((int(m.group(1)), int(m.group(2))), 0) + 1
    kept: dict[tuple[int, int], list[set]] = {}
    for p in files:
        m = FILE_RE.match(p.name)
        lo, hi = int(m.group(1)), int(m.group(2))
        # a file's first row is one it archived: in the journal still only if the pass died
        # before its delete (rows kept for open matters lie between, never at the ends)
        in_journal = conn.execute("SELECT 1 FROM events WHERE seq = ?", (lo,)).fetchone()
        if in_journal is None and ranges[(lo, hi)] < 2:
            continue
        try:
            links = {(e["seq"], e["hash"]) for e in read_envelopes(p)}
        except ArchiveError:
            continue            # damaged: verify --archive names it; never delete evidence here
        if not links:
            continue
        if in_journal is not None:
            have = {}
            seqs = sorted(s for s, _ in links)
            for i in range(0, len(seqs), 500):
                chunk = seqs[i:i + 500]
                have.update(conn.execute(f"SELECT seq, hash FROM events WHERE seq IN ({','.join('?' * len(chunk))})",
                                         chunk).fetchall())
            if all(have.get(s) == h for s, h in links):
                p.unlink()
                out["still_in_journal"].append(p.name)
                continue
        if any(links <= other for other in kept.get((lo, hi), [])):
            p.unlink()
            out["duplicate"].append(p.name)
            continue
        kept.setdefault((lo, hi), []).append(links)
    if any(out.values()):
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return out


def clean_archive_at_start(storage_dir: str | os.PathLike, conn) -> dict[str, list[str]]:
    """:func:`clean_archive` of ``<storage.dir>/archive``, logged (the daemon's start)."""
    import logging
    try:
        out = clean_archive(archive_dir(storage_dir), conn)
    except OSError as e:
        logging.getLogger("casegate.archive").error("archive: cleaning leftovers failed: %s", e)
        return {}
    for why, names in out.items():
        if names:
            logging.getLogger("casegate.archive").warning(
                "archive: removed %d leftover file(s) of an interrupted pruning pass (%s): %s",
                len(names), why, ", ".join(names[:5]) + (" ..." if len(names) > 5 else ""))
    return out


class ArchiveError(Exception):
    def __init__(self, path: Path, message: str):
        super().__init__(f"{path.name}: {message}")
        self.path = path


def archive_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if FILE_RE.match(p.name))


def read_header(path: Path) -> dict:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            header = json.loads(f.readline())
    except (OSError, EOFError, ValueError) as e:
        raise ArchiveError(path, f"unreadable ({e})") from None
    if not isinstance(header, dict) or header.get("casegate_archive") != ARCHIVE_FORMAT:
        raise ArchiveError(path, "not a casegate archive file (bad header)")
    return header


def read_envelopes(path: Path) -> Iterator[dict]:
    """The envelopes of one file, in seq order; ArchiveError names the file on damage."""
    read_header(path)
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            f.readline()
            for lineno, line in enumerate(f, start=2):
                try:
                    env = json.loads(line)
                except ValueError:
                    raise ArchiveError(path, f"line {lineno} is not valid JSON") from None
                if not isinstance(env, dict) or not isinstance(env.get("seq"), int):
                    raise ArchiveError(path, f"line {lineno} is not an event envelope")
                yield env
    except (OSError, EOFError) as e:
        raise ArchiveError(path, f"unreadable ({e})") from None


def _as_event(env: dict) -> Event:
    return Event(env["id"], env["seq"], env["ts"], env["center"], env["type"], env["source"],
                 env["data"], env["prev"], env["hash"], parse_ts(env["ts"]))


def iter_archived(directory: Path, types: Iterable[str] | None = None,
                  since_ts: str | None = None) -> Iterator[Event]:
    """Archived events in seq order (files may overlap in range: merged)."""
    wanted = set(types) if types else None

    def one(path: Path) -> Iterator[tuple[int, Event]]:
        for env in read_envelopes(path):
            if env.get("shed") or (wanted is not None and env.get("type") not in wanted):
                continue
            if since_ts and env.get("ts", "") < since_ts:
                continue
            yield env["seq"], _as_event(env)

    last = 0
    for seq, ev in heapq.merge(*(one(p) for p in archive_files(directory)), key=lambda x: x[0]):
        if seq != last:        # a row archived twice (crash between archive and delete) is one event
            last = seq
            yield ev


def iter_with_archive(journal_events: Iterator[Event], directory: Path, types: Iterable[str] | None = None,
                      since_ts: str | None = None) -> Iterator[Event]:
    """The journal's events merged with the archive's, in seq order: queries such as
    `casegate custody` and `trace` answer for matters whose events were pruned."""
    types = list(types) if types else None
    last = 0
    merged = heapq.merge(iter_archived(directory, types, since_ts), journal_events, key=lambda e: e.seq)
    for ev in merged:
        if ev.seq != last:
            last = ev.seq
            yield ev


# ---- journal verify --archive --------------------------------------------------------------

@dataclass
class ArchiveVerifyResult:
    ok: bool
    checked: int = 0
    archived: int = 0
    files: int = 0
    last_seq: int | None = None
    bad_seq: int | None = None
    missing: tuple[int, int] | None = None
    file: str | None = None
    reason: str = ""
    shed: int = 0


def _why_missing(conn, seq: int) -> str:
    try:
        row = conn.execute("SELECT from_seq, to_seq, prev FROM pruned WHERE from_seq <= ? AND to_seq >= ?",
                           (seq, seq)).fetchone()
    except Exception:
        row = None
    if row is not None and row[2] is None:
        return f"(pruned by release 1, which kept no archive: seq {row[0]}..{row[1]} can no longer be proven)"
    return "(an archive file was removed or moved?)"


def verify_with_archive(conn, directory: Path) -> ArchiveVerifyResult:
    """Recompute the whole chain from genesis over archive + journal (merged by seq).

    Fails naming the first bad seq (and the archive file it is in) or the first
    missing range. ``conn``: a reader connection to the journal."""
    files = archive_files(directory)
    res = ArchiveVerifyResult(ok=False, files=len(files))
    # Each file's header must agree with its contents (the anchors are what plain verify trusts).
    for path in files:
        try:
            header = read_header(path)
            envs = list(read_envelopes(path))
        except ArchiveError as e:
            res.file, res.reason = path.name, str(e)
            return res
        if not envs or header.get("count") != len(envs) or header.get("first_prev") != envs[0]["prev"] \
                or header.get("last_hash") != envs[-1]["hash"] \
                or header.get("runs") != runs_of((e["seq"], e["prev"], e["hash"]) for e in envs):
            res.file = path.name
            res.bad_seq = envs[0]["seq"] if envs else None
            res.reason = f"{path.name}: its header (count, anchors or runs) does not match its events"
            return res

    def journal_rows() -> Iterator[tuple[int, str | None, dict]]:
        from gateway.journal import EVENT_COLUMNS
        cur = conn.execute(f"SELECT {EVENT_COLUMNS}, shed FROM events ORDER BY seq")
        while True:
            rows = cur.fetchmany(5000)
            if not rows:
                return
            for r in rows:
                yield r[0], None, row_envelope(*r)

    def file_rows(path: Path) -> Iterator[tuple[int, str | None, dict]]:
        for env in read_envelopes(path):
            yield env["seq"], path.name, env

    expected_seq, expected_prev = 1, GENESIS
    last_hash_at: dict[int, str] = {}
    merged = heapq.merge(journal_rows(), *(file_rows(p) for p in files), key=lambda x: x[0])
    try:
        for seq, where, env in merged:
            if seq < expected_seq:
                # the same event in two places (a pass interrupted between writing and deleting)
                if last_hash_at.get(seq) == env.get("hash"):
                    continue
                res.bad_seq, res.file = seq, where
                res.reason = f"seq {seq} appears twice with different content" + (f" ({where})" if where else "")
                return res
            if seq > expected_seq:
                res.missing = (expected_seq, seq - 1)
                res.bad_seq = expected_seq
                res.reason = (f"seq {expected_seq}..{seq - 1} missing: in neither the journal nor "
                              f"{directory}/ " + _why_missing(conn, expected_seq))
                return res
            if env.get("prev") != expected_prev:
                res.bad_seq, res.file = seq, where
                res.reason = f"seq {seq}: prev does not match the previous event's hash" + \
                    (f" (in archive file {where})" if where else " (in the journal)")
                return res
            if env.get("shed"):
                res.shed += 1
            else:
                body = {k: env.get(k) for k in ("id", "seq", "ts", "center", "type", "source", "data")}
                if chain_hash(env["prev"], canonical(body)) != env.get("hash"):
                    res.bad_seq, res.file = seq, where
                    res.reason = f"seq {seq}: hash does not match content" + \
                        (f" (in archive file {where})" if where else " (in the journal)")
                    return res
            expected_prev = env["hash"]
            expected_seq = seq + 1
            last_hash_at = {seq: env["hash"]}
            res.checked += 1
            if where is not None:
                res.archived += 1
    except ArchiveError as e:
        res.file, res.reason = e.path.name, str(e)
        return res
    res.last_seq = expected_seq - 1 if expected_seq > 1 else None
    res.ok = True
    return res
