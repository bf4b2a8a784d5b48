"""The CLI's way into the daemon: ``<storage.dir>/casegate.sock``, one JSON line each way.

Verbs: the views (``status``, ``devices``, ``alarms``, ``top``, ``metrics``;
gateway/views.py) and ``request`` — a command of the command table, run through the same
``RequestRouter`` as over MQTT (gateway/commands/). ``ack`` and ``reload`` are older names
of two commands."""
from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.core import RequestError

if TYPE_CHECKING:
    from gateway.commands import RequestRouter
    from gateway.views import DaemonViews

log = logging.getLogger("casegate")

# One control-socket request is one line; face/enroll's base64 photo may be ~8 MB.
CONTROL_MAX_LINE = 9 * 1024 * 1024

# Control verbs that are request commands under an older name (clients from before the
# "request" verb): they run as that command through the command table, nothing else.
# verb -> (command, the request's keys passed on as its args)
CONTROL_ALIASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "ack": ("alarm/ack", ("request_id", "alarm_id", "by", "note")),
    "reload": ("config/reload", ("request_id",)),
}


class ControlVerbs:
    """One control-socket request -> its answer (``{"ok": ..., "data"|"error": ...}``)."""

    def __init__(self, views: DaemonViews, router: RequestRouter):
        self.views = views
        self.router = router

    def answer(self, req: dict, peer: str | None = None) -> dict:
        cmd = req.get("cmd")
        views = {"status": self.views.status, "devices": self.views.devices, "metrics": self.views.metrics}
        if cmd in views:
            return {"ok": True, "data": views[cmd]()}
        if cmd == "alarms":
            return self.views.alarms()
        if cmd == "top":
            return self.views.top()
        if cmd == "request":
            return self.request(req.get("command"), req.get("args"), peer=peer)
        if cmd in CONTROL_ALIASES:
            command, keys = CONTROL_ALIASES[cmd]
            return self.request(command, {k: req[k] for k in keys if req.get(k) is not None}, peer=peer)
        return {"ok": False, "error": {"code": "unknown_command", "message": f"unknown control command {cmd!r}"}}

    def request(self, command: Any, args: Any, peer: str | None = None) -> dict:
        """A P/request/<command> arriving on the control socket (casegate ack, person add,
        band bind, face enroll, ...): the same RequestRouter.dispatch as over MQTT, so its
        validation, idempotency and journal events are exactly those of the MQTT command;
        the answer comes back to the socket, not to P/response/. Source is ``cli``."""
        from gateway.commands import fail
        if not isinstance(command, str) or not isinstance(args, dict):
            return fail(None, RequestError("bad_request", "request needs a command and an args object"))
        args = dict(args)
        args.setdefault("request_id", f"cli-{time.time_ns()}")
        # peer: the socket's peer user, whose request_ids are its own (idempotency)
        return self.router.call(command, args, path="control", source="cli", timeout=60, client=peer)


class ControlSocket:
    """The Unix socket server (mode 0660), one thread per connection."""

    def __init__(self, path: Path, verbs: ControlVerbs):
        self.path = path
        try:
            path.unlink()
        except FileNotFoundError:
            pass

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                self.connection.settimeout(30)
                try:
                    # face/enroll carries a base64 photo: the line may be megabytes.
                    line = self.rfile.readline(CONTROL_MAX_LINE)
                    req = json.loads(line)
                    resp = verbs.answer(req, peer=socket_peer(self.connection))
                except Exception as e:
                    resp = {"ok": False, "error": {"code": "bad_request", "message": str(e)}}
                self.wfile.write((json.dumps(resp, ensure_ascii=False, default=str) + "\n").encode())

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        old = os.umask(0o117)
        try:
            self._server = Server(str(path), Handler)
        finally:
            os.umask(old)
        os.chmod(path, 0o660)
        # socketserver notices shutdown() only at its poll: 0.5 s by default, waited out by every
        # stop (0.25 s on average); 0.05 s costs 20 idle select() calls a second
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="control",
                         daemon=True).start()

    def close(self, remove: bool) -> None:
        """Stop serving; ``remove``: unlink the socket file (only the storage lock's holder
        created it, so only it removes it)."""
        self._server.shutdown()
        self._server.server_close()
        if remove:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass


def socket_peer(conn) -> str | None:
    """``cli:uid=<n>`` of the control socket's peer (SO_PEERCRED): the client whose
    request_ids it may reuse (gateway/commands/ asked_key)."""
    import struct
    try:
        _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                               struct.calcsize("3i")))
    except (OSError, AttributeError):
        return None
    return f"cli:uid={uid}"
