"""Alarms: acknowledge (ISA-18.2), shelve and unshelve."""
from __future__ import annotations

from pydantic import Field, StrictStr

from gateway.commands.checks import officer, refusal
from gateway.commands.services import Services, WriterView
from gateway.commands.table import ID, Args, Verb, arg, command
from rules.model import Draft, format_ts


class Ack(Args):
    alarm_id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")
    by: str = Field(pattern=ID)
    note: StrictStr | None = Field(default=None, max_length=1000)


class Shelve(Args):
    code: str = Field(pattern=r"^[a-z_]{1,64}$")
    scope: str | None = Field(default=None, pattern=ID)
    for_s: float = Field(gt=0)
    reason: StrictStr = Field(min_length=1, max_length=500)
    by: str = Field(pattern=ID)


class Unshelve(Args):
    code: str = Field(pattern=r"^[a-z_]{1,64}$")
    scope: str | None = Field(default=None, pattern=ID)
    by: str = Field(pattern=ID)


def _ack_request(a, tz: str | None) -> dict:
    # The same alarm/ack handler as over MQTT: a bad officer id is a one-line bad_request.
    req = {"alarm_id": a.alarm_id, "by": a.by}
    if a.note:
        req["note"] = a.note
    return req


@command("alarm/ack", Ack, example={"alarm_id": "lone_interrogation:int-1:1", "by": "o1", "note": "seen"},
         cli=(Verb(("ack",), "acknowledge an alarm (does not clear it; needs the daemon)", _ack_request,
                   lambda a, d: f"acknowledged {a.alarm_id} by {a.by}", arguments=(
                       arg("alarm_id"),
                       arg("--by", required=True, help="the acknowledging officer's person id"),
                       arg("--note"))),))
def alarm_ack(s: Services, core: WriterView, a: Ack, src: str):
    """ISA-18.2: an alarm is acknowledged once, while active or after it
    cleared (return-to-normal-unacknowledged), by a registered officer."""
    book = core.engine.book
    rec = book.standing.get(a.alarm_id)
    if rec is None:
        who = book.recent_acked.get(a.alarm_id)
        if who is not None:
            raise refusal("conflict", f"alarm {a.alarm_id} was already acknowledged by {who}")
        raise refusal("not_found", f"no active or unacknowledged alarm {a.alarm_id}")
    officer(core, a.by, "acknowledging an alarm", present=False)
    if rec["ack"] is not None:
        raise refusal("conflict", f"alarm {a.alarm_id} was already acknowledged by "
                                       f"{rec['ack'].get('by')} at {rec['ack'].get('ts')}")
    data = {k: v for k, v in rec["data"].items() if k not in ("acknowledged", "shelved", "suppressed_by")}
    data.update({"by": a.by, "note": a.note, "active": rec["active"]})
    d = Draft("alarm.acknowledged", data, src)
    return {"alarm_id": a.alarm_id, "active": rec["active"], "event_id": d.id}, [d]


def _scope_known(cfg, scope: str) -> bool:
    if any(r.id == scope for r in cfg.rooms) or any(dv.id == scope for dv in cfg.devices):
        return True
    return any(door.door == scope for dv in cfg.devices for door in (getattr(dv, "doors", None) or []))


@command("alarm/shelve", Shelve,
         example={"code": "tag_low_battery", "scope": "waiting-1", "for_s": 3600.0,
                  "reason": "new batteries ordered", "by": "o1"})
def alarm_shelve(s: Services, core: WriterView, a: Shelve, src: str):
    from rules.catalog import CATALOG
    spec = CATALOG.get(a.code)
    if spec is None:
        raise refusal("bad_request", f"code: unknown alarm code {a.code!r}")
    if spec.legal:
        basis = "; ".join(spec.legal_basis) or "DOMAIN v3"      # station_impostor cites no article
        raise refusal("forbidden", f"{a.code} is a legal alarm ({basis}) and can never be shelved")
    officer(core, a.by, "shelving an alarm", present=False)
    cfg = s.config()
    max_h = cfg.alarms.max_shelve_h
    if a.for_s > max_h * 3600:
        raise refusal("bad_request", f"for_s: at most {max_h * 3600:g} s ([alarms] max_shelve_h = {max_h:g})")
    if a.scope is not None and not _scope_known(cfg, a.scope):
        raise refusal("bad_request", f"scope: no room, device or door {a.scope!r} in the config")
    until = format_ts(core.clock() + a.for_s)
    d = Draft("alarm.shelved", {"code": a.code, "scope": a.scope, "until": until, "reason": a.reason,
                                "by": a.by}, src)
    return {"code": a.code, "scope": a.scope, "until": until, "event_id": d.id}, [d]


@command("alarm/unshelve", Unshelve, example={"code": "tag_low_battery", "scope": "waiting-1", "by": "o1"})
def alarm_unshelve(s: Services, core: WriterView, a: Unshelve, src: str):
    book = core.engine.book
    if book.shelf_key(a.code, a.scope) not in book.shelves:
        where = f" for {a.scope}" if a.scope else ""
        raise refusal("not_found", f"{a.code} is not shelved{where}")
    officer(core, a.by, "unshelving an alarm", present=False)
    d = Draft("alarm.unshelved", {"code": a.code, "scope": a.scope, "by": a.by}, src)
    return {"code": a.code, "scope": a.scope, "event_id": d.id}, [d]
