"""``casegate`` CLI calls of the tests, each a real process forked from a warm one.

A test's ``cli(...)`` was ``python -m gateway.cli ...``: a new interpreter that imported
pydantic, the config models and the command table every time, 0.23-0.3 s of CPU, and the
suite makes ~450 of them (counted in a full run). Here one server per test worker imports
``gateway.cli`` once; each call is a ``fork()`` of it that takes the caller's argv,
environment, working directory, stdout and stderr (passed as file descriptors), runs
``gateway.cli.main`` and exits with its code, through the interpreter's normal exit (atexit,
non-daemon threads joined), as ``python -m gateway.cli`` does. What the command imports
lazily it imports in the child, as before. ``CASEGATE_TEST_CLI_FORK=0`` turns it off; the
real ``python -m gateway.cli`` entry and the installed ``casegate`` script keep tests of
their own (test_cli.py, test_bundle_install.py).

The server is single-threaded (it forks; a thread would be copied half-way), reaps its
children between accepts, and exits when the worker that started it is gone.
"""
from __future__ import annotations

import atexit
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_lock = threading.Lock()
_server: tuple[subprocess.Popen, str] | None = None
_disabled = False


# ---- the caller's side --------------------------------------------------------------------------
def enabled() -> bool:
    return not _disabled and os.environ.get("CASEGATE_TEST_CLI_FORK", "1") != "0"


def _ensure_server() -> str | None:
    global _server, _disabled
    with _lock:
        if _server is not None and _server[0].poll() is None:
            return _server[1]
        path = os.path.join(tempfile.mkdtemp(prefix="casegate-cli-fork-"), "s")
        code = ("import sys; sys.path[:0] = [%r, %r]; from helpers.cli_fork import serve; serve(%r, %d)"
                % (str(ROOT), str(ROOT / "tests"), path, os.getpid()))
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not os.path.exists(path):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                _disabled = True            # fall back to plain subprocesses for this worker
                return None
            time.sleep(0.02)
        _server = (proc, path)
        atexit.register(proc.kill)
        return path


def run(cmd: list[str], env: dict, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """What ``subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd,
    env=env)`` returns for ``cmd = [python, -m, gateway.cli, ...]``."""
    path = _ensure_server() if enabled() else None
    if path is None:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    r_out, w_out = os.pipe()
    r_err, w_err = os.pipe()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        s.connect(path)
        req = {"argv": [str(Path(ROOT / "gateway" / "cli" / "__main__.py"))] + cmd[3:],
               "env": env, "cwd": str(cwd)}
        socket.send_fds(s, [json.dumps(req).encode()], [w_out, w_err])
    finally:
        os.close(w_out)
        os.close(w_err)
    deadline = time.monotonic() + timeout
    s.settimeout(timeout)
    pid = int(s.recv(64))
    out, err = _read_both(r_out, r_err, deadline, pid, cmd, timeout)
    s.settimeout(max(0.1, deadline - time.monotonic()))
    try:
        code = int(s.recv(64))
    except (socket.timeout, ValueError):
        _kill(pid)
        raise subprocess.TimeoutExpired(cmd, timeout, out, err)
    finally:
        s.close()
    return subprocess.CompletedProcess(cmd, code, out, err)


def _read_both(r_out: int, r_err: int, deadline: float, pid: int, cmd, timeout) -> tuple[str, str]:
    bufs = {r_out: bytearray(), r_err: bytearray()}
    sel = selectors.DefaultSelector()
    for fd in bufs:
        sel.register(fd, selectors.EVENT_READ)
    try:
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                _kill(pid)
                raise subprocess.TimeoutExpired(cmd, timeout, bytes(bufs[r_out]).decode(errors="replace"),
                                                bytes(bufs[r_err]).decode(errors="replace"))
            for key, _ in sel.select(left):
                chunk = os.read(key.fd, 65536)
                if chunk:
                    bufs[key.fd] += chunk
                else:
                    sel.unregister(key.fd)
    finally:
        sel.close()
        os.close(r_out)
        os.close(r_err)
    # text=True: universal newlines, the locale's encoding (UTF-8 here), as subprocess.run
    return tuple(bytes(b).decode().replace("\r\n", "\n").replace("\r", "\n") for b in (bufs[r_out], bufs[r_err]))


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# ---- the server ------------------------------------------------------------------------------
def serve(path: str, owner: int) -> None:
    import gateway.cli  # noqa: F401  (the imports every call would pay)
    import gateway.journal  # noqa: F401
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path + ".tmp")
    listener.listen(64)
    os.rename(path + ".tmp", path)          # the caller waits for the name: bound and listening
    children: dict[int, socket.socket] = {}
    while True:
        if os.getppid() != owner:           # the worker is gone
            for pid in children:
                _kill(pid)
            return
        listener.settimeout(0.01 if children else 0.5)
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            conn = None
        if conn is not None:
            conn.settimeout(10)
            try:
                msg, fds, _, _ = socket.recv_fds(conn, 1 << 20, 2)
                req = json.loads(msg)
            except (OSError, ValueError):
                conn.close()
                continue
            pid = os.fork()
            if pid == 0:
                listener.close()
                conn.close()
                for other in children.values():
                    other.close()
                raise SystemExit(_child(req, fds))      # the interpreter's own exit, with its code
            for fd in fds:
                os.close(fd)
            try:
                conn.send(f"{pid}".encode())
            except OSError:
                pass
            children[pid] = conn
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            conn = children.pop(pid, None)
            if conn is not None:
                try:
                    conn.send(f"{os.waitstatus_to_exitcode(status)}".encode())
                except OSError:
                    pass
                conn.close()


def _child(req: dict, fds: list[int]):
    out, err = fds
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.close(out)
    os.close(err)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    time.tzset()
    sys.argv = req["argv"]
    from gateway.cli import main
    return main()
