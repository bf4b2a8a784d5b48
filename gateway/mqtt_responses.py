"""Where a request's answer is published: ``P/response/<command>`` always, and an MQTT 5
Response Topic when the requester gave an allowed one (docs/security.md)."""
from __future__ import annotations

from typing import Any

from gateway.config import Config


def respond(uplink: Any, config: Config, req, payload: dict) -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    # The Correlation Data goes back on both topics: a client that matches answers
    # by it (MQTT 5 request/response) must find it on P/response/<command> too.
    corr = None
    if req.correlation is not None and config.mqtt.protocol == 5:
        corr = Properties(PacketTypes.PUBLISH)
        corr.CorrelationData = req.correlation
    uplink.respond(f"{config.prefix}/response/{req.command}", payload, corr)
    if req.response_topic and response_topic_allowed(config.prefix, req.response_topic):
        props = Properties(PacketTypes.PUBLISH)
        if req.correlation is not None:
            props.CorrelationData = req.correlation
        uplink.respond(req.response_topic, payload, props)


def response_topic_allowed(prefix: str, topic: str) -> bool:
    """An MQTT 5 Response Topic is honoured unless it has wildcards or points into the
    gateway's own tree outside response/: a requester must never make the gateway
    publish where consumers expect its events, alarms or state."""
    if "#" in topic or "+" in topic or "\0" in topic:
        return False
    own = prefix + "/"
    return not topic.startswith(own) or topic.startswith(own + "response/")
