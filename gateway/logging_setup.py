"""The daemon's log lines: terse under systemd (journald stamps them), else stamped in the
center's timezone with its UTC offset."""
from __future__ import annotations

import logging
import os


class LocalTimeFormatter(logging.Formatter):
    """Log times in the center's timezone with the UTC offset written out
    (``2026-12-06 15:04:11.123 +08:00``), as the CLI shows them: a box's clock is often UTC, and a
    technician comparing a log line with `casegate events` must not have to guess."""

    def __init__(self, fmt: str, timezone: str | None):
        super().__init__(fmt)
        from zoneinfo import ZoneInfo
        try:
            self.tz = ZoneInfo(timezone) if timezone else None
        except Exception:       # an invalid zone is reported by config check; log in host time meanwhile
            self.tz = None

    def formatTime(self, record, datefmt=None):  # noqa: N802 (logging's name)
        from datetime import datetime
        t = datetime.fromtimestamp(record.created, self.tz).astimezone(self.tz)
        off = t.strftime("%z")
        return f"{t:%Y-%m-%d %H:%M:%S}.{int(record.msecs):03d} {off[:3]}:{off[3:]}"


def setup_logging(level: str = "INFO", timezone: str | None = None) -> None:
    # Terse, mosquitto-like: journald adds the timestamp when run by systemd.
    fmt = "%(levelname)s %(name)s: %(message)s" if os.environ.get("INVOCATION_ID") \
        else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler = logging.StreamHandler()
    handler.setFormatter(LocalTimeFormatter(fmt, timezone))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
