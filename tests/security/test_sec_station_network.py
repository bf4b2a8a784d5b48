"""Hostile network on the base-station port, against the real daemon (issue 19, SPEC §4.1 v2).

* A slowloris flood: 1,500 connections that each send half a frame and go silent, then an
  attacker who keeps reconnecting. The daemon's connections stay bounded, a real station
  (the simulator) logs in and presence flows, the flood is journaled and shown by
  ``casegate devices``; the daemon's CPU during the flood is measured and printed.
* An impostor alternating with the real station: ``station_impostor`` is raised, the fake
  second officer is never counted, so ``lone_interrogation`` still fires through the rules.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time

from helpers import polling
from helpers.brokers import free_port
from helpers.daemon import DaemonProcess, cli, journal_events, write_config
from drivers.zone_reader import protocol as P
from drivers.zone_reader.simulator import StationSimulator

ROOMS = """
[[rooms]]
id = "interrogation-1"
type = "interrogation"
"""
ST = "861694034205896"
SUSPECT_TAG, OFFICER_TAG, FAKE_TAG = "E3AF2232", "0000000A", "0000000B"


def zone(zport: int, **kw) -> str:
    extra = "".join(f"{k} = {v}\n" for k, v in kw.items())
    return f"""
[[devices]]
id = "zone"
driver = "zone_reader"
listen = "127.0.0.1:{zport}"
stations = {{ "{ST}" = "interrogation-1" }}
presence_timeout_s = 3
heartbeat_s = 5
{extra}"""


def events(cfg, *types) -> list[dict]:
    return journal_events(cfg, *types)      # as `casegate events --json --type …` prints them


def cpu_s(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_for(pred, timeout: float, what: str, interval: float = 0.2):
    """helpers.polling.wait_for, looking every 0.2 s (a look here is often a ``casegate events``)."""
    return polling.wait_for(pred, timeout, what, interval)


def reports(sim: StationSimulator, n: int, timeout: float = 20.0, look=None) -> None:
    """Until ``sim`` has had ``n`` more data frames answered by the daemon. Not nudged: a
    simulator reports no sooner than report_s after its last, so n reports are at least
    (n - 1) x report_s of the station talking (``look`` runs at every poll meanwhile)."""
    k = sim.stats["reports"]

    def done():
        if look is not None:
            look()
        return sim.stats["reports"] >= k + n
    wait_for(done, timeout, f"{n} more answered reports from {sim.dev_id}")


class Flood:
    """Slowloris: ``burst`` connections sending half a register frame, then one new
    connection every ``1/rate`` s (the attacker simply reconnects) until stopped."""

    def __init__(self, port: int, burst: int = 1500, rate: float = 50.0):
        self.port, self.burst, self.rate = port, burst, rate
        self.half = P.encode_frame(P.CMD_REGISTER, 1, ST, P.register_content(1, 0))[:15]
        self.socks: list[socket.socket] = []
        self.opened = 0
        self.failed = 0
        self.stop = threading.Event()
        self.burst_done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _one(self) -> None:
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            s.sendall(self.half)
            self.socks.append(s)
            self.opened += 1
        except OSError:
            self.failed += 1
        if len(self.socks) > 2000:            # the attacker's own fd budget
            self.socks.pop(0).close()

    def _run(self) -> None:
        for _ in range(self.burst):
            self._one()
        self.burst_done.set()
        while not self.stop.wait(1 / self.rate):
            self._one()

    def start(self) -> "Flood":
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        for s in self.socks:
            s.close()


def test_slowloris_flood_does_not_lock_a_station_out(tmp_path):
    zport = free_port()
    cfg = write_config(tmp_path, None, ROOMS + zone(zport, login_timeout_s=2))
    d = DaemonProcess(cfg).start()
    flood = sim = None
    try:
        pid = d.proc.pid
        fds0, cpu0, t0 = fds(pid), cpu_s(pid), time.monotonic()
        flood = Flood(zport).start()
        assert flood.burst_done.wait(60)
        t_burst = time.monotonic() - t0
        fds_peak = fds(pid)
        # a real station logs in while the attacker keeps reconnecting
        sim = StationSimulator("127.0.0.1", zport, ST, heartbeat_s=5, report_s=0.5)
        sim.add_tag(SUSPECT_TAG)
        sim.start()
        assert sim.logged_in.wait(10), sim.stats
        wait_for(lambda: [e for e in events(cfg, "presence.entered") if e["data"]["tag"] == SUSPECT_TAG],
                 15, "presence from the real station")
        def peak():
            nonlocal fds_peak
            fds_peak = max(fds_peak, fds(pid))
        # the flood goes on while the station keeps talking: 7 answered reports 0.5 s apart (>= 3 s)
        reports(sim, 7, look=peak)
        cpu1, t1 = cpu_s(pid), time.monotonic()
        flood_wall = t1 - t0
        print(f"\nflood: {flood.opened} connections opened ({flood.failed} failed) in {flood_wall:.1f} s "
              f"(burst of 1500 in {t_burst:.2f} s); daemon CPU {cpu1 - cpu0:.2f} s "
              f"= {100 * (cpu1 - cpu0) / flood_wall:.0f}% of one core; daemon fds {fds0} -> peak {fds_peak}; "
              f"station: {dict(sim.stats)}")
        # bounded: asyncio accepts up to `backlog` (256 here) per wake-up before the cap
        # closes them (transport.close() takes effect on the next loop turn, so on a starved
        # machine up to three wake-ups' worth were seen open at once: 729), plus the pending
        # cap (64) and the station; 1,500 would be unbounded
        assert fds_peak <= fds0 + 3 * 256 + 64 + 16, "the daemon's connections are not bounded"
        assert sim.stats["unanswered"] == 0 and sim.stats["logins"] >= 1
        assert cpu1 - cpu0 < flood_wall, "the daemon spins under the flood"
        # on the record: device.error with counts, at most one per minute while it lasts
        errs = [e["data"] for e in events(cfg, "device.error") if e["data"].get("flood")]
        assert len(errs) == 1, errs
        f = errs[0]["flood"]
        assert f["active"] and f["evicted"] + f["refused"] + f["login_timeout"] >= 60   # flood_per_min
        assert f["top"][0][0] == "127.0.0.1" and "connection flood" in errs[0]["error"]
        devs = {x["id"]: x for x in json.loads(cli("devices", "--json", config=cfg).stdout)}
        z = devs["zone"]
        assert z["state"] == "error" and "connection flood" in z["error"]
        # most of what the flood got through was evicted: of its 1,500 connections a starved
        # machine lets fewer in (789 opened, 729 evicted once in CI), so counted against those
        assert z["counters"]["connection_evicted"] >= flood.opened // 2 >= 300, (z["counters"], flood.opened)
        text = cli("devices", config=cfg).stdout
        assert "connection flood" in text
    finally:
        if flood:
            flood.close()
        if sim:
            sim.stop()
        d.stop()


def test_impostor_alternating_never_counts_the_fake_officer(tmp_path, mosquitto):
    from helpers.central import Central
    zport = free_port()
    extra = ROOMS + zone(zport, conflict_probe_s=1, conflict_clear_s=3) + """
[rules.lone_interrogation]
grace_s = 3
"""
    cfg = write_config(tmp_path, mosquitto.port, extra)
    d = DaemonProcess(cfg).start()
    real = c = None
    fakes: list[StationSimulator] = []
    try:
        d.wait_status(lambda s: s["uplink"]["connected"])
        c = Central(mosquitto.port)
        for person, role, tag in (("s1", "suspect", SUSPECT_TAG), ("o1", "officer", OFFICER_TAG),
                                  ("o2", "officer", FAKE_TAG)):
            extra_args = {"case_id": "c1", "case_type": "criminal", "gender": "male"} if role == "suspect" else {}
            assert c.request("person/register", person=person, role=role, **extra_args)["ok"]
            assert c.request("wristband/bind", tag=tag, person=person)["ok"]
        real = StationSimulator("127.0.0.1", zport, ST, heartbeat_s=5, report_s=0.3)
        real.add_tag(SUSPECT_TAG)
        real.add_tag(OFFICER_TAG)
        real.start()
        assert real.logged_in.wait(10)
        # the impostor (another host) claims the station again and again, reporting o2 in the room
        for _ in range(4):
            fake = StationSimulator("127.0.0.1", zport, ST, heartbeat_s=5, report_s=0.2, bind="127.0.0.3")
            fakes.append(fake)
            fake.add_tag(SUSPECT_TAG)
            fake.add_tag(OFFICER_TAG)
            fake.add_tag(FAKE_TAG)
            fake.start()
            reports(fake, 8)                # its stay: 8 answered reports 0.2 s apart (>= 1.4 s)
            fake.stop()
            reports(real, 3)                # the real station alone: 3 reports 0.3 s apart (< conflict_clear_s)
        def both_alarms():
            raised = [e["data"] for e in events(cfg, "alarm.raised")]
            return raised if {a["code"] for a in raised} >= {"station_impostor", "lone_interrogation"} else None
        alarms = wait_for(both_alarms, 20, "both alarms")
        imp = next(a for a in alarms if a["code"] == "station_impostor")
        assert imp["severity"] == "critical" and imp["room"] == "interrogation-1"
        assert imp["legal_basis"] == [] and imp["details"]["station"] == ST    # DOMAIN v3: cites nothing
        lone = next(a for a in alarms if a["code"] == "lone_interrogation")
        assert "s1" in lone["persons"]
        entered = [e["data"] for e in events(cfg, "presence.entered")]
        assert not [x for x in entered if x["tag"] == FAKE_TAG], "the fake officer was counted"
        conflicts = [e["data"] for e in events(cfg, "device.error") if e["data"].get("impostor")]
        assert conflicts and all(x["device"] == f"zone/{ST}" for x in conflicts)
        assert any(any(p.startswith("127.0.0.3:") for p in x["peers"]) for x in conflicts)
        # the impostor gone, the conflict is resolved on the record and the alarm clears
        wait_for(lambda: [e for e in events(cfg, "alarm.cleared") if e["data"]["code"] == "station_impostor"],
                 20, "station_impostor cleared")
        assert not [x for x in (e["data"] for e in events(cfg, "presence.entered")) if x["tag"] == FAKE_TAG]
    finally:
        for f in fakes:
            f.stop()
        if real:
            real.stop()
        if c:
            c.close()
        d.stop()
