"""/metrics with bounded connections and an idle timeout (issue 30 item 4): 1,000 idle
connections must not make 1,000 threads (prometheus-client's server took the daemon from
23 to 985 threads); a scrape still answers meanwhile; casegate_checkpoint_age_seconds is set.
Real daemon; its threads and file descriptors read from /proc."""
from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request

from helpers.brokers import free_port
from helpers.daemon import DaemonProcess, write_config
from helpers.polling import wait_for as poll


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def sockets(pid: int) -> int:
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return n


def test_a_thousand_idle_connections_cost_no_threads_and_scrapes_still_answer(tmp_path):
    port = free_port()
    cfg = write_config(tmp_path, None, f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
    cfg.write_text(cfg.read_text().replace("[storage]\n", "[storage]\ncheckpoint_every_s = 1\n"))
    d = DaemonProcess(cfg).start()
    idle: list[socket.socket] = []
    try:
        pid = d.proc.pid
        def checkpoint_age():
            try:
                x = scrape(port)
            except urllib.error.URLError:     # ready on the control socket may come before /metrics listens
                return None
            return x if "casegate_checkpoint_age_seconds" in x else None
        m = poll(checkpoint_age, 20, "casegate_checkpoint_age_seconds never appeared")
        assert 0 <= m["casegate_checkpoint_age_seconds"] < 60, m["casegate_checkpoint_age_seconds"]
        base_threads, base_sockets = threads(pid), sockets(pid)
        for i in range(1000):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            if i % 2:
                s.sendall(b"GET /metr")          # half a request line, then silence (slowloris)
            idle.append(s)
        # a scrape among them is answered (the idlest connection makes room for it)
        m = scrape(port)
        assert m["casegate_events_journaled_total"] >= 1
        t_now, s_now = threads(pid), sockets(pid)
        print(f"\nthreads {base_threads} -> {t_now}, sockets {base_sockets} -> {s_now} with 1,000 idle connections")
        assert t_now <= base_threads + 2, (base_threads, t_now)        # at most the 2 render workers
        assert s_now <= base_sockets + 64 + 2, (base_sockets, s_now)    # max_connections
        # the idle timeout: a silent connection is closed by the daemon (EOF on our side)
        last = idle[-1]
        last.settimeout(15)
        assert last.recv(1) == b""
    finally:
        for s in idle:
            s.close()
        d.stop()
