"""drivers/common/serial_port.py: one way to open a serial port, one wording when it fails.

Real pseudo-terminals for the ports that open and the one that is busy; pyserial's own
exceptions (as it raises them for /dev/ttyUSB*) for the cases a root test run cannot
produce with real files (permission denied)."""
from __future__ import annotations

import errno
import os
import socket

import pytest
import serial

from drivers.common.serial_port import (SerialOpenError, by_id_names, check_openable, classify,
                                        describe_open_error, open_serial)


@pytest.fixture
def pty_port():
    master, slave = os.openpty()
    name = os.ttyname(slave)
    yield master, name
    for fd in (master, slave):
        os.close(fd)


def test_a_pty_opens_8n1_and_carries_bytes(pty_port):
    master, name = pty_port
    ser = open_serial(name, 19200, timeout=0.5, write_timeout=1.0, flush_input=True)
    try:
        assert (ser.baudrate, ser.bytesize, ser.parity, ser.stopbits) == (19200, 8, "N", 1)
        os.write(master, b"\x02hello\x03")
        assert ser.read(7) == b"\x02hello\x03"
        ser.write(b"ok")
        assert os.read(master, 2) == b"ok"
    finally:
        ser.close()


def test_a_second_opener_of_a_local_port_is_told_it_is_busy(pty_port):
    _, name = pty_port
    first = open_serial(name, 9600, timeout=0.1)
    try:
        with pytest.raises(SerialOpenError) as e:
            open_serial(name, 9600, timeout=0.1)
        assert e.value.reason == "busy" and e.value.port == name
        assert str(e.value).startswith(f"cannot open {name}: port busy, another process holds it")
        assert "casegate daemon or casegate probe" in str(e.value) and f"fuser -v {name}" in str(e.value)
        assert check_openable(name) == str(e.value)
    finally:
        first.close()
    assert check_openable(name) is None            # free again once the holder closed it


def test_a_missing_port_names_the_adapters_plugged_in(tmp_path):
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    missing = str(tmp_path / "ttyUSB9")
    with pytest.raises(SerialOpenError) as e:
        open_serial(missing, 9600, timeout=0.1)
    assert e.value.reason == "no_such_port"
    assert str(e.value).startswith(f"cannot open {missing}: no such device; ")
    assert isinstance(e.value.cause, serial.SerialException)
    err = FileNotFoundError(errno.ENOENT, "No such file or directory")
    assert "is empty): plug it in" in describe_open_error(missing, err, by_id)
    (by_id / "usb-FTDI_FT232R_USB_UART_A10K-if00-port0").touch()
    msg = describe_open_error(missing, err, by_id)
    assert f"adapters present now: {by_id}/usb-FTDI_FT232R_USB_UART_A10K-if00-port0" in msg
    assert by_id_names(by_id) == [f"{by_id}/usb-FTDI_FT232R_USB_UART_A10K-if00-port0"]
    assert by_id_names(tmp_path / "absent") == []


def test_permission_denied_says_dialout_and_udev(monkeypatch):
    def denied(url, **kw):            # pyserial's wording for a port the user may not open
        raise serial.SerialException(errno.EACCES, f"could not open port {url}: [Errno 13] Permission denied: "
                                                    f"'{url}'")
    monkeypatch.setattr(serial, "serial_for_url", denied)
    with pytest.raises(SerialOpenError) as e:
        open_serial("/dev/ttyUSB0", 9600, timeout=0.1)
    assert e.value.reason == "permission_denied"
    msg = str(e.value)
    assert msg.startswith("cannot open /dev/ttyUSB0: permission denied; ")
    assert "add the user to the dialout group: usermod -aG dialout $USER" in msg and "udev rule" in msg
    assert describe_open_error("/dev/ttyS0", PermissionError(errno.EACCES, "Permission denied")) == msg.replace(
        "/dev/ttyUSB0", "/dev/ttyS0")


@pytest.mark.parametrize("url", ["nosuch://x", "socket://no-port-here", "socket://host:99999"])
def test_a_bad_url_says_which_forms_work(url):
    with pytest.raises(SerialOpenError) as e:
        open_serial(url, 9600, timeout=0.1)
    assert e.value.reason == "bad_url", str(e.value)
    assert str(e.value).startswith(f"cannot open {url}: bad port or URL (")
    assert "socket://host:port or rfc2217://host:port" in str(e.value)


def test_urls_are_not_locked_and_a_refused_server_is_unreachable():
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        url = f"socket://127.0.0.1:{srv.getsockname()[1]}"
        ser = open_serial(url, 9600, timeout=0.1)
        ser.close()
    with pytest.raises(SerialOpenError) as e:              # nobody listens there any more
        open_serial(url, 9600, timeout=0.1)
    assert e.value.reason == "unreachable" and "serial server not reachable" in str(e.value)


def test_classify_the_exceptions_pyserial_raises():
    assert classify(serial.SerialException(errno.EAGAIN, "Could not exclusively lock port /dev/ttyUSB7: "
                                                         "[Errno 11] Resource temporarily unavailable")) == "busy"
    assert classify(serial.SerialException(errno.EBUSY, "could not open port /dev/ttyUSB7: [Errno 16] "
                                                        "Device or resource busy")) == "busy"
    assert classify(serial.SerialException(errno.ENOENT, "could not open port x: [Errno 2] No such file")) \
        == "no_such_port"
    assert classify(ValueError("invalid URL, protocol 'x' not known")) == "bad_url"
    assert classify(serial.SerialException("something new")) == "other"
    assert describe_open_error("/dev/ttyS1", serial.SerialException("something new")) == \
        "cannot open /dev/ttyS1: something new"
