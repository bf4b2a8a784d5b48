"""Journal time: the wall clock, made safe against steps (SPEC §7).

The core stamps events from a monotonic base, ``anchor_wall + (monotonic() -
anchor_mono)``, and compares it with the wall clock once per batch
(:meth:`TimeBase.check_step`). A difference beyond ``step_s`` (default 2 s)
that was not there before is a *step* of the wall clock (NTP correcting a box
that booted with a wrong RTC, an operator's ``date -s``):

* forward (the wall clock is ahead of journal time): journal time jumps to the
  wall clock; ``clock.stepped`` says by how much (``journal_jump_s`` > 0) and
  the rules subtract the sum of those jumps from event times, so their grace
  periods and time limits count real elapsed time (rules/engine.py);
* backward (the wall clock is behind): journal time never goes back, it keeps
  running on the monotonic clock, ahead of the wall clock by the step, until
  the wall clock catches up (a later forward correction) -- ``clock.stepped``
  with a negative ``delta_s`` and ``journal_jump_s`` 0; rules need no shift.

v3 (SPEC §7 "v3 time"): the time base also tracks whether the system clock is
synchronised (``synced``: the kernel's/time-sync service's state). A step of a
clock that was unsynchronised and is now synchronised is a *correction*
(``kind = "correction"``): the wall clock was wrong before, it is right now.
Journal time jumps with it as above, and the rules take it as true: rule time
jumps too and what was timed during the unsynchronised window is re-based by
the jump (rules/engine.py). A step while synchronised is an ``"error"`` (v2).
The core journals ``clock.sync`` whenever the sync state changes, so replay
knows where the window began. At a restart the journal keeps its lead on the wall clock
(``floor(last_ts, lead)``), so the downtime counts.

The wall and monotonic clocks and the sync probe are injectable, so tests step
a fake wall clock (no root, no ``date -s``).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import subprocess
import time
from typing import Any, Callable

from rules.model import format_ts


# A step seen this soon after the clock became synchronised is still that sync's
# correction: the sync flag and the step reach us in either order (timesyncd
# steps then says synchronised; the writer reads the flag at most once a second).
CORRECTION_WINDOW_S = 60.0
# The sync flag is read at most this often by check_step (6-15 µs a read, measured;
# the writer calls check_step once per batch, hundreds of times a second under load).
SYNC_POLL_S = 1.0


def _system_synced() -> bool | None:
    """The probe the writer thread polls each batch: the kernel's own flag (adjtimex,
    a syscall of a few µs; timedatectl's NTPSynchronized is read from it too), not a
    timedatectl process (~25 ms measured here) in the only writer."""
    v = _adjtimex_synced()
    return v if v is not None else clock_synchronised(max_age_s=60.0)["synchronised"]


class TimeBase:
    def __init__(self, wall: Callable[[], float] = time.time,
                 mono: Callable[[], float] = time.monotonic, step_s: float = 2.0,
                 synced: Callable[[], bool | None] | None = None):
        self.wall = wall
        self.mono = mono
        self.step_s = step_s
        self.anchor_wall = wall()
        self.anchor_mono = mono()
        self.offset = 0.0            # wall - journal time accepted at the last step (<= 0)
        self.steps = 0
        self.corrections = 0
        self.synced = synced or _system_synced
        self.synchronised: bool | None = self.synced()
        m = self.anchor_mono
        self.sync_changed_mono = m   # when ``synchronised`` last changed (monotonic)

    def poll_sync(self, fresh: bool = False) -> bool | None:
        """Read the sync state; note a change. (``fresh``: kept for callers that
        know a step just happened; the system probe is never cached.)"""
        now = self.synced()        # the system probe reads the kernel afresh every time
        if now != self.synchronised:
            self._synced_from_false = self.synchronised is False and now is True
            self.synchronised = now
            self.sync_changed_mono = self.mono()
        return now

    def sync_source(self) -> str:
        """How the sync state is known (``adjtimex``, ``timedatectl``, ``unknown``)."""
        if self.synced is not _system_synced:
            return "probe"
        return "adjtimex" if _adjtimex_synced() is not None else clock_synchronised()["source"]

    def __call__(self) -> float:
        return self.anchor_wall + (self.mono() - self.anchor_mono)

    def floor(self, last_ts: float, lead: float = 0.0) -> dict[str, Any] | None:
        """At start: journal time keeps the ``lead`` it had on the wall clock before
        the stop (the last ``clock.stepped``'s ``journal_ahead_s``), so the time we
        were down counts, and is never before the journal's last ``ts``. If the wall
        clock is behind that by more than ``step_s`` (set back while we were down),
        that is a backward step: returns the ``clock.stepped`` data to journal
        (a correction when the clock is synchronised now: then it is right)."""
        now = self()
        target = now + max(0.0, lead)
        if last_ts <= target:
            self.anchor_wall += target - now
            self.offset = now - target
            return None
        self.anchor_wall += last_ts - now
        drift = now - last_ts
        self.offset = drift
        if last_ts - target <= self.step_s:
            return None
        self.steps += 1
        kind = "error"
        if self.poll_sync(fresh=True):
            kind = "correction"
            self.corrections += 1
        return {"from": format_ts(last_ts - max(0.0, lead)), "to": format_ts(now),
                "delta_s": round(target - last_ts, 3), "journal_jump_s": 0.0,
                "journal_ahead_s": round(-drift, 3), "kind": kind}

    def check_step(self) -> dict[str, Any] | None:
        """The ``clock.stepped`` data if the wall clock stepped since the last check."""
        m, w = self.mono(), self.wall()
        t = self.anchor_wall + (m - self.anchor_mono)
        drift = w - t
        moved = drift - self.offset
        if abs(moved) <= self.step_s:
            if m - self._last_poll >= SYNC_POLL_S:
                self._last_poll = m
                self.poll_sync()
            return None
        self.steps += 1
        before, changed = self.synchronised, self.sync_changed_mono
        after = self.poll_sync(fresh=True)
        # unsynchronised -> synchronised: the clock was wrong and is right now
        correction = after is True and (before is False or (
            m - changed <= CORRECTION_WINDOW_S and self.steps_since_sync()))
        kind = "correction" if correction else "error"
        if correction:
            self.corrections += 1
        if drift > 0:                       # journal time jumps forward to the wall clock
            self.anchor_wall, self.anchor_mono = w, m
            self.offset = 0.0
            jump = drift
        else:                               # never back: keep running on the monotonic clock
            self.offset = drift
            jump = 0.0
        self._last_step_mono = m
        return {"from": format_ts(w - moved), "to": format_ts(w), "delta_s": round(moved, 3),
                "journal_jump_s": round(jump, 3), "journal_ahead_s": round(max(0.0, -self.offset), 3),
                "kind": kind}

    _last_step_mono: float | None = None
    _last_poll = float("-inf")
    _synced_from_false = False

    def steps_since_sync(self) -> bool:
        """The clock became synchronised (from unsynchronised) and no step has been
        taken as its correction since: a step right after is that correction."""
        last = self._last_step_mono
        return self._synced_from_false and (last is None or last < self.sync_changed_mono)

    def status(self) -> dict[str, Any]:
        unsynced = None
        if self.synchronised is False:
            unsynced = round(self.mono() - self.sync_changed_mono, 1)
        return {"steps": self.steps, "corrections": self.corrections,
                "journal_ahead_s": round(max(0.0, -self.offset), 3),
                "synchronised": self.synchronised, "unsynchronised_for_s": unsynced}


# ---- is the system clock synchronised? (for `casegate status`) ---------------------------
class _Timex(ctypes.Structure):
    # struct timex (linux/timex.h), 64-bit layout; only ``status`` is read.
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("constant", ctypes.c_long), ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
                ("time_sec", ctypes.c_long), ("time_usec", ctypes.c_long), ("tick", ctypes.c_long),
                ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long), ("shift", ctypes.c_int),
                ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
                ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
                ("_pad", ctypes.c_int * 11)]


STA_UNSYNC = 0x0040
TIME_ERROR = 5


_sync_cache: tuple[float, dict[str, Any]] | None = None


def clock_synchronised(max_age_s: float = 30.0) -> dict[str, Any]:
    """{"synchronised": True|False|None, "source": how we know}. Tries
    ``timedatectl show -p NTPSynchronized`` (systemd), then the kernel's
    adjtimex(2) (STA_UNSYNC, read-only call); None = unknown. Cached for
    ``max_age_s`` (``casegate status`` may be polled; timedatectl is a process)."""
    global _sync_cache
    now = time.monotonic()
    if _sync_cache is not None and now - _sync_cache[0] < max_age_s:
        return dict(_sync_cache[1])
    out = _clock_synchronised()
    _sync_cache = (now, out)
    return dict(out)


def _clock_synchronised() -> dict[str, Any]:
    try:
        r = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                           capture_output=True, text=True, timeout=2)
        v = r.stdout.strip()
        if r.returncode == 0 and v in ("yes", "no"):
            return {"synchronised": v == "yes", "source": "timedatectl"}
    except (OSError, subprocess.SubprocessError):
        pass
    v = _adjtimex_synced()
    if v is not None:
        return {"synchronised": v, "source": "adjtimex"}
    return {"synchronised": None, "source": "unknown"}


_libc = None


def _adjtimex_synced() -> bool | None:
    """adjtimex(2) read-only (modes = 0, no privilege): STA_UNSYNC / TIME_ERROR."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        tx = _Timex()
        state = _libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return not (bool(tx.status & STA_UNSYNC) or state == TIME_ERROR)
