"""Signed chain heads (SPEC §8): the one place that knows how a ``chain.signed``
event is checked by ``casegate ingest``, on the primitives of gateway/signing.py
(which ``casegate case verify`` uses too; neither needs a config).

* key: Ed25519; ``key_id`` = first 16 hex digits of sha256(raw public key);
  published retained on ``P/state/identity`` as ``{center, key_id, public_key}``
  with the raw 32-byte key in base64.
* ``chain.signed`` data ``{seq, hash, key_id, sig}``: ``sig`` (base64) is Ed25519 over the UTF-8 bytes of
  ``<center>|<seq>|<hash>``, the head it covers: the event just before it.
* ``--keys DIR``: one file per center, ``<center>.pub``, holding the base64 raw
  public key (what ``public_key`` carries) or a PEM public key.
"""
from __future__ import annotations

from pathlib import Path

from gateway import signing
from gateway.signing import key_id_of as key_id  # noqa: F401 (the ingest's name for it)


class BadKey(ValueError):
    """A public key or identity that cannot be used; the message says why."""


def decode_public_key(text: str) -> bytes:
    """The raw 32-byte Ed25519 public key from base64 (or PEM): gateway/signing.py reads it."""
    try:
        return signing.load_public_key(text)
    except ValueError as e:
        raise BadKey(str(e)) from None


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
    """True when ``sig`` is the key's Ed25519 signature of ``<center>|<seq>|<hash>`` (gateway/signing.py)."""
    data = {"seq": seq, "hash": head_hash, "key_id": key_id(raw_public_key), "sig": sig}
    return signing.verify_head(center, data, raw_public_key) is None


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
