"""A URL's origin (scheme, host, port): what decides where a device's credentials may go; and
the URL as a log line may show it."""
from __future__ import annotations

import re
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) with the scheme's default port filled in (-1: none known or invalid)."""
    u = urlsplit(url)
    scheme = (u.scheme or "").lower()
    try:
        port = u.port
    except ValueError:
        port = -1
    return scheme, (u.hostname or "").lower(), port or DEFAULT_PORTS.get(scheme, -1)


def redact_url(url: str) -> str:
    """rtsp://user:secret@host/... -> rtsp://***@host/... (never log camera passwords)."""
    return re.sub(r"(?<=://)[^/@]*@", "***@", url)
