"""(f) Hostile requests against a running daemon over plain mosquitto.

Every hostile request must be answered ``ok:false`` with the SPEC §3 code, change
nothing in the journal, not grow the daemon's memory, and leave it able to serve a
valid request; the hash chain must still verify at the end.
"""
from __future__ import annotations

import json
import time
import uuid

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from helpers.security import P, Client, Daemon, Mosquitto, cli, json_of, stays, write_daemon_config

MAX = 65536  # [mqtt] max_request_bytes default


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    (tmp / "broker").mkdir()
    broker = Mosquitto(tmp / "broker").start()
    daemon = Daemon(write_daemon_config(tmp / "gw", broker.port)).start()
    central = Client(broker.port, topics=[f"{P}/response/#"])
    try:
        daemon.wait_status(lambda s: s["uplink"]["connected"], timeout=20)
        r = ask(central, "person/register", {"request_id": "setup-officer", "person": "o1", "role": "officer"})
        assert r["ok"], r
        yield broker, daemon, central
    finally:
        central.close()
        daemon.stop()
        broker.stop()


def ask(central: Client, command: str, payload: dict | None = None, raw: bytes | None = None,
        props=None, timeout: float = 10.0) -> dict:
    """Publish one request and return the next response (rejections are answered in order)."""
    central.drain()
    data = raw if raw is not None else json.dumps(payload).encode()
    central.publish(f"{P}/request/{command}", data, props=props)
    msg = central.wait_for(lambda m: m.topic.startswith(f"{P}/response/"), timeout)
    return json_of(msg)


def journal_len(daemon) -> int:
    return len(daemon.events())


def reg(**kw) -> dict:
    base = {"request_id": "r-" + uuid.uuid4().hex[:10], "person": "p-" + uuid.uuid4().hex[:6], "role": "suspect",
            "gender": "male", "case_type": "criminal"}
    base.update(kw)
    return base


def expect(central, command, code, payload=None, raw=None):
    r = ask(central, command, payload, raw)
    assert r["ok"] is False and r["error"]["code"] == code, (command, (raw or json.dumps(payload))[:120], r)
    assert r["error"]["message"]
    return r


# ---- oversized ---------------------------------------------------------------------------------
def test_oversized_payloads_rejected_without_memory_growth(env):
    broker, daemon, central = env
    before_events = journal_len(daemon)
    # warm up paho's buffers and the allocator with one, then measure over many
    blob = b'{"request_id":"big-0","person":"p","role":"suspect","junk":[' + b"1234567," * (512 * 1024) + b"0]}"
    assert len(blob) > 4 * 1024 * 1024
    r = expect(central, "person/register", "bad_request", raw=blob)
    assert str(MAX) in r["error"]["message"] or "exceeds" in r["error"]["message"], r
    rss0 = daemon.rss_kb()
    n = 16
    for i in range(n):
        expect(central, "person/register", "bad_request", raw=blob.replace(b"big-0", f"big-{i + 1}".encode()))
    rss1 = daemon.rss_kb()
    sent_mb = n * len(blob) / 2**20
    grown_mb = (rss1 - rss0) / 1024
    # Generous: the allocator may keep a few freed 4 MB buffers; holding (or JSON-decoding)
    # the payloads would cost more than the 64 MB sent.
    print(f"RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MB after {n} x {len(blob) / 2**20:.1f} MB requests")
    assert grown_mb < 40, f"RSS grew {grown_mb:.1f} MB after {n} oversized requests ({sent_mb:.0f} MB sent)"
    # just above the limit is refused too, just below it is parsed (and fails on content)
    pad = MAX - len(json.dumps(reg(x="")).encode())
    expect(central, "person/register", "bad_request", payload=reg(x="a" * (pad + 1)))
    r = ask(central, "person/register", reg(x="a" * (pad - 2), role="king"))
    assert r["error"]["code"] == "bad_request" and "role" in r["error"]["message"], r
    assert journal_len(daemon) == before_events
    assert ask(central, "ping", {"request_id": "after-big"})["ok"]


# ---- nesting ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("depth,kind", [(9, "list"), (100, "list"), (30000, "list"), (5000, "dict")])
def test_deeply_nested_json(env, depth, kind):
    _, daemon, central = env
    if kind == "list":
        nest = "[" * depth + "]" * depth
    else:
        nest = '{"a":' * depth + "1" + "}" * depth
    raw = ('{"request_id":"deep-%d","person":"pdeep","role":"suspect","x":%s}' % (depth, nest)).encode()
    assert len(raw) <= MAX
    r = expect(central, "person/register", "bad_request", raw=raw)
    assert r["request_id"] in ("deep-%d" % depth, None)
    assert "pdeep" not in {e["data"].get("person") for e in daemon.events() if e["type"] == "person.registered"}


# ---- wrong types ---------------------------------------------------------------------------------------
WRONG_TYPES = [
    ("person/register", reg(minor="yes")),
    ("person/register", reg(minor=1)),
    ("person/register", reg(minor=None)),
    ("person/register", reg(limit_h="5")),
    ("person/register", reg(limit_h=float("nan"))),
    ("person/register", reg(limit_h=float("inf"))),
    ("person/register", reg(name={"zh": "张三"})),
    ("person/register", reg(person=["a"])),
    ("person/register", reg(person=None)),
    ("person/register", reg(role=5)),
    ("person/register", reg(request_id=123)),
    ("belongings/assign", {"request_id": "t-b1", "person": "o1", "locker": "l1", "compartment": "3"}),
    ("belongings/assign", {"request_id": "t-b2", "person": "o1", "locker": "l1", "compartment": 3.0}),
    ("belongings/assign", {"request_id": "t-b3", "person": "o1", "locker": "l1", "compartment": True}),
    ("belongings/assign", {"request_id": "t-b4", "person": "o1", "locker": "l1", "compartment": -1}),
    ("locker/open", {"request_id": "t-l1", "locker": "l1", "compartment": 17, "by": "o1"}),
    ("events/resend", {"request_id": "t-e1", "from_seq": "1", "to_seq": 2}),
    ("events/resend", {"request_id": "t-e2", "from_seq": 0, "to_seq": 2}),
    ("alarm/ack", {"request_id": "t-a1", "alarm_id": "x", "by": "o1", "note": 5}),
    ("wristband/bind", {"request_id": "t-w1", "tag": 0xE3AF2232, "person": "o1"}),
    ("face/enroll", {"request_id": "t-f1", "person": "o1", "image": ["AAAA"]}),
]


@pytest.mark.parametrize("command,payload", WRONG_TYPES, ids=[f"{c}-{i}" for i, (c, _) in enumerate(WRONG_TYPES)])
def test_wrong_types(env, command, payload):
    _, _, central = env
    expect(central, command, "bad_request", payload=payload)


def test_wrong_types_raw(env):
    """JSON the json module accepts but nobody should send: NaN, huge ints, duplicate keys."""
    _, daemon, central = env
    before = journal_len(daemon)
    raws = [
        b'{"request_id":"raw-1","person":"p","role":"suspect","limit_h":NaN}',
        b'{"request_id":"raw-2","person":"o1","locker":"l1","compartment":' + b"9" * 5000 + b"}",
        b'{"request_id":"raw-3","from_seq":1e400,"to_seq":2}',
        b'{"request_id":"raw-4","person":"p","role":"suspect","role":"emperor"}',
        b'\xef\xbb\xbf{"request_id":"raw-5","person":"p","role":"suspect"}',          # UTF-8 BOM
        b'{"request_id":"raw-6","person":"p\xc0\xaf","role":"suspect"}',               # overlong UTF-8
        b'{"request_id":"raw-7","person":"p\xed\xa0\x80","role":"suspect"}',           # raw surrogate bytes
        b'',
        b'null',
        b'"ping"',
        b'{"request_id":"raw-8"',
    ]
    cmds = ["person/register", "belongings/assign", "events/resend"] + ["person/register"] * 8
    for cmd, raw in zip(cmds, raws):
        expect(central, cmd, "bad_request", raw=raw)
    assert journal_len(daemon) == before


# ---- ids: unicode oddities and characters outside [A-Za-z0-9_.-] ----------------------------------------------
ODD_IDS = [
    "p\u0000", "\u0000", "p\u202e1gnp", "\u202ep", "p😀", "😀", "\ud800", "p\udfff", "p\ud83d",
    "ｐ１", "p\u200b", "p\u0301", "p\n", "\np", "p\t", "p\r\n", "ℌ", "p\u00a0", "İ", "p\u2028",
    "a/b", "a b", "a#", "+", "../etc", "", "x" * 65, "a;b", "a'b", "<script>", "a\\b", "a:b", "a,b",
    "${jndi:ldap://x}", "a%2Fb", "٣",
]


@pytest.mark.parametrize("bad", ODD_IDS, ids=[repr(x)[:24] for x in ODD_IDS])
def test_odd_ids_rejected(env, bad):
    _, daemon, central = env
    expect(central, "person/register", "bad_request", payload=reg(person=bad))
    expect(central, "person/register", "bad_request", payload=reg(case_id=bad))
    expect(central, "wristband/bind", "bad_request", payload={"request_id": "w-" + uuid.uuid4().hex[:8],
                                                              "tag": "E3AF2232", "person": bad})
    r = expect(central, "ping", "bad_request", payload={"request_id": bad})
    assert r["request_id"] is None, f"an invalid request_id was echoed: {r['request_id']!r}"


def test_odd_tags_rejected(env):
    _, _, central = env
    for tag in ["E3AF223\u0662", "E3AF22322", "E3AF223", "E3AF 2232", "0xE3AF22", "ｅ3AF2232", "", "E3AF2232\r\n",
                "\nE3AF2232", "E3AF\u00002232"]:
        expect(central, "wristband/bind", "bad_request",
               payload={"request_id": "tag-" + uuid.uuid4().hex[:8], "tag": tag, "person": "o1"})


def test_request_id_with_trailing_newline_not_echoed(env):
    _, _, central = env
    r = ask(central, "ping", {"request_id": "abc\n"})
    assert r["ok"] is False and r["request_id"] is None, r


def _router():
    from gateway.commands import RequestRouter
    return RequestRouter(services=None, core=None, respond=lambda req, payload: None, max_bytes=MAX)


def test_client_property_with_newline_not_used_as_source():
    from types import SimpleNamespace
    router = _router()
    got = []
    router.submit = got.append
    try:
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [("client", "evil\n")]
        msg = SimpleNamespace(topic=f"{P}/request/ping", payload=b'{"request_id":"cp-1"}', properties=props)
        router.on_message(P, msg)
        assert got and got[0].source == "mqtt:central", got and got[0].source
    finally:
        router.stop()


# ---- unknown commands --------------------------------------------------------------------------------------
UNKNOWN = ["no/such", "person/register/extra", "PING", "ping/", "person", " ping", "ping\u200b", "/ping",
           "person//register", "x" * 300, "events/resend/../../ping", "réponse"]


@pytest.mark.parametrize("command", UNKNOWN, ids=[repr(c)[:20] for c in UNKNOWN])
def test_unknown_command(env, command):
    _, daemon, central = env
    r = expect(central, command, "unknown_command", payload={"request_id": "u-1", "person": "x", "role": "suspect"})
    assert r["request_id"] == "u-1"


def test_newline_in_topic_refused_by_the_broker(env):
    """mosquitto refuses topic names with control characters (it drops the publisher as
    'malformed'), so a newline never reaches the daemon's log through the shipped broker."""
    broker, daemon, _ = env
    marker = "FORGED" + uuid.uuid4().hex[:6]
    rogue = Client(broker.port)
    try:
        rogue.c.publish(f"{P}/request/x\n2026-01-01 00:00:00,000 ERROR casegate: {marker}", b"{}", qos=1)
        assert stays(lambda: marker not in daemon.log(), 1.0)
        assert not stays(lambda: rogue.disconnects == 0, 10.0), "broker accepted a topic with a newline"
        # the broker's log reaches its file with a delay under load
        assert not stays(lambda: "malformed packet" not in broker.log.read_text(errors="replace"), 10.0)
    finally:
        rogue.close()


def test_rejected_request_log_line_is_one_line(caplog):
    """Unit level (no broker): RequestRouter.on_message logs a rejected command on one line."""
    import logging
    from types import SimpleNamespace
    router = _router()
    try:
        msg = SimpleNamespace(topic=f"{P}/request/x\n2026-01-01 ERROR casegate: forged", payload=b"{}",
                              properties=None)
        with caplog.at_level(logging.INFO, logger="casegate.requests"):
            router.on_message(P, msg)
        lines = [r.getMessage() for r in caplog.records if r.name == "casegate.requests"]
        assert lines and all("\n" not in line for line in lines), lines
    finally:
        router.stop()


def test_tag_with_trailing_newline_rejected(env):
    _, daemon, central = env
    tag = uuid.uuid4().hex[:8].upper()
    before = journal_len(daemon)
    r = ask(central, "wristband/bind", {"request_id": "tnl-" + tag, "tag": tag + "\n", "person": "o1"})
    assert r["ok"] is False and r["error"]["code"] == "bad_request", r
    assert journal_len(daemon) == before


# ---- MQTT 5 response topic ---------------------------------------------------------------------------------
def test_response_topic_cannot_point_into_own_tree(env):
    broker, daemon, central = env
    watcher = Client(broker.port, topics=[f"{P}/alarms/#", f"{P}/state/#", f"{P}/events/#"])
    try:
        for i, topic in enumerate([f"{P}/alarms/lone_interrogation", f"{P}/state/gateway",
                                   f"{P}/events/person/registered"]):
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = topic
            props.CorrelationData = b"c"
            ask(central, "ping", {"request_id": f"rt-{i}"}, props=props)
        time.sleep(0.5)
        forged = watcher.received(lambda m: b'"request_id"' in m.payload)
        assert not forged, [(m.topic, m.payload[:80]) for m in forged]
    finally:
        watcher.close()


def test_response_topic_under_response_tree_still_works(env):
    _, _, central = env
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = f"{P}/response/central-1/replies"
    props.CorrelationData = b"corr-7"
    central.drain()
    central.publish(f"{P}/request/ping", json.dumps({"request_id": "rt-ok"}), props=props)
    msg = central.wait_for(lambda m: m.topic == f"{P}/response/central-1/replies", 10)
    assert json_of(msg)["ok"] and msg.properties.CorrelationData == b"corr-7"


# ---- a burst, then the daemon still works and the journal verifies ------------------------------------------
def test_burst_then_valid_request_and_journal_verifies(env):
    broker, daemon, central = env
    before = journal_len(daemon)
    rss0 = daemon.rss_kb()
    n = 2000
    counter = Client(broker.port, topics=[f"{P}/response/#"])
    try:
        payloads = [b"{", b"[]", json.dumps(reg(person="a b")).encode(), json.dumps(reg(minor="no")).encode(),
                    b'{"request_id":"' + b"\xff" * 10 + b'"}']
        for i in range(n):
            central.c.publish(f"{P}/request/person/register", payloads[i % len(payloads)], qos=1)
        deadline = time.monotonic() + 30
        while len(counter.received(lambda m: True)) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        answers = counter.received(lambda m: True)
        assert len(answers) >= n, f"only {len(answers)} of {n} hostile requests answered"
        assert all(json_of(m)["ok"] is False for m in answers)
    finally:
        counter.close()
    assert (daemon.rss_kb() - rss0) / 1024 < 30
    assert journal_len(daemon) == before, "hostile requests changed the journal"
    # a valid request still works and acts
    pid = "valid-" + uuid.uuid4().hex[:6]
    r = ask(central, "person/register", reg(person=pid, name="张三 \u202e (RTL in free text is stored as is)"))
    assert r["ok"], r
    evs = daemon.events()
    assert len(evs) == before + 1 and evs[-1]["data"]["person"] == pid
    v = cli("journal", "verify", config=daemon.config)
    assert v.returncode == 0, v.stdout + v.stderr
    assert daemon.proc.poll() is None
    st = daemon.status()
    assert st["uplink"]["connected"] and not st["journal"]["error"]
