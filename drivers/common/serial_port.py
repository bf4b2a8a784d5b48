"""Opening a serial port, and saying why it would not open in one wording for every driver.

Every serial driver (card reader, lock board, UHF inventory reader, Modbus RTU) and its
``casegate probe`` open ports through :func:`open_serial`; an open that fails raises
:class:`SerialOpenError`, whose text is what the technician sees in ``device.offline``,
``casegate devices`` and the probe's stderr. One wording because the same unplugged
adapter must read the same whichever driver hit it, and a fix to the advice (a new
by-id hint, a udev rule) lands everywhere at once.

Ports are local paths (``/dev/ttyUSB0``, ``/dev/serial/by-id/...``) or pyserial URLs
(``socket://host:port``, ``rfc2217://host:port``, ``loop://``). Local paths are opened
exclusively (``flock``): a probe started next to the running daemon must fail with
"busy", not silently steal half of the daemon's frames.
"""
from __future__ import annotations

import errno
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

BY_ID_DIR = Path("/dev/serial/by-id")
URL_FORMS = "/dev/ttyUSB0, /dev/serial/by-id/<name>, socket://host:port or rfc2217://host:port"


class SerialOpenError(Exception):
    """A port could not be opened; ``str(e)`` is the technician-facing reason.

    ``reason`` is one of ``no_such_port``, ``permission_denied``, ``busy``,
    ``bad_url``, ``unreachable`` or ``other`` (tests and callers may branch on it)."""

    def __init__(self, port: str, reason: str, message: str, cause: BaseException | None = None):
        super().__init__(message)
        self.port = port
        self.reason = reason
        self.message = message
        self.cause = cause


def is_local(port: str) -> bool:
    """A device path rather than a pyserial URL (``socket://``, ``rfc2217://``, ``loop://``)."""
    return "://" not in port


def by_id_names(directory: Path = BY_ID_DIR) -> list[str]:
    """The stable names of the serial adapters plugged in now (empty if none / no udev)."""
    try:
        return sorted(str(p) for p in directory.iterdir())
    except OSError:
        return []


def _plug_in_hint(port: str, directory: Path = BY_ID_DIR) -> str:
    names = by_id_names(directory)
    if not names:
        return f"no serial adapter is plugged in ({directory} is empty): plug it in, then check dmesg | tail"
    shown = ", ".join(names[:4]) + (f" (+{len(names) - 4} more)" if len(names) > 4 else "")
    return f"is it plugged in? adapters present now: {shown}"


def classify(exc: BaseException) -> str:
    """Which of the :class:`SerialOpenError` reasons an exception from pyserial is."""
    code = getattr(exc, "errno", None)
    text = str(exc)
    if isinstance(exc, ValueError) or "expected a string in the form" in text or "invalid URL" in text:
        return "bad_url"
    if code in (errno.EACCES, errno.EPERM) or "Permission denied" in text or "[Errno 13]" in text:
        return "permission_denied"
    if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO) or "No such file" in text or "[Errno 2]" in text:
        return "no_such_port"
    if (code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK) or "exclusively lock" in text
            or "Device or resource busy" in text):
        return "busy"
    if "Connection refused" in text or "timed out" in text or "Name or service not known" in text \
            or "No route to host" in text or "Network is unreachable" in text:
        return "unreachable"
    return "other"


def describe_open_error(port: str, exc: BaseException, by_id_dir: Path = BY_ID_DIR) -> str:
    """Why ``port`` could not be opened, and what to do about it (the one wording)."""
    reason = classify(exc)
    text = str(exc)
    head = f"cannot open {port}"
    if reason == "permission_denied":
        return (f"{head}: permission denied; add the user to the dialout group: usermod -aG dialout $USER "
                f"(then log out and in again), or give it the port with a udev rule "
                f"(GROUP=\"dialout\", MODE=\"0660\")")
    if reason == "no_such_port":
        return f"{head}: no such device; {_plug_in_hint(port, by_id_dir)}"
    if reason == "busy":
        where = f" (fuser -v {port} names it)" if is_local(port) else ""
        return (f"{head}: port busy, another process holds it - a running casegate daemon or "
                f"casegate probe?{where}")
    if reason == "bad_url":
        return f"{head}: bad port or URL ({text}); use {URL_FORMS}"
    if reason == "unreachable":
        return f"{head}: serial server not reachable ({text})"
    return f"{head}: {text}"


def url_problem(port: str) -> str | None:
    """What is wrong with a network serial URL's shape, checked before pyserial sees it:
    pyserial 3.5 words a bad ``socket://`` URL as a KeyError of its own format string."""
    u = urlsplit(port)
    if u.scheme not in ("socket", "rfc2217"):
        return None
    try:
        number = u.port
    except ValueError:
        return "port not in range 0...65535"
    if not u.hostname or number is None:
        return f"{u.scheme}:// needs host:port"
    return None


def open_serial(port: str, baudrate: int, *, timeout: float | None, write_timeout: float | None = None,
                bytesize: int = 8, parity: str = "N", stopbits: int = 1, flush_input: bool = False) -> Any:
    """Open ``port`` (a device path or pyserial URL), 8N1 unless told otherwise.

    Returns the pyserial port; raises :class:`SerialOpenError` (never pyserial's own
    exceptions) so every caller reports the same reason the same way."""
    import serial
    kw: dict[str, Any] = dict(baudrate=baudrate, bytesize=bytesize, parity=parity, stopbits=stopbits,
                              timeout=timeout, write_timeout=write_timeout)
    problem = url_problem(port)
    if problem:
        raise SerialOpenError(port, "bad_url", describe_open_error(port, ValueError(problem)))
    if is_local(port):
        kw["exclusive"] = True      # see the module docstring: a probe must not steal frames
    try:
        ser = serial.serial_for_url(port, **kw)
    except Exception as e:      # SerialException, OSError, ValueError, termios.error: all "cannot open"
        raise SerialOpenError(port, classify(e), describe_open_error(port, e), e) from e
    if flush_input:
        try:
            ser.reset_input_buffer()
        except Exception:   # a URL handler without a buffer to flush
            pass
    return ser


def check_openable(port: str) -> str | None:
    """Open and close ``port`` once: None if it opens, else the reason (for probes of
    libraries such as pymodbus that swallow the open error)."""
    try:
        open_serial(port, 9600, timeout=0).close()
    except SerialOpenError as e:
        return str(e)
    return None
