"""``casegate probe --driver card_reader``: run(args) on a pty, and the open-failure messages."""
import argparse
import errno
import io
import threading

import serial

from drivers.card_reader import probe
from drivers.card_reader.protocol import encode
from drivers.card_reader.simulator import CardReaderSimulator
from helpers.polling import poll

CARD = "14008EC793"


def _args(*argv):
    p = argparse.ArgumentParser()
    probe.add_arguments(p)
    probe.add_arguments(p)           # idempotent
    return p.parse_args(list(argv))


def test_defaults():
    a = _args("--port", "/dev/ttyUSB0")
    assert (a.port, a.baudrate, a.seconds, a.repeat_ms) == ("/dev/ttyUSB0", 9600, 10.0, 1000)


def test_probe_prints_cards_errors_and_summary(tmp_path):
    sim = CardReaderSimulator(link=str(tmp_path / "ttyUSB0"))
    out = io.StringIO()

    def feed():
        poll(lambda: "reading " in out.getvalue(), 5)     # the probe has the port open
        sim.write(b"xyz")
        sim.write(encode(CARD))
        sim.write(encode(CARD))                     # held card: a repeat
        sim.bad_checksum("0102030405")
        sim.write(b"\x02" + b"01020304Q5" + b"00" + b"\x03")
        sim.write(encode("0102030405"))
    th = threading.Thread(target=feed, daemon=True)
    th.start()
    try:
        rc = probe.run(_args("--port", sim.port, "--seconds", "1.0"), out=out)
    finally:
        th.join(2)
        sim.close()
    text = out.getvalue()
    assert rc == 0
    assert f"card.swiped card={CARD}" in text
    assert "card.swiped card=0102030405" in text
    assert f"card {CARD} (repeat, same swipe)" in text
    assert "error: 3 noise bytes" in text and "error: 4 noise bytes" in text   # "xyz"; "500" 03 after the Q
    assert "error: bad checksum" in text
    assert "error: non-hex digit" in text
    assert "summary: 3 good frames, 2 swipes (2 distinct cards" in text
    assert "1 bad checksums, 1 non-hex" in text


def test_probe_missing_port_exits_1(tmp_path, capsys):
    rc = probe.run(_args("--port", str(tmp_path / "ttyUSB9"), "--seconds", "1"), out=io.StringIO())
    assert rc == 1
    err = capsys.readouterr().err
    assert f"cannot open {tmp_path / 'ttyUSB9'}" in err and "no such device" in err


def test_probe_permission_denied_mentions_dialout(monkeypatch, capsys):
    # as pyserial raises it for a /dev/ttyUSB* the user may not open (tests run as root,
    # so real file permissions cannot produce it here)
    def denied(url, **kw):
        raise serial.SerialException(errno.EACCES, f"could not open port {url}: [Errno 13] Permission denied: "
                                                    f"'{url}'")
    monkeypatch.setattr(serial, "serial_for_url", denied)
    rc = probe.run(_args("--port", "/dev/ttyUSB0", "--seconds", "1"), out=io.StringIO())
    assert rc == 1
    err = capsys.readouterr().err
    assert "permission denied" in err
    assert "add the user to the dialout group: usermod -aG dialout $USER" in err


def test_probe_port_lost_exits_1(tmp_path):
    sim = CardReaderSimulator(link=str(tmp_path / "tty"))
    out = io.StringIO()
    th = threading.Timer(0.3, sim.unplug)
    th.start()
    try:
        rc = probe.run(_args("--port", sim.port, "--seconds", "2"), out=out)
    finally:
        th.join()
        sim.close()
    assert rc == 1
    assert "port lost" in out.getvalue() and "summary:" in out.getvalue()
