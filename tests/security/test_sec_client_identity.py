"""Identity from the broker (issue 30 item 6) and the per-class ACL (issue 28 item 4), with
mosquitto running the shipped config/mosquitto/acl verbatim (passwords; a plain loopback
listener instead of the TLS one, which test_sec_broker_example.py covers) and a real daemon:

* a client without the central role cannot publish a request (SPEC form or under another
  account's name): nothing reaches the daemon, nothing is journaled;
* under ``P/client/<account>/request/...`` the journal's ``source`` is the account the broker
  authenticated — a self-declared MQTT 5 user property changes nothing;
* the recorder can report recording state and nothing else; the duty desk acknowledges;
* ingest's events/resend is answered on its own reply topic, and the ``busy`` of the resend
  budget names whose budget it is;
* ids that name files (".", "..", hidden, "-x") are refused."""
from __future__ import annotations

import getpass
import json
import secrets
import sqlite3
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from helpers.security import (CENTRAL_USER, GATEWAY_USER, MONITOR_USER, MOSQ_EXAMPLE, P, Client, Daemon,
                         Mosquitto, free_port, json_of, mosquitto_passwd_file, write_daemon_config)

DESK = "duty-desk-demo"
RECORDER = "recorder-demo"
INGEST = "casegate-ingest"
# the recorder account is the room's configured recorder: its reports are recording evidence (DOMAIN v3)
ROOMS = f'\n[[rooms]]\nid = "interrogation-1"\ntype = "interrogation"\nrecorder = "{RECORDER}"\n'


def journal(daemon, type_: str) -> list[tuple[str, dict]]:
    conn = sqlite3.connect(daemon.state_dir / "journal.db")
    try:
        return [(s, json.loads(d)) for s, d in
                conn.execute("SELECT source, data FROM events WHERE type = ? ORDER BY seq", (type_,))]
    finally:
        conn.close()


def test_the_shipped_acl_gives_each_client_class_its_topics_and_the_broker_its_identity(tmp_path):
    users = (GATEWAY_USER, CENTRAL_USER, DESK, RECORDER, INGEST, MONITOR_USER)
    pw = {u: secrets.token_urlsafe(12) for u in users}
    passwd = mosquitto_passwd_file(tmp_path / "passwd", pw)
    port = free_port()
    bdir = tmp_path / "broker"
    bdir.mkdir()
    broker = Mosquitto(bdir, port=port)
    broker.conf.write_text(f"per_listener_settings false\nallow_anonymous false\npassword_file {passwd}\n"
                           f"acl_file {MOSQ_EXAMPLE / 'acl'}\nlistener {port} 127.0.0.1\n"
                           f"user {getpass.getuser()}\nmax_queued_messages 0\n")
    broker.start()
    pwfile = tmp_path / "mqtt.password"
    pwfile.write_text(pw[GATEWAY_USER] + "\n")
    cfg = write_daemon_config(tmp_path / "gw", port, username=GATEWAY_USER, password_file=pwfile,
                              extra_mqtt="resend_events_per_min = 4")
    cfg.write_text(cfg.read_text() + ROOMS)
    d = Daemon(cfg).start()
    clients: list[Client] = []

    def client(user, topics=(), **kw) -> Client:
        c = Client(port, topics=topics, username=user, password=pw[user], **kw)
        clients.append(c)
        return c

    try:
        d.wait_status(lambda st: st["uplink"]["connected"], timeout=20)
        central = client(CENTRAL_USER, [f"{P}/response/#"])

        def ask(c: Client, topic: str, body: dict, props=None) -> dict:
            c.publish(topic, json.dumps(body), props=props)
            return json_of(central.wait_for(lambda m: json_of(m).get("request_id") == body["request_id"], 10))

        # the central platform, under its name: source is the account, whatever it says it is
        claim = Properties(PacketTypes.PUBLISH)
        claim.UserProperty = [("client", RECORDER)]
        r = ask(central, f"{P}/client/{CENTRAL_USER}/request/person/register",
                {"request_id": "reg-o1", "person": "o1", "role": "officer"}, props=claim)
        assert r["ok"], r
        # ... and on the SPEC form (granted to the central platform only): mqtt:central
        assert ask(central, f"{P}/request/person/register",
                   {"request_id": "reg-o2", "person": "o2", "role": "officer"})["ok"]
        assert [(s, x["person"]) for s, x in journal(d, "person.registered")] == [
            (f"mqtt:{CENTRAL_USER}", "o1"), ("mqtt:central", "o2")]

        # clients without the central role cannot publish a request: not on the SPEC form, not
        # under the central platform's name, not a command outside their class. 3.1.1: the
        # broker drops them silently (MQTT 5 would disconnect); an allowed request of the same
        # client right after is answered, so the dropped ones would have been answered by then.
        denied = [(DESK, f"{P}/request/person/register"),
                  (DESK, f"{P}/client/{CENTRAL_USER}/request/person/register"),
                  (DESK, f"{P}/client/{DESK}/request/person/register"),
                  (RECORDER, f"{P}/client/{RECORDER}/request/person/register"),
                  (INGEST, f"{P}/request/person/register"),
                  (MONITOR_USER, f"{P}/client/{MONITOR_USER}/request/person/register"),
                  (CENTRAL_USER, f"{P}/client/{CENTRAL_USER}/request/alarm/ack"),
                  (CENTRAL_USER, f"{P}/request/recording/state")]
        for i, (user, topic) in enumerate(denied):
            c = client(user, protocol=mqtt.MQTTv311)
            c.publish(topic, json.dumps({"request_id": f"denied-{i}", "person": f"intruder-{i}", "role": "officer",
                                         "alarm_id": "x:1", "by": "o1", "room": "interrogation-1",
                                         "recording": True, "source": "r"}))
        desk = client(DESK, protocol=mqtt.MQTTv311)
        r = ask(desk, f"{P}/client/{DESK}/request/alarm/ack", {"request_id": "ack-1", "alarm_id": "x:1", "by": "o1"})
        assert r["error"]["code"] == "not_found", r          # reached the daemon, as the duty desk
        assert not central.received(lambda m: json_of(m).get("request_id", "").startswith("denied-"))
        assert [x["person"] for _, x in journal(d, "person.registered")] == ["o1", "o2"]

        # the recorder: recording state, as itself (an impersonation of it was refused above)
        rec = client(RECORDER, protocol=mqtt.MQTTv311)
        assert ask(rec, f"{P}/client/{RECORDER}/request/recording/state",
                   {"request_id": "rec-1", "room": "interrogation-1", "recording": True, "source": RECORDER})["ok"]
        assert [s for s, _ in journal(d, "recording.started")] == [f"mqtt:{RECORDER}"]

        # ingest: events/resend answered on its own reply topic (the gateway may write there)
        ingest = client(INGEST, [f"{INGEST}/replies/#"], client_id=INGEST)
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = f"{INGEST}/replies/demo-center"
        props.CorrelationData = b"rs-1"
        ingest.publish(f"{P}/client/{INGEST}/request/events/resend",
                       json.dumps({"request_id": "rs-1", "from_seq": 1, "to_seq": 3}), props=props)
        m = ingest.wait_for(lambda m: m.topic == f"{INGEST}/replies/demo-center", 10)
        assert json_of(m)["ok"] and json_of(m)["data"]["count"] == 3, json_of(m)
        # its budget (4 a minute here) is its own: spent, busy names it ...
        ingest.publish(f"{P}/client/{INGEST}/request/events/resend",
                       json.dumps({"request_id": "rs-2", "from_seq": 1, "to_seq": 3}), props=props)
        m = ingest.wait_for(lambda m: json_of(m).get("request_id") == "rs-2", 10)
        assert json_of(m)["error"]["code"] == "busy", json_of(m)
        assert f"over mqtt:{INGEST}'s own limit of 4" in json_of(m)["error"]["message"]
        # ... and the central platform's is untouched
        r = ask(central, f"{P}/client/{CENTRAL_USER}/request/events/resend",
                {"request_id": "rs-3", "from_seq": 1, "to_seq": 3})
        assert r["ok"], r

        # ids that name files: refused before anything is done
        for i, bad in enumerate((".", "..", ".hidden", "-rf")):
            r = ask(central, f"{P}/client/{CENTRAL_USER}/request/person/register",
                    {"request_id": f"bad-{i}-{uuid.uuid4().hex[:6]}", "person": bad, "role": "officer"})
            assert r["error"]["code"] == "bad_request" and "not a valid id" in r["error"]["message"], r
            r = ask(central, f"{P}/client/{CENTRAL_USER}/request/camera/snapshot",
                    {"request_id": f"cam-{i}-{uuid.uuid4().hex[:6]}", "camera": bad})
            assert r["error"]["code"] == "bad_request", r
        assert len(journal(d, "person.registered")) == 2
    finally:
        for c in clients:
            c.close()
        d.stop()
        broker.stop()
