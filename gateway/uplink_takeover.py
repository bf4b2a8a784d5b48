"""Tell "another client took my client id" apart from network trouble (issue 24).

Two gateways with one client id (a copied config) knock each other off the broker
about once a second; before this, each logged "broker connection lost" every time
and nothing said why. The broker says it one of two ways:

* MQTT 5: the DISCONNECT it sends to the old connection carries reason code 0x8E
  "Session taken over". Certain: the cause is known at the first one.
* MQTT 3.1.1, and MQTT 5 with brokers that do not send it (mosquitto 2.0.11, the
  tests' broker, just closes the socket; paho reports 0x80): no reason. Network trouble shows up
  as failed connects or connections that last a while; a takeover as a pattern
  of connections the broker accepted (CONNACK 0) and then closed almost at once.
  ``STREAK`` such drops, each within ``SHORT_S`` of its CONNACK, make the cause
  "suspected" (mosquitto drops the older of two same-id clients immediately, and
  paho reconnects after 1 s, so two fighting gateways produce one such drop per
  second each: measured 3 in under 5 s with the tests' mosquitto).

One episode = one log line (ERROR, with the cause and the fix) and one report to
the daemon, which journals a ``device.error`` for device ``uplink`` (so it is on
the record) and shows it in ``status``/``doctor``. A connection that then stays up
``STABLE_S`` ends the episode (the daemon journals ``device.online`` for ``uplink``).

Pure bookkeeping on an injectable clock: the paho callbacks feed it; tests and the
uplink process share it.
"""
from __future__ import annotations

import time
from typing import Callable

SESSION_TAKEN_OVER = 0x8E
SHORT_S = 5.0          # a drop this soon after CONNACK counts towards the 3.1.1 pattern
STREAK = 3             # that many in a row: suspected takeover
STABLE_S = 60.0        # up this long: the episode is over


def reason_value(reason_code) -> int | None:
    """paho's ReasonCode (MQTT 5) or int/None (3.1.1) -> int or None."""
    if reason_code is None:
        return None
    v = getattr(reason_code, "value", reason_code)
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


class TakeoverDetector:
    def __init__(self, client_id: str, protocol: int, clock: Callable[[], float] = time.monotonic):
        self.client_id = client_id
        self.protocol = protocol
        self.clock = clock
        self._connected_at: float | None = None
        self._streak = 0
        self.cause: str | None = None          # set while an episode lasts
        self.episodes = 0

    def connected(self) -> None:
        self._connected_at = self.clock()

    def connect_failed(self) -> None:
        """A connect attempt failed (refused, timed out, TLS): the broker or the network
        is away, which a takeover never shows (the other client's broker is up and lets
        us straight back in). Measured without this: three quick broker restarts in a row
        looked like a takeover."""
        self._streak = 0

    def disconnected(self, reason_code, from_server: bool = False) -> str | None:
        """Feed every disconnect after a CONNACK; returns the cause when an episode
        begins (the caller logs it once), else None. ``from_server``: the broker sent a
        DISCONNECT packet (MQTT 5), whose reason code then says what it was."""
        now = self.clock()
        up_s = None if self._connected_at is None else now - self._connected_at
        self._connected_at = None
        if up_s is not None and up_s >= STABLE_S:
            self._streak = 0
            self.cause = None
        code = reason_value(reason_code)
        if code == SESSION_TAKEN_OVER:
            cause = (f"another client connected with our client id {self.client_id!r} and the broker "
                     f"dropped us (MQTT 5 reason 0x8E session taken over)")
        elif from_server:            # e.g. 0x8B server shutting down: the broker said why
            self._streak = 0
            return None
        elif up_s is not None and up_s < SHORT_S:
            self._streak += 1
            if self._streak < STREAK:
                return None
            cause = (f"another client probably uses our client id {self.client_id!r}: the broker closed "
                     f"{self._streak} connections in a row within {SHORT_S:g} s of accepting them "
                     f"(the broker gave no reason code)")
        else:
            self._streak = 0
            return None
        if self.cause is not None:
            return None                          # same episode: said already
        self.cause = cause
        self.episodes += 1
        return cause

    def still_up(self) -> bool:
        """Called periodically: True when a connection has now been up STABLE_S and
        an episode was open (it is over)."""
        if self.cause is None or self._connected_at is None:
            return False
        if self.clock() - self._connected_at >= STABLE_S:
            self.cause = None
            self._streak = 0
            return True
        return False

    FIX = ("give every gateway its own [mqtt] client_id (empty = casegate-<center id>); look for a copied "
           "config or a second box with this center id")
