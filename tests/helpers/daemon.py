"""Run the real ``casegate run`` as a subprocess, the way systemd does."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from helpers import cli_fork

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, config: Path | None = None, timeout: float = 60, check: bool = False,
        env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "gateway.cli"]
    if config is not None:
        cmd += ["--config", str(config)]
    cmd += [str(a) for a in args]
    e = dict(os.environ)
    e.pop("CASEGATE_CONFIG", None)
    e.update(env or {})
    r = cli_fork.run(cmd, e, ROOT, timeout)         # a fork of a warm CLI process (helpers/cli_fork.py)
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r



def journal_events(config: Path, *types: str) -> list[dict]:
    """What ``casegate --config CONFIG events --json [--type T]...`` prints, one dict per event,
    read in-process through the same reader (gateway.journal) instead of a CLI subprocess: a
    test that polls the journal costs milliseconds a poll, not a Python start-up (a second or
    more on this loaded machine). Tests of the ``events`` command itself keep calling :func:`cli`."""
    from gateway.config import load_config
    from gateway.journal import iter_events, open_reader
    from rules.model import EVENT_DATA
    unknown = [t for t in types if t not in EVENT_DATA]
    assert not unknown, f"not event types of the model: {unknown}"     # a typo would wait for nothing
    path = load_config(config).journal_path
    if not path.exists():
        return []
    conn = open_reader(path)
    try:
        return [json.loads(ev.to_json()) for ev in iter_events(conn, types=list(types) or None)]
    finally:
        conn.close()

def control(socket_path: Path, req: dict, timeout: float = 15.0) -> dict:
    """One request on the daemon's control socket, the way ``casegate`` sends it (gateway/cli.py
    control): a JSON line out, a JSON line back. In-process, because a ``casegate status`` child
    per poll costs 0.35-0.85 s of CPU (interpreter and imports) on this 2-core machine, and tests
    poll the status a lot; the CLI's own status output is tested through ``cli()``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(socket_path))
        s.sendall((json.dumps(req) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf)


def write_config(tmp: Path, mqtt_port: int | None, extra: str = "", center: str = "t-center",
                 synchronous: str = "full") -> Path:
    state = tmp / "state"
    mqtt = f"[mqtt]\nhost = \"127.0.0.1\"\nport = {mqtt_port}\nkeepalive_s = 5\n" if mqtt_port \
        else "[mqtt]\nenabled = false\n"
    text = (f"[center]\nid = \"{center}\"\n\n[storage]\ndir = \"{state}\"\nsynchronous = \"{synchronous}\"\n\n"
            + mqtt + "\n" + extra)
    p = tmp / "casegate.toml"
    p.write_text(text)
    return p


class DaemonProcess:
    def __init__(self, config: Path, env: dict | None = None, umask: int = -1):
        self.config = config
        self.env = env or {}
        self.umask = umask          # -1: inherit ours
        self.proc: subprocess.Popen | None = None
        self.log_path = config.parent / f"daemon-{int(time.time() * 1000)}.log"
        import tomllib
        self.state_dir = Path(tomllib.loads(config.read_text())["storage"]["dir"])

    @property
    def socket(self) -> Path:
        return self.state_dir / "casegate.sock"

    def start(self, wait: bool = True) -> "DaemonProcess":
        e = dict(os.environ)
        e.pop("NOTIFY_SOCKET", None)
        e.update(self.env)
        self.log_path = self.config.parent / f"daemon-{int(time.time() * 1000)}.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config", str(self.config), "run"],
                                     stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT, cwd=ROOT,
                                     env=e, umask=self.umask)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}:\n{self.log()}")
            if self.socket.exists():
                try:
                    if control(self.socket, {"cmd": "status"}, timeout=10).get("ok"):
                        return
                except (OSError, ValueError):
                    pass                          # bound but not answering yet, or going down
            time.sleep(0.1)
        raise TimeoutError(f"daemon not ready:\n{self.log()}")

    def status(self) -> dict:
        """The daemon's status report (what ``casegate status --json`` prints, less the CLI's
        own ``healthy`` verdict)."""
        resp = control(self.socket, {"cmd": "status"})
        if not resp.get("ok"):
            raise RuntimeError(f"daemon could not report status: {resp.get('error')}")
        return resp["data"]

    def wait_status(self, pred, timeout: float = 20):
        deadline = time.monotonic() + timeout
        st = None
        while time.monotonic() < deadline:
            st = self.status()
            if pred(st):
                return st
            time.sleep(0.2)
        raise TimeoutError(f"status never matched: {st}")

    def log(self) -> str:
        try:
            return self.log_path.read_text()
        except FileNotFoundError:
            return ""

    def terminate(self, timeout: float = 15) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                self.terminate()
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
