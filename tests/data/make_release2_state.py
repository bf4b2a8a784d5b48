"""Write tests/data/release-2/: the state dir (journal, checkpoint) and config of a center run by
the second release (main at 65eeab6, before the v3 round), so the in-place upgrade path stays
tested: a v2 journal and checkpoint must open, migrate if needed, and verify under newer code
(tests/test_upgrade_release2.py).

Run ONCE with that release's code (it was, at 65eeab6); re-running it with newer code would write
the newer formats and defeat the purpose. A real daemon on a real config: officers and a criminal
suspect registered through the CLI, bands moving between rooms through base-station simulators
(a lone interrogation raised and cleared, the suspect still inside with his detention clock
running), detained (拘留: the 送押 clock), then a clean stop (which writes the checkpoint).

    uv run python tests/data/make_release2_state.py
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUT = HERE / "release-2"

CONFIG = """[center]
id = "release2-center"
name = "升级测试中心"
timezone = "Asia/Shanghai"

[storage]
dir = "{state}"

[mqtt]
enabled = false

[[rooms]]
id = "security_check"
type = "security_check"
[[rooms]]
id = "info_collection"
type = "info_collection"
[[rooms]]
id = "waiting-1"
type = "waiting"
[[rooms]]
id = "interrogation-1"
type = "interrogation"

[[devices]]
id = "zone"
driver = "zone_reader"
listen = "127.0.0.1:{port}"
stations = {{ "ST-WAIT" = "waiting-1", "ST-INT1" = "interrogation-1" }}

[rules.lone_interrogation]
grace_s = 1
[rules.unattended_suspect]
grace_s = 1
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(cfg: Path, *args: str) -> None:
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(cfg), *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    if r.returncode:
        raise SystemExit(f"{args}: {r.returncode} {r.stdout} {r.stderr}")


def main() -> None:
    from drivers.zone_reader.simulator import ZoneSite
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    state = OUT / "state"
    port = free_port()
    cfg = OUT / "casegate.toml"
    cfg.write_text(CONFIG.format(state=state, port=port))
    d = subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config", str(cfg), "run"], cwd=ROOT,
                         stdout=open(OUT / "make.log", "w"), stderr=subprocess.STDOUT)
    while not (state / "casegate.sock").exists():
        time.sleep(0.1)
    time.sleep(1)
    for args in (("person", "add", "S1", "--role", "suspect", "--gender", "male", "--case-id", "C-2026-7",
                  "--case-type", "criminal", "--name", "李某"),
                 ("person", "add", "O1", "--role", "officer", "--gender", "male"),
                 ("person", "add", "O2", "--role", "officer", "--gender", "female"),
                 ("band", "bind", "5B000001", "S1"), ("band", "bind", "E3AF0001", "O1"),
                 ("band", "bind", "E3AF0002", "O2"),
                 ("person", "update", "S1", "--by", "O1", "--reason", "拘留", "--detained-at",
                  time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))):
        cli(cfg, *args)
    site = ZoneSite("127.0.0.1", port, ["ST-WAIT", "ST-INT1"], report_s=0.3, heartbeat_s=5).start()
    site.wait_logged_in(10)
    site.move("5B000001", "ST-WAIT")
    site.move("E3AF0001", "ST-WAIT")
    time.sleep(2)
    site.move("E3AF0001", "ST-INT1")
    site.move("5B000001", "ST-INT1")        # one officer: lone_interrogation after 1 s
    time.sleep(3)
    site.move("E3AF0002", "ST-INT1")        # cleared
    time.sleep(2)
    site.stop()
    time.sleep(1)
    d.terminate()
    d.wait(60)
    (OUT / "make.log").unlink()
    for p in state.rglob("*"):
        if p.name in ("casegate.sock", "casegate.lock") or p.name.endswith(("-wal", "-shm")):
            p.unlink()
    # the config names its storage dir: the test rewrites it to wherever it copies the state
    cfg.write_text(CONFIG.format(state="@STATE@", port="@PORT@"))
    print(sorted(str(p.relative_to(OUT)) for p in OUT.rglob("*")))


if __name__ == "__main__":
    main()
