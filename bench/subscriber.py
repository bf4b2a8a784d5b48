"""A subscriber in its own process (so it does not share the GIL with the gateway).

    python bench/subscriber.py PORT TOPIC N OUTFILE [TIMEOUT_S]

Counts messages, records produce->receive latency where the payload carries data.t0,
writes {"n":…, "lat_ms":[…], "first":…, "last":…} to OUTFILE when N arrived or at timeout.
"""
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt

port, topic, n, out = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 600
seen = {"n": 0, "lat_ms": [], "first": None, "last": None}
done = threading.Event()


def on_message(c, u, m):
    now = time.time()
    seen["n"] += 1
    if seen["first"] is None:
        seen["first"] = now
    seen["last"] = now
    if b'"t0"' in m.payload:
        seen["lat_ms"].append((now - json.loads(m.payload)["data"]["t0"]) * 1000)
    if seen["n"] >= n:
        done.set()


c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
ready = threading.Event()
c.on_connect = lambda c, u, f, rc, p=None: (c.subscribe(topic, 1), ready.set())
c.on_message = on_message
c.connect("127.0.0.1", port)
c.loop_start()
ready.wait(10)
time.sleep(0.3)
print("ready", flush=True)
done.wait(timeout)
c.loop_stop()
with open(out, "w") as f:
    json.dump(seen, f)
