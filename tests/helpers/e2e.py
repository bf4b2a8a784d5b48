"""The small site of the end-to-end tests: two rooms and the zone reader that covers them."""
from __future__ import annotations


ROOMS = """
[[rooms]]
id = "waiting-1"
type = "waiting"
[[rooms]]
id = "interrogation-1"
type = "interrogation"
adjacent = ["waiting-1"]
"""


def zone_device(zport: int, presence_timeout_s: float) -> str:
    """The zone reader (platform server on zport) for the two rooms of ROOMS."""
    return f"""
[[devices]]
id = "zone"
driver = "zone_reader"
listen = "127.0.0.1:{zport}"
stations = {{ "ST-WAIT" = "waiting-1", "ST-INT1" = "interrogation-1" }}
presence_timeout_s = {presence_timeout_s:g}
heartbeat_s = 5
"""
