"""Signed chain heads (SPEC §8): the one place that knows how a ``chain.signed``
event is checked. Used by ``casegate ingest``; meant for ``casegate case
verify`` too, so it imports nothing of the application.

* key: Ed25519; ``key_id`` = first 16 hex digits of sha256(raw public key);
  published retained on ``P/state/identity`` as ``{center, key_id, public_key}``
  with the raw 32-byte key in base64.
* ``chain.signed`` data ``{seq, hash, key_id, sig}``: ``sig`` (base64; 128 hex
  digits accepted too) is Ed25519 over the UTF-8 bytes of
  ``<center>|<seq>|<hash>``, the head it covers: the event just before it.
* ``--keys DIR``: one file per center, ``<center>.pub``, holding the base64 raw
  public key (what ``public_key`` carries) or a PEM public key.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import re
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

_HEX = re.compile(r"[0-9a-fA-F]+\Z")


class BadKey(ValueError):
    """A public key or identity that cannot be used; the message says why."""


def key_id(raw_public_key: bytes) -> str:
    return hashlib.sha256(raw_public_key).hexdigest()[:16]


def signed_text(center: str, seq: int, head_hash: str) -> bytes:
    return f"{center}|{seq}|{head_hash}".encode("utf-8")


def decode_public_key(text: str) -> bytes:
    """The raw 32-byte Ed25519 public key from base64 (or PEM)."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        except (ValueError, UnicodeEncodeError) as e:
            raise BadKey(f"not a PEM public key: {e}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise BadKey("the PEM key is not Ed25519")
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadKey("public_key is not base64") from None
    if len(raw) != 32:
        raise BadKey(f"public_key is {len(raw)} bytes; an Ed25519 key is 32")
    return raw


def decode_sig(sig: str) -> bytes | None:
    if len(sig) == 128 and _HEX.match(sig):
        return bytes.fromhex(sig)
    try:
        raw = base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 64 else None


def identity_problem(value, center: str) -> tuple[bytes | None, str | None]:
    """(raw key, None) from a ``P/state/identity`` payload, or (None, why)."""
    if not isinstance(value, dict):
        return None, "identity is not a JSON object"
    if value.get("center") != center:
        return None, f"identity center {value.get('center')!r} is not the topic's center {center!r}"
    if not isinstance(value.get("public_key"), str) or not isinstance(value.get("key_id"), str):
        return None, "identity needs public_key and key_id strings"
    try:
        raw = decode_public_key(value["public_key"])
    except BadKey as e:
        return None, f"identity: {e}"
    if key_id(raw) != value["key_id"]:
        return None, f"identity key_id {value['key_id']!r} is not sha256(public_key)[:16] {key_id(raw)!r}"
    return raw, None


def verify_head(raw_public_key: bytes, center: str, seq: int, head_hash: str, sig: str) -> bool:
    """True when ``sig`` is the key's Ed25519 signature of ``<center>|<seq>|<hash>``."""
    sig_raw = decode_sig(sig) if isinstance(sig, str) else None
    if sig_raw is None:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(raw_public_key).verify(sig_raw, signed_text(center, seq, head_hash))
        return True
    except (InvalidSignature, ValueError):
        return False


def check_chain_signed(env: dict, keys: dict[str, bytes]) -> tuple[str, str | None]:
    """One ``chain.signed`` envelope (its own hash already verified) against the
    center's known keys ``{key_id: raw}``. Returns (verdict, why) with verdict
    ``ok`` | ``bad`` | ``unknown key``. It must cover the event just before it:
    data.seq = seq - 1 and data.hash = prev."""
    d = env.get("data") or {}
    kid = d.get("key_id")
    raw = keys.get(kid) if isinstance(kid, str) else None
    if raw is None:
        return "unknown key", f"key_id {kid!r} is not a key of center {env.get('center')!r}"
    if d.get("seq") != env["seq"] - 1 or d.get("hash") != env["prev"]:
        return "bad", f"covers seq {d.get('seq')!r}, not the head before it (seq {env['seq'] - 1})"
    if not verify_head(raw, env["center"], d["seq"], d["hash"], d.get("sig")):
        return "bad", "the Ed25519 signature does not verify"
    return "ok", None


def load_keys_dir(path: str | Path) -> dict[str, bytes]:
    """``<center>.pub`` files -> {center: raw key}; a bad file is an error naming it."""
    out: dict[str, bytes] = {}
    d = Path(path)
    if not d.is_dir():
        raise BadKey(f"--keys {d}: not a directory (one <center>.pub file per center)")
    for f in sorted(d.glob("*.pub")):
        try:
            out[f.stem] = decode_public_key(f.read_text(encoding="ascii"))
        except (BadKey, UnicodeDecodeError, OSError) as e:
            raise BadKey(f"--keys {f}: {e} (expected the base64 raw Ed25519 public key)") from None
    return out
