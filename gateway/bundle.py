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


def select(case_id: str, registry: Iterable[tuple[int, str, dict]]) -> Selection:
    sel = Selection(case_id)
    case_of: dict[str, str | None] = {}
    regs: dict[str, dict] = {}
    first: dict[str, int] = {}
    for seq, typ, d in registry:
        if not isinstance(d, dict):
            continue
        if typ == "person.registered":
            p = d.get("person")
            if not isinstance(p, str):
                continue
            regs[p] = dict(d)
            first.setdefault(p, seq)
            case_of[p] = d.get("case_id")
        elif typ == "person.updated":
            p = d.get("person")
            ch = d.get("changes") if isinstance(d.get("changes"), dict) else {}
            if p in regs:
                regs[p].update({k: v for k, v in ch.items() if v is not None})
                if ch.get("case_id"):
                    case_of[p] = ch["case_id"]
        elif typ == "custody.ordered" and d.get("case_id") == case_id:
            item = str(d.get("item", "")).upper()
            if item:
                sel.items.add(item)
                first.setdefault("item:" + item, seq)
            if d.get("order"):
                sel.orders.add(str(d["order"]))
    mine = {p for p, c in case_of.items() if c == case_id and regs[p].get("role") == "suspect"}
    # visitors for them (guardians, lawyers) belong to the case too
    mine |= {p for p, r in regs.items() if r.get("role") == "visitor" and r.get("for") in mine}
    mine |= {p for p, c in case_of.items() if c == case_id and regs[p].get("role") == "visitor"}
    for p in mine:
        sel.persons[p] = regs[p]
    for p, r in regs.items():
        if p in mine or r.get("role") not in ("suspect", "visitor"):
            continue                  # officers and staff appear as they are named
        sel.others[p] = str(r.get("name") or "")
    starts = [first[p] for p in mine] + [s for k, s in first.items() if k.startswith("item:")
                                         and k[5:] in sel.items]
    sel.first_seq = min(starts) if starts else None
    return sel


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


def export_case(source: Source, case_id: str, out: str | os.PathLike, *, timezone_name: str = "UTC",
                center_name: str = "", room_names: dict[str, str] | None = None,
                room_types: dict[str, str] | None = None, now: float | None = None) -> ExportResult:
    """Build the bundle of ``case_id`` from ``source`` into ``out`` (a .zip)."""
    sel = select(case_id, source.registry())
    if sel.first_seq is None:
        raise BundleError(f"no person or evidence item of case {case_id!r} in the {source.origin}: check the case id "
                          f"(persons are registered with case_id, items by custody/order)")
    persons = set(sel.persons)
    case_pat = _quoted_alternation(list(persons) + list(sel.items) + list(sel.orders) + [case_id])
    other_ids = _quoted_alternation(sel.others)
    other_names = _names_pattern(sel.others.values())
    included: list[dict] = []
    withheld = 0
    alarm_ids: set[str] = set()
    in_room: dict[str, set[str]] = {}          # room -> case persons inside
    last_rec: dict[str, dict] = {}             # room -> last recording.* envelope (maybe not yet included)
    await_stop: set[str] = set()               # rooms a case person left while their recorder ran
    included_seqs: set[int] = set()
    signatures: list[dict] = []

    raw_data: dict[int, str] = {}             # seq -> canonical data text, when the origin keeps it so

    def include(env: dict, text: str | None = None) -> None:
        if source.canonical_data and isinstance(text, str):
            raw_data[env["seq"]] = text
        if env["seq"] not in included_seqs:
            included_seqs.add(env["seq"])
            included.append(env)

    # Candidates: a superset the origin finds fast (its database scans the data text for the
    # quoted ids); the decisions below are made on the parsed event.
    needles = sorted({json.dumps(x, ensure_ascii=False) for x in
                      list(persons) + list(sel.items) + list(sel.orders) + [case_id]})
    for row in source.candidates(sel.first_seq, needles, CANDIDATE_TYPES):
        seq, typ, data = row[0], row[4], row[6]
        if data is None or (len(row) > 9 and row[9]):
            continue                          # shed telemetry: its payload is gone, only the link remains
        if typ == SIGNED_TYPE:
            signatures.append(_envelope(row))
            continue
        text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
        if typ.startswith("recording."):
            env = _envelope(row)
            room = env["data"].get("room") if isinstance(env["data"], dict) else None
            if isinstance(room, str):
                last_rec[room] = env
                if in_room.get(room) or room in await_stop:
                    include(env)
                    await_stop.discard(room)
            continue
        if case_pat is None or not case_pat.search(text):
            if typ in ("alarm.escalated", "camera.snapshot") and alarm_ids:
                env = _envelope(row)
                if isinstance(env["data"], dict) and env["data"].get("alarm_id") in alarm_ids:
                    include(env)
            continue
        env = _envelope(row)
        d = env["data"] if isinstance(env["data"], dict) else {}
        refs = _refs(d)
        item = str(d.get("item", "")).upper()
        ours = bool(refs & persons) or (item and item in sel.items) or (
            typ == "custody.ordered" and d.get("case_id") == case_id) or (
            typ == "locker.unlock_requested" and str(d.get("order")) in sel.orders) or (
            typ.startswith("identification.") and d.get("case_id") == case_id)
        if not ours:
            continue
        if refs & set(sel.others) or (other_ids is not None and other_ids.search(text)) or (
                other_names is not None and other_names.search(text)):
            withheld += 1                     # names a person of another case: only its link leaves
            continue
        include(env, data)
        if typ.startswith("alarm.") and d.get("alarm_id"):
            alarm_ids.add(d["alarm_id"])
        room = d.get("room")
        who = d.get("person")
        if typ == "presence.entered" and isinstance(room, str) and who in persons:
            in_room.setdefault(room, set()).add(who)
            if room in last_rec:              # the recorder's state when they came in
                include(last_rec[room])
        elif typ == "presence.left" and isinstance(room, str):
            in_room.get(room, set()).discard(who)
            if room in last_rec and last_rec[room]["type"] == "recording.started":
                await_stop.add(room)          # when the recording of their questioning ended
        elif typ == "person.left":
            for occupants in in_room.values():
                occupants.discard(who)
    if not included:
        raise BundleError(f"case {case_id!r}: nothing to export")
    included.sort(key=lambda e: e["seq"])
    last_included = included[-1]["seq"]
    signed_seq = next((s["seq"] for s in signatures if s["seq"] > last_included), None)
    if signed_seq is None:
        raise BundleError(f"no chain.signed covers seq {last_included} yet: the gateway signs its head every "
                          f"[signing] every_s while the journal advances and at stop; wait for the next one "
                          f"and export again")
    signatures = [s for s in signatures if s["seq"] <= signed_seq]
    # The links: every seq from the first included event to the covering signature.
    first_chain = included[0]["seq"]
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
    head_sig = signatures[-1]
    key_id = head_sig["data"].get("key_id")
    pub = source.public_key
    if pub is not None and key_id_of(pub) != key_id:
        pub = None                            # the origin's key is not the one that signed: say nothing about it
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
    created = format_ts(now if now is not None else datetime.now(timezone.utc).timestamp())
    meta = {
        "format": FORMAT, "case": case_id, "center": source.center, "center_name": center_name,
        "timezone": timezone_name, "key_id": key_id,
        "public_key": base64.b64encode(pub).decode("ascii") if pub else None,
        "created": created, "origin": source.origin,
        "events": len(included), "withheld": withheld,
        "first_seq": first_chain, "signed_seq": signed_seq, "signed_head": head_sig["data"].get("seq"),
        "signed_at": head_sig["ts"], "seqs": _ranges([e["seq"] for e in included]),
    }
    from gateway.case_report import render
    report = render(meta, included, sel, snapshots, room_names or {}, room_types or {})
    files: dict[str, bytes] = {
        "events.jsonl": "".join(_line(e, raw_data.get(e["seq"])) for e in included).encode(),
        "signatures.jsonl": "".join(map(_line, signatures)).encode(),
        "report.html": report.encode(),
        "README.txt": README.format(case=case_id, center=source.center, key_id=key_id).encode(),
    }
    digests = {name: hashlib.sha256(blob).hexdigest() for name, blob in files.items()}
    chain_tmp.seek(0)
    hc = hashlib.sha256()
    while True:
        chunk = chain_tmp.read(1 << 20)
        if not chunk:
            break
        hc.update(chunk)
    digests["chain.jsonl"] = hc.hexdigest()
    for name, blob in snapshots.items():
        digests[name] = hashlib.sha256(blob).hexdigest()
    manifest = dict(meta, files=dict(sorted(digests.items())))
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
            z.writestr("manifest.json", json.dumps(manifest, ensure_ascii=False, indent=1))
            for name in ("README.txt", "report.html", "events.jsonl", "signatures.jsonl"):
                z.writestr(name, files[name])
            chain_tmp.seek(0)
            with z.open("chain.jsonl", "w", force_zip64=True) as f:
                while True:
                    chunk = chain_tmp.read(1 << 20)
                    if not chunk:
                        break
                    f.write(chunk)
            for name, blob in sorted(snapshots.items()):
                z.writestr(name, blob)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)          # never a half-written bundle under either name
        raise
    finally:
        chain_tmp.close()
    return ExportResult(out, len(included), withheld, included[0]["seq"], signed_seq, key_id)


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


def verify_bundle(path: str | os.PathLike, key: bytes | None = None) -> VerifyResult:
    """Check a bundle offline. ``key``: the center's raw public key (else the bundle's own)."""
    def bad(seq: int | None, reason: str, detail: str) -> VerifyResult:
        where = f"seq {seq}" if seq is not None else "the bundle"
        return VerifyResult(False, f"bad at {where}: {reason} ({detail})", bad_seq=seq, reason=reason)

    try:
        z = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        return bad(None, "manifest", f"not a readable zip: {e}")
    with z:
        names = set(z.namelist())
        blobs: dict[str, bytes] = {}

        def member(name: str) -> bytes:        # each member decompressed once (68 MB in a month-long case)
            if name not in blobs:
                blobs[name] = z.read(name)
            return blobs[name]

        try:
            manifest = json.loads(z.read("manifest.json"))
            assert isinstance(manifest, dict) and manifest.get("format") == FORMAT
        except (KeyError, ValueError, AssertionError):
            return bad(None, "manifest", "manifest.json missing or not a casegate case bundle")
        center = manifest.get("center")
        problems: list[tuple[int, str, str]] = []       # (seq, reason, detail): the lowest seq is named
        def read_lines(name: str) -> list[tuple[int, Any]]:
            out = []
            for n, line in enumerate(member(name).decode("utf-8").splitlines(), start=1):
                if line.strip():
                    try:
                        out.append((n, json.loads(line)))
                    except ValueError:
                        out.append((n, None))
            return out

        try:
            ev_lines = read_lines("events.jsonl")
            sig_lines = read_lines("signatures.jsonl")
        except (KeyError, UnicodeDecodeError) as e:
            return bad(None, "manifest", f"events.jsonl or signatures.jsonl missing or unreadable: {e}")
        needed: set[int] = set()
        for _, env in ev_lines + sig_lines:
            if isinstance(env, dict) and isinstance(env.get("seq"), int):
                needed |= {env["seq"], env["seq"] - 1}
        try:
            first, last, links, chain_problems = _walk_chain(member("chain.jsonl"), needed)
        except (KeyError, ValueError, TypeError) as e:
            return bad(None, "manifest", f"chain.jsonl missing or unreadable: {e}")
        if first is None:
            return bad(None, "event missing", "chain.jsonl is empty")
        problems += chain_problems

        def check_env(env: Any, where: str, reason: str) -> int | None:
            if not isinstance(env, dict) or not isinstance(env.get("seq"), int):
                problems.append((first, reason, f"{where}: not an event envelope"))
                return None
            seq = env["seq"]
            body = {k: env.get(k) for k in ("id", "seq", "ts", "center", "type", "source", "data")}
            if chain_hash(str(env.get("prev")), canonical(body)) != env.get("hash"):
                problems.append((seq, reason, f"{where}: its content does not hash to its hash"))
            elif seq not in links:
                problems.append((seq, "event missing", f"{where}: seq {seq} is not in chain.jsonl"))
            elif links[seq] != (env.get("prev"), env.get("hash")):
                problems.append((seq, reason, f"{where}: hash differs from the chain's link"))
            elif env.get("center") != center:
                problems.append((seq, reason, f"{where}: another center ({env.get('center')})"))
            return seq

        seqs: list[int] = []
        prev_seq = 0
        case_named = False         # the manifest's case label is unsigned: an event must name the case
        for i, env in ev_lines:
            if env is None:
                problems.append((prev_seq + 1, "data changed", f"events.jsonl line {i} is not JSON"))
                continue
            seq = check_env(env, f"events.jsonl line {i}", "data changed")
            if seq is None:
                continue
            if seq <= prev_seq:
                problems.append((seq, "order", f"events.jsonl line {i}: seq {seq} after seq {prev_seq}"))
            prev_seq = max(prev_seq, seq)
            seqs.append(seq)
            d = env.get("data") if isinstance(env.get("data"), dict) else {}
            changes = d.get("changes") if isinstance(d.get("changes"), dict) else {}
            if manifest.get("case") is not None and manifest.get("case") in (d.get("case_id"), changes.get("case_id")):
                case_named = True
        try:
            listed = _expand(manifest.get("seqs"))
        except (ValueError, TypeError, IndexError):
            return bad(None, "manifest", "manifest.json: seqs unreadable")
        missing = sorted(set(listed) - set(seqs))
        if missing:
            problems.append((missing[0], "event missing", f"seq {missing[0]} is listed in the manifest but not "
                                                          f"in events.jsonl ({len(missing)} missing)"))
        extra = sorted(set(seqs) - set(listed))
        if extra:
            problems.append((extra[0], "manifest", f"seq {extra[0]} is in events.jsonl but not in the manifest"))
        # signatures: each one verified; the last must be the chain's head
        if key is not None:
            pub = key
            if manifest.get("public_key"):
                try:
                    own = base64.b64decode(manifest["public_key"])
                except ValueError:
                    own = b""
                if own != key:
                    problems.append((last, "key differs", f"the bundle's key {manifest.get('key_id')} is not "
                                                          f"the given key {key_id_of(key)}"))
        else:
            try:
                pub = base64.b64decode(manifest.get("public_key") or "", validate=True)
            except ValueError:
                pub = b""
            if len(pub) != 32:
                return bad(None, "manifest", "the bundle carries no public key: give the center's with --key")
        sig_lines = [env for _, env in sig_lines]
        if not sig_lines:
            problems.append((last, "signature bad", "no chain.signed in signatures.jsonl"))
        head_kid = None
        if sig_lines and isinstance(sig_lines[-1], dict) and isinstance(sig_lines[-1].get("data"), dict):
            head_kid = sig_lines[-1]["data"].get("key_id")
        for i, env in enumerate(sig_lines, start=1):
            seq = check_env(env, f"signatures.jsonl line {i}", "signature bad")
            if seq is None:
                continue
            d = env.get("data") if isinstance(env.get("data"), dict) else {}
            if d.get("seq") != seq - 1 or (seq - 1 in links and links[seq - 1][1] != d.get("hash")):
                problems.append((seq, "signature bad", f"chain.signed at seq {seq} does not sign the head before it"))
            elif i == len(sig_lines):
                # The head's signature covers every link before it: the Ed25519 check that matters
                # (the earlier ones are links of the same chain; checking each cost 60-380 us, 38,889
                # of them in a month-long case).
                why = verify_head(str(center), d, pub)
                if why is not None:
                    problems.append((seq, "key differs" if why == "key differs" else "signature bad",
                                     f"chain.signed at seq {seq}: {why}"))
            elif d.get("key_id") != head_kid:
                problems.append((seq, "key differs", f"chain.signed at seq {seq} names key {d.get('key_id')}, "
                                                     f"the head {head_kid}"))
        head = sig_lines[-1] if sig_lines else None
        if head is not None and isinstance(head, dict) and head.get("seq") != last:
            problems.append((last, "signature bad", f"the chain ends at seq {last}, the last signature is "
                                                    f"at seq {head.get('seq')}"))
        if seqs and seqs[-1] > last:
            problems.append((seqs[-1], "signature bad", "an event after the signed head"))
        if problems:
            seq, reason, detail = min(problems, key=lambda p: p[0])
            return bad(seq, reason, detail)
        if not case_named:
            return bad(None, "manifest", f"no event of the bundle names case {manifest.get('case')!r}")
        # the files themselves, as the manifest lists them
        files = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
        for name in FILES:
            if name not in files:
                return bad(None, "manifest", f"manifest.json lists no sha256 for {name}")
        for name, digest in sorted(files.items()):
            if name not in names:
                return bad(None, "manifest", f"{name} is listed in manifest.json but not in the zip")
            if hashlib.sha256(member(name)).hexdigest() != digest:
                return bad(None, "manifest", f"{name}: sha256 differs from manifest.json")
        for name in sorted(names - set(files) - {"manifest.json"}):
            return bad(None, "manifest", f"{name} is in the zip but not in manifest.json")
    tz = manifest.get("timezone") or "UTC"
    signed_at = format_local(parse_ts(head["ts"]), tz)
    kid = head["data"]["key_id"]
    msg = (f"ok: {len(seqs)} events of case {manifest.get('case')}, seq {seqs[0] if seqs else first}..{last}, "
           f"signed {signed_at} by key {kid}")
    warning = None
    if key is None:
        warning = (f"warning: checked with the bundle's own key {kid}; compare it with the key the center "
                   f"publishes (`casegate keys show` on the gateway, or P/state/identity), or give --key")
    return VerifyResult(True, msg, warning)


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
