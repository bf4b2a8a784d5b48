"""One center's hash chain as seen by the central consumer: pure bookkeeping,
no I/O (the consumer stores, this decides).

Events arrive out of order (alarms jump the gateway's backlog; re-sent ranges
come late), so the chain is verified where it is contiguous: every seq up to
``contiguous_seq`` is stored and each one's ``prev`` is its predecessor's
``hash``. Events above that wait in ``pending`` (seq -> (id, prev, hash)) until
the gap below them is filled. Each event's own hash is checked on arrival.
"""
from __future__ import annotations

from gateway.events import GENESIS, canonical_parts, chain_hash, dump_data
from gateway.ingest.store import ChainRow

REQUIRED = {"id": str, "seq": int, "ts": str, "center": str, "type": str, "source": str, "data": dict,
            "prev": str, "hash": str}


def envelope_problem(env) -> str | None:
    """Why a payload is not an event envelope (SPEC §2), or None."""
    if not isinstance(env, dict):
        return "payload is not a JSON object"
    for k, t in REQUIRED.items():
        v = env.get(k)
        if not isinstance(v, t) or (t is int and isinstance(v, bool)):
            return f"{k}: missing or not a {t.__name__}"
    if env["seq"] < 1:
        return "seq: must be >= 1"
    return None


class CenterChain:
    def __init__(self, row: ChainRow, pending: list[tuple[int, str, str, str]] = ()):
        self.row = row
        self.pending: dict[int, tuple[str, str, str]] = {s: (i, p, h) for s, i, p, h in pending}
        self.gap_seen: dict[int, float] = {}     # gap start seq -> when first seen (monotonic)
        self.repair_at = 0.0
        self.repair_backoff = 0.0
        self.last_probe = 0.0
        self.last_event_mono = 0.0

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
