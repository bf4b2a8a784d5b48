"""``casegate probe --driver zone_reader``: run(args) against the station simulator."""
import argparse
import io
import socket
import threading

from drivers.zone_reader import probe
from drivers.zone_reader.simulator import StationSimulator
from helpers.polling import poll

S1 = "861694034205896"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _args(*argv):
    p = argparse.ArgumentParser()
    probe.add_arguments(p)
    probe.add_arguments(p)          # idempotent: a CLI may add every driver's options to one parser
    return p.parse_args(list(argv))


def test_defaults():
    a = _args()
    assert a.listen == "0.0.0.0:4501" and a.seconds == 30.0


def test_probe_decodes_and_answers_a_station():
    port = _free_port()
    out = io.StringIO()
    stats = {}

    def station():
        sim = StationSimulator("127.0.0.1", port, S1, report_s=0.2, reply_timeout_s=0.5, reconnect_s=0.1)
        sim.add_tag("E3AF2232", sos=True)
        sim.set_heart_rate("E3AF2232", 77)
        sim.start()                 # it keeps reconnecting until the probe listens
        if sim.logged_in.wait(3):   # a few reports answered, well inside the probe's 1.8 s
            poll(lambda: sim.stats["reports"] >= 3, 1.0)
        stats.update(sim.stats)
        stats["register"] = sim.register_reply
        sim.stop()

    th = threading.Thread(target=station, daemon=True)
    th.start()
    rc = probe.run(_args("--listen", f"127.0.0.1:{port}", "--seconds", "1.8", "--station", f"{S1}=interrogation-1"),
                   out=out)
    th.join(5)
    text = out.getvalue()
    assert rc == 0
    assert stats["register"][0] == 0 and stats["register"][3] == port and stats.get("unanswered", 0) == 0
    assert f"{S1} register" in text and f"{S1} login" in text and f"{S1} heartbeat" in text
    assert "tag E3AF2232 in range" in text and "SOS" in text
    assert "wristband E3AF2232 heart_rate=77" in text
    assert "EVENT presence.entered" in text and "room=interrogation-1" in text
    assert "EVENT tag.status" in text
    assert "summary:" in text and "bad_crc=0" in text


def test_probe_cannot_listen_exits_1(capsys):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        # a probe that ran its capture before giving up would sit out the hour (pytest's timeout
        # fails it); one that gives up at once returns here
        rc = probe.run(_args("--listen", f"127.0.0.1:{port}", "--seconds", "3600"), out=io.StringIO())
    finally:
        blocker.close()
    assert rc == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "in use" in err


def test_probe_bad_station_argument():
    assert probe.run(_args("--station", "nonsense", "--seconds", "0.1"), out=io.StringIO()) == 2
