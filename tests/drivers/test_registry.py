"""The driver registry (drivers/registry.py): every folder under drivers/ declares itself,
and a new kind needs no edit anywhere else — proven by adding one from a temp folder."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from drivers.common.config import CAPABILITIES, DeviceBase
from drivers.registry import PROBE_FUNCTIONS, REQUIRED_FILES, driver_folders, folder_problems, specs
from gateway.config import ConfigError, parse_config

ROOT = Path(__file__).resolve().parents[2]


def test_every_driver_folder_is_complete_and_registered():
    folders = driver_folders()
    assert {f.name for f in folders} == set(specs()), "a driver folder without a manifest, or vice versa"
    assert len(folders) >= 5
    for f in folders:
        assert folder_problems(f) == [], folder_problems(f)


def test_a_folder_missing_a_file_is_named(tmp_path):
    d = tmp_path / "new_kind"
    d.mkdir()
    for name in REQUIRED_FILES:
        if name != "probe.py":
            (d / name).write_text("")
    assert folder_problems(d) == ["drivers/new_kind/probe.py is missing (casegate probe: add_arguments(parser), "
                                  "args_from_config(device, storage_dir), run(args))"]


@pytest.mark.parametrize("kind", sorted(specs()))
def test_manifest_declares_a_usable_driver(kind):
    s = specs()[kind]
    assert issubclass(s.config, DeviceBase)
    assert s.config.model_fields["driver"].annotation.__args__ == (kind,)   # Literal[kind]
    assert s.capabilities <= set(CAPABILITIES), s.capabilities - set(CAPABILITIES)
    probe = s.probe()
    for fn in PROBE_FUNCTIONS:
        assert callable(getattr(probe, fn, None)), f"drivers/{kind}/probe.py lacks {fn}()"
    assert s.driver_class().__name__ == s.driver.rpartition(":")[2]
    # the example block validates in a center that has the rooms it names
    block = tomllib.loads(s.example)["devices"][0]
    dev = s.config.model_validate(block)
    rooms = sorted({r for _, r in dev.room_refs()})
    cfg = parse_config({"rooms": [{"id": r, "type": "waiting"} for r in rooms], "devices": [block]})
    assert cfg.devices[0].driver == kind
    # ... and its room keys are checked against the rooms
    if rooms:
        with pytest.raises(ConfigError, match="unknown room"):
            parse_config({"rooms": [], "devices": [block]})
    # its probe takes the options it derives from the config
    args = probe.args_from_config(dev, "/tmp")
    assert isinstance(args, list) and all(isinstance(a, str) for a in args)


def test_config_errors_name_the_key_without_the_kind():
    with pytest.raises(ConfigError) as e:
        parse_config({"devices": [{"id": "c1", "driver": "card_reader", "port": "/dev/x", "room": "r", "baudrate": "fast"}]})
    assert "devices[0].baudrate: must be an integer" in str(e.value)
    with pytest.raises(ConfigError) as e:
        parse_config({"devices": [{"id": "x1", "driver": "no_such_kind"}]})
    assert "devices[0]" in str(e.value) and "card_reader" in str(e.value)


# ---- a new kind from a folder outside the tree: discovered by config, probe and daemon ---------------------
PLUGIN = {
    "__init__.py": '"""A fake door bell (tests only)."""\n',
    "config.py": textwrap.dedent('''
        from typing import ClassVar, Literal
        from drivers.common.config import DeviceBase
        class BellConfig(DeviceBase):
            driver: Literal["test_bell"]
            room: str
            ring_s: float = 0.2
            capabilities: ClassVar[frozenset[str]] = frozenset({"snapshot"})
    '''),
    "manifest.py": textwrap.dedent('''
        from drivers.registry import DriverSpec
        from drivers.test_bell.config import BellConfig
        DRIVER = DriverSpec(kind="test_bell", config=BellConfig, driver="drivers.test_bell.driver:BellDriver",
                            summary="a door bell that rings", example='[[devices]]\\nid = "bell"\\ndriver = "test_bell"\\nroom = "r"\\n')
    '''),
    "driver.py": textwrap.dedent('''
        import threading
        from drivers.base import Driver
        class BellDriver(Driver):
            kind = "test_bell"
            def start(self):
                def ring():
                    self.set_state("online")
                    self.ctx.emit("device.error", {"device": self.device_id, "error": "ding"})
                threading.Timer(self.cfg.ring_s, ring).start()
            def command(self, name, args, timeout):
                return {"file": "/dev/null", "rang": True}
    '''),
    "probe.py": textwrap.dedent('''
        def add_arguments(p):
            p.add_argument("--room", default="r")
        def args_from_config(dev, storage_dir):
            return ["--room", dev.room]
        def run(args):
            print("probing the bell in", args.room)
            return 0
    '''),
    "simulator.py": '"""no wire: the bell rings by itself"""\n',
}


def test_a_new_kind_needs_only_its_folder(tmp_path):
    pkg = tmp_path / "plugins" / "test_bell"
    pkg.mkdir(parents=True)
    for name, text in PLUGIN.items():
        (pkg / name).write_text(text)
    assert folder_problems(pkg) == []
    script = textwrap.dedent(f'''
        import json, sys
        import drivers
        drivers.__path__.append({str(tmp_path / "plugins")!r})    # as if the folder were in drivers/
        from drivers.registry import specs, has
        from gateway.config import parse_config
        from gateway.cli import main
        cfg = parse_config({{"rooms": [{{"id": "r", "type": "waiting"}}],
                            "devices": [{{"id": "bell", "driver": "test_bell", "room": "r"}}]}})
        dev = cfg.devices[0]
        print(json.dumps({{"kinds": list(specs()), "type": type(dev).__name__, "snapshot": has(dev, "snapshot"),
                          "covers": dev.covered_rooms()}}))
        sys.stdout.flush()
        rc = main(["probe", "--driver", "test_bell", "--room", "hall"])
        print("rc", rc)
    ''')
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert p.returncode == 0, p.stderr
    first, *rest = p.stdout.splitlines()
    got = json.loads(first)
    assert "test_bell" in got["kinds"] and got["type"] == "BellConfig" and got["snapshot"] is True
    assert got["covers"] == {"bell": ["r"]}
    assert rest == ["probing the bell in hall", "rc 0"]


def test_the_application_names_no_driver_kind():
    """No central list of kinds and no decision by kind: gateway/ and rules/ ask the registry
    or a device's capabilities (the demo center's config is data, like a TOML file)."""
    import re
    decide = re.compile(r"""(\.driver\b|\bkind\b|"driver"[^)]*\))\s*(==|!=|\bin\b)\s*[("'\[]""")
    listing = re.compile("|".join(rf'"{k}"\s*:\s*"drivers\.' for k in specs()))
    offenders = []
    for path in sorted(list((ROOT / "gateway").rglob("*.py")) + list((ROOT / "rules").rglob("*.py"))):
        if "demo" in path.parts or path.name == "demo.py":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if (decide.search(line) and any(f'"{k}"' in line for k in specs())) or listing.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
