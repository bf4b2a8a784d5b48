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


def enroll_in_child(storage_dir: str | os.PathLike, person: str, image_bytes: bytes,
                    timeout: float = 120.0) -> dict:
    """``enroll_bytes`` in a one-shot ``python -m drivers.camera.enroll`` process.

    The daemon uses this: face_recognition loads dlib's models (~150 MB) at import
    and dlib holds the interpreter lock while it encodes, which would stall the
    journal writer; a child pays both and exits. The photo goes in on stdin, the
    answer comes back as one JSON line."""
    import json
    import subprocess
    import sys
    validate_person(person)
    from drivers.base import child_python_env
    env = child_python_env()
    try:
        r = subprocess.run([sys.executable, "-m", "drivers.camera.enroll", str(storage_dir), person],
                           input=image_bytes, capture_output=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise CommandError("device_timeout", f"face enrolment took longer than {timeout:g} s") from None
    try:
        out = json.loads(r.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = r.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise CommandError("device_refused", f"face enrolment process failed (exit {r.returncode}): {tail[0]}") \
            from None
    if not out.get("ok"):
        raise CommandError(out.get("code", "device_refused"), out.get("message", "face enrolment failed"))
    return {"person": out["person"], "file": out["file"]}


def _main(argv: list[str]) -> int:
    import json
    import sys
    storage_dir, person = argv
    try:
        res = enroll_bytes(storage_dir, person, sys.stdin.buffer.read(MAX_IMAGE_BYTES + 1))
        print(json.dumps({"ok": True, **res}))
    except CommandError as e:
        print(json.dumps({"ok": False, "code": e.code, "message": e.message}))
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(_main(sys.argv[1:]))
