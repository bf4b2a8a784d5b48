"""A center's Ed25519 key exactly as SPEC §8 says, for ingest tests while the
gateway side is built elsewhere: key_id = first 16 hex of sha256(raw public key),
identity {center, key_id, public_key (base64 raw)}, chain.signed [seq, hash,
key_id, sig] with sig = Ed25519 over UTF-8 "<center>|<seq>|<hash>" of the event
before it (base64)."""
from __future__ import annotations

import base64
import hashlib
import json

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rules.model import Draft, seal


class CenterKey:
    def __init__(self, center: str):
        self.center = center
        self.private = Ed25519PrivateKey.generate()
        self.raw = self.private.public_key().public_bytes(serialization.Encoding.Raw,
                                                          serialization.PublicFormat.Raw)
        self.key_id = hashlib.sha256(self.raw).hexdigest()[:16]
        self.b64 = base64.b64encode(self.raw).decode()

    def identity(self) -> bytes:
        return json.dumps({"center": self.center, "key_id": self.key_id, "public_key": self.b64}).encode()

    def sign(self, seq: int, head_hash: str) -> str:
        return base64.b64encode(self.private.sign(f"{self.center}|{seq}|{head_hash}".encode())).decode()

    def chain_signed(self, before, ts: float, sig: str | None = None):
        """The sealed chain.signed event that follows ``before`` (a sealed event)."""
        data = {"seq": before.seq, "hash": before.hash, "key_id": self.key_id,
                "sig": sig if sig is not None else self.sign(before.seq, before.hash)}
        return seal(Draft("chain.signed", data, "gateway"), before.seq + 1, self.center, before.hash, ts)
