"""The driver registry: every ``drivers/<kind>/`` folder declares itself in ``manifest.py``.

Modelled on Home Assistant's integrations (a fixed file set per folder) and Frigate's
self-registering detector plugins (each declares its own typed config). Nothing else in the
tree lists driver kinds: the config union (gateway/config.py), ``casegate probe``, the
daemon, the demo and the rules all ask this registry or a device's declared capabilities.
Adding a kind = one folder (+ tests + an example block); ``tests/drivers/test_registry.py``
fails if a folder lacks a required file or its manifest disagrees with its folder.

Discovery imports only the manifests and config models (pydantic, no hardware libraries):
a center without cameras never loads OpenCV, because the driver, probe and simulator
modules are named as strings and imported when first used.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drivers.base import Driver
    from drivers.common.config import DeviceBase

# The fixed file set of a driver folder (and what each holds):
REQUIRED_FILES = {
    "__init__.py": "the docstring: what hardware, which SPEC section",
    "manifest.py": "DRIVER = DriverSpec(...): kind, config model, driver class, example",
    "config.py": "the typed config model, a DeviceBase with driver: Literal[kind] and its capabilities",
    "driver.py": "the Driver: bytes in, events out",
    "probe.py": "casegate probe: add_arguments(parser), args_from_config(device, storage_dir), run(args)",
    "simulator.py": "a device simulator speaking the wire protocol, for tests, the demo and bench",
}
NOT_DRIVERS = {"common"}            # shared helpers, not a kind


@dataclass(frozen=True)
class DriverSpec:
    kind: str
    config: type["DeviceBase"]
    driver: str                      # "module:Class", imported when a device of this kind starts
    summary: str                     # one line for `casegate probe --help` and docs
    example: str                     # a TOML [[devices]] block that validates (tested)
    # the event types it emits, as strings (a driver imports no rules): checked against the
    # event model's declarations and the driver's own emit calls by tests/rules/test_event_model.py
    emits: tuple[str, ...] = ()

    @property
    def capabilities(self) -> frozenset[str]:
        return self.config.capabilities

    def driver_class(self) -> type["Driver"]:
        mod, _, cls = self.driver.partition(":")
        return getattr(importlib.import_module(mod), cls)

    def probe(self) -> ModuleType:
        return importlib.import_module(f"drivers.{self.kind}.probe")

    def simulator(self) -> ModuleType:
        return importlib.import_module(f"drivers.{self.kind}.simulator")


_SPECS: dict[str, DriverSpec] | None = None
PROBE_FUNCTIONS = ("add_arguments", "args_from_config", "run")


def folder_problems(folder: Path) -> list[str]:
    """What a driver folder lacks, worded for whoever is adding a driver (empty = complete).
    Checked by tests/drivers/test_registry.py for every folder under drivers/."""
    out = [f"drivers/{folder.name}/{name} is missing ({what})"
           for name, what in REQUIRED_FILES.items() if not (folder / name).is_file()]
    return out


def driver_folders() -> list[Path]:
    root = Path(__file__).resolve().parent
    return sorted(p for p in root.iterdir()
                  if p.is_dir() and (p / "__init__.py").exists() and p.name not in NOT_DRIVERS)


def specs() -> dict[str, DriverSpec]:
    """kind -> DriverSpec of every driver folder, in folder order."""
    global _SPECS
    if _SPECS is None:
        import drivers
        found: dict[str, DriverSpec] = {}
        for info in pkgutil.iter_modules(drivers.__path__):
            if not info.ispkg or info.name in NOT_DRIVERS:
                continue
            try:
                mod = importlib.import_module(f"drivers.{info.name}.manifest")
            except ModuleNotFoundError as e:
                if e.name != f"drivers.{info.name}.manifest":
                    raise
                raise RuntimeError(f"drivers/{info.name}/ has no manifest.py "
                                   f"(a driver folder declares itself there: see drivers/registry.py)") from None
            spec = getattr(mod, "DRIVER", None)
            if not isinstance(spec, DriverSpec) or spec.kind != info.name:
                raise RuntimeError(f"drivers/{info.name}/manifest.py must define DRIVER = DriverSpec(kind={info.name!r}, ...)")
            found[spec.kind] = spec
        _SPECS = found
    return _SPECS


def kinds() -> tuple[str, ...]:
    return tuple(specs())


def spec(kind: str) -> DriverSpec:
    try:
        return specs()[kind]
    except KeyError:
        raise KeyError(f"no driver kind {kind!r} (known: {', '.join(specs())})") from None


def driver_class(kind: str) -> type["Driver"]:
    return spec(kind).driver_class()


def has(device_config: Any, capability: str) -> bool:
    """Does this configured device declare ``capability`` (drivers/common/config.py CAPABILITIES)?"""
    return capability in getattr(device_config, "capabilities", ())
