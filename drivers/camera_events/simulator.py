"""Camera simulators (SPEC §4.7): Hikvision ISAPI, Dahua CGI and ONVIF PullPoint on 127.0.0.1.

Real HTTP servers on an ephemeral port that insist on digest auth (a Basic
``Authorization`` is refused; ``auth="basic"`` makes one that offers only Basic, like
a misconfigured camera), speak the vendors' stream formats byte for byte, and serve
a real JPEG as the snapshot. Scriptable from tests, the demo and the bench:
``motion(ch, on)``, ``tamper(ch, on)``, ``video_loss(ch, on)``, ``send_raw(bytes)``,
``go_silent()`` / ``resume()`` (stream stays open, nothing flows), ``drop()`` (close
every stream), ``heartbeats = False``. ``tls=(cert_file, key_file)`` serves https.
"""
from __future__ import annotations

import base64
import hashlib
import re
import secrets
import socket
import ssl
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

from drivers.common.site import SiteCommandError, SiteDevice

# Hikvision stream framings seen on real models: (boundary in the header, delimiter in the body,
# line end, Content-Length on parts)
HIKVISION_MODELS = {
    "ds-2cd2": ("boundary", b"--boundary", b"\r\n", True),          # IPC firmware 5.x: CRLF, lengths
    "nvr": ("--MIME_boundary", b"--MIME_boundary", b"\r\n", True),   # NVRs: the header names the dashes too
    "legacy": ("MIME_boundary", b"--MIME_boundary", b"\n", False),   # older IPCs: LF only, no lengths
}


def jpeg_frame(label: str, width: int = 320, height: int = 240) -> bytes:
    """A real JPEG (OpenCV-encoded) showing ``label`` over a gradient."""
    import cv2
    import numpy as np
    img = np.zeros((height, width, 3), np.uint8)
    img[:] = np.linspace(40, 200, width, dtype=np.uint8)[None, :, None]
    cv2.putText(img, label, (10, height // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return buf.tobytes()


def _md5(s: str) -> str:
    return hashlib.md5(s.encode()).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, *a) -> None:   # quiet
        pass

    def _authorized(self) -> bool:
        sim = self.server.sim
        h = self.headers.get("Authorization", "")
        if sim.auth == "basic":
            want = "Basic " + base64.b64encode(f"{sim.username}:{sim.password}".encode()).decode()
            if h == want:
                return True
            self._challenge('Basic realm="IP Camera"')
            return False
        if h.lower().startswith("digest ") and sim.check_digest(self.command, h[7:]):
            return True
        if h.lower().startswith("basic "):
            sim.basic_refused += 1
        self._challenge(sim.digest_challenge())
        return False

    def _challenge(self, www: str) -> None:
        self.server.sim.unauthorized += 1
        body = b"<html><body>401 Unauthorized</body></html>"
        self.send_response(401)
        self.send_header("WWW-Authenticate", www)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            try:
                self.request.do_handshake()
            except (ssl.SSLError, OSError):
                self.server.sim.tls_refused += 1
                raise
            self.request.settimeout(None)
        super().setup()

    def do_GET(self) -> None:
        self.server.sim.handle_get(self)

    def do_POST(self) -> None:
        self.server.sim.handle_post(self)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    sim: "_Simulator"

    def handle_error(self, request, client_address) -> None:
        import sys
        if isinstance(sys.exc_info()[1], ssl.SSLError):     # a client refused our certificate: counted
            return
        super().handle_error(request, client_address)


class _Stream:
    """One open event stream: the handler thread writes what lands in ``out``."""

    def __init__(self, handler: _Handler):
        self.handler = handler
        self.cond = threading.Condition()
        self.out: list[bytes] = []
        self.closed = False

    def put(self, data: bytes) -> None:
        with self.cond:
            self.out.append(data)
            self.cond.notify()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()
        try:
            self.handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Simulator:
    realm = "IP Camera"

    def __init__(self, username: str = "admin", password: str = "cam-secret", channels: int = 1,
                 auth: str = "digest", heartbeat_s: float = 5.0, repost_s: float = 1.0,
                 tls: tuple[str, str] | None = None, port: int = 0):
        self.username, self.password, self.auth = username, password, auth
        self.channels = channels
        self.heartbeat_s = heartbeat_s
        self.repost_s = repost_s              # active-only events are re-posted this often while on
        self.heartbeats = True
        self.silent = False
        self.unauthorized = self.basic_refused = self.streams_opened = self.snapshots = 0
        self._nonces: set[str] = set()
        self._streams: list[_Stream] = []
        self._lock = threading.Lock()
        self._reposting: dict[tuple[str, int], bool] = {}
        self._stop = threading.Event()
        self._jpegs: dict[int, bytes] = {}
        self.server = _Server(("127.0.0.1", port), _Handler)       # port: a configured camera's (simulate)
        self.server.sim = self
        self.port = self.server.server_address[1]
        self.tls_refused = 0
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            # handshake in the handler's thread (a client that refuses the certificate fails there)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True,
                                                 do_handshake_on_connect=False)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._threads: list[threading.Thread] = []

    # ---- lifecycle ----
    def start(self) -> "_Simulator":
        for target in (self.server.serve_forever, self._ticker):
            t = threading.Thread(target=target, daemon=True, name=f"{type(self).__name__}-{self.port}")
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        self.drop()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- auth ----
    def digest_challenge(self) -> str:
        nonce = secrets.token_hex(16)
        with self._lock:
            self._nonces.add(nonce)
        return f'Digest qop="auth", realm="{self.realm}", nonce="{nonce}", stale="FALSE"'

    def check_digest(self, method: str, params: str) -> bool:
        p = dict((k, v.strip('"')) for k, v in re.findall(r'(\w+)=("[^"]*"|[^,\s]+)', params))
        if p.get("username") != self.username or p.get("nonce") not in self._nonces:
            return False
        ha1 = _md5(f"{self.username}:{self.realm}:{self.password}")
        ha2 = _md5(f"{method}:{p.get('uri', '')}")
        if p.get("qop"):
            want = _md5(f"{ha1}:{p['nonce']}:{p.get('nc', '')}:{p.get('cnonce', '')}:{p['qop']}:{ha2}")
        else:
            want = _md5(f"{ha1}:{p['nonce']}:{ha2}")
        return secrets.compare_digest(want, p.get("response", ""))

    # ---- scripting ----
    def go_silent(self) -> None:
        self.silent = True

    def resume(self) -> None:
        self.silent = False

    def drop(self) -> None:
        with self._lock:
            streams, self._streams = self._streams, []
        for s in streams:
            s.close()

    def connected(self) -> int:
        with self._lock:
            return len(self._streams)

    def send_raw(self, data: bytes) -> None:
        self._broadcast(data, force=True)

    def jpeg(self, channel: int) -> bytes:
        if channel not in self._jpegs:
            self._jpegs[channel] = jpeg_frame(f"{type(self).__name__[:4]} ch{channel}")
        return self._jpegs[channel]

    def _broadcast(self, data: bytes, force: bool = False) -> None:
        if self.silent and not force:
            return
        with self._lock:
            streams = list(self._streams)
        for s in streams:
            s.put(data)

    def _ticker(self) -> None:
        last_hb = time.monotonic()
        while not self._stop.wait(min(0.1, self.repost_s / 2)):
            now = time.monotonic()
            if self.heartbeats and now - last_hb >= self.heartbeat_s:
                last_hb = now
                self._broadcast(self.heartbeat_part())
            with self._lock:
                due = [k for k, on in self._reposting.items() if on]
            if due and now - getattr(self, "_last_repost", 0) >= self.repost_s:
                self._last_repost = now
                for kind, ch in due:
                    self._broadcast(self.event_part(kind, ch, True, repost=True))

    def _serve_stream(self, h: _Handler, content_type: str, first: bytes = b"") -> None:
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.flush()
        st = _Stream(h)
        with self._lock:
            self._streams.append(st)
            self.streams_opened += 1
        if first:
            st.put(first)
        try:
            while not st.closed:
                with st.cond:
                    while not st.out and not st.closed:
                        st.cond.wait(0.5)
                    out, st.out = st.out, []
                for b in out:
                    h.wfile.write(b)
                h.wfile.flush()
        except OSError:
            pass
        finally:
            with self._lock:
                if st in self._streams:
                    self._streams.remove(st)
            h.close_connection = True

    # vendor parts
    def heartbeat_part(self) -> bytes:
        raise NotImplementedError

    def event_part(self, kind: str, channel: int, active: bool, repost: bool = False) -> bytes:
        raise NotImplementedError

    def motion(self, channel: int = 1, active: bool = True, repost: bool = True) -> None:
        self._event("motion", channel, active, repost)

    def tamper(self, channel: int = 1, active: bool = True, repost: bool = True) -> None:
        self._event("covered", channel, active, repost)

    def video_loss(self, channel: int = 1, active: bool = True, repost: bool = True) -> None:
        self._event("video_lost", channel, active, repost)

    def _event(self, kind: str, channel: int, active: bool, repost: bool) -> None:
        with self._lock:
            self._reposting[(kind, channel)] = active and repost
        self._broadcast(self.event_part(kind, channel, active))

    def handle_post(self, h: _Handler) -> None:
        h._send(405, "text/plain", b"method not allowed")


class HikvisionSimulator(_Simulator):
    """ISAPI alertStream. ``model``: a key of HIKVISION_MODELS (boundary and framing);
    ``legacy_path_only``: the ISAPI path answers 404 (old firmware: /Event/notification/alertStream)."""

    TYPES = {"motion": "VMD", "covered": "shelteralarm", "video_lost": "videoloss"}

    def __init__(self, model: str = "ds-2cd2", legacy_path_only: bool = False, send_inactive: bool = False,
                 **kw):
        super().__init__(**kw)
        self.model = model
        self.header_boundary, self.delim, self.eol, self.lengths = HIKVISION_MODELS[model]
        self.legacy_path_only = legacy_path_only
        self.send_inactive = send_inactive     # most models never post "inactive" for VMD
        self._posts: dict[tuple[str, int], int] = {}

    def alert_xml(self, event_type: str, channel: int, state: str, posts: int,
                  description: str = "") -> bytes:
        now = datetime.now(timezone(timedelta(hours=8))).isoformat(timespec="seconds")
        eol = self.eol.decode()
        lines = ['<?xml version="1.0" encoding="UTF-8"?>',
                 '<EventNotificationAlert version="2.0" xmlns="http://www.hikvision.com/ver20/XMLSchema">',
                 "<ipAddress>127.0.0.1</ipAddress>", f"<portNo>{self.port}</portNo>", "<protocol>HTTP</protocol>",
                 "<macAddress>44:19:b6:6d:24:85</macAddress>",
                 f"<{'dynChannelID' if self.model == 'nvr' else 'channelID'}>{channel}"
                 f"</{'dynChannelID' if self.model == 'nvr' else 'channelID'}>",
                 f"<dateTime>{now}</dateTime>", f"<activePostCount>{posts}</activePostCount>",
                 f"<eventType>{event_type}</eventType>", f"<eventState>{state}</eventState>",
                 f"<eventDescription>{description or event_type + ' alarm'}</eventDescription>",
                 "</EventNotificationAlert>"]
        return (eol.join(lines) + eol).encode()

    def part(self, ctype: str, body: bytes, extra: str = "") -> bytes:
        eol = self.eol
        head = self.delim + eol + f"Content-Type: {ctype}".encode() + eol
        if extra:
            head += extra.encode() + eol
        if self.lengths:
            head += f"Content-Length: {len(body)}".encode() + eol
        return head + eol + body + eol

    def heartbeat_part(self) -> bytes:
        return self.part('application/xml; charset="UTF-8"', self.alert_xml("videoloss", 1, "inactive", 0))

    def event_part(self, kind: str, channel: int, active: bool, repost: bool = False) -> bytes:
        etype = self.TYPES[kind]
        key = (kind, channel)
        if active:
            self._posts[key] = self._posts.get(key, 0) + 1
        elif not self.send_inactive and kind == "motion":
            return b""
        else:
            self._posts[key] = 0
        out = self.part('application/xml; charset="UTF-8"',
                        self.alert_xml(etype, channel, "active" if active else "inactive",
                                       self._posts.get(key, 0) if active else 1))
        if active and kind == "motion" and not repost:     # the first post carries the picture
            out += self.part("image/jpeg", self.jpeg(channel),
                             f'Content-Disposition: form-data; name="{etype}"; filename="{etype}.jpg"')
        return out

    def handle_get(self, h: _Handler) -> None:
        path = urlparse(h.path).path
        if path in ("/ISAPI/Event/notification/alertStream", "/Event/notification/alertStream"):
            if path.startswith("/ISAPI") and self.legacy_path_only:
                return h._send(404, "text/html", b"<html>Not Found</html>")
            if h._authorized():
                self._serve_stream(h, f"multipart/mixed; boundary={self.header_boundary}")
            return
        m = re.fullmatch(r"/ISAPI/Streaming/channels/(\d+)01/picture", path)
        if m:
            if h._authorized():
                self.snapshots += 1
                h._send(200, "image/jpeg", self.jpeg(int(m.group(1))))
            return
        h._send(404, "text/html", b"<html>Not Found</html>")


class DahuaSimulator(_Simulator):
    """eventManager.cgi attach stream (``boundary=myboundary``) and snapshot.cgi."""

    CODES = {"motion": "VideoMotion", "covered": "VideoBlind", "video_lost": "VideoLoss"}

    def part(self, text: str) -> bytes:
        body = text.encode()
        return (b"--myboundary\r\nContent-Type: text/plain\r\nContent-Length: " + str(len(body)).encode()
                + b"\r\n\r\n" + body + b"\r\n\r\n")

    def heartbeat_part(self) -> bytes:
        return self.part("Heartbeat")

    def event_part(self, kind: str, channel: int, active: bool, repost: bool = False) -> bytes:
        if repost:
            return b""                 # Start/Stop bracket the condition: nothing to re-post
        code = self.CODES[kind]
        data = '{\n   "Id" : [ 0 ],\n   "RegionName" : [ "Region1" ]\n}\n' if kind == "motion" else "{}"
        return self.part(f"Code={code};action={'Start' if active else 'Stop'};index={channel - 1};data={data}")

    def pulse(self, code: str, channel: int = 1) -> None:
        self._broadcast(self.part(f"Code={code};action=Pulse;index={channel - 1};data={{}}"))

    def handle_get(self, h: _Handler) -> None:
        u = urlparse(h.path)
        if u.path == "/cgi-bin/eventManager.cgi" and "action=attach" in u.query:
            if h._authorized():
                self._serve_stream(h, "multipart/x-mixed-replace; boundary=myboundary")
            return
        if u.path == "/cgi-bin/snapshot.cgi":
            if h._authorized():
                m = re.search(r"channel=(\d+)", u.query)
                self.snapshots += 1
                h._send(200, "image/jpeg", self.jpeg(int(m.group(1)) if m else 1))
            return
        h._send(404, "text/plain", b"Error\r\nBad Request!\r\n")


# ---- ONVIF ------------------------------------------------------------------------------------
_SOAP_NS = ('xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:tt="http://www.onvif.org/ver10/schema" '
            'xmlns:tds="http://www.onvif.org/ver10/device/wsdl" xmlns:trt="http://www.onvif.org/ver10/media/wsdl" '
            'xmlns:tev="http://www.onvif.org/ver10/events/wsdl" xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2" '
            'xmlns:wsa="http://www.w3.org/2005/08/addressing" xmlns:tns1="http://www.onvif.org/ver10/topics"')


def _utc(t: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if t is None else t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _envelope(body: str, action: str = "") -> bytes:
    head = f"<s:Header><wsa:Action>{action}</wsa:Action></s:Header>" if action else ""
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<s:Envelope {_SOAP_NS}>{head}<s:Body>{body}</s:Body></s:Envelope>'.encode()


def _fault(reason: str, sub: str = "ter:NotAuthorized") -> bytes:
    return _envelope('<s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value '
                     f'xmlns:ter="http://www.onvif.org/ver10/error">{sub}</s:Value></s:Subcode></s:Code>'
                     f'<s:Reason><s:Text xml:lang="en">{reason}</s:Text></s:Reason></s:Fault>')


def _duration(text: str, default: float) -> float:
    m = re.fullmatch(r"PT(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?", (text or "").strip())
    if not m or not (m.group(1) or m.group(2)):
        return default
    return int(m.group(1) or 0) * 60 + float(m.group(2) or 0)


class OnvifSimulator(_Simulator):
    """Device, media and events services over SOAP 1.2 with WS-Security UsernameToken (digest):
    GetServices, GetProfiles, GetSnapshotUri, CreatePullPointSubscription, PullMessages (long
    poll), Renew, Unsubscribe. Counters: ``subscriptions``, ``renewals``, ``unsubscribed``."""

    TOPICS = {"motion": ("tns1:RuleEngine/CellMotionDetector/Motion", "IsMotion"),
              "covered": ("tns1:VideoSource/GlobalSceneChange/ImagingService", "State"),
              "video_lost": ("tns1:VideoSource/MotionAlarm", "State")}

    def __init__(self, termination_s: float = 60.0, **kw):
        super().__init__(**kw)
        self.termination_s = termination_s
        self.subscriptions = self.renewals = self.unsubscribed = 0
        self._subs: dict[str, dict] = {}          # id -> {"queue": [...], "until": epoch, "cond": Condition}

    def heartbeat_part(self) -> bytes:
        return b""                                # PullMessages answers are its heartbeat

    def _ticker(self) -> None:                    # re-posting is an Hikvision habit
        self._stop.wait()

    def event_part(self, kind: str, channel: int, active: bool, repost: bool = False) -> bytes:
        topic, item = self.TOPICS[kind]
        return (f'<wsnt:NotificationMessage><wsnt:Topic Dialect="http://www.onvif.org/ver10/tev/topicExpression/'
                f'ConcreteSet">{topic}</wsnt:Topic><wsnt:Message><tt:Message UtcTime="{_utc()}" '
                f'PropertyOperation="Changed"><tt:Source><tt:SimpleItem Name="VideoSourceConfigurationToken" '
                f'Value="VideoSource_{channel}"/></tt:Source><tt:Data><tt:SimpleItem Name="{item}" '
                f'Value="{"true" if active else "false"}"/></tt:Data></tt:Message></wsnt:Message>'
                f'</wsnt:NotificationMessage>').encode()

    def _broadcast(self, data: bytes, force: bool = False) -> None:
        if not data:
            return
        with self._lock:
            subs = list(self._subs.values())
        for s in subs:
            with s["cond"]:
                s["queue"].append(data)
                s["cond"].notify_all()

    def drop(self) -> None:
        with self._lock:
            subs, self._subs = list(self._subs.values()), {}
        for s in subs:
            with s["cond"]:
                s["dropped"] = True
                s["cond"].notify_all()

    def connected(self) -> int:
        with self._lock:
            return len(self._subs)

    def _check_wsse(self, xml: str) -> bool:
        user = re.search(r"<(?:\w+:)?Username>([^<]*)<", xml)
        pw = re.search(r"<(?:\w+:)?Password[^>]*>([^<]*)<", xml)
        nonce = re.search(r"<(?:\w+:)?Nonce[^>]*>([^<]*)<", xml)
        created = re.search(r"<(?:\w+:)?Created[^>]*>([^<]*)<", xml)
        if not (user and pw and nonce and created) or user.group(1) != self.username:
            return False
        digest = base64.b64encode(hashlib.sha1(base64.b64decode(nonce.group(1)) + created.group(1).encode()
                                               + self.password.encode()).digest()).decode()
        return secrets.compare_digest(digest, pw.group(1))

    def handle_get(self, h: _Handler) -> None:
        m = re.fullmatch(r"/onvif/snapshot/(\d+)\.jpg", urlparse(h.path).path)
        if m:
            if h._authorized():
                self.snapshots += 1
                h._send(200, "image/jpeg", self.jpeg(int(m.group(1))))
            return
        h._send(404, "text/plain", b"not found")

    def handle_post(self, h: _Handler) -> None:
        n = int(h.headers.get("Content-Length", "0") or 0)
        xml = h.rfile.read(n).decode("utf-8", "replace")
        op = re.search(r"<(?:[\w.-]+:)?Body[^>]*>\s*<(?:[\w.-]+:)?(\w+)", xml)
        op = op.group(1) if op else ""
        path = urlparse(h.path).path
        if not self._check_wsse(xml):
            self.unauthorized += 1
            return h._send(400, "application/soap+xml; charset=utf-8", _fault("Sender not authorized"))
        base = self.url
        ctype = "application/soap+xml; charset=utf-8"
        if op == "GetServices":
            svc = "".join(f"<tds:Service><tds:Namespace>{ns}</tds:Namespace><tds:XAddr>{base}{p}</tds:XAddr>"
                          f"<tds:Version><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tds:Version></tds:Service>"
                          for ns, p in (("http://www.onvif.org/ver10/device/wsdl", "/onvif/device_service"),
                                        ("http://www.onvif.org/ver10/media/wsdl", "/onvif/media"),
                                        ("http://www.onvif.org/ver10/events/wsdl", "/onvif/events")))
            return h._send(200, ctype, _envelope(f"<tds:GetServicesResponse>{svc}</tds:GetServicesResponse>"))
        if op == "GetProfiles":
            prof = "".join(
                f'<trt:Profiles token="Profile_{c}" fixed="true"><tt:Name>main{c}</tt:Name>'
                f'<tt:VideoSourceConfiguration token="VideoSourceConfig_{c}"><tt:Name>vs{c}</tt:Name>'
                f'<tt:UseCount>1</tt:UseCount><tt:SourceToken>VideoSource_{c}</tt:SourceToken>'
                f'<tt:Bounds x="0" y="0" width="320" height="240"/></tt:VideoSourceConfiguration></trt:Profiles>'
                for c in range(1, self.channels + 1))
            return h._send(200, ctype, _envelope(f"<trt:GetProfilesResponse>{prof}</trt:GetProfilesResponse>"))
        if op == "GetSnapshotUri":
            tok = re.search(r"ProfileToken>\s*Profile_(\d+)", xml)
            c = tok.group(1) if tok else "1"
            return h._send(200, ctype, _envelope(
                f"<trt:GetSnapshotUriResponse><trt:MediaUri><tt:Uri>{base}/onvif/snapshot/{c}.jpg</tt:Uri>"
                "<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect><tt:InvalidAfterReboot>false"
                "</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout></trt:MediaUri></trt:GetSnapshotUriResponse>"))
        if op == "CreatePullPointSubscription":
            term = _duration((re.search(r"InitialTerminationTime>([^<]*)<", xml) or [None, ""])[1],
                             self.termination_s)
            sid = uuid.uuid4().hex
            with self._lock:
                self._subs[sid] = {"queue": [], "until": time.time() + term, "cond": threading.Condition(),
                                   "dropped": False}
                self.subscriptions += 1
                self.streams_opened += 1
            now = time.time()
            return h._send(200, ctype, _envelope(
                f"<tev:CreatePullPointSubscriptionResponse><tev:SubscriptionReference><wsa:Address>"
                f"{base}/onvif/pullpoint/{sid}</wsa:Address></tev:SubscriptionReference>"
                f"<wsnt:CurrentTime>{_utc(now)}</wsnt:CurrentTime><wsnt:TerminationTime>{_utc(now + term)}"
                f"</wsnt:TerminationTime></tev:CreatePullPointSubscriptionResponse>"))
        m = re.fullmatch(r"/onvif/pullpoint/(\w+)", path)
        sub = self._subs.get(m.group(1)) if m else None
        if sub is None or sub["until"] < time.time():
            return h._send(400, ctype, _fault("unknown or expired subscription", "ter:InvalidArgVal"))
        if op == "PullMessages":
            timeout = _duration((re.search(r"Timeout>([^<]*)<", xml) or [None, ""])[1], 5)
            limit = int((re.search(r"MessageLimit>(\d+)<", xml) or [None, "100"])[1])
            deadline = time.monotonic() + timeout
            with sub["cond"]:
                while (not sub["queue"] or self.silent) and not sub["dropped"]:
                    left = deadline - time.monotonic()
                    if left <= 0 and not self.silent:
                        break
                    sub["cond"].wait(max(0.05, min(left, 0.5)) if left > 0 else 0.5)
                if sub["dropped"]:
                    h.close_connection = True
                    try:
                        h.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                msgs, sub["queue"] = sub["queue"][:limit], sub["queue"][limit:]
            now = time.time()
            return h._send(200, ctype, _envelope(
                f"<tev:PullMessagesResponse><tev:CurrentTime>{_utc(now)}</tev:CurrentTime><tev:TerminationTime>"
                f"{_utc(sub['until'])}</tev:TerminationTime>{b''.join(msgs).decode()}</tev:PullMessagesResponse>"))
        if op == "Renew":
            term = _duration((re.search(r"TerminationTime>([^<]*)<", xml) or [None, ""])[1], self.termination_s)
            now = time.time()
            sub["until"] = now + term
            self.renewals += 1
            return h._send(200, ctype, _envelope(
                f"<wsnt:RenewResponse><wsnt:TerminationTime>{_utc(now + term)}</wsnt:TerminationTime>"
                f"<wsnt:CurrentTime>{_utc(now)}</wsnt:CurrentTime></wsnt:RenewResponse>"))
        if op == "Unsubscribe":
            with self._lock:
                self._subs.pop(m.group(1), None)
            self.unsubscribed += 1
            return h._send(200, ctype, _envelope("<wsnt:UnsubscribeResponse/>"))
        h._send(400, ctype, _fault(f"action {op} not supported", "ter:ActionNotSupported"))


SIMULATORS = {"hikvision": HikvisionSimulator, "dahua": DahuaSimulator, "onvif": OnvifSimulator}


# ---- casegate simulate (drivers/common/site.py) ----------------------------------------------
class CameraSiteDevice(SiteDevice):
    """The configured camera (its vendor's simulator) on the url's port, with the credentials of
    its password_file, so the daemon's digest login is the real one."""

    usage = ("motion <camera|room> on|off", "tamper <camera|room> on|off")

    def __init__(self, dev):
        super().__init__(dev.id)
        u = urlparse(dev.url)
        if u.scheme != "http" or u.hostname not in ("127.0.0.1", "localhost"):
            raise SiteCommandError(f"{dev.url}: simulate serves cameras on http://127.0.0.1:<port> only — "
                                   "point this camera's url there for commissioning")
        try:
            password = open(dev.password_file, encoding="utf-8").read().strip()
        except OSError as e:
            raise SiteCommandError(f"{dev.password_file}: {e.strerror} (the camera's password_file)") from None
        cls = {"hikvision": HikvisionSimulator, "dahua": DahuaSimulator, "onvif": OnvifSimulator}[dev.vendor]
        self.channels = {room: int(ch) for ch, room in dev.channels.items()}
        self.sim = cls(username=dev.username, password=password, channels=max(self.channels.values()),
                       port=u.port or 80)

    def start(self) -> None:
        self.sim.start()

    def stop(self) -> None:
        self.sim.stop()

    def where(self) -> str:
        return f"{type(self.sim).__name__} on {self.sim.url} (channels: " \
               + ", ".join(f"{c}={r}" for r, c in self.channels.items()) + ")"

    def handle(self, words: list[str]) -> str | None:
        if words[0] not in ("motion", "tamper") or len(words) != 3:
            return None
        target, state = words[1], words[2]
        if target == self.device_id:
            channels = sorted(set(self.channels.values()))
        elif target in self.channels:
            channels = [self.channels[target]]
        else:
            return None
        if state not in ("on", "off"):
            raise SiteCommandError(f"usage: {words[0]} <camera|room> on|off")
        for ch in channels:
            (self.sim.motion if words[0] == "motion" else self.sim.tamper)(ch, active=state == "on")
        return f"{self.device_id}: {words[0]} {state} on channel(s) {', '.join(map(str, channels))}"


def site_device(dev) -> CameraSiteDevice:
    return CameraSiteDevice(dev)
