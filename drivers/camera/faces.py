"""The face store: one 128-d face encoding per enrolled person (SPEC §3 face/enroll).

Layout: ``<storage_dir>/faces/<person>.npy`` (directory 0700, files 0600), each
file a float64 array of shape (128,) written by :func:`numpy.save` (no pickle).
Files are replaced atomically (temp file + rename), so a reader in another
thread or process never sees half a file. :meth:`FaceStore.refresh` notices
files written by another FaceStore instance (the gateway's ``face/enroll``
handler, ``casegate face enroll`` run while the daemon is up) from a cheap
directory listing and reloads; drivers call it at most every second.

dlib and its models (the ones face_recognition ships, used the way
face_recognition uses them) are loaded lazily, a pool of one set per concurrent
thread: a center without cameras never loads them.
"""
from __future__ import annotations

import os
import re
import tempfile
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from drivers.base import CommandError

PERSON_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}")      # always fullmatch()
MAX_IMAGE_BYTES = 20 * 1024 * 1024
ENROL_MAX_SIDE = 1024          # enrolment photos are downscaled to this before detection
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Models:
    """One set of dlib models: HOG face detector, 5-point landmarks, ResNet face encoder.

    dlib model objects are not safe to share between threads (dlib says so, and a
    camera thread and an enrolment running face_recognition's shared HOG detector
    at once segfaulted the process), so each caller borrows a whole set from a pool;
    the pool grows to the number of threads that ever analyse at the same time.
    """

    def __init__(self):
        import dlib  # noqa: PLC0415
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")          # pkg_resources deprecation
            import face_recognition_models as frm  # noqa: PLC0415
        self.detector = dlib.get_frontal_face_detector()
        self.landmarks = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self.encoder = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
        self.rectangle = dlib.rectangle


_pool: list[_Models] = []
_pool_lock = threading.Lock()


@contextmanager
def _models():
    with _pool_lock:
        m = _pool.pop() if _pool else None
    if m is None:
        m = _Models()
    try:
        yield m
    finally:
        with _pool_lock:
            _pool.append(m)


def preload() -> None:
    """Load one model set now (~1-2 s), so the first motion is not delayed by it."""
    with _models():
        pass


def to_rgb(frame: np.ndarray, bgr: bool = True) -> np.ndarray:
    """Any 8-bit frame (grey HxW, HxWx1, BGR, BGRA) -> contiguous RGB uint8, as dlib wants."""
    import cv2  # noqa: PLC0415
    if frame.dtype != np.uint8:
        frame = cv2.normalize(frame, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if frame.ndim == 2:
        out = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    elif frame.shape[2] == 1:
        out = cv2.cvtColor(frame[:, :, 0], cv2.COLOR_GRAY2RGB)
    elif frame.shape[2] == 4:
        out = cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB if bgr else cv2.COLOR_RGBA2RGB)
    else:
        out = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if bgr else frame
    return np.ascontiguousarray(out)


def detect_faces(rgb: np.ndarray, upsample: int = 1) -> list[tuple[int, int, int, int]]:
    """Face boxes (top, right, bottom, left) with dlib's HOG detector (CPU-cheap)."""
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    with _models() as m:
        rects = m.detector(rgb, upsample)
    return [(max(r.top(), 0), min(r.right(), w), min(r.bottom(), h), max(r.left(), 0)) for r in rects]


def encode_faces(rgb: np.ndarray, boxes) -> list[np.ndarray]:
    """128-d encodings (as face_recognition.face_encodings: 5-point landmarks, 1 jitter)."""
    if not boxes:
        return []
    rgb = np.ascontiguousarray(rgb)
    out = []
    with _models() as m:
        for top, right, bottom, left in boxes:
            shape = m.landmarks(rgb, m.rectangle(left, top, right, bottom))
            out.append(np.array(m.encoder.compute_face_descriptor(rgb, shape, 1)))
    return out


def validate_person(person: str) -> str:
    if not isinstance(person, str) or not PERSON_RE.fullmatch(person) or set(person) == {"."}:
        raise CommandError("bad_request", f"person id must match [A-Za-z0-9_.-]+, got {person!r}")
    return person


def decode_image(image_bytes: bytes) -> np.ndarray:
    """JPEG/PNG bytes -> BGR array, or CommandError bad_request."""
    import cv2  # noqa: PLC0415
    if not isinstance(image_bytes, (bytes, bytearray, memoryview)):
        raise CommandError("bad_request", "not a JPEG or PNG image")
    data = bytes(image_bytes)
    if len(data) > MAX_IMAGE_BYTES:
        raise CommandError("bad_request", f"image larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB")
    if not (data.startswith(JPEG_MAGIC) or data.startswith(PNG_MAGIC)):
        raise CommandError("bad_request", "not a JPEG or PNG image")
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        img = None
    if img is None or img.size == 0:
        raise CommandError("bad_request", "not a JPEG or PNG image")
    return img


class FaceStore:
    """Enrolled faces under ``dir`` (normally ``<storage_dir>/faces``). Thread-safe."""

    def __init__(self, dir: str | os.PathLike):
        self.dir = Path(dir)
        self._lock = threading.RLock()
        self._names: list[str] = []
        self._matrix = np.zeros((0, 128))
        self._signature: tuple | None = None
        self.load()

    # ---- files ---------------------------------------------------------
    def _ensure_dir(self) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)

    def _listing(self) -> tuple:
        try:
            with os.scandir(self.dir) as it:
                entries = []
                for e in it:
                    if e.name.endswith(".npy") and e.is_file():
                        st = e.stat()
                        entries.append((e.name, st.st_mtime_ns, st.st_size))
        except FileNotFoundError:
            return ()
        return tuple(sorted(entries))

    def load(self) -> int:
        """(Re)read every ``<person>.npy``; unreadable files are skipped. Returns the count."""
        with self._lock:
            sig = self._listing()
            names: list[str] = []
            rows: list[np.ndarray] = []
            for name, _, _ in sig:
                person = name[:-4]
                if not PERSON_RE.fullmatch(person):
                    continue
                try:
                    enc = np.load(self.dir / name, allow_pickle=False)
                except (OSError, ValueError):
                    continue
                enc = np.asarray(enc, dtype=np.float64).reshape(-1)
                if enc.shape != (128,) or not np.all(np.isfinite(enc)):
                    continue
                names.append(person)
                rows.append(enc)
            self._names = names
            self._matrix = np.vstack(rows) if rows else np.zeros((0, 128))
            self._signature = sig
            return len(names)

    def refresh(self) -> bool:
        """Reload if files changed on disk (another instance/process enrolled). True if reloaded."""
        sig = self._listing()
        with self._lock:
            if sig == self._signature:
                return False
            self.load()
            return True

    def persons(self) -> list[str]:
        with self._lock:
            return list(self._names)

    def __len__(self) -> int:
        with self._lock:
            return len(self._names)

    # ---- enrolment -----------------------------------------------------
    def add(self, person: str, encoding: np.ndarray) -> Path:
        """Store an already computed encoding for ``person`` (replaces an earlier one)."""
        validate_person(person)
        enc = np.asarray(encoding, dtype=np.float64).reshape(-1)
        if enc.shape != (128,):
            raise CommandError("bad_request", "a face encoding has 128 values")
        with self._lock:
            self._ensure_dir()
            path = self.dir / f"{person}.npy"
            fd, tmp = tempfile.mkstemp(prefix=".enrol-", suffix=".tmp", dir=self.dir)
            try:
                os.fchmod(fd, 0o600)
                with os.fdopen(fd, "wb") as f:
                    np.save(f, enc, allow_pickle=False)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
            self.load()
            return path

    def enroll(self, person: str, image_bytes: bytes) -> np.ndarray:
        """Enrol ``person`` from a JPEG/PNG photo holding exactly one face; returns the encoding.

        Raises CommandError bad_request (bad id / not an image), no_face, several_faces.
        """
        validate_person(person)
        import cv2  # noqa: PLC0415
        img = decode_image(image_bytes)
        h, w = img.shape[:2]
        scale = min(1.0, ENROL_MAX_SIDE / max(h, w))
        if scale < 1.0:
            img = cv2.resize(img, (max(1, int(w * scale)), max(1, int(h * scale))),
                             interpolation=cv2.INTER_AREA)
        rgb = to_rgb(img)
        boxes = detect_faces(rgb, upsample=1)
        if not boxes:
            raise CommandError("no_face", "no face found in the image")
        if len(boxes) > 1:
            raise CommandError("several_faces", f"{len(boxes)} faces found in the image; exactly one is needed")
        enc = encode_faces(rgb, boxes)
        if not enc:
            raise CommandError("no_face", "the face could not be encoded")
        self.add(person, enc[0])
        return enc[0]

    def remove(self, person: str) -> bool:
        validate_person(person)
        with self._lock:
            try:
                (self.dir / f"{person}.npy").unlink()
            except FileNotFoundError:
                return False
            self.load()
            return True

    # ---- matching ------------------------------------------------------
    def match(self, encoding: np.ndarray, tolerance: float = 0.5) -> tuple[str, float] | None:
        """The nearest enrolled person within ``tolerance`` (face distance), or None."""
        with self._lock:
            names, matrix = self._names, self._matrix
        if not names:
            return None
        d = np.linalg.norm(matrix - np.asarray(encoding, dtype=np.float64).reshape(1, -1), axis=1)
        i = int(np.argmin(d))
        if d[i] <= tolerance:
            return names[i], float(d[i])
        return None
