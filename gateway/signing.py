"""The device key and signed chain heads (SPEC §8).

A gateway creates an Ed25519 key at its first start in ``<storage.dir>/keys/``
(private key 0600) and journals ``chain.signed`` {seq, hash, key_id, sig} over
the head of its chain: ``sig`` = Ed25519 over the UTF-8 bytes of
``<center>|<seq>|<hash>``, where seq/hash are those of the event right before
the ``chain.signed`` event. Root on the box can still rewrite the journal, but
no longer without the key, and whoever pinned the public key (ingest, a court)
can tell.

Pure functions for the verifying side (``verify_head``, ``key_id_of``,
``load_public_key``) need no config and no key file: ``casegate ingest`` and
``casegate case verify`` use them.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIGNED_TYPE = "chain.signed"
PRIVATE_FILE = "device.key"      # PKCS#8 PEM, 0600
PUBLIC_FILE = "device.pub"       # the raw public key, base64, one line (0640: nothing in the state dir is for others)


class KeyFileError(Exception):
    """A key that cannot be read or used; the message says how to fix it."""


def keys_dir(storage_dir: str | os.PathLike) -> Path:
    return Path(storage_dir) / "keys"


def raw_public(pub: Ed25519PublicKey) -> bytes:
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(raw_public_key: bytes) -> str:
    """First 16 hex digits of sha256 of the raw 32-byte public key (SPEC §8)."""
    return hashlib.sha256(raw_public_key).hexdigest()[:16]


def head_message(center: str, seq: int, hash_: str) -> bytes:
    return f"{center}|{seq}|{hash_}".encode("utf-8")


@dataclass
class Signer:
    """The device key of one center."""
    center: str
    private: Ed25519PrivateKey

    @property
    def public_raw(self) -> bytes:
        return raw_public(self.private.public_key())

    @property
    def public_b64(self) -> str:
        return base64.b64encode(self.public_raw).decode("ascii")

    @property
    def key_id(self) -> str:
        return key_id_of(self.public_raw)

    def identity(self) -> dict:
        """The retained ``P/state/identity`` payload."""
        return {"center": self.center, "key_id": self.key_id, "public_key": self.public_b64}

    def sign_head(self, seq: int, hash_: str) -> dict:
        """The data of a ``chain.signed`` event covering (seq, hash)."""
        sig = self.private.sign(head_message(self.center, seq, hash_))
        return {"seq": seq, "hash": hash_, "key_id": self.key_id, "sig": base64.b64encode(sig).decode("ascii")}


def load_or_create(storage_dir: str | os.PathLike, center: str) -> Signer:
    """The center's key, created on first use (the daemon's first start)."""
    d = keys_dir(storage_dir)
    path = d / PRIVATE_FILE
    if not path.exists():
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        tmp = d / (PRIVATE_FILE + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        signer = Signer(center, key)
        pub = d / PUBLIC_FILE
        pub.write_text(signer.public_b64 + "\n", encoding="ascii")
        os.chmod(pub, 0o640)
        return signer
    return Signer(center, _read_private(path))


def _read_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise KeyFileError(f"{path}: cannot read the device key ({e}); restore it from the backup - a new key "
                        f"would have to be pinned again by every verifier") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 key")
    return key


def read_public(storage_dir: str | os.PathLike) -> bytes | None:
    """The raw public key of a storage dir (from the private key if readable, else device.pub), or None."""
    d = keys_dir(storage_dir)
    try:
        return raw_public(_read_private(d / PRIVATE_FILE).public_key())
    except KeyFileError:
        pass
    try:
        return load_public_key((d / PUBLIC_FILE).read_text(encoding="ascii"))
    except (OSError, ValueError):
        return None


def load_public_key(text: str) -> bytes:
    """A public key as given by a person: base64 of the raw 32 bytes (as ``keys show`` and
    ``P/state/identity`` print it), 64 hex digits, or a PEM block. ValueError otherwise."""
    t = text.strip()
    if t.startswith("-----BEGIN"):
        try:
            pub = serialization.load_pem_public_key(t.encode())
        except ValueError as e:
            raise ValueError(f"not a PEM public key ({e})") from None
        if not isinstance(pub, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        return raw_public(pub)
    if len(t) == 64:
        try:
            return bytes.fromhex(t)
        except ValueError:
            pass
    try:
        raw = base64.b64decode(t, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not a public key: give the base64 text `casegate keys show` prints") from None
    if len(raw) != 32:
        raise ValueError(f"not an Ed25519 public key: {len(raw)} bytes, 32 expected")
    return raw


def verify_head(center: str, data: dict, raw_public_key: bytes) -> str | None:
    """Check a ``chain.signed`` event's data against a public key: None when the
    signature is good, else why not (``key differs`` | ``signature bad`` | a malformed field).

    Shared by ``casegate case verify`` and ``casegate ingest`` (which pins keys).
    The caller must still check that (data.seq, data.hash) is the head the
    event covers: the event right before it in the chain."""
    if not isinstance(data, dict):
        return "signature bad: no data"
    seq, h, kid, sig = data.get("seq"), data.get("hash"), data.get("key_id"), data.get("sig")
    if not isinstance(seq, int) or isinstance(seq, bool) or not isinstance(h, str) or not isinstance(sig, str):
        return "signature bad: seq, hash or sig missing"
    if kid != key_id_of(raw_public_key):
        return "key differs"
    try:
        sig_bytes = base64.b64decode(sig, validate=True)
        Ed25519PublicKey.from_public_bytes(raw_public_key).verify(sig_bytes, head_message(center, seq, h))
    except (InvalidSignature, binascii.Error, ValueError):
        return "signature bad"
    return None
