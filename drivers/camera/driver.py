"""Infrared/colour camera driver (SPEC §4.6).

One capture thread per camera reads ``cfg.url`` with ``cv2.VideoCapture`` and
analyses frames at ``cfg.fps``; frames in between are only ``grab()``-ed (no
colour conversion). A file source is played at its own pace (real time), so a
synthetic camera behaves like a live one and costs no more CPU.

Per analysed frame (cheap):
  grey -> downscale to 160 px wide -> blur -> absdiff with the previous analysed
  frame -> fraction of changed pixels >= ``motion_threshold`` means motion.
Only on motion (and for ``MOTION_TAIL`` analysed frames after it, so the scene a
person left behind is counted once) the costly steps run:
  * faces: dlib HOG face detector on a frame scaled to <= ``detect_width``;
  * persons: OpenCV's HOG people detector when the installed OpenCV has it
    (OpenCV 5 dropped it) -> headcount = max(faces, persons), emitted as
    ``camera.headcount`` when it changed and was seen on 2 consecutive detection frames;
  * recognition: a 128-d encoding per face matched against the FaceStore; a person
    is ``camera.face_recognized`` only after ``face_frames`` consecutive detection
    frames matched that same person (distance = mean over them). Reported once
    while present; again only after ``face_repeat_s`` unseen. An unknown face over
    ``face_frames`` frames gives ``camera.face_unknown`` (at most once per
    ``face_repeat_s``) with a snapshot.
Tamper (camera_tamper, DOMAIN v2), judged on every analysed frame from the same
small grey frame: *covered* = the frame is uniform (black, white, a hand or
paper on the lens: grey-level spread < ``UNIFORM_STD``); *moved* = the view no
longer correlates with the reference view (normalised correlation <
``MOVED_CORR``; normalising makes it blind to lighting and IR switching, and
the reference follows slow changes of a scene that still correlates). Each
must hold for ``tamper_s`` before ``camera.tampered`` [kind, active true], and
be gone for ``tamper_s`` before [active false]; the first decision after a
start is always announced, so a restart never leaves a stale "covered".
*video_lost* = the watchdog's offline (no frame for ``offline_s``), ended by
the next frame.
No motion for ``still_s`` -> one ``camera.still`` [seconds = how long it has been
still] per still period; the first motion after it -> ``camera.still`` [seconds 0]
(the rules read 0 as "motion again", see rules/state.py).

A stream that stops is reopened with Backoff; a file that ends is reopened at
once (it loops). A watchdog marks the device offline after ``offline_s`` without
a frame, even while ``VideoCapture`` is blocked in open/read.
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from drivers.base import Backoff, CommandError, Driver
from drivers.common.snapshots import write_snapshot
from drivers.camera.redirects import foreign_redirect
from drivers.common.origin import redact_url
from drivers.camera.faces import FaceStore, detect_faces, encode_faces, preload, to_rgb

MOTION_WIDTH = 160          # px, frame width for motion differencing
PIXEL_DIFF = 25             # grey-level change that counts a pixel as changed
MOTION_TAIL = 2             # detection frames still run after motion stops
HEADCOUNT_STABLE = 2        # detection frames a new count must hold
FACE_RELOAD_S = 1.0         # how often the face store checks the disk for enrolments
REVERIFY_S = 3.0            # a decided face track is re-encoded this often
TRACK_MOVE = 1.0            # a face box that moved at most its own size continues its track
OPEN_TIMEOUT_MS = 10000     # network sources only
READ_TIMEOUT_MS = 5000
UNIFORM_STD = 6.0           # grey levels: a covered lens (or a black/white frame) is flatter than any scene
MOVED_CORR = 0.4            # normalised correlation with the reference view below this = another view
SAME_SCENE_CORR = 0.8       # above this the reference adapts (light, a chair moved)
REF_ALPHA = 0.02            # how fast the reference view adapts


def source_kind(url: str) -> str:
    """'index' (a device number), 'file', or 'stream' (anything with a scheme but file://)."""
    u = url.strip()
    if u.isdigit():
        return "index"
    if "://" in u and not u.lower().startswith("file://"):
        return "stream"
    return "file"


def to_grey(frame: np.ndarray) -> np.ndarray:
    import cv2
    if frame.dtype != np.uint8:
        frame = cv2.normalize(frame, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if frame.ndim == 2:
        return frame
    if frame.shape[2] == 1:
        return frame[:, :, 0]
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


def _people_detector():
    """OpenCV's default HOG people detector, or None (not in OpenCV 5.x)."""
    import cv2
    make = getattr(cv2, "HOGDescriptor", None)
    default = getattr(cv2, "HOGDescriptor_getDefaultPeopleDetector", None)
    if make is None or default is None:
        return None
    try:
        hog = make()
        hog.setSVMDetector(default())
        return hog
    except Exception:  # pragma: no cover - broken build
        return None


@dataclass
class FaceTrack:
    box: tuple[int, int, int, int]                     # top, right, bottom, left
    label: str | None = None                           # person, or None = unknown
    streak: deque = field(default_factory=deque)       # distances of consecutive same-label encodings
    encoded_at: float = -1e18


def _near(a, b) -> float | None:
    """How far box b is from box a, in units of a's size; None if too far or too different."""
    ha, wa = a[2] - a[0], a[1] - a[3]
    hb, wb = b[2] - b[0], b[1] - b[3]
    if min(ha, wa, hb, wb) <= 0 or not 0.5 <= (hb * wb) / (ha * wa) <= 2.0:
        return None
    dy = (a[0] + a[2] - b[0] - b[2]) / 2
    dx = (a[1] + a[3] - b[1] - b[3]) / 2
    d = (dx * dx + dy * dy) ** 0.5 / max(ha, wa)
    return d if d <= TRACK_MOVE else None


def _decisions(tracks: list, need: int) -> tuple[dict[str, float], bool]:
    """From the tracks with a full streak: each recognised person's best mean distance, and
    whether an unknown face is in view."""
    present: dict[str, float] = {}
    unknown = False
    for t in tracks:
        if len(t.streak) < need:
            continue
        if t.label is None:
            unknown = True
        else:
            d = float(np.mean([x for x in t.streak if x is not None]))
            present[t.label] = min(d, present.get(t.label, 2.0))
    return present, unknown


def _associate(tracks: list[FaceTrack], boxes) -> list[FaceTrack]:
    """One track per box: the nearest previous track (greedy), or a new one."""
    pairs = sorted((d, ti, bi) for ti, t in enumerate(tracks) for bi, b in enumerate(boxes)
                   if (d := _near(t.box, b)) is not None)
    out: list[FaceTrack | None] = [None] * len(boxes)
    used: set[int] = set()
    for _, ti, bi in pairs:
        if ti in used or out[bi] is not None:
            continue
        used.add(ti)
        tracks[ti].box = tuple(boxes[bi])
        out[bi] = tracks[ti]
    return [t if t is not None else FaceTrack(box=tuple(boxes[i])) for i, t in enumerate(out)]


@dataclass
class CameraStats:
    """Counters for health, probe and tests."""
    open_attempts: int = 0
    opens: int = 0
    frames_read: int = 0
    frames_analysed: int = 0
    motion_frames: int = 0
    detections: int = 0            # costly detection passes (faces/persons)
    encodings: int = 0             # faces encoded for recognition
    width: int = 0
    height: int = 0
    channels: int = 0
    source_fps: float = 0.0
    last_motion_fraction: float = 0.0
    scene_correlation: float = 1.0       # with the reference view (tamper: moved)
    scene_std: float = 0.0               # grey-level spread (tamper: covered)
    headcount: int | None = None
    people_detector: bool = False
    recognized: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


class CameraDriver(Driver):
    kind = "camera"

    def __init__(self, cfg: Any, ctx: Any, faces: FaceStore | None = None,
                 auto_snapshots: bool = True):
        super().__init__(cfg, ctx)
        storage = Path(ctx.storage_dir)
        self.faces = faces if faces is not None else FaceStore(storage / "faces")
        self.snapshot_dir = storage / "snapshots"
        self.auto_snapshots = auto_snapshots
        self.stats = CameraStats()
        self.source = source_kind(cfg.url)
        self._threads: list[threading.Thread] = []
        self._frame_lock = threading.Condition()
        self._latest: np.ndarray | None = None
        self._latest_mono = 0.0
        self._latest_seq = 0
        self._want_frame = False
        self._last_frame_mono = time.monotonic()
        self._last_error: str | None = None
        self._offline_why: str | None = None     # the reason of the offline state last reported
        self._snap_n = 0
        self._hog = None
        self._faces_changed = False
        # tamper: kind -> active (None = not decided since start); since when the
        # observed condition differs from the decided one; the reference view
        self._tamper: dict[str, bool | None] = {"covered": None, "moved": None}
        self._tamper_since: dict[str, float | None] = {"covered": None, "moved": None}
        self._ref_view: np.ndarray | None = None
        self._video_lost = False
        self._reset_analysis()

    # ---- settings with defaults (CameraConfig may lack newer keys in tests) ----
    def _opt(self, name: str, default):
        return getattr(self.cfg, name, default)

    def _reset_analysis(self) -> None:
        now = time.monotonic()
        self._prev_small: np.ndarray | None = None
        self._last_motion = now
        self._still_emitted = False
        self._tail = 0
        self._cand_count: int | None = None
        self._cand_n = 0
        self._tracks: list[FaceTrack] = []
        self._reported: dict[str, float] = {}     # person -> last seen (monotonic)
        self._last_unknown = -1e18
        self._next_face_reload = 0.0

    # ---- lifecycle -----------------------------------------------------
    def start(self) -> None:
        import cv2
        try:
            cv2.setNumThreads(1)   # small frames: a thread pool costs more than it saves
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        except Exception:
            pass
        if self.source == "stream" and self.cfg.url.lower().startswith("rtsp"):
            # TCP interleaved RTSP: no smeared frames from lost UDP packets. An admin's env wins.
            os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
        # libav's own stderr lines on every reconnect attempt; our error says what failed
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        self._hog = _people_detector()
        self.stats.people_detector = self._hog is not None
        self.stop_event.clear()
        self._last_frame_mono = time.monotonic()
        for name, target in (("capture", self._run), ("watchdog", self._watch)):
            t = threading.Thread(target=target, name=f"camera-{self.device_id}-{name}", daemon=True)
            self._threads.append(t)
            t.start()

    def stop(self, timeout: float = 2.0) -> None:
        super().stop(timeout)
        with self._frame_lock:
            self._frame_lock.notify_all()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]
        with self._health_lock:
            self.health.state = "stopped"

    # ---- capture -------------------------------------------------------
    def _open(self):
        import cv2
        self.stats.open_attempts += 1
        url = self.cfg.url.strip()
        try:
            if self.source == "index":
                cap = cv2.VideoCapture(int(url))
            elif self.source == "file":
                path = url[7:] if url.lower().startswith("file://") else url
                if not os.path.isfile(path):
                    self._last_error = f"no such file: {path}"
                    self.count("open_failed")
                    return None
                cap = cv2.VideoCapture(path)
            else:
                refused = foreign_redirect(url, OPEN_TIMEOUT_MS / 1000)
                if refused is not None:
                    self._last_error = refused
                    self.count("redirect_refused")
                    return None
                cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG,
                                       [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS,
                                        cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS])
        except cv2.error as e:
            self._last_error = f"cannot open {redact_url(url)}: {e}"
            self.count("open_failed")
            return None
        if not cap.isOpened():
            cap.release()
            self._last_error = f"cannot open {redact_url(url)}"
            self.count("open_failed")
            return None
        self.stats.opens += 1
        fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
        self.stats.source_fps = float(fps) if 0 < fps < 1000 else 0.0
        return cap

    def _run(self) -> None:
        try:
            preload()   # load dlib's models now, not in the middle of the first motion
        except Exception as e:
            self._last_error = f"face_recognition unavailable: {e}"
            self.set_state("error", self._last_error)
            return
        backoff = Backoff(self.stop_event, first=0.5, cap=30.0)
        while not self.stop_event.is_set():
            cap = self._open()
            if cap is None:
                if not backoff.wait():
                    break
                continue
            try:
                n = self._read_loop(cap)
            except Exception as e:  # a bug or a decoder crash must not kill the camera for good
                self.ctx.log.exception("%s: capture failed", self.device_id)
                self._last_error = f"capture failed: {e}"
                self.count("capture_exception")
                n = 0
            finally:
                cap.release()
            if self.stop_event.is_set():
                break
            if n > 0:
                backoff.reset()
                if self.source == "file":
                    continue           # a file that ended loops at once
                self._last_error = "stream stopped"
                self.count("stream_stopped")
            else:
                self._last_error = self._last_error or "no frames"
            if not backoff.wait():
                break

    def _read_loop(self, cap) -> int:
        """Read until the source stops or we are told to stop. Returns frames read."""
        period = 1.0 / self.cfg.fps
        is_file = self.source == "file"
        src_fps = self.stats.source_fps if (is_file and self.stats.source_fps > 0) else self.cfg.fps
        n = 0
        t0 = time.monotonic()
        next_media = 0.0                # file: media time of the next analysed frame
        next_due = time.monotonic()     # live: wall time of the next analysed frame
        while not self.stop_event.is_set():
            if is_file:
                # play the file in real time: frame n is due at t0 + n / src_fps
                delay = t0 + n / src_fps - time.monotonic()
                if delay > 0:
                    if self.stop_event.wait(delay):
                        break
                elif delay < -1.0:      # analysis fell behind: don't race to catch up
                    t0 = time.monotonic() - n / src_fps
            if not cap.grab():
                break
            now = time.monotonic()
            gap = now - self._last_frame_mono
            self._last_frame_mono = now
            n += 1
            self.stats.frames_read += 1
            if gap > self.cfg.offline_s:
                self._reset_analysis()  # after an outage the old reference frame means nothing
            if is_file:
                analyse = (n - 1) / src_fps + 1e-6 >= next_media
            else:
                analyse = now >= next_due
            want = analyse or self._want_frame
            if not want:
                continue
            ok, frame = cap.retrieve()
            if not ok or frame is None or frame.size == 0:
                self.frame_bad("decode_failed")
                continue
            self._publish_frame(frame)
            if self.health.state != "online":
                self.set_state("online")
            if self._video_lost:
                self._video_lost = False
                self._emit("camera.tampered", {"kind": "video_lost", "active": False}, time.time())
            if not analyse:
                continue
            if is_file:
                next_media += period
            else:
                next_due = max(next_due + period, now - period)
            self.analyse(frame, ts=time.time())
        return n

    def _publish_frame(self, frame: np.ndarray) -> None:
        with self._frame_lock:
            self._latest = frame
            self._latest_mono = time.monotonic()
            self._latest_seq += 1
            self._want_frame = False
            self._frame_lock.notify_all()
        self.stats.height, self.stats.width = frame.shape[:2]
        self.stats.channels = 1 if frame.ndim == 2 else frame.shape[2]

    def _watch(self) -> None:
        step = max(0.05, min(1.0, self.cfg.offline_s / 4))
        while not self.stop_event.wait(step):
            silent = time.monotonic() - self._last_frame_mono
            why = self._last_error or "no frames"
            # Once offline, only a better reason is reported again: offline before the first open
            # finished (models still loading) says "no frames", the source's own reason arrives
            # later (set_state logs it once; no second device.offline).
            if silent >= self.cfg.offline_s and (self.health.state != "offline" or why != self._offline_why):
                self._offline_why = why
                self.set_state("offline", f"{why} (no frame for {silent:.0f} s)")
                if not self._video_lost:
                    self._video_lost = True
                    self._emit("camera.tampered", {"kind": "video_lost", "active": True}, time.time())

    # ---- analysis (public: probe, bench and tests feed frames directly) ----
    def analyse(self, frame: np.ndarray, ts: float | None = None) -> bool:
        """Analyse one frame; returns whether it showed motion."""
        import cv2
        ts = time.time() if ts is None else ts
        now = time.monotonic()
        grey = to_grey(frame)
        h, w = grey.shape[:2]
        sw = min(MOTION_WIDTH, w)
        sh = max(1, round(h * sw / w))
        small = cv2.resize(grey, (sw, sh), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (5, 5), 0)
        self._judge_tamper(small, ts, now)
        prev = self._prev_small
        self._prev_small = small
        fraction = 0.0
        if prev is not None and prev.shape == small.shape:
            diff = cv2.absdiff(prev, small)
            fraction = cv2.countNonZero(cv2.threshold(diff, PIXEL_DIFF, 255, cv2.THRESH_BINARY)[1]) / diff.size
        motion = fraction >= self.cfg.motion_threshold
        self.stats.frames_analysed += 1
        self.stats.last_motion_fraction = fraction
        if motion:
            self.stats.motion_frames += 1
            self._last_motion = now
            if self._still_emitted:             # the still period is over: say so (seconds 0)
                self._emit("camera.still", {"seconds": 0}, ts)
            self._still_emitted = False
            self._tail = MOTION_TAIL
            self._detect(frame, ts, now)
        else:
            if self._tail > 0:
                self._tail -= 1
                self._detect(frame, ts, now)
            still = now - self._last_motion
            if not self._still_emitted and still >= self.cfg.still_s:
                self._still_emitted = True
                self._emit("camera.still", {"seconds": round(still)}, ts)
        self.frame_ok()
        return motion

    def _judge_tamper(self, small: np.ndarray, ts: float, now: float) -> None:
        hold = float(self._opt("tamper_s", 10.0))
        if hold < 0:
            return
        std = float(small.std())
        self.stats.scene_std = std
        covered = std < UNIFORM_STD
        moved = self._tamper["moved"] is True       # unknown while covered: keep what we had
        if not covered:
            view = (small.astype(np.float32) - float(small.mean())) / std
            ref = self._ref_view
            if ref is None or ref.shape != view.shape:
                self._ref_view = ref = view
            corr = float((view * ref).mean())
            self.stats.scene_correlation = corr
            if corr >= SAME_SCENE_CORR:
                mixed = (1 - REF_ALPHA) * ref + REF_ALPHA * view
                self._ref_view = (mixed - mixed.mean()) / (mixed.std() or 1.0)
            moved = corr < MOVED_CORR
        for kind, seen in (("covered", covered), ("moved", moved)):
            decided = self._tamper[kind]
            if decided is not None and seen == decided:
                self._tamper_since[kind] = None
                continue
            since = self._tamper_since[kind]
            if since is None:
                self._tamper_since[kind] = since = now
            if now - since >= hold:
                self._tamper[kind] = seen
                self._tamper_since[kind] = None
                self._emit("camera.tampered", {"kind": kind, "active": seen}, ts)

    def _emit(self, type: str, extra: dict, ts: float) -> None:
        data = {"camera": self.device_id, "room": self.cfg.room}
        data.update(extra)
        self.ctx.emit(type, data, ts)

    def _detect(self, frame: np.ndarray, ts: float, now: float) -> None:
        import cv2
        self.stats.detections += 1
        h, w = frame.shape[:2]
        dw = int(self._opt("detect_width", 640))
        if w > dw:
            frame = cv2.resize(frame, (dw, max(1, round(h * dw / w))), interpolation=cv2.INTER_AREA)
        rgb = to_rgb(frame)
        boxes = detect_faces(rgb, int(self._opt("face_upsample", 1)))
        persons = 0
        if self._hog is not None:
            try:
                rects, weights = self._hog.detectMultiScale(to_grey(frame), winStride=(8, 8),
                                                            padding=(8, 8), scale=1.05)
                persons = int(sum(1 for wt in np.ravel(weights) if wt > 0.5))
            except Exception:
                self.count("people_detector_failed")
        self._update_headcount(max(len(boxes), persons), ts)
        self._update_faces(rgb, boxes, ts, now, frame)

    def _update_headcount(self, count: int, ts: float) -> None:
        if count == self._cand_count:
            self._cand_n += 1
        else:
            self._cand_count, self._cand_n = count, 1
        if self._cand_n >= HEADCOUNT_STABLE and count != self.stats.headcount:
            if not self._headcount_allowed(ts):
                # Flapping (people at the edge of the view, a detector unsure between 2 and 3):
                # hold the change; the count that is stable when the bound allows goes out then.
                self.count("headcount_held")
                return
            self.stats.headcount = count
            self._emit("camera.headcount", {"count": count}, ts)

    def _headcount_allowed(self, ts: float) -> bool:
        """Token bucket on the frames' time: ``headcount_burst`` changes at once, then one per
        ``headcount_min_interval_s``; a camera flapping between two counts makes about one
        camera.headcount a minute instead of one a second."""
        burst = float(self._opt("headcount_burst", 3))
        every = float(self._opt("headcount_min_interval_s", 60.0))
        tokens, last = getattr(self, "_hc_bucket", (burst, ts))
        tokens = min(burst, tokens + max(0.0, ts - last) / every) if every > 0 else burst
        ok = tokens >= 1.0
        self._hc_bucket = (tokens - 1.0 if ok else tokens, ts)
        return ok

    def _update_faces(self, rgb, boxes, ts: float, now: float, frame: np.ndarray) -> None:
        """Recognition over face tracks.

        A track follows one face box from detection frame to detection frame (overlap).
        Its label (a person, or None = unknown) is decided only once ``face_frames``
        consecutive encodings of that track gave the same label - never from one frame.
        A decided track is re-encoded every ``REVERIFY_S`` only (an encoding costs
        ~0.1 s of CPU); a new or undecided track is encoded on every detection frame.
        """
        self._refresh_faces(now)
        need = int(self.cfg.face_frames)
        tracks = _associate(self._tracks, boxes)
        self._label_tracks(rgb, tracks, now, need)
        self._tracks = tracks
        present, unknown = _decisions(tracks, need)
        self._report_faces(present, unknown, ts, now, frame)

    def _refresh_faces(self, now: float) -> None:
        """The face store re-read every FACE_RELOAD_S (and after an enrolment, reload_faces):
        when it changed, every track is looked at again."""
        changed, self._faces_changed = self._faces_changed, False
        if now >= self._next_face_reload:
            self._next_face_reload = now + FACE_RELOAD_S
            try:
                changed = self.faces.refresh() or changed
            except OSError:
                self.count("face_store_unreadable")
        if changed:
            for t in self._tracks:                  # somebody was enrolled: look again
                t.encoded_at = -1e18

    def _label_tracks(self, rgb, tracks: list, now: float, need: int) -> None:
        """Encode the tracks that are undecided or due for re-verification; add each one's
        label and distance to its streak (a changed label starts the streak over)."""
        enrolled = len(self.faces) > 0
        todo = [i for i, t in enumerate(tracks)
                if enrolled and (len(t.streak) < need or now - t.encoded_at >= REVERIFY_S)]
        encs = encode_faces(rgb, [tracks[i].box for i in todo]) if todo else []
        self.stats.encodings += len(encs)
        results: dict[int, tuple[str | None, float | None]] = {}
        for i, enc in zip(todo, encs):
            m = self.faces.match(enc, self.cfg.tolerance)
            results[i] = (m[0], m[1]) if m else (None, None)
        for i, t in enumerate(tracks):
            if i in results:
                label, dist = results[i]
                t.encoded_at = now
            elif not enrolled:
                label, dist = None, None            # nobody enrolled: every face is unknown
            else:
                continue                            # decided, not due for re-verification
            if t.streak and label != t.label:
                t.streak.clear()                    # the label changed: start over
            t.label = label
            if t.streak.maxlen != need:
                t.streak = deque(t.streak, maxlen=need)
            t.streak.append(dist)

    def _report_faces(self, present: dict[str, float], unknown: bool, ts: float, now: float,
                      frame: np.ndarray) -> None:
        """camera.face_recognized per person, camera.face_unknown: each at most every face_repeat_s."""
        repeat = float(self._opt("face_repeat_s", 60.0))
        for person, dist in present.items():
            last = self._reported.get(person)
            if last is None or now - last >= repeat:
                self._emit("camera.face_recognized", {"person": person, "distance": round(dist, 3)}, ts)
                self.stats.recognized.append(person)
                del self.stats.recognized[:-100]
            self._reported[person] = now
        if unknown and now - self._last_unknown >= repeat:
            self._last_unknown = now
            self._emit("camera.face_unknown", {}, ts)
            if self.auto_snapshots:
                try:
                    self.snapshot("face_unknown", frame)
                except OSError as e:
                    self.ctx.log.warning("%s: snapshot failed: %s", self.device_id, e)
                    self.count("snapshot_failed")

    def reload_faces(self) -> int:
        """Re-read the face store now (the daemon calls this after face/enroll). Thread-safe."""
        n = self.faces.load()
        self._faces_changed = True
        return n

    # ---- snapshots -----------------------------------------------------
    def snapshot(self, reason: str, frame: np.ndarray | None = None, alarm_id: str | None = None) -> str:
        """Write ``frame`` (default: the latest) as a 0600 JPEG under snapshots/; emit camera.snapshot.

        ``alarm_id`` links the picture to an alarm (视频联动): the rules then
        re-send that alarm with its ``snapshot`` path."""
        import cv2
        if frame is None:
            with self._frame_lock:
                frame = self._latest
        if frame is None:
            raise CommandError("device_timeout", "no frame from the camera yet")
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            raise CommandError("device_refused", "could not encode the frame as JPEG")
        ts = time.time()
        with self._health_lock:
            self._snap_n += 1
            n = self._snap_n
        path = write_snapshot(self.snapshot_dir, self.device_id, reason, n, ts, buf.tobytes(),
                              tz=getattr(self.ctx, "timezone", None))
        data = {"camera": self.device_id, "room": self.cfg.room, "file": str(path), "reason": reason}
        if alarm_id:
            data["alarm_id"] = alarm_id
        self.ctx.emit("camera.snapshot", data, ts)
        return str(path)

    def _fresh_frame(self, timeout: float) -> np.ndarray | None:
        """The latest frame if it is recent, else wait up to ``timeout`` for the next one."""
        max_age = max(1.0, 2.0 / self.cfg.fps)
        deadline = time.monotonic() + timeout
        with self._frame_lock:
            if self._latest is not None and time.monotonic() - self._latest_mono <= max_age:
                return self._latest
            seq = self._latest_seq
            self._want_frame = True
            while self._latest_seq == seq and not self.stop_event.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._frame_lock.wait(left)
            return self._latest if self._latest_seq != seq else None

    def command(self, name: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
        if name != "camera/snapshot":
            return super().command(name, args, timeout)
        frame = self._fresh_frame(timeout)
        if frame is None:
            raise CommandError("device_timeout", f"no frame from camera {self.device_id} within {timeout:g} s")
        alarm_id = args.get("alarm_id")
        reason = "alarm" if alarm_id else "command"
        try:
            return {"file": self.snapshot(reason, frame, alarm_id=alarm_id)}
        except OSError as e:
            raise CommandError("device_refused", f"cannot write the snapshot: {e.strerror or e}") from None
