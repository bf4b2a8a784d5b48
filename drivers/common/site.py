"""A configured device played by its simulator: the seam `casegate simulate` uses.

Commissioning a center means watching bands move between rooms, cards swiped, doors opened and
recorders run before the hardware is there (or to tell a wiring fault from a config fault). Each
driver folder's ``simulator.py`` may offer ``site_device(dev_config) -> SiteDevice``: its simulator
set up on the addresses, ports and ids of one ``[[devices]]`` entry, and the commands it answers.
`casegate simulate` finds it through the registry like everything else a driver declares; a kind
without it is listed as "not simulated".

A command is a list of words (``["move", "5B000001", "waiting-1"]``). ``handle`` returns None when
the command is not for this device (another device, or another kind, may take it), a short
sentence of what was done when it is, and raises :class:`SiteCommandError` when it is for this
device but wrong (an unknown room, a compartment out of range): the message says what is valid.
"""
from __future__ import annotations

import os
import stat
from abc import ABC, abstractmethod


class SiteCommandError(ValueError):
    """A command meant for this device that cannot be done as typed; the text says why."""


class SiteDevice(ABC):
    #: words of the commands this device answers, for the help text (``"move <tag> <room>"``)
    usage: tuple[str, ...] = ()

    def __init__(self, device_id: str):
        self.device_id = device_id

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    @abstractmethod
    def where(self) -> str:
        """Where the daemon finds it (``connects to 127.0.0.1:4501 as 3 stations``, ``/dev/ttyUSB0 -> /dev/pts/4``)."""

    @abstractmethod
    def handle(self, words: list[str]) -> str | None: ...


def serial_link(path: str) -> str:
    """The path a simulated serial device is linked at: the configured port itself.

    A pseudo-terminal is made and ``path`` becomes a symlink to it, so the daemon opens what its
    config names. A real device node there is never replaced (a connected reader would silently
    stop being read): that is an error naming the fix."""
    if "://" in path:
        raise SiteCommandError(f"{path}: only local serial ports (a path such as /dev/ttyUSB0) can be "
                               "simulated; point the config at a path for commissioning")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path
    if stat.S_ISLNK(st.st_mode) or stat.S_ISREG(st.st_mode):
        return path                          # a link from an earlier simulate (or a stale one)
    raise SiteCommandError(f"{path} is a real device: simulate does not take its place — unplug it, or "
                           "point this device's port at another path (e.g. /tmp/casegate-sim/ttyX)")
