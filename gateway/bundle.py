"""The case bundle (一案一打包, SPEC §8): one zip per case that a prosecutor or a court
can verify offline, with no other case's personal data in it.

One builder serves both origins: the gateway's journal (+ its archive of pruned
ranges, ``casegate case export``) and the central database (``casegate ingest
export``, gateway/ingest/export.py). Each gives a :class:`Source`: the
registrations and custody orders (to know whose case is whose) and then every
row of the chain from a seq on, in seq order.

The zip:

* ``events.jsonl`` - whole envelopes of the case's events, in seq order;
* ``chain.jsonl`` - ``{seq, prev, hash}`` of EVERY seq from the first included
  event to the covering ``chain.signed`` (withheld and unrelated events are
  links only: no data);
* ``signatures.jsonl`` - the ``chain.signed`` envelopes in that range, the last
  one covering the head;
* ``snapshots/`` - camera stills the included alarms refer to;
* ``report.html`` - for people (gateway/case_report.py);
* ``manifest.json`` - sha256 of every file, case, center, key_id, public_key,
  created, and the seqs of the included events (so a dropped event is named);
* ``README.txt`` - how to verify.

``verify_bundle`` is the offline check behind ``casegate case verify``.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from rules.model import canonical, chain_hash, format_local, format_ts, parse_ts
from gateway.signing import SIGNED_TYPE, key_id_of, verify_head

FORMAT = "casegate-case-bundle/1"
FILES = ("events.jsonl", "chain.jsonl", "signatures.jsonl", "report.html", "README.txt")
REGISTRY_TYPES = ("person.registered", "person.updated", "custody.ordered")
# Whose data an event carries: the fields naming persons (SPEC §2).
PERSON_FIELDS = ("person", "for", "by", "approved_by")
# Events that belong to a case without naming its persons: recorders of the rooms they are in,
# escalations and stills of their alarms; and the signatures.
CANDIDATE_TYPES = ("recording.started", "recording.stopped", "alarm.escalated", "camera.snapshot", SIGNED_TYPE)


class BundleError(Exception):
    """Export impossible; the message says why and what to do."""


# A row of the chain: (seq, id, ts, center, type, source, data, prev, hash, shed).
# ``data`` is the JSON text as journaled (or a dict from a JSONB column, or None when shed).
Row = tuple


@dataclass
class Source:
    center: str
    registry: Callable[[], Iterable[tuple[int, str, dict]]]     # (seq, type, data) of REGISTRY_TYPES, seq order
    # rows from a seq on, in seq order, whose data text contains one of the needles (quoted ids)
    # or whose type is one of the types given; a superset is fine (the builder decides)
    candidates: Callable[[int, list[str], tuple[str, ...]], Iterator[Row]]
    links: Callable[[int, int], Iterator[tuple[int, str, str]]]     # (seq, prev, hash) of every seq in a range
    public_key: bytes | None = None                             # raw 32 bytes, when the origin knows it
    snapshot: Callable[[str], bytes | None] = lambda path: None
    origin: str = "journal"
    canonical_data: bool = False      # data text is already canonical JSON (the journal's): written as is


@dataclass
class Selection:
    """Who and what belongs to the case (from the registrations)."""
    case_id: str
    persons: dict[str, dict] = field(default_factory=dict)     # person -> latest registration data (+ updates)
    others: dict[str, str] = field(default_factory=dict)       # persons of other cases -> name ("" if none)
    items: set[str] = field(default_factory=set)               # evidence items (upper case)
    orders: set[str] = field(default_factory=set)
    first_seq: int | None = None


@dataclass
class _Registry:
    """The registrations folded: each person's latest data and case, and where each person and
    each of the case's evidence items first appears."""
    case_of: dict[str, str | None] = field(default_factory=dict)
    regs: dict[str, dict] = field(default_factory=dict)
    first: dict[str, int] = field(default_factory=dict)     # person, or "item:<ITEM>" -> first seq

    def registered(self, seq: int, d: dict) -> None:
        p = d.get("person")
        if not isinstance(p, str):
            return
        self.regs[p] = dict(d)
        self.first.setdefault(p, seq)
        self.case_of[p] = d.get("case_id")

    def updated(self, d: dict) -> None:
        p = d.get("person")
        ch = d.get("changes") if isinstance(d.get("changes"), dict) else {}
        if p in self.regs:
            self.regs[p].update({k: v for k, v in ch.items() if v is not None})
            if ch.get("case_id"):
                self.case_of[p] = ch["case_id"]


def select(case_id: str, registry: Iterable[tuple[int, str, dict]]) -> Selection:
    sel = Selection(case_id)
    reg = _Registry()
    for seq, typ, d in registry:
        if not isinstance(d, dict):
            continue
        if typ == "person.registered":
            reg.registered(seq, d)
        elif typ == "person.updated":
            reg.updated(d)
        elif typ == "custody.ordered" and d.get("case_id") == case_id:
            item = str(d.get("item", "")).upper()
            if item:
                sel.items.add(item)
                reg.first.setdefault("item:" + item, seq)
            if d.get("order"):
                sel.orders.add(str(d["order"]))
    mine = _case_persons(case_id, reg)
    for p in mine:
        sel.persons[p] = reg.regs[p]
    for p, r in reg.regs.items():
        if p in mine or r.get("role") not in ("suspect", "visitor"):
            continue                  # officers and staff appear as they are named
        sel.others[p] = str(r.get("name") or "")
    starts = [reg.first[p] for p in mine] + [s for k, s in reg.first.items() if k.startswith("item:")
                                             and k[5:] in sel.items]
    sel.first_seq = min(starts) if starts else None
    return sel


def _case_persons(case_id: str, reg: _Registry) -> set[str]:
    """The case's suspects, and the visitors for them or registered with the case."""
    case_of, regs = reg.case_of, reg.regs
    mine = {p for p, c in case_of.items() if c == case_id and regs[p].get("role") == "suspect"}
    # visitors for them (guardians, lawyers) belong to the case too
    mine |= {p for p, r in regs.items() if r.get("role") == "visitor" and r.get("for") in mine}
    mine |= {p for p, c in case_of.items() if c == case_id and regs[p].get("role") == "visitor"}
    return mine


def _refs(d: dict) -> set[str]:
    out = set()
    for k in PERSON_FIELDS:
        v = d.get(k)
        if isinstance(v, str):
            out.add(v)
    ps = d.get("persons")
    if isinstance(ps, list):
        out.update(p for p in ps if isinstance(p, str))
    return out


def _quoted_alternation(ids: Iterable[str]) -> re.Pattern | None:
    ids = sorted({i for i in ids if i}, key=len, reverse=True)
    if not ids:
        return None
    return re.compile("|".join(re.escape(json.dumps(i, ensure_ascii=False)) for i in ids))


def _names_pattern(names: Iterable[str]) -> re.Pattern | None:
    names = sorted({n for n in names if n and len(n) >= 2}, key=len, reverse=True)
    return re.compile("|".join(re.escape(n) for n in names)) if names else None


def _envelope(row: Row) -> dict:
    seq, id_, ts, center, typ, source, data, prev, h = row[:9]
    if isinstance(data, (str, bytes)):
        data = json.loads(data)
    return {"id": id_, "seq": seq, "ts": ts, "center": center, "type": typ, "source": source,
            "data": data, "prev": prev, "hash": h}


def _line(env: dict, data_text: str | None = None) -> str:
    """One envelope a line, its data in canonical form (sorted keys): the same bytes whatever
    the origin (PostgreSQL's jsonb reorders keys). ``data_text``: the data already canonical."""
    if data_text is None:
        data_text = json.dumps(env["data"], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return (json.dumps({k: env[k] for k in ("id", "seq", "ts", "center", "type", "source")}, ensure_ascii=False,
                       separators=(",", ":"))[:-1]
            + ',"data":' + data_text + f',"prev":"{env["prev"]}","hash":"{env["hash"]}"}}\n')


def _ranges(seqs: list[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for s in seqs:
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return out


def _expand(ranges: Any) -> list[int]:
    out: list[int] = []
    for r in ranges or []:
        a, b = int(r[0]), int(r[1])
        if b < a or b - a > 50_000_000:
            raise ValueError("bad range")
        out.extend(range(a, b + 1))
    return out


@dataclass
class ExportResult:
    path: Path
    events: int
    withheld: int
    first_seq: int
    signed_seq: int
    key_id: str | None


class _Picker:
    """Decides, candidate by candidate in seq order, what of the case leaves in the bundle."""

    def __init__(self, source: Source, sel: Selection):
        self.source = source
        self.sel = sel
        self.case_id = sel.case_id
        self.persons = set(sel.persons)
        self.case_pat = _quoted_alternation(list(self.persons) + list(sel.items) + list(sel.orders) + [self.case_id])
        self.other_ids = _quoted_alternation(sel.others)
        self.other_names = _names_pattern(sel.others.values())
        self.included: list[dict] = []
        self.withheld = 0
        self.signatures: list[dict] = []
        self.raw_data: dict[int, str] = {}            # seq -> canonical data text, when the origin keeps it so
        self.alarm_ids: set[str] = set()
        self.in_room: dict[str, set[str]] = {}        # room -> case persons inside
        self.last_rec: dict[str, dict] = {}           # room -> last recording.* envelope (maybe not yet included)
        self.await_stop: set[str] = set()             # rooms a case person left while their recorder ran
        self._included_seqs: set[int] = set()

    def needles(self) -> list[str]:
        sel = self.sel
        return sorted({json.dumps(x, ensure_ascii=False) for x in
                       list(self.persons) + list(sel.items) + list(sel.orders) + [self.case_id]})

    def include(self, env: dict, text: str | None = None) -> None:
        if self.source.canonical_data and isinstance(text, str):
            self.raw_data[env["seq"]] = text
        if env["seq"] not in self._included_seqs:
            self._included_seqs.add(env["seq"])
            self.included.append(env)

    def row(self, row: Row) -> None:
        typ, data = row[4], row[6]
        if data is None or (len(row) > 9 and row[9]):
            return                          # shed telemetry: its payload is gone, only the link remains
        if typ == SIGNED_TYPE:
            self.signatures.append(_envelope(row))
            return
        text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
        if typ.startswith("recording."):
            self._recording(_envelope(row))
        elif self.case_pat is None or not self.case_pat.search(text):
            self._alarm_follow_up(row, typ)
        else:
            self._case_event(row, typ, text)

    def _recording(self, env: dict) -> None:
        room = env["data"].get("room") if isinstance(env["data"], dict) else None
        if isinstance(room, str):
            self.last_rec[room] = env
            if self.in_room.get(room) or room in self.await_stop:
                self.include(env)
                self.await_stop.discard(room)

    def _alarm_follow_up(self, row: Row, typ: str) -> None:
        """An escalation or a still of one of the case's alarms (they do not name its persons)."""
        if typ in ("alarm.escalated", "camera.snapshot") and self.alarm_ids:
            env = _envelope(row)
            if isinstance(env["data"], dict) and env["data"].get("alarm_id") in self.alarm_ids:
                self.include(env)

    def _ours(self, typ: str, d: dict, refs: set[str]) -> bool:
        sel, case_id = self.sel, self.case_id
        item = str(d.get("item", "")).upper()
        return bool(refs & self.persons) or bool(item and item in sel.items) or (
            typ == "custody.ordered" and d.get("case_id") == case_id) or (
            typ == "locker.unlock_requested" and str(d.get("order")) in sel.orders) or (
            typ.startswith("identification.") and d.get("case_id") == case_id)

    def _names_another_case(self, refs: set[str], text: str) -> bool:
        return bool(refs & set(self.sel.others)) or (self.other_ids is not None and bool(self.other_ids.search(text))) \
            or (self.other_names is not None and bool(self.other_names.search(text)))

    def _case_event(self, row: Row, typ: str, text: str) -> None:
        env = _envelope(row)
        d = env["data"] if isinstance(env["data"], dict) else {}
        refs = _refs(d)
        if not self._ours(typ, d, refs):
            return
        if self._names_another_case(refs, text):
            self.withheld += 1                # names a person of another case: only its link leaves
            return
        self.include(env, row[6])
        if typ.startswith("alarm.") and d.get("alarm_id"):
            self.alarm_ids.add(d["alarm_id"])
        self._follow_rooms(typ, d)

    def _follow_rooms(self, typ: str, d: dict) -> None:
        """Who of the case is in which room: the recorder of the room goes with them."""
        room = d.get("room")
        who = d.get("person")
        if typ == "presence.entered" and isinstance(room, str) and who in self.persons:
            self.in_room.setdefault(room, set()).add(who)
            if room in self.last_rec:              # the recorder's state when they came in
                self.include(self.last_rec[room])
        elif typ == "presence.left" and isinstance(room, str):
            self.in_room.get(room, set()).discard(who)
            if room in self.last_rec and self.last_rec[room]["type"] == "recording.started":
                self.await_stop.add(room)          # when the recording of their questioning ended
        elif typ == "person.left":
            for occupants in self.in_room.values():
                occupants.discard(who)


def _write_chain(source: Source, first_chain: int, signed_seq: int):
    """Every link from ``first_chain`` to ``signed_seq`` into a temporary file (a month-long case
    has millions); BundleError where the origin lacks one."""
    chain_tmp = tempfile.TemporaryFile(mode="w+b")
    expect = first_chain
    out_lines: list[str] = []
    for seq, prev, h in source.links(first_chain, signed_seq):
        if seq != expect:
            chain_tmp.close()
            raise BundleError(f"the {source.origin} has no seq {expect}..{seq - 1} (pruned without its archive?): "
                              f"the chain cannot be shown from seq {first_chain} to {signed_seq}")
        out_lines.append(f'{{"seq":{seq},"prev":"{prev}","hash":"{h}"}}\n')
        if len(out_lines) >= 10_000:
            chain_tmp.write("".join(out_lines).encode())
            out_lines = []
        expect = seq + 1
    chain_tmp.write("".join(out_lines).encode())
    if expect != signed_seq + 1:
        chain_tmp.close()
        raise BundleError(f"the {source.origin} ends at seq {expect - 1}, before the signature at seq {signed_seq}")
    return chain_tmp


def _snapshots(source: Source, included: list[dict]) -> dict[str, bytes]:
    """The stills the included events refer to, by their name in the zip."""
    snapshots: dict[str, bytes] = {}
    for env in included:
        d = env["data"]
        for k in ("snapshot", "file"):
            path = d.get(k) if isinstance(d, dict) else None
            if isinstance(path, str) and path and (k == "snapshot" or env["type"] == "camera.snapshot"):
                name = "snapshots/" + Path(path).name
                if name not in snapshots:
                    blob = source.snapshot(path)
                    if blob is not None:
                        snapshots[name] = blob
    return snapshots


def _copy_chunks(src, write) -> None:
    src.seek(0)
    while True:
        chunk = src.read(1 << 20)
        if not chunk:
            break
        write(chunk)


def _write_zip(out: Path, manifest: dict, files: dict[str, bytes], chain_tmp, snapshots: dict[str, bytes]) -> None:
    tmp = out.with_name(out.name + ".tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
            z.writestr("manifest.json", json.dumps(manifest, ensure_ascii=False, indent=1))
            for name in ("README.txt", "report.html", "events.jsonl", "signatures.jsonl"):
                z.writestr(name, files[name])
            with z.open("chain.jsonl", "w", force_zip64=True) as f:
                _copy_chunks(chain_tmp, f.write)
            for name, blob in sorted(snapshots.items()):
                z.writestr(name, blob)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)          # never a half-written bundle under either name
        raise


def export_case(source: Source, case_id: str, out: str | os.PathLike, *, timezone_name: str = "UTC",
                center_name: str = "", room_names: dict[str, str] | None = None,
                room_types: dict[str, str] | None = None, now: float | None = None) -> ExportResult:
    """Build the bundle of ``case_id`` from ``source`` into ``out`` (a .zip)."""
    sel = select(case_id, source.registry())
    if sel.first_seq is None:
        raise BundleError(f"no person or evidence item of case {case_id!r} in the {source.origin}: check the case id "
                          f"(persons are registered with case_id, items by custody/order)")
    picker = _Picker(source, sel)
    # Candidates: a superset the origin finds fast (its database scans the data text for the
    # quoted ids); the decisions are made on the parsed event.
    for row in source.candidates(sel.first_seq, picker.needles(), CANDIDATE_TYPES):
        picker.row(row)
    included = picker.included
    if not included:
        raise BundleError(f"case {case_id!r}: nothing to export")
    included.sort(key=lambda e: e["seq"])
    last_included = included[-1]["seq"]
    signed_seq = next((s["seq"] for s in picker.signatures if s["seq"] > last_included), None)
    if signed_seq is None:
        raise BundleError(f"no chain.signed covers seq {last_included} yet: the gateway signs its head every "
                          f"[signing] every_s while the journal advances and at stop; wait for the next one "
                          f"and export again")
    signatures = [s for s in picker.signatures if s["seq"] <= signed_seq]
    # The links: every seq from the first included event to the covering signature.
    first_chain = included[0]["seq"]
    chain_tmp = _write_chain(source, first_chain, signed_seq)
    try:
        head_sig = signatures[-1]
        key_id = head_sig["data"].get("key_id")
        pub = source.public_key
        if pub is not None and key_id_of(pub) != key_id:
            pub = None                            # the origin's key is not the one that signed: say nothing about it
        snapshots = _snapshots(source, included)
        created = format_ts(now if now is not None else datetime.now(timezone.utc).timestamp())
        meta = {
            "format": FORMAT, "case": case_id, "center": source.center, "center_name": center_name,
            "timezone": timezone_name, "key_id": key_id,
            "public_key": base64.b64encode(pub).decode("ascii") if pub else None,
            "created": created, "origin": source.origin,
            "events": len(included), "withheld": picker.withheld,
            "first_seq": first_chain, "signed_seq": signed_seq, "signed_head": head_sig["data"].get("seq"),
            "signed_at": head_sig["ts"], "seqs": _ranges([e["seq"] for e in included]),
        }
        from gateway.case_report import render
        report = render(meta, included, sel, snapshots, room_names or {}, room_types or {})
        files: dict[str, bytes] = {
            "events.jsonl": "".join(_line(e, picker.raw_data.get(e["seq"])) for e in included).encode(),
            "signatures.jsonl": "".join(map(_line, signatures)).encode(),
            "report.html": report.encode(),
            "README.txt": README.format(case=case_id, center=source.center, key_id=key_id).encode(),
        }
        digests = {name: hashlib.sha256(blob).hexdigest() for name, blob in files.items()}
        hc = hashlib.sha256()
        _copy_chunks(chain_tmp, hc.update)
        digests["chain.jsonl"] = hc.hexdigest()
        for name, blob in snapshots.items():
            digests[name] = hashlib.sha256(blob).hexdigest()
        manifest = dict(meta, files=dict(sorted(digests.items())))
        out = Path(out)
        _write_zip(out, manifest, files, chain_tmp, snapshots)
    finally:
        chain_tmp.close()
    return ExportResult(out, len(included), picker.withheld, included[0]["seq"], signed_seq, key_id)


README = """Case bundle of case {case} from center {center} (casegate, SPEC §8)
=====================================================================

What is in it
  report.html       the case for people: each person's stay, interrogations and their recording,
                    rests, the detention clock, alarms and who handled them, evidence custody.
  events.jsonl      every recorded event of this case, exactly as the gateway journaled it.
  chain.jsonl       the hash chain (seq, prev, hash) of EVERY event from the first one shown to
                    the signed head, including events of other cases (their content is not here).
  signatures.jsonl  chain.signed events: the center's device key (key id {key_id}) signing the
                    chain's head.
  snapshots/        camera stills the alarms refer to.
  manifest.json     sha256 of each file, the case, the center, the key.

How to verify (offline, no gateway needed)
  casegate case verify THIS.zip --key <the center's public key>
The public key is what `casegate keys show` prints on the gateway and what the center publishes
(MQTT casegate/{center}/state/identity). Without --key the bundle's own key is used and a warning
asks you to compare its id with the published one.

What a pass proves: each event's content hashes to the link in the chain, every link connects to
the next up to a head signed by the device key, and no event listed in the manifest is missing
or out of order. It does not prove what never reached the journal, nor anything if the device
key itself was stolen (see docs/case-bundle.md).
"""


# ---- verify -------------------------------------------------------------------------------

@dataclass
class VerifyResult:
    ok: bool
    message: str
    warning: str | None = None
    bad_seq: int | None = None
    reason: str | None = None


def _walk_chain(blob: bytes, needed: set[int]) -> tuple[int, int, dict[int, tuple[str, str]], list]:
    """Walk chain.jsonl: seqs consecutive, each prev the hash before it. Returns (first seq,
    last seq, the links of the ``needed`` seqs, problems). Lines as the exporter writes them are
    read by slicing (0.7 s of CPU per million links; a regex took 1.1-1.7 s); any other JSON
    form of a line is read too."""
    links: dict[int, tuple[str, str]] = {}
    problems: list[tuple[int, str, str]] = []
    first = last = None
    last_hash = None
    for raw in blob.split(b"\n"):
        if not raw.strip():
            continue
        if raw[:7] == b'{"seq":' and raw[-2:] == b'"}' and raw[-76:-66] == b'","hash":"' \
                and raw[-149:-140] == b',"prev":"' and raw[7:-149].isdigit():
            seq, prev, h = int(raw[7:-149]), raw[-140:-76], raw[-66:-2]
        else:
            obj = json.loads(raw)
            seq, prev, h = int(obj["seq"]), str(obj["prev"]).encode(), str(obj["hash"]).encode()
        if first is None:
            first, last_hash = seq, prev
        elif seq != last + 1:
            problems.append((min(seq, last + 1), "event missing" if seq > last + 1 else "order",
                             f"chain.jsonl jumps from seq {last} to {seq}"))
            break
        if prev != last_hash:
            problems.append((seq, "data changed", "chain.jsonl: this link's prev is not the hash before it"))
            break
        if seq in needed:
            links[seq] = (prev.decode(), h.decode())
        last_hash, last = h, seq
    return first, last, links, problems


class _Bad(Exception):
    """The bundle fails verification: where (a seq, or None for the bundle), why, and the detail."""

    def __init__(self, seq: int | None, reason: str, detail: str):
        super().__init__(detail)
        self.seq, self.reason, self.detail = seq, reason, detail

    def result(self) -> VerifyResult:
        where = f"seq {self.seq}" if self.seq is not None else "the bundle"
        return VerifyResult(False, f"bad at {where}: {self.reason} ({self.detail})", bad_seq=self.seq,
                            reason=self.reason)


def _read_lines(blob: bytes) -> list[tuple[int, Any]]:
    """(line number, parsed JSON or None) of each non-blank line."""
    out = []
    for n, line in enumerate(blob.decode("utf-8").splitlines(), start=1):
        if line.strip():
            try:
                out.append((n, json.loads(line)))
            except ValueError:
                out.append((n, None))
    return out


class _BundleCheck:
    """One bundle's verification; ``problems`` collects (seq, reason, detail), the lowest seq is named."""

    def __init__(self, z: zipfile.ZipFile, key: bytes | None):
        self.z = z
        self.key = key
        self.names = set(z.namelist())
        self.blobs: dict[str, bytes] = {}
        self.problems: list[tuple[int, str, str]] = []

    def member(self, name: str) -> bytes:        # each member decompressed once (68 MB in a month-long case)
        if name not in self.blobs:
            self.blobs[name] = self.z.read(name)
        return self.blobs[name]

    def run(self) -> VerifyResult:
        try:
            manifest = json.loads(self.z.read("manifest.json"))
            assert isinstance(manifest, dict) and manifest.get("format") == FORMAT
        except (KeyError, ValueError, AssertionError):
            raise _Bad(None, "manifest", "manifest.json missing or not a casegate case bundle")
        self.manifest = manifest
        self.center = manifest.get("center")
        try:
            ev_lines = _read_lines(self.member("events.jsonl"))
            sig_lines = _read_lines(self.member("signatures.jsonl"))
        except (KeyError, UnicodeDecodeError) as e:
            raise _Bad(None, "manifest", f"events.jsonl or signatures.jsonl missing or unreadable: {e}")
        self._walk(ev_lines + sig_lines)
        seqs, case_named = self._events(ev_lines)
        self._listed(seqs)
        pub = self._public_key()
        sigs = [env for _, env in sig_lines]
        self._signatures(sigs, pub)
        head = sigs[-1] if sigs else None
        last = self.last
        if head is not None and isinstance(head, dict) and head.get("seq") != last:
            self.problems.append((last, "signature bad", f"the chain ends at seq {last}, the last signature is "
                                                         f"at seq {head.get('seq')}"))
        if seqs and seqs[-1] > last:
            self.problems.append((seqs[-1], "signature bad", "an event after the signed head"))
        if self.problems:
            raise _Bad(*min(self.problems, key=lambda p: p[0]))
        if not case_named:
            raise _Bad(None, "manifest", f"no event of the bundle names case {manifest.get('case')!r}")
        self._files()
        return self._passed(seqs, head)

    def _walk(self, lines: list[tuple[int, Any]]) -> None:
        needed: set[int] = set()
        for _, env in lines:
            if isinstance(env, dict) and isinstance(env.get("seq"), int):
                needed |= {env["seq"], env["seq"] - 1}
        try:
            first, last, links, chain_problems = _walk_chain(self.member("chain.jsonl"), needed)
        except (KeyError, ValueError, TypeError) as e:
            raise _Bad(None, "manifest", f"chain.jsonl missing or unreadable: {e}")
        if first is None:
            raise _Bad(None, "event missing", "chain.jsonl is empty")
        self.first, self.last, self.links = first, last, links
        self.problems += chain_problems

    def _envelope(self, env: Any, where: str, reason: str) -> int | None:
        """An envelope against its own hash, the chain's link and the center; its seq (None: not one)."""
        if not isinstance(env, dict) or not isinstance(env.get("seq"), int):
            self.problems.append((self.first, reason, f"{where}: not an event envelope"))
            return None
        seq = env["seq"]
        body = {k: env.get(k) for k in ("id", "seq", "ts", "center", "type", "source", "data")}
        if chain_hash(str(env.get("prev")), canonical(body)) != env.get("hash"):
            self.problems.append((seq, reason, f"{where}: its content does not hash to its hash"))
        elif seq not in self.links:
            self.problems.append((seq, "event missing", f"{where}: seq {seq} is not in chain.jsonl"))
        elif self.links[seq] != (env.get("prev"), env.get("hash")):
            self.problems.append((seq, reason, f"{where}: hash differs from the chain's link"))
        elif env.get("center") != self.center:
            self.problems.append((seq, reason, f"{where}: another center ({env.get('center')})"))
        return seq

    def _events(self, ev_lines: list[tuple[int, Any]]) -> tuple[list[int], bool]:
        """events.jsonl: each envelope checked, in seq order; (their seqs, whether one names the case)."""
        seqs: list[int] = []
        prev_seq = 0
        case = self.manifest.get("case")
        case_named = False         # the manifest's case label is unsigned: an event must name the case
        for i, env in ev_lines:
            if env is None:
                self.problems.append((prev_seq + 1, "data changed", f"events.jsonl line {i} is not JSON"))
                continue
            seq = self._envelope(env, f"events.jsonl line {i}", "data changed")
            if seq is None:
                continue
            if seq <= prev_seq:
                self.problems.append((seq, "order", f"events.jsonl line {i}: seq {seq} after seq {prev_seq}"))
            prev_seq = max(prev_seq, seq)
            seqs.append(seq)
            d = env.get("data") if isinstance(env.get("data"), dict) else {}
            changes = d.get("changes") if isinstance(d.get("changes"), dict) else {}
            if case is not None and case in (d.get("case_id"), changes.get("case_id")):
                case_named = True
        return seqs, case_named

    def _listed(self, seqs: list[int]) -> None:
        """The manifest's seqs against events.jsonl's."""
        try:
            listed = _expand(self.manifest.get("seqs"))
        except (ValueError, TypeError, IndexError):
            raise _Bad(None, "manifest", "manifest.json: seqs unreadable")
        missing = sorted(set(listed) - set(seqs))
        if missing:
            self.problems.append((missing[0], "event missing", f"seq {missing[0]} is listed in the manifest but not "
                                                               f"in events.jsonl ({len(missing)} missing)"))
        extra = sorted(set(seqs) - set(listed))
        if extra:
            self.problems.append((extra[0], "manifest", f"seq {extra[0]} is in events.jsonl but not in the manifest"))

    def _public_key(self) -> bytes:
        """The key to check the head's signature with: the given one (the bundle's must match it),
        else the bundle's own."""
        manifest, key = self.manifest, self.key
        if key is not None:
            if manifest.get("public_key"):
                try:
                    own = base64.b64decode(manifest["public_key"])
                except ValueError:
                    own = b""
                if own != key:
                    self.problems.append((self.last, "key differs", f"the bundle's key {manifest.get('key_id')} is "
                                                                    f"not the given key {key_id_of(key)}"))
            return key
        try:
            pub = base64.b64decode(manifest.get("public_key") or "", validate=True)
        except ValueError:
            pub = b""
        if len(pub) != 32:
            raise _Bad(None, "manifest", "the bundle carries no public key: give the center's with --key")
        return pub

    def _signatures(self, sigs: list[Any], pub: bytes) -> None:
        """Each chain.signed checked; the last must be the chain's head."""
        if not sigs:
            self.problems.append((self.last, "signature bad", "no chain.signed in signatures.jsonl"))
        head_kid = None
        if sigs and isinstance(sigs[-1], dict) and isinstance(sigs[-1].get("data"), dict):
            head_kid = sigs[-1]["data"].get("key_id")
        links = self.links
        for i, env in enumerate(sigs, start=1):
            seq = self._envelope(env, f"signatures.jsonl line {i}", "signature bad")
            if seq is None:
                continue
            d = env.get("data") if isinstance(env.get("data"), dict) else {}
            if d.get("seq") != seq - 1 or (seq - 1 in links and links[seq - 1][1] != d.get("hash")):
                self.problems.append((seq, "signature bad",
                                      f"chain.signed at seq {seq} does not sign the head before it"))
            elif i == len(sigs):
                # The head's signature covers every link before it: the Ed25519 check that matters
                # (the earlier ones are links of the same chain; checking each cost 60-380 us, 38,889
                # of them in a month-long case).
                why = verify_head(str(self.center), d, pub)
                if why is not None:
                    self.problems.append((seq, "key differs" if why == "key differs" else "signature bad",
                                          f"chain.signed at seq {seq}: {why}"))
            elif d.get("key_id") != head_kid:
                self.problems.append((seq, "key differs", f"chain.signed at seq {seq} names key {d.get('key_id')}, "
                                                          f"the head {head_kid}"))

    def _files(self) -> None:
        """The files themselves, as the manifest lists them."""
        manifest, names = self.manifest, self.names
        files = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
        for name in FILES:
            if name not in files:
                raise _Bad(None, "manifest", f"manifest.json lists no sha256 for {name}")
        for name, digest in sorted(files.items()):
            if name not in names:
                raise _Bad(None, "manifest", f"{name} is listed in manifest.json but not in the zip")
            if hashlib.sha256(self.member(name)).hexdigest() != digest:
                raise _Bad(None, "manifest", f"{name}: sha256 differs from manifest.json")
        for name in sorted(names - set(files) - {"manifest.json"}):
            raise _Bad(None, "manifest", f"{name} is in the zip but not in manifest.json")

    def _passed(self, seqs: list[int], head: dict) -> VerifyResult:
        manifest = self.manifest
        tz = manifest.get("timezone") or "UTC"
        signed_at = format_local(parse_ts(head["ts"]), tz)
        kid = head["data"]["key_id"]
        msg = (f"ok: {len(seqs)} events of case {manifest.get('case')}, seq {seqs[0] if seqs else self.first}.."
               f"{self.last}, signed {signed_at} by key {kid}")
        warning = None
        if self.key is None:
            warning = (f"warning: checked with the bundle's own key {kid}; compare it with the key the center "
                       f"publishes (`casegate keys show` on the gateway, or P/state/identity), or give --key")
        return VerifyResult(True, msg, warning)


def verify_bundle(path: str | os.PathLike, key: bytes | None = None) -> VerifyResult:
    """Check a bundle offline. ``key``: the center's raw public key (else the bundle's own)."""
    try:
        z = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        return _Bad(None, "manifest", f"not a readable zip: {e}").result()
    with z:
        try:
            return _BundleCheck(z, key).run()
        except _Bad as bad:
            return bad.result()


def read_zip_member(path: str | os.PathLike, name: str) -> bytes:
    with zipfile.ZipFile(path) as z:
        return z.read(name)


def rewrite_zip(path: str | os.PathLike, replace: dict[str, bytes]) -> None:
    """Replace members of a zip (tests and tools that tamper on purpose)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, replace.get(info.filename, src.read(info.filename)))
    Path(path).write_bytes(buf.getvalue())
