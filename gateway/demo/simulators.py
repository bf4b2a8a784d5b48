"""The simulated hardware of the demo center, started through the driver registry.

Which simulators run is data (``center.SIMULATED``: kind, simulator class, arguments);
each is found in its driver folder's ``simulator.py`` through ``drivers.registry`` and
started and stopped the same way (``start()`` / ``close()`` or ``stop()``), so the demo
imports no driver module by hand.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from drivers.registry import spec
from gateway.demo.center import (CAMERA_KIND, DOORS, EVIDENCE, SIMULATED, STATION_HEARTBEAT_S, STATION_KIND,
                                 STATIONS, TIMEZONE)

log = logging.getLogger("casegate.demo")


def simulator_class(kind: str, name: str) -> Any:
    return getattr(spec(kind).simulator(), name)


class Simulators:
    """The running simulators by name (``sims["card"]``), the base stations (``site``)
    and the camera's synthetic video (``video``, None without an OpenCV writer)."""

    def __init__(self):
        self.devices: dict[str, Any] = {}
        self.video: Path | None = None
        self.site: Any = None
        self.notes: list[str] = []          # what the demo runs without, for the screen

    def __getitem__(self, name: str) -> Any:
        return self.devices[name]

    def start_devices(self, workdir: Path) -> None:
        built = {name: simulator_class(kind, cls)(**kwargs) for name, (kind, cls, kwargs) in SIMULATED.items()}
        # The day starts with every door closed and the evidence in its store.
        built["doors"].set_inputs({i: 1 for i, _ in DOORS.values()})
        for epc in EVIDENCE.values():
            built["ev_uhf"].add_tag(epc)
        for name, sim in built.items():
            sim.start()
            self.devices[name] = sim
        try:
            write_video = simulator_class(CAMERA_KIND, "write_synthetic_video")
            self.video = write_video(workdir / "camera" / "interrogation-1.avi", seconds=8.0, fps=8.0,
                                     scenario="face_moving")
        except Exception as e:   # no OpenCV writer: the center runs without its camera
            self.video = None
            self.notes.append(f"no synthetic camera ({e})")

    def start_stations(self, port: int) -> None:
        site = simulator_class(STATION_KIND, "ZoneSite")
        self.site = site("127.0.0.1", port, list(STATIONS), report_s=0.5, heartbeat_s=STATION_HEARTBEAT_S,
                         timezone=TIMEZONE, reconnect_s=0.3)
        self.site.start()

    def stop(self) -> None:
        stops = [("stations", lambda: self.site and self.site.stop(2.0))]
        for name, sim in self.devices.items():
            # close() where a simulator has one: it also frees its pty or event loop
            stops.append((name, getattr(sim, "close", None) or sim.stop))
        for name, fn in stops:
            try:
                fn()
            except Exception as e:
                log.warning("stopping the %s simulator: %s", name, e)
