"""An analysed camera's stream is opened only on its configured host (issue 30): a redirect
to another host is refused before FFmpeg follows it, and — where FFmpeg does follow one
(after authenticating) — the camera's credentials never reach the other host."""
from __future__ import annotations

import http.server
import socketserver
import threading

import cv2
import pytest

from drivers.camera.driver import CameraDriver
from drivers.camera.redirects import foreign_redirect
from drivers.base import PrintContext
from helpers.camera import cfg, of_type, wait_for


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(host: str, handler) -> Server:
    srv = Server((host, 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.fixture
def hosts():
    """A hostile camera on 127.0.0.1 and the host it redirects to on 127.0.0.2; what each saw."""
    seen: list[tuple[str, str, str | None]] = []
    started: list[Server] = []

    class Other(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(("other", self.path, self.headers.get("Authorization")))
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="x"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    other = serve("127.0.0.2", Other)
    started.append(other)

    def camera(redirect_before_auth: bool, same_host: bool = False) -> str:
        class Camera(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                auth = self.headers.get("Authorization")
                seen.append(("camera", self.path, auth))
                if not auth and not redirect_before_auth:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="cam"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(302)
                target = "/elsewhere.mjpg" if same_host else f"http://127.0.0.2:{other.server_address[1]}/steal"
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        srv = serve("127.0.0.1", Camera)
        started.append(srv)
        return f"http://admin:s3cret@127.0.0.1:{srv.server_address[1]}/video.mjpg"

    yield camera, seen
    for s in started:
        s.shutdown()
        s.server_close()


@pytest.mark.parametrize("before_auth", [True, False], ids=["redirect-at-once", "redirect-after-auth"])
def test_a_redirect_to_another_host_is_refused_without_reaching_it(hosts, before_auth):
    camera, seen = hosts
    url = camera(redirect_before_auth=before_auth)
    why = foreign_redirect(url, 3.0)
    assert why is not None and "127.0.0.2" in why and "refused" in why and "s3cret" not in why
    assert not [s for s in seen if s[0] == "other"], seen       # the other host was never asked
    # the camera got its credentials only once it asked for them
    assert [a is not None for who, _, a in seen if who == "camera"] == ([False] if before_auth else [False, True])


def test_a_redirect_on_the_cameras_own_host_is_left_to_ffmpeg(hosts):
    camera, _ = hosts
    assert foreign_redirect(camera(redirect_before_auth=False, same_host=True), 3.0) is None


def test_the_driver_refuses_the_stream_and_says_why(hosts, tmp_path):
    camera, seen = hosts
    url = camera(redirect_before_auth=True)
    ctx = PrintContext("cam-int1", storage_dir=str(tmp_path))
    drv = CameraDriver(cfg(url, offline_s=0.3), ctx)
    drv.start()
    try:
        # offline, and the device's error (status, devices, the log) says why once the watchdog
        # looks again (its first word may be the generic "no frames" while models load)
        assert wait_for(lambda: "redirected its stream" in (drv.health.error or ""), 20), drv.health.error
        assert of_type(ctx, "device.offline") and "s3cret" not in drv.health.error
        assert drv.health.counters.get("redirect_refused", 0) >= 1
        assert drv.stats.opens == 0                                   # FFmpeg never opened it
    finally:
        drv.stop(timeout=3)
    assert not [s for s in seen if s[0] == "other"], seen


def test_ffmpeg_itself_sends_no_credentials_to_the_host_it_is_redirected_to(hosts):
    """Why following a same-host redirect is safe enough to leave to FFmpeg, and the guard's
    premise: if a later FFmpeg carried credentials across hosts, this fails."""
    camera, seen = hosts
    url = camera(redirect_before_auth=False)
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 3000])
    cap.release()
    assert ("camera", "/video.mjpg", None) in seen                    # FFmpeg did talk to the camera
    to_other = [a for who, _, a in seen if who == "other"]
    assert to_other and all(a is None for a in to_other), seen        # followed, without credentials
