"""视频联动: a new critical alarm in a room a camera covers gets a JPEG, and the JPEGs on disk
follow the journal's retention and a size cap."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from drivers.registry import has
from gateway.config import Config
from gateway.device_pools import KeyedPools
from rules.model import Event

log = logging.getLogger("casegate")


class AlarmSnapshots:
    def __init__(self, config: Callable[[], Config], drivers: dict[str, Any], stopped: Callable[[], bool]):
        self.config = config            # the config in force (a reload changes devices)
        self.drivers = drivers          # the daemon's running drivers, by device id
        self.stopped = stopped
        self._asked: dict[str, None] = {}      # alarm ids a camera was asked to picture
        # per camera, two waiting at most: a camera that drips its answer delays only its own
        # alarms' pictures (gateway/device_pools.py)
        self._pool = KeyedPools("alarm-snapshot", workers=1, max_queued=2)

    def shutdown(self) -> None:
        self._pool.shutdown()

    def on_committed(self, events: list[Event]) -> None:
        """Core listener (writer thread)."""
        for ev in events:
            if ev.type == "alarm.raised" and isinstance(ev.data, dict):
                self.ask(ev.data)

    def ask(self, alarm: dict) -> None:
        """Runs in the writer thread, so the camera is asked on a pool; the
        camera journals ``camera.snapshot`` with the alarm id and the rules
        then re-send the alarm with its ``snapshot`` path (rules/engine.py)."""
        aid = alarm.get("alarm_id")
        if (alarm.get("severity") != "critical" or alarm.get("snapshot") or not alarm.get("room")
                or aid in self._asked):
            return
        cams = [d.id for d in self.config().devices
                if has(d, "snapshot") and d.enabled and d.id in self.drivers
                and any(alarm["room"] in rooms for rooms in d.covered_rooms().values())]
        if not cams:
            return
        self._asked[aid] = None
        while len(self._asked) > 1000:      # alarm ids are unique; only bound memory
            del self._asked[next(iter(self._asked))]
        if not self._pool.submit(cams[0], self._take, cams, aid, alarm["room"]):
            log.warning("no snapshot for alarm %s: camera %s already has alarm pictures waiting", aid, cams[0])

    def _take(self, cams: list[str], aid: str, room: str | None = None) -> None:
        for cam in cams:        # the first camera of the room that delivers a frame
            drv = self.drivers.get(cam)
            if drv is None or self.stopped():
                continue
            try:
                # the room: a device with several channels pictures the one watching it
                drv.command("camera/snapshot", {"camera": cam, "alarm_id": aid, "room": room}, timeout=5.0)
                return
            except Exception as e:      # CommandError, or the camera stopped meanwhile
                log.warning("snapshot for alarm %s from %s failed: %s", aid, cam, e)

    def prune(self) -> int:
        """Camera snapshots follow the journal's retention (storage.retain_days) and
        stay under storage.snapshots_max_mb, oldest first: alarms in a busy center
        must not fill the disk the journal needs."""
        cfg = self.config()
        st = cfg.storage
        cutoff = time.time() - st.retain_days * 86400
        files = _snapshot_files(cfg.storage_dir / "snapshots")
        total = sum(f[1] for f in files)
        cap = st.snapshots_max_mb * 1024 * 1024
        old = full = 0
        for mtime, size, p in files:
            if mtime >= cutoff and total <= cap:
                break
            try:
                p.unlink()
            except OSError:
                continue
            total -= size
            if mtime < cutoff:
                old += 1
            else:
                full += 1
        if old:
            log.info("removed %d snapshots older than %d days", old, st.retain_days)
        if full:
            log.warning("snapshots above %g MB: removed the %d oldest", st.snapshots_max_mb, full)
        return old + full


def _snapshot_files(folder) -> list[tuple[float, int, Any]]:
    """(mtime, size, path) of the files in ``folder``, oldest first; [] if it does not exist."""
    files = []
    try:
        for p in folder.iterdir():
            try:
                s = p.stat()
                if p.is_file():
                    files.append((s.st_mtime, s.st_size, p))
            except OSError:
                pass
    except FileNotFoundError:
        return []
    files.sort()
    return files
