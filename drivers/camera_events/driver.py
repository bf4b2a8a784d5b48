"""Driver for cameras' own events (SPEC §4.7): one session thread and one watchdog per device.

The session thread holds the vendor's event stream (Hikvision/Dahua: a streaming HTTP GET
with digest auth; ONVIF: a PullPoint loop in its own asyncio loop) and feeds decoded
signals to the channel state below. The watchdog ends active-only events after
``active_expiry_s``, reports stillness, and declares the device offline after
``offline_s`` without a valid event or heartbeat (bytes that parse as nothing do not count:
a byte a second is not a heartbeat), aborting a stream that went silent without closing.
What a camera sends is bounded before it is parsed (limits.py); a camera that breaks a bound
is a ``device.error`` naming it. Reconnects back off 5, 10, 15 ... s up to 300 s; a stream that lived
``healthy_s`` resets the steps.

Journal volume is bounded: ``camera.motion`` / ``camera.tampered`` go out only when a
channel's state changes, never per post (a Hikvision camera re-posts ``active`` every second).

``camera`` in events: the device id for a one-channel device, else ``<device>:<channel>``
(motion, tamper, snapshots). ``camera.still`` is about a room and always names the device,
so the rules forget a stillness when the device goes offline (rules/state.py matches the
device id). The stream's loss is not ``video_lost`` (the camera may record on): only the
camera's own video-loss event is; a video_lost still active when the device comes back
is ended (as the rules do on ``device.online``) and re-raised by the camera's next post.
"""
from __future__ import annotations

import asyncio
import logging
import math
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from drivers.base import CommandError, Driver
from drivers.common.snapshots import NotAJpeg, SnapshotTooLarge, write_snapshot_stream
from drivers.camera_events import dahua, hikvision
from drivers.camera_events.limits import (
    MAX_HEADERS, MAX_JUNK, MAX_LINE, MAX_PART, RATE_CUT_S, RATE_PAUSE_S, Deadline, LimitError, RateLimit, check_origin,
    trace_into)
from drivers.camera_events.signals import HEARTBEAT, IGNORED, MOTION, TAMPER_KINDS, Multipart, Signal, boundary_of

HTTP_VENDORS = {"hikvision": hikvision, "dahua": dahua}
# httpx logs every request at INFO: an ONVIF camera's PullMessages every second or two would
# flood the daemon's log (its warnings and errors still show)
if logging.getLogger("httpx").level == logging.NOTSET:
    logging.getLogger("httpx").setLevel(logging.WARNING)


class AuthError(Exception):
    pass


class StreamError(Exception):
    pass


def tls_failure(e: BaseException) -> str | None:
    """The certificate-verification failure behind ``e`` (httpx, aiohttp, or wrapped by onvif), if any."""
    seen = 0
    cur: BaseException | None = e
    while cur is not None and seen < 10:
        cert_err = getattr(cur, "certificate_error", None)       # aiohttp.ClientConnectorCertificateError
        for c in (cert_err, cur):
            if isinstance(c, ssl.SSLCertVerificationError) and getattr(c, "verify_message", None):
                return c.verify_message
        if "CERTIFICATE_VERIFY_FAILED" in str(cur):
            text = str(cur)
            return text.split("certificate verify failed:", 1)[-1].split("(_ssl", 1)[0].strip() or text
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return None


def read_ca_file(path: str) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=path)
    except FileNotFoundError:
        raise ValueError(f"cannot read ca_file {path}: no such file") from None
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"cannot read ca_file {path}: {getattr(e, 'strerror', None) or e} "
                         "(a PEM certificate or bundle)") from None


def read_password(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as e:
        raise ValueError(f"cannot read password_file {path}: {e.strerror or e}") from None


def auth_error(www_authenticate: str) -> str:
    """A 401, worded for a technician."""
    if www_authenticate.lower().startswith("basic"):
        return ("the camera offers only Basic auth (the password would travel in clear): "
                "enable digest authentication on the camera")
    return "wrong user/password (digest)"


class CameraEventsDriver(Driver):
    kind = "camera_events"

    def __init__(self, cfg: Any, ctx: Any, password: str | None = None):
        super().__init__(cfg, ctx)
        self.password = password
        self._verify: ssl.SSLContext | bool | None = None     # built at start (ca_file read then)
        self.snapshot_dir = Path(ctx.storage_dir) / "snapshots"
        self._lock = threading.RLock()
        self._threads: list[threading.Thread] = []
        self._last_bytes = time.monotonic()     # the last valid event or heartbeat (not any byte)
        self._connected = False
        self._sock: socket.socket | None = None
        self._response = None
        self._onvif = None
        self._snap_n = 0
        self.on_signal = None          # probe: called with every decoded Signal
        # (channel, kind) -> source -> deadline (monotonic; inf = until the camera says inactive)
        self._sources: dict[tuple[str, str], dict[str, float]] = {}
        self._state: dict[tuple[str, str], bool] = {}       # what we last emitted
        rooms = list(dict.fromkeys(cfg.channels.values()))
        self._room_motion_at = {r: time.monotonic() for r in rooms}
        self._room_still = {r: False for r in rooms}
        self.stats = {"parts": 0, "signals": 0, "heartbeats": 0, "images": 0, "connects": 0}
        self._rate = RateLimit()
        self._dropped = 0                           # parts dropped over the rate, this driver's life
        self._snapshot_busy = threading.Lock()      # at most one snapshot in flight per camera
        self._unknown_logged: set[str] = set()      # the first few unknown event names, logged once

    # ---- lifecycle -----------------------------------------------------
    def start(self) -> None:
        if self.password is None:
            try:
                self.password = read_password(self.cfg.password_file)
            except ValueError:
                raise            # the daemon journals device.error "start failed: cannot read password_file ..."
        self._verify = self._tls()      # ValueError for an unreadable ca_file: start failed, as above
        self.stop_event.clear()
        self._last_bytes = time.monotonic()
        for name, target in (("session", self._run), ("watchdog", self._watch)):
            t = threading.Thread(target=target, name=f"camera_events-{self.device_id}-{name}", daemon=True)
            self._threads.append(t)
            t.start()

    def _tls(self) -> ssl.SSLContext | bool:
        """How https is checked: the ca_file's certificates (a camera's self-signed one, or its
        CA), else the system's; nothing with tls_verify = false (said in the log)."""
        https = self.cfg.url.startswith("https:")
        if not self.cfg.tls_verify:
            if https:
                self.ctx.log.warning("%s: tls_verify = false: the camera's certificate is not checked "
                                     "(anyone on the path can pose as %s); set ca_file instead",
                                     self.device_id, self.cfg.url)
            return False
        if self.cfg.ca_file:
            return read_ca_file(self.cfg.ca_file)
        return ssl.create_default_context()

    def stop(self, timeout: float = 2.0) -> None:
        super().stop(timeout)
        deadline = time.monotonic() + timeout
        self._abort_stream()
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]
        with self._health_lock:
            self.health.state = "stopped"

    def _abort_stream(self) -> None:
        """Unblock the session thread: shut the stream's socket (a blocked recv returns) or
        abort the ONVIF session (its pull's socket shut, its zeep call cancelled; it unsubscribes)."""
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        session = self._onvif
        if session is not None:
            session.abort()

    # ---- session -------------------------------------------------------
    def _run(self) -> None:
        step, cap = self.cfg.reconnect_step_s, self.cfg.reconnect_max_s
        delay = 0.0
        while not self.stop_event.is_set():
            started = time.monotonic()
            try:
                if self.cfg.vendor == "onvif":
                    self._onvif_session()
                else:
                    self._http_session()
                why = "stream ended"
            except (AuthError, LimitError) as e:     # a wrong password, a bound exceeded: device.error
                why = str(e)
                self.set_state("error", why)
            except Exception as e:  # noqa: BLE001 - any failure: offline (an untrusted certificate: error), then reconnect
                bad_cert = tls_failure(e)
                if bad_cert is None:
                    why = self._describe(e)
                else:
                    why = self._untrusted(bad_cert)
                    self.set_state("error", why)
            finally:
                self._sock = self._response = None
                self._connected = False
            if self.stop_event.is_set():
                break
            self.count("disconnects")
            self.ctx.log.info("%s: %s", self.device_id, why)
            self._last_error = why
            self._end_motion()
            if time.monotonic() - started >= self.cfg.healthy_s and self.stats["connects"]:
                delay = 0.0          # a healthy run: start the steps again
            delay = min(cap, delay + step)
            if self.stop_event.wait(delay):
                break

    def _untrusted(self, why: str) -> str:
        fix = (f"the certificate in ca_file {self.cfg.ca_file} does not match it (is it the camera's own, "
               "naming the address in url?)" if self.cfg.ca_file else
               "set ca_file to the camera's certificate (or the CA that signed it)")
        return (f"TLS certificate of {self.cfg.url} not trusted ({why}): {fix}; "
                "tls_verify = false only on purpose")

    def _describe(self, e: Exception) -> str:
        import httpx
        if isinstance(e, StreamError):
            return str(e)
        if isinstance(e, httpx.ConnectError):
            return f"cannot connect to {self.cfg.url}: connection refused or host unreachable ({e})"
        if isinstance(e, httpx.TimeoutException):
            return f"no answer from {self.cfg.url} ({type(e).__name__})"
        if isinstance(e, (asyncio.TimeoutError, TimeoutError)):
            return f"no answer from {self.cfg.url} (timeout)"
        return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__

    def _client(self):
        import httpx
        t = self.cfg.connect_timeout_s
        if self._verify is None:
            self._verify = self._tls()
        return httpx.Client(auth=httpx.DigestAuth(self.cfg.username, self.password or ""), verify=self._verify,
                            timeout=httpx.Timeout(connect=t, read=self.cfg.offline_s, write=t, pool=t))

    def _http_session(self) -> None:
        import httpx
        vendor = HTTP_VENDORS[self.cfg.vendor]
        with self._client() as client:
            resp = None
            # the answer's status line and headers within one deadline (a camera dripping its
            # headers never sends a part, so the watchdog's offline would not cut it)
            headers_within = self.cfg.connect_timeout_s * 2
            with Deadline(headers_within) as dl:
                for path in vendor.STREAM_PATHS:
                    try:
                        resp = client.send(client.build_request("GET", self.cfg.url + path,
                                                                extensions={"trace": trace_into(dl)}), stream=True)
                    except httpx.HTTPError:
                        if dl.expired:
                            raise StreamError(f"no answer from {self.cfg.url} within {headers_within:g} s "
                                              "(status line and headers)") from None
                        raise
                    if resp.status_code != 404:
                        break
                    resp.close()
            self._response = resp
            try:
                if resp.status_code == 401:
                    raise AuthError(auth_error(resp.headers.get("www-authenticate", "")))
                if resp.status_code == 404:
                    raise StreamError(f"the camera has no event stream at {' nor '.join(vendor.STREAM_PATHS)} "
                                      f"(404): is it a {self.cfg.vendor} camera, is the ISAPI/CGI enabled?")
                if resp.status_code != 200:
                    raise StreamError(f"event stream refused: HTTP {resp.status_code} {resp.reason_phrase}")
                stream = resp.extensions.get("network_stream")
                self._sock = stream.get_extra_info("socket") if stream is not None else None
                if self.stop_event.is_set():
                    return
                parts = Multipart(boundary_of(resp.headers.get("content-type", "")) or vendor.DEFAULT_BOUNDARY,
                                  max_part=MAX_PART, max_line=MAX_LINE, max_headers=MAX_HEADERS, max_junk=MAX_JUNK)
                self._connected_now()
                self._rate = RateLimit()
                junk = 0
                for chunk in resp.iter_raw():
                    dropped = self._dropped
                    for headers, body in parts.feed(chunk):
                        self._stream_part(vendor, headers, body)
                    if self._dropped != dropped:
                        # over the rate: read slower (TCP pushes back on the camera) so that a
                        # flood costs a bounded share of a core until it is cut (bench/hostile_camera.py)
                        self.stop_event.wait(RATE_PAUSE_S)
                    if parts.junk_bytes != junk:
                        self.frame_bad("junk_bytes", parts.junk_bytes - junk)
                        junk = parts.junk_bytes
                    if parts.violation:
                        self.count("oversize" if parts.oversize else "limit_exceeded")
                        raise LimitError(f"the camera's event stream broke a bound: {parts.violation}; "
                                         "reconnecting with backoff (check the camera's firmware)")
                    if self._rate.over_for() >= RATE_CUT_S:
                        raise LimitError(f"the camera sent more than {self._rate.rate:g} events a second for "
                                         f"{RATE_CUT_S:g} s (the excess was dropped); reconnecting with backoff")
                    if self.stop_event.is_set():
                        return
            finally:
                resp.close()

    def _stream_part(self, vendor, headers: dict[str, str], body: bytes) -> None:
        """One part of an HTTP event stream: rate-limited, decoded, handled; a part that
        decodes is what keeps the device online (not the bytes around it)."""
        self.stats["parts"] += 1
        if not self._rate.take():
            self._dropped += 1
            self.count("rate_limited")
            return
        try:
            signals = vendor.decode_part(headers, body)
        except ValueError as e:
            self.frame_bad("unparseable_part")
            self.ctx.log.debug("%s: dropped part: %s", self.device_id, e)
            return
        self._last_bytes = time.monotonic()
        self.frame_ok()
        self.handle(signals)

    def _onvif_session(self) -> None:
        from drivers.camera_events.onvif import PullPointSession
        u = urlparse(self.cfg.url)
        host = f"{u.scheme}://{u.hostname}" if u.scheme == "https" else u.hostname
        session = PullPointSession(
            host, u.port or (443 if u.scheme == "https" else 80), self.cfg.username, self.password or "",
            pull_timeout_s=self.cfg.pull_timeout_s, subscription_s=self.cfg.subscription_s,
            connect_timeout_s=self.cfg.connect_timeout_s,
            on_bytes=self._touch, on_connected=self._connected_now, on_signals=self._onvif_signals,
            on_bad=self._onvif_bad, verify=self._verify if self._verify is not None else self._tls(),
            url=self.cfg.url)
        self._onvif = session
        try:
            if self.stop_event.is_set():
                session.abort()
            session.run()
        except asyncio.CancelledError:
            pass
        except Exception as e:
            if isinstance(e, LimitError) or tls_failure(e) is not None:
                raise
            text = f"{e} {getattr(e, 'subcodes', '')}".lower()
            if any(w in text for w in ("401", "unauthorized", "not authorized", "notauthorized", "authenticat")):
                raise AuthError("wrong user/password (WS-Security digest)") from None
            raise

    def _onvif_bad(self, why: str) -> None:
        self.frame_bad("unparseable_part")
        self.ctx.log.debug("%s: dropped notification: %s", self.device_id, why)

    def _onvif_signals(self, signals: list[Signal]) -> None:
        self.frame_ok(len(signals))
        self.handle(signals)

    def _touch(self) -> None:
        self._last_bytes = time.monotonic()

    def _connected_now(self) -> None:
        self._last_bytes = time.monotonic()
        self._connected = True
        self.stats["connects"] += 1
        if self.health.state == "online":
            return
        self.set_state("online")
        now = time.monotonic()
        with self._lock:
            # video is back for the rules (device.online); a camera still without video re-posts it
            for (ch, kind), on in list(self._state.items()):
                if kind == "video_lost" and on:
                    self._sources.pop((ch, kind), None)
                    self._set(ch, kind, False)
            for room in self._room_motion_at:        # stillness is counted from now
                self._room_motion_at[room] = now
                self._room_still[room] = False

    # ---- channel state -------------------------------------------------
    def resolve_channel(self, channel: str) -> str | None:
        chans = self.cfg.channels
        if channel in chans:
            return channel
        if channel == "" and len(chans) == 1:
            return next(iter(chans))
        from drivers.camera_events.onvif import channel_number
        n = channel_number(channel)
        if n is not None and n in chans:
            return n
        if len(chans) == 1 and self.cfg.vendor == "onvif":
            return next(iter(chans))       # one video source: whatever the device calls it
        return None

    def handle(self, signals: list[Signal], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for sig in signals:
            self.stats["signals"] += 1
            if self.on_signal is not None:
                self.on_signal(sig)
            if sig.kind == HEARTBEAT:
                self.stats["heartbeats"] += 1
                continue
            if sig.image is not None:
                self.stats["images"] += 1
                continue
            if sig.kind == IGNORED:
                # one counter whatever the camera calls it: a camera inventing names must not
                # grow the counters (devices output, metrics); the first few names are logged
                self.count("ignored_event")
                if len(self._unknown_logged) < 8 and sig.source not in self._unknown_logged:
                    self._unknown_logged.add(sig.source)
                    self.ctx.log.info("%s: ignoring event type %r (not motion or tamper)", self.device_id,
                                      sig.source[:80])
                continue
            ch = self.resolve_channel(sig.channel)
            if ch is None:
                self.count("unmapped_channel")
                continue
            with self._lock:
                srcs = self._sources.setdefault((ch, sig.kind), {})
                if sig.active:
                    srcs[sig.source] = now + self.cfg.active_expiry_s if sig.expires else math.inf
                else:
                    srcs.pop(sig.source, None)
                self._settle(ch, sig.kind, now)

    def _settle(self, ch: str, kind: str, now: float) -> None:
        active = bool(self._sources.get((ch, kind)))
        if kind == MOTION:
            room = self.cfg.channels[ch]
            self._room_motion_at[room] = now
            if active and self._room_still[room]:
                self._room_still[room] = False       # the still period is over: say so (seconds 0)
                self.ctx.emit("camera.still", {"camera": self.device_id, "room": room, "seconds": 0})
        self._set(ch, kind, active)

    def _set(self, ch: str, kind: str, active: bool) -> None:
        if self._state.get((ch, kind), False) == active:
            return
        self._state[(ch, kind)] = active
        data = {"camera": self.cfg.camera_id(ch), "room": self.cfg.channels[ch]}
        if kind == MOTION:
            self.ctx.emit("camera.motion", dict(data, active=active))
        elif kind in TAMPER_KINDS:
            self.ctx.emit("camera.tampered", dict(data, kind=kind, active=active))

    def _end_motion(self) -> None:
        """The stream is gone: motion we cannot see any more is over (tamper stays as it was)."""
        now = time.monotonic()
        with self._lock:
            for (ch, kind) in list(self._sources):
                if kind == MOTION and self._sources[(ch, kind)]:
                    self._sources[(ch, kind)].clear()
                    self._settle(ch, kind, now)

    def tick(self, now: float | None = None) -> None:
        """Expire active-only events; report stillness."""
        now = time.monotonic() if now is None else now
        with self._lock:
            for (ch, kind), srcs in list(self._sources.items()):
                gone = [s for s, until in srcs.items() if until <= now]
                if gone:
                    for s in gone:
                        del srcs[s]
                    self._settle(ch, kind, now)
            if not self._connected or self.health.state != "online":
                return
            moving = {self.cfg.channels[ch] for (ch, kind), on in self._state.items() if kind == MOTION and on}
            for room, at in self._room_motion_at.items():
                if room in moving or self._room_still[room]:
                    continue
                still = now - at
                if still >= self.cfg.still_s:
                    self._room_still[room] = True
                    self.ctx.emit("camera.still", {"camera": self.device_id, "room": room,
                                                   "seconds": round(still)})

    def _watch(self) -> None:
        step = max(0.05, min(0.5, self.cfg.active_expiry_s / 5, self.cfg.offline_s / 4))
        while not self.stop_event.wait(step):
            self.tick()
            silent = time.monotonic() - self._last_bytes
            if silent >= self.cfg.offline_s and self.health.state not in ("offline", "error"):
                why = getattr(self, "_last_error", None) if not self._connected else None
                self.set_state("offline", f"{why or 'no heartbeat or event'} (nothing for {silent:.0f} s)")
                if self._connected:
                    self._abort_stream()           # silent without closing: drop it and reconnect

    # ---- snapshots -----------------------------------------------------
    def _snapshot_url(self, channel: str, timeout: float) -> str:
        if self.cfg.vendor == "onvif":
            url = self._onvif_snapshot_uri(channel, timeout)
        else:
            url = self.cfg.url + HTTP_VENDORS[self.cfg.vendor].snapshot_path(channel)
        try:
            return check_origin(url, self.cfg.url, "the snapshot URI")
        except LimitError as e:          # never reached: the session checks the URIs it is given
            raise CommandError("device_refused", f"snapshot from {self.device_id}: {e}") from None

    def fetch_snapshot(self, channel: str, timeout: float, write) -> Any:
        """GET the channel's picture and hand its chunks to ``write(chunks)`` (which streams them
        to disk); one deadline of ``timeout`` s for the whole answer, redirects not followed."""
        import httpx
        what = f"snapshot from {self.device_id}"
        with Deadline(timeout) as dl:
            url = self._snapshot_url(channel, dl.left() or 0.01)
            try:
                with self._client() as client, client.stream("GET", url, timeout=max(0.01, dl.left()),
                                                             extensions={"trace": trace_into(dl)}) as r:
                    stream = r.extensions.get("network_stream")
                    dl.watch(stream.get_extra_info("socket") if stream is not None else None)
                    if r.status_code == 401:
                        raise CommandError("device_refused", f"{what}: "
                                                             f"{auth_error(r.headers.get('www-authenticate', ''))}")
                    if 300 <= r.status_code < 400:
                        raise CommandError("device_refused", f"{what}: HTTP {r.status_code} redirect to "
                                                             f"{r.headers.get('location', '?')[:200]!r} not followed "
                                                             "(pictures are fetched only from the configured url)")
                    ctype = r.headers.get("content-type", "no content type")
                    if r.status_code != 200:
                        raise CommandError("device_refused", f"{what}: HTTP {r.status_code}, {ctype} (not a JPEG)")
                    cap = int(self.cfg.snapshot_max_mb * (1 << 20))
                    length = r.headers.get("content-length", "")
                    if length.strip().isdigit() and int(length) > cap:
                        raise SnapshotTooLarge(f"larger than {self.cfg.snapshot_max_mb:g} MB "
                                               f"({int(length)} bytes announced)")

                    def chunks():
                        for chunk in r.iter_bytes():
                            dl.check(what)
                            yield chunk
                        dl.check(what)           # a socket shut at the deadline may read as a clean end
                    try:
                        return write(chunks(), cap)
                    except NotAJpeg:
                        raise CommandError("device_refused", f"{what}: HTTP 200, {ctype} (not a JPEG)") from None
            except SnapshotTooLarge as e:
                self.count("snapshot_too_large")
                raise CommandError("device_refused", f"{what}: {e}, the limit of snapshot_max_mb = "
                                                     f"{self.cfg.snapshot_max_mb:g}; refused") from None
            except LimitError as e:
                self.count("snapshot_deadline")
                raise CommandError("device_timeout", str(e)) from None
            except httpx.HTTPError as e:
                bad_cert = tls_failure(e)
                if bad_cert is not None:
                    raise CommandError("device_refused", f"{what}: {self._untrusted(bad_cert)}") from None
                if dl.expired:
                    self.count("snapshot_deadline")
                    raise CommandError("device_timeout", f"{what} took longer than {timeout:g} s in all") from None
                raise CommandError("device_timeout", f"{what}: {self._describe(e)}") from None

    def _onvif_snapshot_uri(self, channel: str, timeout: float) -> str:
        session = self._onvif
        uris = dict(session.snapshot_uris) if session is not None else {}
        if not uris and session is not None and session.cam is not None:
            cam = session.cam
            try:
                # between two pulls, and never longer than asked (the pulls wait meanwhile)
                session.ask(lambda: asyncio.wait_for(session._snapshot_uris(cam), timeout), timeout + 1)
            except Exception as e:  # noqa: BLE001
                raise CommandError("device_timeout", f"GetSnapshotUri failed: {self._describe(e)}") from None
            uris = dict(session.snapshot_uris)
        for token, uri in uris.items():
            if self.resolve_channel(token) == channel:
                return uri
        if len(uris) == 1 and len(self.cfg.channels) == 1:
            return next(iter(uris.values()))
        raise CommandError("device_timeout", f"no snapshot URI for channel {channel} yet (is the camera online?)")

    def snapshot(self, reason: str, channel: str | None = None, alarm_id: str | None = None,
                 timeout: float | None = None) -> str:
        """Fetch the channel's picture, write it as a 0600 JPEG under snapshots/, emit camera.snapshot."""
        ch = channel or next(iter(self.cfg.channels))
        if not self._snapshot_busy.acquire(blocking=False):      # at most one in flight per camera
            self.count("snapshot_busy")
            raise CommandError("busy", f"{self.device_id} is already taking a snapshot; "
                                       "retry when it is done (at most one at a time per camera)")
        try:
            ts = time.time()
            with self._health_lock:
                self._snap_n += 1
                n = self._snap_n
            camera = self.cfg.camera_id(ch)
            # the configured bound holds whatever the caller allows (a request's 10 s, an alarm's 5 s)
            limit = min(timeout, self.cfg.snapshot_timeout_s) if timeout else self.cfg.snapshot_timeout_s
            path = self.fetch_snapshot(
                ch, limit,
                lambda chunks, cap: write_snapshot_stream(self.snapshot_dir, camera, reason, n, ts, chunks, cap,
                                                          tz=getattr(self.ctx, "timezone", None)))
        finally:
            self._snapshot_busy.release()
        data = {"camera": camera, "room": self.cfg.channels[ch], "file": str(path), "reason": reason}
        if alarm_id:
            data["alarm_id"] = alarm_id
        self.ctx.emit("camera.snapshot", data, ts)
        return str(path)

    def command(self, name: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
        if name != "camera/snapshot":
            return super().command(name, args, timeout)
        # Which channel: ``channel`` ("2"), else a ``<device>:<channel>`` camera, else the first
        # channel watching ``room`` (an alarm's room, or a camera/snapshot request's), else the
        # first configured channel (documented default of a bare request).
        channel = None
        cam = str(args.get("camera") or "")
        room = args.get("room")
        if args.get("channel") is not None:
            channel = str(args["channel"])
            if channel not in self.cfg.channels:
                raise CommandError("bad_request", f"{self.device_id} has no channel {channel} "
                                                  f"(channels: {', '.join(self.cfg.channels)})")
        elif ":" in cam and cam.rpartition(":")[2] in self.cfg.channels:
            channel = cam.rpartition(":")[2]
        elif room:
            channel = next((ch for ch, r in self.cfg.channels.items() if r == room), None)
            if channel is None:
                raise CommandError("bad_request", f"{self.device_id} watches no room {room} "
                                                  f"(rooms: {', '.join(dict.fromkeys(self.cfg.channels.values()))})")
        alarm_id = args.get("alarm_id")
        reason = "alarm" if alarm_id else "command"
        try:
            return {"file": self.snapshot(reason, channel, alarm_id=alarm_id, timeout=timeout)}
        except OSError as e:
            raise CommandError("device_refused", f"cannot write the snapshot: {e.strerror or e}") from None
