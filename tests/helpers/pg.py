"""A real PostgreSQL for tests and benches: initdb in a temp dir, pg_ctl on a
free loopback port, trust auth. initdb refuses to run as root, so under root
the server runs as the ``postgres`` system user (the data dir is chowned to it)."""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from helpers.brokers import free_port, wait_port


def pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    cands = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return cands[-1] if cands else None


def missing_reason() -> str | None:
    if not (pg_bin("initdb") and pg_bin("pg_ctl")):
        return "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run initdb as"
    return None


class Postgres:
    def __init__(self, workdir: Path):
        if os.geteuid() == 0:
            # pytest's tmp dirs are 0700 root: the postgres user could not reach them.
            workdir = Path(tempfile.mkdtemp(prefix="casegate-pg-"))
            pw = pwd.getpwnam("postgres")
            os.chown(workdir, pw.pw_uid, pw.pw_gid)
            self._own_dir = workdir
        else:
            self._own_dir = None
        self.dir = workdir / "pgdata"
        self.port = free_port()
        self.sock = workdir / "pgsock"
        self.log = workdir / "postgres.log"
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self.url = f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def _run(self, *cmd: str) -> None:
        pre = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        r = subprocess.run(pre + list(cmd), capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed: {r.stdout}\n{r.stderr}\n{self.log.read_text() if self.log.exists() else ''}")

    def start(self) -> "Postgres":
        self.sock.mkdir(exist_ok=True)
        if self._own_dir is not None:
            pw = pwd.getpwnam("postgres")
            os.chown(self.sock, pw.pw_uid, pw.pw_gid)
        if not self.dir.exists():
            self._run(pg_bin("initdb"), "-D", str(self.dir), "-A", "trust", "-U", self.user, "-E", "UTF8",
                      "--no-sync")
        self._run(pg_bin("pg_ctl"), "-D", str(self.dir), "-l", str(self.log), "-w", "-t", "60", "-o",
                  f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off "
                  f"-c max_connections=50 -c shared_buffers=32MB", "start")
        wait_port(self.port)
        return self

    def stop_only(self) -> None:
        """Stop the server, keep its data (start() brings it back on the same port)."""
        self._run(pg_bin("pg_ctl"), "-D", str(self.dir), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        try:
            self._run(pg_bin("pg_ctl"), "-D", str(self.dir), "-m", "fast", "-w", "stop")
        except Exception:
            pass
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)
