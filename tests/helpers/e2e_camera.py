"""People and alarms of the camera end-to-end tests (a suspect and an officer with wristbands)."""
from __future__ import annotations

from helpers.central import Central, P
from helpers.polling import poll


S1, O1 = 0x11111111, 0x22222222


def people(c: Central) -> None:
    assert c.request("person/register", person="s1", role="suspect", gender="male", case_id="c1", case_type="criminal")["ok"]
    assert c.request("wristband/bind", tag=f"{S1:08X}", person="s1")["ok"]
    assert c.request("person/register", person="o1", role="officer")["ok"]
    assert c.request("wristband/bind", tag=f"{O1:08X}", person="o1")["ok"]


def alarms(sub, code: str) -> list[dict]:
    return sub.payloads(f"{P}/alarms/{code}")


def wait(pred, timeout: float) -> bool:
    """True once pred() is; False if it is not within ``timeout`` s (for ``assert wait(...)``)."""
    return bool(poll(pred, timeout, interval=0.1))
