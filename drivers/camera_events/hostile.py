"""Hostile cameras (issues 28, 30): what a broken firmware or an attacker on the LAN sends.

Each mode is a camera simulator (simulator.py) gone bad in one way. Run one in a child
process so that its own CPU and memory are not the daemon's or the test's::

    python -m drivers.camera_events.hostile MODE [ELSEWHERE_PORT]

prints ``URL <url>`` once it listens on 127.0.0.1 and serves until stdin closes.
:class:`HostileProcess` does that from a test or bench. Modes:

* ``lines``: a Hikvision stream of endless short lines (never a part) as fast as it goes
* ``newlines``: one part header, then a body of newlines without end (quadratic-scan bait)
* ``drip``: the stream headers, then one byte a second (no heartbeat ever)
* ``slowhead``: the status line and headers, one byte a second
* ``names``: valid parts, each with a new eventType, as fast as it goes (and heartbeats)
* ``hugepart``: a part announcing Content-Length 1 GB, then its bytes
* ``bomb``: billion-laughs XML parts
* ``bigsnap``: a good stream; the snapshot answer is 500 MB of JPEG-looking bytes
* ``dripsnap``: a good stream; the snapshot answer drips a byte every 2 s
* ``snapredirect``: a good stream; the snapshot answer redirects to 127.0.0.2:ELSEWHERE_PORT
* ``onvif_flood``: ONVIF; every SOAP answer is an endless body
* ``onvif_redirect``: ONVIF; every SOAP request is redirected (307) to 127.0.0.2:ELSEWHERE_PORT
* ``onvif_elsewhere``: ONVIF; the PullPoint address names 127.0.0.2:ELSEWHERE_PORT
* ``onvif_snap_elsewhere``: ONVIF; the snapshot URI names 127.0.0.2:ELSEWHERE_PORT
"""
from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time
from urllib.parse import urlparse

from drivers.camera_events.simulator import HikvisionSimulator, OnvifSimulator, _Handler

BOMB = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + b"".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode()
                   for i in range(1, 10))
        + b']><EventNotificationAlert><eventType>&lol9;</eventType></EventNotificationAlert>')


def _write_forever(h: _Handler, chunk: bytes, every_s: float = 0.0) -> None:
    try:
        while True:
            h.wfile.write(chunk)
            h.wfile.flush()
            if every_s:
                time.sleep(every_s)
    except OSError:
        pass
    h.close_connection = True


def _stream_head(h: _Handler, ctype: str = "multipart/mixed; boundary=boundary") -> None:
    h.send_response(200)
    h.send_header("Content-Type", ctype)
    h.send_header("Connection", "close")
    h.end_headers()
    h.wfile.flush()


class HostileHikvision(HikvisionSimulator):
    def __init__(self, mode: str, elsewhere_port: int = 0, **kw):
        super().__init__(heartbeat_s=1, **kw)
        self.mode = mode
        self.elsewhere_port = elsewhere_port
        self._n = itertools.count()

    def handle_get(self, h: _Handler) -> None:
        path = urlparse(h.path).path
        stream = path.endswith("alertStream")
        m = self.mode
        if m == "slowhead":                          # the status line, a byte a second
            h.close_connection = True
            try:
                for b in b"HTTP/1.1 200 OK\r\nContent-Type: multipart/mixed; boundary=boundary\r\n" * 100:
                    h.wfile.write(bytes([b]))
                    h.wfile.flush()
                    time.sleep(1.0)
            except OSError:
                pass
            return
        if not h._authorized():
            return
        if stream and m == "lines":
            _stream_head(h)
            return _write_forever(h, b"x\r\n" * 4096)
        if stream and m == "newlines":
            _stream_head(h)
            h.wfile.write(b"--boundary\r\nContent-Type: application/xml\r\n\r\n")
            return _write_forever(h, b"\n" * 65536)
        if stream and m == "drip":
            _stream_head(h)
            return _write_forever(h, b"x", every_s=1.0)
        if stream and m == "names":
            _stream_head(h)
            try:
                while True:
                    batch = b"".join(self.part("application/xml", self.alert_xml(f"x{next(self._n)}-zzzz", 1,
                                                                                 "active", 1))
                                     for _ in range(50))
                    h.wfile.write(batch + self.heartbeat_part())
                    h.wfile.flush()
            except OSError:
                pass
            h.close_connection = True
            return
        if stream and m == "hugepart":
            _stream_head(h)
            h.wfile.write(b"--boundary\r\nContent-Type: image/jpeg\r\nContent-Length: 1000000000\r\n\r\n\xff\xd8")
            return _write_forever(h, b"\0" * 65536)
        if stream and m == "bomb":
            _stream_head(h)
            return _write_forever(h, self.part("application/xml", BOMB) + self.heartbeat_part(), every_s=0.01)
        if not stream and m == "bigsnap":
            self.snapshots += 1
            h.send_response(200)
            h.send_header("Content-Type", "image/jpeg")
            h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(b"\xff\xd8\xff\xe0")
            try:
                for _ in range(500 * 16):            # 500 MB, no Content-Length
                    h.wfile.write(b"\0" * 65536)
            except OSError:
                pass
            h.close_connection = True
            return
        if not stream and m == "snapredirect":
            self.snapshots += 1
            h.send_response(302)
            h.send_header("Location", f"http://127.0.0.2:{self.elsewhere_port}/picture.jpg")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if not stream and m == "dripsnap":
            self.snapshots += 1
            h.send_response(200)
            h.send_header("Content-Type", "image/jpeg")
            h.send_header("Content-Length", "100000")
            h.end_headers()
            h.wfile.write(b"\xff\xd8")
            return _write_forever(h, b"\xff", every_s=2.0)
        # the good camera otherwise (the stream of bigsnap/dripsnap, snapshots of the others)
        if stream:
            self._serve_stream(h, f"multipart/mixed; boundary={self.header_boundary}")
        else:
            self.snapshots += 1
            h._send(200, "image/jpeg", self.jpeg(1))


class HostileOnvif(OnvifSimulator):
    def __init__(self, mode: str, elsewhere_port: int = 0, **kw):
        super().__init__(**kw)
        self.mode = mode
        self.elsewhere = f"http://127.0.0.2:{elsewhere_port}"

    def handle_post(self, h: _Handler) -> None:
        if self.mode == "onvif_redirect":
            n = int(h.headers.get("Content-Length", "0") or 0)
            h.rfile.read(n)
            h.send_response(307)                     # 307: a client that follows re-sends the body (the token)
            h.send_header("Location", f"{self.elsewhere}{urlparse(h.path).path}")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if self.mode == "onvif_flood":
            n = int(h.headers.get("Content-Length", "0") or 0)
            h.rfile.read(n)
            _stream_head(h, "application/soap+xml; charset=utf-8")
            h.wfile.write(b'<?xml version="1.0"?><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope">'
                          b"<s:Body><x>")
            return _write_forever(h, b"<a>" * 16384)
        if self.mode in ("onvif_elsewhere", "onvif_snap_elsewhere"):
            # answer as the good camera would, then move the address we want followed
            real_send = h._send
            swap = "/onvif/pullpoint/" if self.mode == "onvif_elsewhere" else "/onvif/snapshot/"

            def send(code: int, ctype: str, body: bytes) -> None:
                real_send(code, ctype, body.replace(f"{self.url}{swap}".encode(), f"{self.elsewhere}{swap}".encode()))
            h._send = send
        super().handle_post(h)


def make(mode: str, elsewhere_port: int = 0):
    if mode.startswith("onvif"):
        return HostileOnvif(mode, elsewhere_port)
    return HostileHikvision(mode, elsewhere_port)


class HostileProcess:
    """A hostile camera in a child process: ``.url``; ``stop()`` ends it."""

    def __init__(self, mode: str, elsewhere_port: int = 0):
        from drivers.base import child_python_env
        self.proc = subprocess.Popen([sys.executable, "-m", "drivers.camera_events.hostile", mode,
                                      str(elsewhere_port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=child_python_env(), text=True)
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "URL":
            self.stop()
            raise RuntimeError(f"hostile camera {mode} did not start: {line}")
        self.url = line[1]
        self.vendor = "onvif" if mode.startswith("onvif") else "hikvision"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)

    def __enter__(self) -> "HostileProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    sim = make(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0).start()
    print("URL", sim.url, flush=True)
    threading.Thread(target=lambda: (sys.stdin.read(), sim.stop()), daemon=True).start()
    while sim.server.socket.fileno() >= 0:
        time.sleep(0.5)
