"""A hostile client on the broker (issue 30 item 7), run as a child process:

    python tests/helpers/hostile_forger.py PORT CENTER COUNT

It watches the center's events and, for each of the first COUNT genuine ones,
at once publishes a forged event at the next seq: a correct hash, linked to the
event it saw, so that it reaches ingest before the gateway's own next event.
Prints "ready" when subscribed, then "forged <seq> <id>" for each forgery."""
from __future__ import annotations

import json
import sys
import threading

import paho.mqtt.client as mqtt

from rules.model import Draft, parse_ts, seal   # the tree is importable: the project is installed editable


def main() -> None:
    port, center, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    forged = [0]
    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="forger", protocol=mqtt.MQTTv311)

    def on_connect(client, userdata, flags, rc, props=None):
        client.subscribe(f"casegate/{center}/events/#", qos=1)

    def on_subscribe(*a):
        print("ready", flush=True)

    def on_message(client, userdata, msg):
        env = json.loads(msg.payload)
        if env.get("source") == "forger" or forged[0] >= count:
            return
        ev = seal(Draft("card.swiped", {"card": "F0F0F0F0F0", "reader": "r", "room": "x", "person": None},
                        "forger"), env["seq"] + 1, center, env["hash"], parse_ts(env["ts"]) + 0.001)
        client.publish(f"casegate/{center}/events/card/swiped", ev.to_json(), qos=1)
        forged[0] += 1
        print(f"forged {ev.seq} {ev.id}", flush=True)
        if forged[0] >= count:
            done.set()

    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    c.connect("127.0.0.1", port)
    c.loop_start()
    done.wait(120)
    c.loop_stop()
    c.disconnect()


if __name__ == "__main__":
    main()
