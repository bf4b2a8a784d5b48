"""What the daemon tells systemd (sd_notify(3)): ready, stopping, the watchdog, and how a
start is going, so a slow start that keeps making progress is never killed."""
from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("casegate")

# Each report extends systemd's start timeout by this much from now: a replay
# that keeps making progress is never killed, one that hangs is (after 30 s).
REPLAY_EXTEND_S = 30.0


def sd_notify(message: str) -> bool:
    """A datagram to $NOTIFY_SOCKET; False when not run by systemd (or it is gone)."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(message.encode())
        return True
    except OSError as e:
        log.warning("sd_notify failed: %s", e)
        return False


def watchdog_interval() -> float | None:
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 1e6 / 2


class StartProgress:
    """How a start is going, told to systemd (issue 28 item 3)."""

    def __init__(self, replay_notify_after_s: float):
        self.replay_notify_after_s = replay_notify_after_s

    def phase(self, what: str) -> None:
        """Every phase of a start extends systemd's start timeout from now: a start that
        keeps making progress is never killed, one that hangs in a phase is."""
        sd_notify(f"EXTEND_TIMEOUT_USEC={int(REPLAY_EXTEND_S * 1e6)}\nSTATUS=starting: {what}")

    def replay(self, done: int, total: int, elapsed: float) -> None:
        """A long start (full replay of a big journal): tell systemd we are alive."""
        if elapsed < self.replay_notify_after_s:
            return
        pct = 100.0 * done / total if total else 100.0
        sd_notify(f"EXTEND_TIMEOUT_USEC={int(REPLAY_EXTEND_S * 1e6)}\n"
                  f"STATUS=replaying journal {done}/{total} ({pct:.0f}%)")
        if int(elapsed) % 10 == 0:
            log.info("replaying journal: %d/%d events (%.0f%%), %.0f s", done, total, pct, elapsed)
