"""A Modbus digital-input module (or a bus of them) for tests and ``casegate demo``.

A real pymodbus 3.16 server (``SimDevice``/``SimData`` datastore, the current
API) runs on its own asyncio loop thread:

* ``transport="tcp"``: Modbus TCP on ``127.0.0.1`` (a free port unless given);
  ``stop()`` closes the listener, so clients see "connection refused"; a later
  ``start()`` listens on the same port again.
* ``transport="rtu"``: Modbus RTU on a pseudo-terminal. The server opens one
  pty, the driver another (``sim.port`` / ``sim.url``); a bridge thread copies
  bytes between the two masters like a cable. The bridge outlives
  ``stop()``/``start()``: stopping the server is a module losing power, the
  driver's port stays open and its requests time out. ``close()`` removes it.

Several units (``units=(1, 2)``) answer on one server, i.e. modules sharing
an RS-485 line. A unit that is not simulated, or one made ``set_dead()``,
stays silent, as a module that is not on the line does (no exception
response is put on the bus).

Inputs are scripted with ``set_input(i, value, unit=...)``; ``set_exception``
makes a unit answer every request with a Modbus exception code.
"""
from __future__ import annotations

import asyncio
import os
import select
import socket
import threading
import tty
from typing import Iterable

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simutils import SimUtils

from drivers.common.site import SiteCommandError, SiteDevice, serial_link


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class PtyBridge:
    """Two pseudo-terminals joined back to back (a null-modem cable).

    ``a`` and ``b`` are slave device paths; whatever is written to one comes
    out of the other. The simulator keeps each slave open itself so the
    masters never see a hang-up while a peer closes and reopens its side.
    """

    def __init__(self, link_b: str | None = None):
        self._fds: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.link_b = link_b
        self.a = self.b = ""
        self._ma = self._mb = -1

    def start(self) -> "PtyBridge":
        ma, sa = os.openpty()
        mb, sb = os.openpty()
        for fd in (ma, sa, mb, sb):
            tty.setraw(fd)
        self._fds = [ma, sa, mb, sb]
        self._ma, self._mb = ma, mb
        self.a, self.b = os.ttyname(sa), os.ttyname(sb)
        if self.link_b:
            if os.path.lexists(self.link_b):
                os.unlink(self.link_b)
            os.symlink(self.b, self.link_b)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="pty-bridge", daemon=True)
        self._thread.start()
        return self

    @property
    def port_b(self) -> str:
        return self.link_b or self.b

    def _run(self) -> None:
        peer = {self._ma: self._mb, self._mb: self._ma}
        while not self._stop.is_set():
            try:
                r, _, _ = select.select(list(peer), [], [], 0.05)
            except (OSError, ValueError):
                return
            for fd in r:
                try:
                    data = os.read(fd, 4096)
                    if data:
                        os.write(peer[fd], data)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(2)
            self._thread = None
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = []
        if self.link_b and os.path.islink(self.link_b):
            os.unlink(self.link_b)


class ModbusDiSimulator:
    """Discrete-input module(s) speaking real Modbus TCP or RTU."""

    def __init__(self, transport: str = "tcp", units: Iterable[int] = (1,), inputs: int = 16,
                 host: str = "127.0.0.1", port: int = 0, baudrate: int = 9600,
                 link: str | None = None):
        if transport not in ("tcp", "rtu"):
            raise ValueError("transport must be 'tcp' or 'rtu'")
        self.transport = transport
        self.units = tuple(units)
        if not self.units:
            raise ValueError("at least one unit")
        self.inputs = max(16, (inputs + 15) // 16 * 16)
        self.host = host
        self.tcp_port = port
        self.baudrate = baudrate
        self.link = link
        self._bits: dict[int, list[bool]] = {u: [False] * self.inputs for u in self.units}
        self._dead: set[int] = set()
        self._exc: dict[int, int] = {}
        self._lock = threading.Lock()
        self.requests: dict[int, int] = {u: 0 for u in self.units}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._server = None
        self._bridge: PtyBridge | None = None

    # ---- scripting ------------------------------------------------------
    def _unit(self, unit: int | None) -> int:
        u = self.units[0] if unit is None else unit
        if u not in self._bits:
            raise KeyError(f"unit {u} is not simulated")
        return u

    def set_input(self, i: int, value: bool | int, unit: int | None = None) -> None:
        with self._lock:
            self._bits[self._unit(unit)][i] = bool(value)

    def set_inputs(self, values: dict[int, bool | int], unit: int | None = None) -> None:
        with self._lock:
            bits = self._bits[self._unit(unit)]
            for i, v in values.items():
                bits[i] = bool(v)

    def get_input(self, i: int, unit: int | None = None) -> bool:
        with self._lock:
            return self._bits[self._unit(unit)][i]

    def set_dead(self, unit: int | None = None, dead: bool = True) -> None:
        """A dead unit never answers (its requests time out)."""
        with self._lock:
            (self._dead.add if dead else self._dead.discard)(self._unit(unit))

    def set_exception(self, unit: int | None = None, code: int | None = ExcCodes.DEVICE_FAILURE) -> None:
        """Answer every request to ``unit`` with Modbus exception ``code`` (None: normal again)."""
        with self._lock:
            u = self._unit(unit)
            if code is None:
                self._exc.pop(u, None)
            else:
                self._exc[u] = int(code)

    # ---- addresses ------------------------------------------------------
    @property
    def port(self) -> str:
        """RTU: the pty path the driver opens. TCP: the port number as text."""
        if self.transport == "tcp":
            return str(self.tcp_port)
        if not self._bridge:
            raise RuntimeError("start() the simulator first")
        return self._bridge.port_b

    @property
    def url(self) -> str:
        if self.transport == "tcp":
            return f"tcp://{self.host}:{self.tcp_port}"
        return f"rtu://{self.port}?baudrate={self.baudrate}"

    # ---- pymodbus plumbing ----------------------------------------------
    def _device(self, unit: int) -> SimDevice:
        async def action(fc, start, address, count, registers, values, _u=unit):
            if _u not in self._bits:       # the catch-all unit 0: answer is dropped anyway
                return None
            with self._lock:
                self.requests[_u] += 1
                exc = self._exc.get(_u)
                regs = SimUtils.bitsToRegisters(self._bits[_u])
            if exc is not None:
                return ExcCodes(exc)
            if fc == 2:
                registers[:len(regs)] = regs
            return None

        bits = SimData(0, count=self.inputs, values=False, datatype=DataType.BITS)
        coils = SimData(0, count=16, values=False, datatype=DataType.BITS)
        reg = SimData(0, count=1, values=0, datatype=DataType.REGISTERS)
        return SimDevice(id=unit, simdata=([coils], [bits], [reg], [reg]), action=action)

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        """Silence answers from dead or non-simulated units (RTU: byte 0, TCP: byte 6)."""
        if not sending or not data:
            return data
        idx = 6 if self.transport == "tcp" else 0
        if len(data) <= idx:
            return data
        unit = data[idx]
        with self._lock:
            if unit not in self._bits or unit in self._dead:
                return b""
        return data

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            t = threading.Thread(target=loop.run_forever, name="modbus-sim", daemon=True)
            t.start()
            self._loop, self._loop_thread = loop, t
        return self._loop

    def start(self) -> "ModbusDiSimulator":
        if self._server is not None:
            return self
        loop = self._ensure_loop()
        devices = [self._device(u) for u in self.units]
        if 0 not in self.units:
            # SimDevice id 0 catches requests to every other unit id; without it
            # pymodbus logs a traceback per request. Its answers are dropped in
            # _trace_packet, so an absent unit is silent on the line.
            devices.append(self._device(0))
        if self.transport == "tcp":
            if not self.tcp_port:
                self.tcp_port = _free_port(self.host)

            async def make():
                srv = ModbusTcpServer(devices, address=(self.host, self.tcp_port),
                                      trace_packet=self._trace_packet)
                await srv.serve_forever(background=True)
                return srv
        else:
            if self._bridge is None:
                self._bridge = PtyBridge(self.link).start()
            server_port = self._bridge.a

            async def make():
                srv = ModbusSerialServer(devices, port=server_port, baudrate=self.baudrate,
                                         timeout=0.05, trace_packet=self._trace_packet)
                await srv.serve_forever(background=True)
                return srv
        self._server = asyncio.run_coroutine_threadsafe(make(), loop).result(10)
        return self

    def stop(self) -> None:
        """Power the module(s) off: TCP refuses connections, RTU goes silent."""
        srv, self._server = self._server, None
        if srv is not None and self._loop is not None:
            try:
                asyncio.run_coroutine_threadsafe(srv.shutdown(), self._loop).result(5)
            except Exception:
                pass

    def close(self) -> None:
        """Stop everything, including the loop thread and the RTU pty bridge."""
        self.stop()
        if self._bridge:
            self._bridge.close()
            self._bridge = None
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._loop_thread:
                self._loop_thread.join(5)
            self._loop.close()
            self._loop = None
            self._loop_thread = None

    def __enter__(self) -> "ModbusDiSimulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


# ---- casegate simulate (drivers/common/site.py) ----------------------------------------------
class DoorModuleSiteDevice(SiteDevice):
    """The configured digital-input module: Modbus TCP on the url's address, or RTU on a
    pseudo-terminal linked at the url's port. Every door starts closed."""

    usage = ("door open|close <door>",)

    def __init__(self, dev):
        super().__init__(dev.id)
        self.doors = {d.door: d for d in dev.doors}
        self.first_input = dev.first_input
        if dev.url.startswith("tcp://"):
            hostport = dev.url[len("tcp://"):].split("/", 1)[0]
            host, _, port = hostport.rpartition(":")
            host = host.strip("[]") or "127.0.0.1"
            self.sim = ModbusDiSimulator("tcp", units=(dev.unit,), host="127.0.0.1" if host == "0.0.0.0" else host,
                                         port=int(port or 502), inputs=self._inputs())
        else:
            path, _, query = dev.url[len("rtu://"):].partition("?")
            baud = dict(kv.split("=", 1) for kv in query.split("&") if "=" in kv).get("baudrate", "9600")
            self.sim = ModbusDiSimulator("rtu", units=(dev.unit,), baudrate=int(baud), link=serial_link(path),
                                         inputs=self._inputs())

    def _inputs(self) -> int:
        return max([d.input for d in self.doors.values()] + [0]) + 1

    def start(self) -> None:
        self.sim.set_inputs({d.input: d.closed_when for d in self.doors.values()})
        self.sim.start()

    def stop(self) -> None:
        self.sim.close()

    def where(self) -> str:
        return f"{self.sim.url} ({len(self.doors)} door(s), all closed)"

    def handle(self, words: list[str]) -> str | None:
        if words[0] != "door" or len(words) != 3 or words[2] not in self.doors:
            return None
        if words[1] not in ("open", "close"):
            raise SiteCommandError("usage: door open|close <door>")
        d = self.doors[words[2]]
        self.sim.set_input(d.input, d.closed_when if words[1] == "close" else 1 - d.closed_when)
        return f"door {d.door} ({d.room}) {'opened' if words[1] == 'open' else 'closed'}"


def site_device(dev) -> DoorModuleSiteDevice:
    return DoorModuleSiteDevice(dev)
