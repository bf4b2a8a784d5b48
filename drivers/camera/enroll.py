"""``casegate face enroll <person> <image>``: enrol a photo into ``<storage_dir>/faces``.

The gateway journals ``face.enrolled`` [person] after this returns; this module only
stores the encoding. Errors are CommandError with the SPEC §3 codes: ``bad_request``
(bad person id, unreadable file, not a JPEG/PNG), ``no_face``, ``several_faces``.
"""
from __future__ import annotations

import os
from pathlib import Path

from drivers.base import CommandError
from drivers.camera.faces import MAX_IMAGE_BYTES, FaceStore, validate_person


def faces_dir(storage_dir: str | os.PathLike) -> Path:
    return Path(storage_dir) / "faces"


def enroll_bytes(storage_dir: str | os.PathLike, person: str, image_bytes: bytes) -> dict:
    """Enrol from image bytes (the MQTT ``face/enroll`` command, after base64 decoding)."""
    store = FaceStore(faces_dir(storage_dir))
    store.enroll(person, image_bytes)
    return {"person": person, "file": str(store.dir / f"{person}.npy")}


def enroll_file(storage_dir: str | os.PathLike, person: str, image_path: str | os.PathLike) -> dict:
    """Enrol ``person`` from the JPEG/PNG at ``image_path``. Returns {"person", "file"}."""
    validate_person(person)
    p = Path(image_path)
    try:
        if p.stat().st_size > MAX_IMAGE_BYTES:
            raise CommandError("bad_request", f"{p}: image larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB")
        data = p.read_bytes()
    except FileNotFoundError:
        raise CommandError("bad_request", f"{p}: no such file") from None
    except IsADirectoryError:
        raise CommandError("bad_request", f"{p}: is a directory") from None
    except PermissionError:
        raise CommandError("bad_request", f"{p}: permission denied") from None
    return enroll_bytes(storage_dir, person, data)
