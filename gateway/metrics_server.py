"""The /metrics HTTP server (SPEC §5 ``[metrics] listen``) with bounded cost per client.

prometheus-client's ``start_http_server`` is a ThreadingHTTPServer: one thread per
connection, no idle timeout — 1,000 idle connections took the daemon from 23 to 985
threads (+79 MB, issue 30 item 4). Here one selector thread accepts and reads request
heads without blocking; an idle or slow connection costs a file descriptor and a few
bytes, never a thread, and is closed after ``idle_timeout_s``. At most ``max_connections``
are open: past that the one idle longest is closed to admit the new one (a scraper that
connects always gets in). A complete request goes to a pool of ``workers`` threads that
render the metrics and write the answer with a deadline.
"""
from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

log = logging.getLogger("casegate.metrics")

MAX_HEAD = 8192            # bytes of request line + headers; a Prometheus GET is ~200


class _Conn:
    __slots__ = ("sock", "buf", "since")

    def __init__(self, sock: socket.socket, now: float):
        self.sock = sock
        self.buf = b""
        self.since = now


_WAKE = object()


class MetricsServer:
    """Serves ``render()`` (bytes, content type) on GET /metrics (and /)."""

    def __init__(self, host: str, port: int, render: Callable[[], tuple[bytes, str]],
                 max_connections: int = 64, idle_timeout_s: float = 5.0, workers: int = 2):
        self.render = render
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
            self.sock.listen(128)
        except OSError:
            self.sock.close()
            raise
        self.sock.setblocking(False)
        self.server_address = self.sock.getsockname()
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.sock, selectors.EVENT_READ, None)
        # shutdown() writes a byte here: the select returns at once, not at its 0.5 s timeout
        # (which every daemon stop waited out, 0.25 s on average)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        self._conns: dict[int, _Conn] = {}        # fd -> connection still sending its request
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="metrics")
        self._busy = 0                              # requests handed to the pool, not yet answered
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.counts = {"served": 0, "idle_closed": 0, "evicted": 0, "refused": 0, "bad": 0}
        self.thread = threading.Thread(target=self._loop, name="metrics-http", daemon=True)

    def start(self) -> "MetricsServer":
        self.thread.start()
        return self

    def open_connections(self) -> int:
        with self._lock:
            return len(self._conns) + self._busy

    def shutdown(self) -> None:
        self._stop.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self.thread.join(3)
        self._wake_w.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ---- the selector thread ------------------------------------------------------------
    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                for key, _ in self._sel.select(timeout=0.5):
                    if key.data is None:
                        self._accept()
                    elif key.data is _WAKE:
                        continue
                    else:
                        self._read(key.data)
                self._expire(time.monotonic())
        finally:
            for c in list(self._conns.values()):
                self._close(c)
            self._sel.close()
            self.sock.close()
            self._wake_r.close()

    def _accept(self) -> None:
        for _ in range(64):                 # a bounded batch per wake-up
            try:
                s, _addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:            # EMFILE ...: the next wake-up retries
                log.warning("metrics: accept failed: %s", e)
                return
            if self.open_connections() >= self.max_connections:
                oldest = min(self._conns.values(), key=lambda c: c.since, default=None)
                if oldest is None:          # every slot is a request being answered
                    self.counts["refused"] += 1
                    s.close()
                    continue
                self.counts["evicted"] += 1
                self._close(oldest)
            s.setblocking(False)
            c = _Conn(s, time.monotonic())
            with self._lock:
                self._conns[s.fileno()] = c
            self._sel.register(s, selectors.EVENT_READ, c)

    def _read(self, c: _Conn) -> None:
        try:
            chunk = c.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._close(c)
            return
        c.buf += chunk
        end = c.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(c.buf) > MAX_HEAD:
                self.counts["bad"] += 1
                self._close(c)
            return
        self._sel.unregister(c.sock)
        with self._lock:
            self._conns.pop(c.sock.fileno(), None)
            self._busy += 1
        self._pool.submit(self._answer, c.sock, c.buf[:end])

    def _expire(self, now: float) -> None:
        for c in [c for c in self._conns.values() if now - c.since > self.idle_timeout_s]:
            self.counts["idle_closed"] += 1
            self._close(c)

    def _close(self, c: _Conn) -> None:
        with self._lock:
            self._conns.pop(c.sock.fileno(), None)
        try:
            self._sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()

    # ---- a worker -----------------------------------------------------------------------
    def _answer(self, s: socket.socket, head: bytes) -> None:
        try:
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = line.split()
            if len(parts) != 3 or not parts[2].startswith("HTTP/"):
                status, body, ctype = "400 Bad Request", b"bad request\n", "text/plain"
            elif parts[0] not in ("GET", "HEAD"):
                status, body, ctype = "405 Method Not Allowed", b"GET /metrics\n", "text/plain"
            elif parts[1].split("?", 1)[0] not in ("/metrics", "/"):
                status, body, ctype = "404 Not Found", b"GET /metrics\n", "text/plain"
            else:
                body, ctype = self.render()
                status = "200 OK"
                self.counts["served"] += 1
            out = (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                   f"Connection: close\r\n\r\n").encode() + (b"" if parts and parts[0] == "HEAD" else body)
            s.setblocking(True)
            s.settimeout(self.idle_timeout_s)       # a reader that does not read is cut off
            s.sendall(out)
        except Exception as e:          # a broken client must never take the server down
            log.debug("metrics: answer failed: %r", e)
        finally:
            s.close()
            with self._lock:
                self._busy -= 1
