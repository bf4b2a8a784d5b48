"""The analysed camera's stream is opened only on its configured host (issue 30).

OpenCV's FFmpeg backend follows an HTTP redirect wherever it points (up to 8 hops) and
has no option to stop it. Measured against FFmpeg 8 (avformat 62.12, opencv-python
4.14): after a redirect it resets its authentication state and sends no credentials
to the new host (tests/drivers/test_camera_redirects.py holds it to that), but the
frames it then analyses come from a host nobody configured, a camera or firmware
nobody vouches for. So before FFmpeg opens an ``http(s)`` source, one GET (closed
after the headers, no redirects followed) asks the camera itself: a redirect to
another scheme, host or port is refused with the reason a technician can act on; a
redirect on the camera's own host (``/video`` → ``/video.mjpg``) is left to FFmpeg.
Unreachable or slow is not decided here: FFmpeg's own open reports it as before.
"""
from __future__ import annotations

from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from drivers.common.origin import origin, redact_url

REDIRECTS = frozenset({301, 302, 303, 307, 308})


def _without_userinfo(url: str) -> tuple[str, tuple[str, str] | None]:
    u = urlsplit(url)
    if u.username is None:
        return url, None
    host = u.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{u.port}" if u.port else host
    return urlunsplit((u.scheme, netloc, u.path, u.query, u.fragment)), (u.username, u.password or "")


def _auth_for(challenge: str, creds: tuple[str, str]) -> httpx.Auth:
    # the camera's own challenge decides: most answer Digest, older firmware Basic
    if challenge.lower().lstrip().startswith("digest"):
        return httpx.DigestAuth(*creds)
    return httpx.BasicAuth(*creds)


def foreign_redirect(url: str, timeout_s: float) -> str | None:
    """The refusal to report if the camera at ``url`` redirects its stream to another
    origin, else None. ``url`` may carry ``user:password@``; they go only to its host."""
    if origin(url)[0] not in ("http", "https"):
        return None
    bare, creds = _without_userinfo(url)
    try:
        with httpx.Client(follow_redirects=False, timeout=timeout_s, trust_env=False, verify=False) as client:
            status, location, challenge = _ask(client, bare, None)
            if status == 401 and creds is not None:
                status, location, _ = _ask(client, bare, _auth_for(challenge, creds))
    except (httpx.HTTPError, ValueError):
        return None                 # unreachable, not HTTP, bad TLS: FFmpeg's open says so
    if status not in REDIRECTS or not location:
        return None
    target = urljoin(bare, location)
    if origin(target) == origin(bare):
        return None
    s, h, p = origin(bare)
    return (f"the camera redirected its stream to {redact_url(target)[:200]!r}, not on its own "
            f"{s}://{h}:{p}: refused (a stream is analysed only from the configured host; set the "
            "camera's url to the address it really serves, or fix the camera)")


def _ask(client: httpx.Client, url: str, auth: httpx.Auth | None) -> tuple[int, str | None, str]:
    with client.stream("GET", url, auth=auth) as r:  # headers only: the body (a stream) is never read
        return r.status_code, r.headers.get("location"), r.headers.get("www-authenticate", "")
