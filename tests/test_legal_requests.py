"""DOMAIN v3 through the request handlers of a real daemon and a real mosquitto (issue 23
items 1, 3, 4, 5; issue 30 item 5): who may lengthen a limit and when, the 送押 clock kept,
protection taken from the data held, records that count, identification sessions. Every
refusal of a legal matter is journaled as ``request.refused``; every test ends with the
daemon's journal through ``casegate replay --input``, which must give the live rule output."""
from __future__ import annotations

import json
import time

import paho.mqtt.client as mqtt
import pytest

from helpers.brokers import free_port
from helpers.daemon import DaemonProcess, cli, write_config
from drivers.zone_reader.simulator import ZoneSite
from rules.model import format_ts
from helpers.central import Central, P
from helpers import polling

ROOMS = """
[[rooms]]
id = "waiting-1"
type = "waiting"

[[rooms]]
id = "security-1"
type = "security_check"

[[rooms]]
id = "interrogation-1"
type = "interrogation"
recorder = "rec-1"

[[rooms]]
id = "identification-1"
type = "identification"
"""
H = 3600


class Seen:
    """The daemon's journal as published (P/events/#, P/alarms/#): read without a CLI call
    per look; :meth:`sync` waits until everything journaled so far has arrived."""

    def __init__(self, d, sub):
        self.d, self.sub = d, sub

    def sync(self, timeout=20.0):
        last = self.d.status()["journal"]["last_seq"]
        wait_for(lambda: max((e.get("seq") or 0 for e in self.sub.payloads(f"{P}/")), default=0) >= last, timeout)

    def __call__(self, typ=None):
        out, ids = [], set()
        for e in self.sub.payloads(f"{P}/"):
            if (typ is None or e.get("type") == typ) and e.get("id") not in ids:
                ids.add(e.get("id"))
                out.append(e)
        return out


def journaled(d, typ=None):
    """From the journal itself (the CLI)."""
    args = ["events", "--json"] + (["--type", typ] if typ else [])
    r = cli(*args, config=d.config, check=True)
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def refused(d, command):
    d.seen.sync()
    return [e["data"] for e in d.seen("request.refused") if e["data"]["command"] == command]


def err(r, code):
    assert r["ok"] is False, r
    assert r["error"]["code"] == code, r
    return r["error"]["message"]


def wait_for(pred, timeout=20.0):
    return polling.wait_for(pred, timeout, "the condition")


def assert_replay_equals_live(d, tmp_path):
    """``casegate replay --input`` of the daemon's journal produces exactly the rule output
    the daemon journaled live (same ids, times, data)."""
    evs = journaled(d)
    inp = tmp_path / "journal.jsonl"
    inp.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in evs))
    r = cli("replay", "--input", inp, "--json", config=d.config, check=True)
    got = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    live = [e for e in evs if e["source"] == "rules" or (e["type"] == "person.left" and e["source"] == "gateway")]

    def key(e):
        # a derived person.left is stamped by the live writer's clock (a ms after its cause),
        # by replay with its cause's time: its time is not part of the comparison, nor where an
        # alarm repeats it (consecutive_summons previous_left) - a known gap, reported
        data = e["data"]
        if isinstance(data.get("details"), dict) and "previous_left" in data["details"]:
            data = dict(data, details={k: v for k, v in data["details"].items() if k != "previous_left"},
                        message=None)
        return (e["type"], e["ts"] if e["source"] == "rules" else None, data)
    assert [key(e) for e in got] == [key(e) for e in live]
    return live


def zone_device(zport: int) -> str:
    return f"""
[[devices]]
id = "zone"
driver = "zone_reader"
listen = "127.0.0.1:{zport}"
stations = {{ "ST-INT1" = "interrogation-1" }}
presence_timeout_s = 30
heartbeat_s = 5
"""


@pytest.fixture
def center(tmp_path, mosquitto, subscriber_factory):
    zport = free_port()
    extra = ROOMS + "[rules.lone_identification]\nmax_s = 3\n" + zone_device(zport)
    cfg = write_config(tmp_path, mosquitto.port, extra)
    d = DaemonProcess(cfg).start()
    d.zport = zport
    d.wait_status(lambda s: s["uplink"]["connected"])
    d.seen = Seen(d, subscriber_factory(mosquitto.port, [f"{P}/events/#", f"{P}/alarms/#"]))
    c = Central(mosquitto.port)
    assert c.request("person/register", person="o1", role="officer", gender="male")["ok"]
    assert c.request("person/register", person="o2", role="officer", gender="female")["ok"]
    assert c.request("person/register", person="chief", role="officer", gender="male", approver=True)["ok"]
    assert c.request("person/register", person="st1", role="staff")["ok"]
    yield d, c
    c.close()
    d.stop()


def test_limits_lengthen_only_forward_with_an_approver_before_expiry(center, tmp_path):
    """刑事诉讼法 第119条, 程序规定(刑) 第200条 (24 h only with the 办案部门负责人's approval; when the
    time is up the summons ends at once), 公安机关适用继续盘问规定 第9条 (not for a filed criminal
    case) and 第17条 (extensions decided before the limit expires, 12 -> 24 -> 48 h)."""
    d, c = center
    now = time.time()
    sus = {"role": "suspect", "gender": "male"}
    # a first registration above the base limit needs an approver and a reason
    msg = err(c.request("person/register", person="s1", case_type="criminal", limit_h=24, **sus), "forbidden")
    assert "approved_by" in msg and "approver = true" in msg
    err(c.request("person/register", person="s1", case_type="criminal", limit_h=24, approved_by="o1", **sus),
        "forbidden")                                                      # o1 is no approver
    assert c.request("person/register", person="s1", case_type="criminal", limit_h=24, approved_by="chief",
                     reason="案情复杂，经负责人批准", **sus)["ok"]
    # without limit_h the center's default is written into the registration: a reload never moves it
    r = c.request("person/register", person="s2", case_type="inquiry", arrived_at=format_ts(now - 2 * H), **sus)
    assert r["ok"]
    d.seen.sync()
    (reg,) = [e for e in d.seen("person.registered") if e["data"]["person"] == "s2"]
    assert reg["data"]["limit_h"] == 12
    # a re-registration of a present suspect changes no limit
    err(c.request("person/register", person="s2", case_type="inquiry", limit_h=24, **sus), "bad_request")
    assert c.request("person/register", person="s2", case_type="inquiry", name="李四", **sus)["ok"]
    # lengthening by person/update: an approver, one step at a time, never across criminal <-> inquiry
    msg = err(c.request("person/update", person="s2", by="o1", reason="x", limit_h=24), "forbidden")
    assert "approver" in msg
    msg = err(c.request("person/update", person="s2", by="o1", approved_by="chief", reason="x", limit_h=48),
              "bad_request")
    assert "ask for 24 h first" in msg and "第17条" in msg
    msg = err(c.request("person/update", person="s2", by="o1", approved_by="chief", reason="x",
                        case_type="criminal"), "bad_request")
    assert "第9条" in msg
    assert c.request("person/update", person="s2", by="o1", approved_by="chief", reason="批准延长至24小时",
                     limit_h=24)["ok"]
    assert c.request("person/update", person="s2", by="o1", approved_by="chief", reason="批准延长至48小时",
                     limit_h=48)["ok"]
    # shortening needs an officer only; an approved_by given must be an approver all the same
    err(c.request("person/update", person="s2", by="o1", approved_by="st1", reason="x", limit_h=12), "forbidden")
    assert c.request("person/update", person="s2", by="o1", reason="提前结束", limit_h=12)["ok"]

    # after expiry: never lengthened, the timeout stands
    assert c.request("person/register", person="s3", case_type="administrative",
                     arrived_at=format_ts(now - 9 * H), **sus)["ok"]
    (dt,) = wait_for(lambda: [e for e in d.seen("alarm.raised")
                              if e["data"]["code"] == "detention_timeout" and e["data"]["persons"] == ["s3"]])
    msg = err(c.request("person/update", person="s3", by="o1", approved_by="chief", reason="补批", limit_h=24),
              "bad_request")
    assert "expired" in msg and "第200条" in msg
    # vulnerable withdrawn after the 4 h of a vulnerable inquiry: his limit stays 4 h (it was
    # written at registration), and lengthening it now is refused
    assert c.request("person/register", person="s4", case_type="inquiry", vulnerable=True,
                     arrived_at=format_ts(now - 5 * H), **sus)["ok"]
    (dt4,) = wait_for(lambda: [e for e in d.seen("alarm.raised")
                               if e["data"]["code"] == "detention_timeout" and e["data"]["persons"] == ["s4"]])
    assert c.request("person/update", person="s4", by="o1", reason="非孕妇", vulnerable=False)["ok"]
    err(c.request("person/update", person="s4", by="o1", approved_by="chief", reason="x", limit_h=12),
        "bad_request")

    # issue 30.5: detained_at keeps the earliest value; a correction needs an approver
    assert c.request("person/update", person="s1", by="o1", reason="拘留",
                     detained_at=format_ts(now - 600))["ok"]
    msg = err(c.request("person/update", person="s1", by="o1", reason="x", detained_at=format_ts(now - 60)),
              "bad_request")
    assert "第85条" in msg
    err(c.request("person/update", person="s1", by="o1", reason="x", detained_at=None), "bad_request")
    err(c.request("person/update", person="s1", by="o1", reason="更正", detained_at=format_ts(now - 900)),
        "forbidden")
    assert c.request("person/update", person="s1", by="o1", approved_by="chief", reason="更正拘留时间",
                     detained_at=format_ts(now - 900))["ok"]

    # every refusal is journaled, with who tried
    reg_refused = refused(d, "person/register")
    assert [x["code"] for x in reg_refused] == ["forbidden", "forbidden", "bad_request"]
    upd_refused = refused(d, "person/update")
    assert [x["code"] for x in upd_refused] == ["forbidden", "bad_request", "bad_request", "forbidden", "bad_request",
                                                "bad_request", "bad_request", "bad_request", "forbidden"]
    assert all(x["by"] == "o1" for x in upd_refused) and upd_refused[0]["person"] == "s2"
    # the timeouts of s3 and s4 were never cleared
    cleared = {e["data"]["alarm_id"] for e in d.seen("alarm.cleared")}
    assert dt["data"]["alarm_id"] not in cleared and dt4["data"]["alarm_id"] not in cleared
    assert_replay_equals_live(d, tmp_path)


def test_protection_from_the_data_held(center, tmp_path):
    """未成年人保护法 第2条 (under 18 is a minor); 公安机关适用继续盘问规定 第10条 (under 16: 4 h, never
    in a 候问室) and 第30条 (men and women held apart); 刑事诉讼法 第132条 (women searched by women):
    an unknown gender is an alarm, not a pass; the same man under a new person id is still a
    consecutive summons (刑事诉讼法 第119条)."""
    d, c = center
    msg = err(c.request("person/register", person="s1", role="suspect", case_type="criminal"), "bad_request")
    assert "gender" in msg
    msg = err(c.request("person/register", person="s1", role="suspect", gender="male", case_type="criminal",
                        age=17, minor=False), "bad_request")
    assert "第2条" in msg
    r = c.request("person/register", person="s1", role="suspect", gender="male", case_type="criminal", age=17)
    assert r["ok"]
    r = c.request("person/register", person="s2", role="suspect", gender="male", case_type="inquiry", age=15)
    assert r["ok"]
    d.seen.sync()
    regs = {e["data"]["person"]: e["data"] for e in d.seen("person.registered")}
    assert regs["s1"]["minor"] is True and regs["s1"]["vulnerable"] is False
    assert regs["s2"]["minor"] is True and regs["s2"]["vulnerable"] is True and regs["s2"]["limit_h"] == 4
    err(c.request("person/update", person="s2", by="o1", reason="x", vulnerable=False), "bad_request")
    # identity: the same man, a new person id, an hour after leaving
    ident = "ab" * 32
    assert c.request("person/register", person="s5", role="suspect", gender="male", case_type="administrative",
                     identity=ident)["ok"]
    assert c.request("person/checkout", person="s5", by="o1")["ok"]
    cli("band", "bind", "E3AF2232", "s5", config=d.config, check=True)
    cli("band", "unbind", "E3AF2232", config=d.config, check=True)       # hands back the band: leaves
    wait_for(lambda: [e for e in d.seen("person.left") if e["data"]["person"] == "s5"])
    assert c.request("person/register", person="s6", role="suspect", gender="male", case_type="administrative",
                     identity=ident)["ok"]
    (cs,) = wait_for(lambda: [e for e in d.seen("alarm.raised")
                              if e["data"]["code"] == "consecutive_summons"])
    assert cs["data"]["persons"] == ["s6"]
    assert [x["code"] for x in refused(d, "person/register")] == ["bad_request", "bad_request"]
    assert_replay_equals_live(d, tmp_path)


def _recorder(port):
    """The interrogation room's recorder system (审讯主机): MQTT client rec-1."""
    m = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    m.connect("127.0.0.1", port)
    m.loop_start()
    return m


def test_records_count_only_when_attributable(center, mosquitto, tmp_path):
    """治安管理处罚法(2025) 第108条 (one officer only with real full recording), 程序规定(刑) 第208条;
    刑事诉讼法 第119条 (rest recorded — not for a span of questioning); 程序规定(刑) 第235条 /
    行政程序规定 第190条 (custody orders by an officer, release and dispose approved)."""
    d, c = center
    # by hand: an officer must sign it
    msg = err(c.request("recording/state", room="interrogation-1", recording=True, source="rec-1"), "forbidden")
    assert "by = an officer" in msg
    err(c.request("recording/state", room="interrogation-1", recording=True, source="rec-1", by="st1"),
        "forbidden")
    assert c.request("recording/state", room="interrogation-1", recording=True, source="desk", by="o1")["ok"]
    # the room's recorder, as itself (its MQTT client): evidence, no by needed
    rec = _recorder(mosquitto.port)
    try:
        # under its own account's topic (the broker's ACL ties it to the account: docs/security.md)
        rec.publish("casegate/t-center/client/rec-1/request/recording/state",
                    json.dumps({"request_id": "rec-on", "room": "interrogation-1", "recording": True,
                                "source": "rec-1"}), qos=1).wait_for_publish(5)
        evs = wait_for(lambda: [e for e in d.seen("recording.started") if e["data"].get("recorder")])
    finally:
        rec.loop_stop()
        rec.disconnect()
    hand = [e for e in d.seen("recording.started") if not e["data"].get("recorder")]
    assert hand[0]["data"]["by"] == "o1" and evs[0]["source"] == "mqtt:rec-1"
    # casegate recording stop|start <room> --by O: the same command by hand, from the console
    r = cli("recording", "stop", "interrogation-1", "--by", "st1", config=d.config)
    assert r.returncode == 1 and "forbidden" in r.stderr, r.stderr
    r = cli("recording", "stop", "interrogation-1", "--by", "o1", config=d.config)
    assert r.returncode == 0 and "recording stopped (by o1)" in r.stdout, r.stderr
    (stopped,) = wait_for(lambda: d.seen("recording.stopped"))
    assert stopped["data"] == {"room": "interrogation-1", "source": "operator", "recorder": False, "by": "o1"}
    assert stopped["source"] == "cli"

    # person/rest: by an officer, never for a span he was being questioned
    now = time.time()
    assert c.request("person/register", person="s1", role="suspect", gender="male", case_type="criminal")["ok"]
    err(c.request("person/rest", person="s1", kind="rest", **{"from": format_ts(now - 60)}, by="s1"), "forbidden")
    cli("band", "bind", "E3AF2232", "s1", config=d.config, check=True)
    site = ZoneSite("127.0.0.1", d.zport, ["ST-INT1"], heartbeat_s=5, report_s=0.5)
    site.start()
    try:
        assert site.wait_logged_in(10)
        site.move(0xE3AF2232, "ST-INT1")
        wait_for(lambda: d.seen("presence.entered"))
    finally:
        site.stop()
    msg = err(c.request("person/rest", person="s1", kind="rest", **{"from": format_ts(now - 60)}, by="o1"),
              "bad_request")
    assert "interrogation" in msg

    # custody orders: by an officer; release and dispose need an approver
    order = {"item": "E2000017221101441890ABCD", "case_id": "c-1"}
    err(c.request("custody/order", order="o-1", action="deposit", by="s1", **order), "forbidden")
    err(c.request("custody/order", order="o-2", action="release", by="o1", **order), "forbidden")
    err(c.request("custody/order", order="o-2", action="dispose", by="o1", approved_by="o2", **order), "forbidden")
    assert c.request("custody/order", order="o-2", action="release", by="o1", approved_by="chief", **order)["ok"]
    assert [x["code"] for x in refused(d, "custody/order")] == ["forbidden"] * 3
    assert [x["code"] for x in refused(d, "recording/state")] == ["forbidden", "forbidden", "forbidden"]
    assert [x["code"] for x in refused(d, "person/rest")] == ["forbidden", "bad_request"]
    assert_replay_equals_live(d, tmp_path)


def test_identification_only_in_its_room_and_ends_by_itself(center, tmp_path):
    """程序规定(刑) 第259条: 辨认 is presided by at least two investigators; a session exempts
    co-suspects only in an identification room and only for ``max_s`` (3 s here)."""
    d, c = center
    ids = {"case_id": "c1", "by": "o1"}
    msg = err(c.request("identification/start", room="waiting-1", **ids), "bad_request")
    assert "identification room" in msg
    assert c.request("identification/start", room="identification-1", **ids)["ok"]
    # nobody presides: lone_identification after grace_s (30 s) is the rule case's job; here:
    # the session ends by itself after max_s, journaled as rule output
    (ended,) = wait_for(lambda: d.seen("identification.ended"), timeout=30)
    assert ended["source"] == "rules" and ended["data"]["reason"] == "max_s"
    err(c.request("identification/end", room="identification-1", **ids), "not_found")
    assert [x["code"] for x in refused(d, "identification/start")] == ["bad_request"]
    assert_replay_equals_live(d, tmp_path)
