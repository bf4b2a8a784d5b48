"""One center's hash chain as seen by the central consumer: pure bookkeeping,
no I/O (the consumer stores, this decides).

Events arrive out of order (alarms jump the gateway's backlog; re-sent ranges
come late), so the chain is verified where it is contiguous: every seq up to
``contiguous_seq`` is stored and each one's ``prev`` is its predecessor's
``hash``. Events above that wait in ``pending`` (seq -> (id, prev, hash)) until
the gap below them is filled. Each event's own hash is checked on arrival.
"""
from __future__ import annotations

from rules.model import GENESIS, canonical_parts, chain_hash, dump_data
from gateway.ingest.store import ChainRow
from gateway.ingest.validate import envelope_problem as _envelope_problem

CANDIDATES_MAX = 64        # conflicting candidates kept per center until the chain arbitrates
UNVERIFIED_MAX = 64        # chain.signed events waiting for their center's key


def envelope_problem(env) -> str | None:
    """Why a payload is not an event envelope (SPEC §2), or None (see validate.py)."""
    return _envelope_problem(env)


class CenterChain:
    def __init__(self, row: ChainRow, pending: list[tuple[int, str, str, str]] = ()):
        self.row = row
        self.pending: dict[int, tuple[str, str, str]] = {s: (i, p, h) for s, i, p, h in pending}
        self.gap_seen: dict[int, float] = {}     # gap start seq -> when first seen (monotonic)
        self.repair_at = 0.0
        self.repair_backoff = 0.0
        self.last_probe = 0.0
        self.last_event_mono = 0.0
        # Issue 30 item 7: seq -> (envelope, data JSON) of the losing side of a seq conflict
        # nobody could decide yet; the first later event that links to it wins the seq.
        self.candidates: dict[int, tuple[dict, str]] = {}
        self.arbitrate: set[int] = set()      # seqs to ask the gateway for again (events/resend)
        # Issue 25: a center seen on any topic is asked for what follows its stored position.
        self.probe_due = True
        self.unverified: list[dict] = []      # chain.signed envelopes whose key is not known yet
        self.resend_tokens = 0.0              # per-center repair budget (token bucket)
        self.resend_refill = 0.0

    def hash_at(self, seq: int) -> str | None:
        """The stored hash at seq when memory knows it (pending, or the verified head)."""
        if seq == self.row.contiguous_seq:
            return self.row.head_hash
        p = self.pending.get(seq)
        return p[2] if p else None

    # ---- facts --------------------------------------------------------------------
    def known(self, seq: int) -> str | None:
        """The id stored at seq if it is in memory; "" if stored but not in memory."""
        if seq <= self.row.contiguous_seq:
            return ""
        p = self.pending.get(seq)
        return p[0] if p else None

    def gaps(self, limit: int = 1000) -> list[tuple[int, int]]:
        """Missing ranges below the highest seq stored, lowest first."""
        out: list[tuple[int, int]] = []
        lo = self.row.contiguous_seq + 1
        for s in sorted(self.pending):
            if s > lo:
                out.append((lo, s - 1))
                if len(out) >= limit:
                    break
            lo = s + 1
        return out

    # ---- changes -------------------------------------------------------------------
    def add(self, env: dict, data_json: str | None = None) -> tuple[bool, list[int]]:
        """A new event (its seq is not stored). Returns (its chain_ok, seqs stored
        earlier whose link now proved broken). Advances the contiguous position.
        ``data_json``: the data as canonical JSON, if the caller has it already."""
        seq = env["seq"]
        row = self.row
        if data_json is None:
            data_json = dump_data(env["data"])
        text = canonical_parts(env["id"], seq, env["ts"], env["center"], env["type"], env["source"], data_json)
        ok = chain_hash(env["prev"], text) == env["hash"]
        if not ok:
            self._broken(seq, "hash does not match the event's content")
        self.pending[seq] = (env["id"], env["prev"], env["hash"])
        if seq > row.max_seq:
            row.max_seq = seq
            row.last_ts = env["ts"]
        # Its successor, if already here, can now be linked to it.
        nxt = self.pending.get(seq + 1)
        later_bad: list[int] = []
        if nxt is not None and nxt[1] != env["hash"]:
            self._broken(seq + 1, f"prev of seq {seq + 1} is not the hash of seq {seq}")
            later_bad.append(seq + 1)
        before = self.pending.get(seq - 1)
        if before is not None and env["prev"] != before[2]:
            ok = False
            self._broken(seq, f"prev of seq {seq} is not the hash of seq {seq - 1}")
        if seq - 1 == row.contiguous_seq and env["prev"] != row.head_hash:
            ok = False
            self._broken(seq, f"prev of seq {seq} is not the hash of seq {seq - 1}"
                         if seq > 1 else "the first event's prev is not 64 zeros")
        self._advance()
        return ok, later_bad

    def replace(self, seq: int, env: dict) -> None:
        """Another candidate takes seq (a seq conflict it won)."""
        if seq in self.pending:
            self.pending[seq] = (env["id"], env["prev"], env["hash"])
        elif seq == self.row.contiguous_seq:
            self.row.head_hash = env["hash"]

    def _advance(self) -> None:
        row = self.row
        while True:
            nxt = self.pending.pop(row.contiguous_seq + 1, None)
            if nxt is None:
                break
            row.contiguous_seq += 1
            row.head_hash = nxt[2]
        self.gap_seen = {s: t for s, t in self.gap_seen.items() if s > row.contiguous_seq}

    def _broken(self, seq: int, why: str) -> None:
        row = self.row
        if row.broken_at is None or seq < row.broken_at:
            row.broken_at = seq
            row.broken_reason = why


GENESIS_HASH = GENESIS
