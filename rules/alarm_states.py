"""Alarm lifecycle as ISA-18.2 / IEC 62682 and OPC UA Part 9 describe it.

Each alarm has two independent states: ``active`` (its condition holds) and
``acknowledged`` (an officer has seen it). An alarm stands - it is listed on
``P/state/alarms`` and in ``casegate alarms --active`` - while it is active or
unacknowledged: "return to normal unacknowledged" is a state of its own, so a
single interrogation that lasted 40 s leaves an alarm someone must review.
Once it is both cleared and acknowledged it leaves the standing list.

On top of that, three things an operator can do to an alarm's annunciation,
each a journaled event:

* **Escalation.** An unacknowledged *critical* alarm is re-announced as
  ``alarm.escalated`` level 1 ``[alarms] escalate_after_s`` after it was
  raised, then level 2, 3, ... every ``escalate_every_s`` until acknowledged.
  It keeps escalating after it clears: ISA-18.2's return-to-normal-
  unacknowledged alarm still needs a response, and the oversight department
  wants proof that someone looked at a 40-second lone interrogation.
  A timer fired late (a restart after downtime) jumps straight to the level
  due by then: one event, not a burst of catch-up levels — also when the rule
  timers of a long downtime fire one by one in the same advance (``fire``'s
  horizon). ``escalate_max_level`` (default 3, SPEC §1a v3; 0 = no limit)
  stops it at a level: on the scripted rule day (tests/rules/rule_day.py),
  where nobody acknowledges, no limit produced 1,555 escalations. The standing
  alarm keeps its ``since``: state/alarms and ``casegate top`` go on showing
  how long it is unacknowledged.
* **Shelving** (``alarm.shelved`` [code, scope, until, reason, by]) of a
  *facility* alarm for at most ``max_shelve_h``: alarms of that code (and
  scope: a room, a device, a door, a subject) are still raised and journaled,
  flagged ``shelved: true``, but not published on ``P/alarms/...`` and not
  escalated. Legal alarms (CATALOG[code].legal) can never be shelved: the
  request handler refuses, and this module ignores a journaled shelve of one.
  Expiry unshelves by itself (``alarm.unshelved`` with ``by`` null) and
  whatever is still active is re-sent unflagged (published).
* **Maintenance** (``device.maintenance`` [device, until, reason, by]): the
  device's facility alarms - as each rule declares the equipment its alarms
  concern (rules.declare.Equipment: device_offline of it, alarms whose details
  name it, tag alarms in a reader's rooms, door_held_open of its doors) - are
  suppressed the same way (``suppressed_by: "maintenance"``) until
  ``device.maintenance_ended``. Legal alarms are never suppressed: a covered
  interrogation-room camera is an alarm whoever is working on it.

Everything here is a fold of journaled events plus timers on the engine's
clock, so restart and replay rebuild the same states and re-derive the same
escalations and expiries. The book is plain data (dicts, floats, strings) so
a checkpoint can serialise it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rules.model import Draft, format_duration, format_local, parse_ts
from rules.catalog import CATALOG
from rules.declare import AlarmSpec

# Recently acknowledged-and-cleared alarm ids kept to answer a repeated ack
# with ``conflict`` instead of ``not_found``.
RECENT_ACKED_MAX = 1000
# Defaults of [alarms] (gateway.config.AlarmsConfig), for engines built on a
# config object without the table (rules never import the application).
DEFAULTS = {"escalate_after_s": 120.0, "escalate_every_s": 300.0, "escalate_max_level": 3, "max_shelve_h": 8.0,
            "max_maintenance_h": 72.0, "max_unacked_cleared": 1000}
FLAGS = ("shelved", "suppressed_by")


def setting(config, name: str):
    a = getattr(config, "alarms", None)
    return getattr(a, name, DEFAULTS[name]) if a is not None else DEFAULTS[name]


@dataclass
class AlarmBook:
    # alarm_id -> {"data": last alarm data, "active": bool, "ack": {by, note, ts} | None,
    #              "level": escalation level reached, "next_esc": epoch | None,
    #              "announced": ever sent unsuppressed, "since": epoch}
    standing: dict[str, dict[str, Any]] = field(default_factory=dict)
    # "code|scope" (scope "" = every alarm of the code) -> {code, scope, until, reason, by}
    shelves: dict[str, dict[str, Any]] = field(default_factory=dict)
    # device -> {until, reason, by}
    maintenance: dict[str, dict[str, Any]] = field(default_factory=dict)
    recent_acked: dict[str, str] = field(default_factory=dict)   # alarm_id -> by
    dropped_unacked: int = 0     # cleared-unacked alarms dropped over max_unacked_cleared
    due: float | None = None     # earliest escalation / expiry, None = nothing pending

    # ---- queries --------------------------------------------------------------------
    def shelf_key(self, code: str, scope: str | None) -> str:
        return f"{code}|{scope or ''}"

    def listing(self) -> list[dict[str, Any]]:
        """P/state/alarms: every standing alarm's data + its states."""
        out = []
        for aid, rec in self.standing.items():
            d = {k: v for k, v in rec["data"].items() if k not in FLAGS and k != "acknowledged"}
            d["active"] = rec["active"]
            d["acknowledged"] = rec["ack"] is not None
            d["shelved"] = bool(rec["data"].get("shelved"))
            if rec["data"].get("suppressed_by"):
                d["suppressed_by"] = rec["data"]["suppressed_by"]
            d["ack"] = rec["ack"]
            d["escalation_level"] = rec["level"]
            out.append(d)
        return out

    def counts(self) -> dict[str, int]:
        active = sum(1 for r in self.standing.values() if r["active"])
        unacked = sum(1 for r in self.standing.values() if r["ack"] is None)
        return {"standing": len(self.standing), "active": active, "unacknowledged": unacked,
                "cleared_unacknowledged": len(self.standing) - active,
                "shelves": len(self.shelves), "maintenance": len(self.maintenance),
                "dropped_unacknowledged": self.dropped_unacked}

    # ---- the fold of alarm events (no drafts; also used by the CLI over a journal) -----
    def note(self, ev, config=None, shift: float = 0.0) -> None:
        """Fold one event. ``shift``: the engine's clock_shift (sum of forward wall-clock
        steps): times in the data are journal time, the book keeps rule time."""
        typ = ev.type
        d = ev.data

        def at(ts):
            return round((_epoch(ts, ev.epoch + shift) - shift) * 1000) / 1000 if shift else _epoch(ts, ev.epoch)
        if typ == "alarm.raised":
            aid = d["alarm_id"]
            rec = self.standing.get(aid)
            if rec is None:
                rec = self.standing[aid] = {"data": d, "active": True, "ack": None, "level": 0,
                                            "next_esc": None, "announced": False,
                                            "since": at(d.get("since"))}
            rec["data"] = d
            rec["active"] = True
            if not d.get("shelved"):
                rec["announced"] = True
            self._schedule(rec, config)
        elif typ == "alarm.cleared":
            rec = self.standing.get(d["alarm_id"])
            if rec is None:
                return
            rec["data"] = d
            rec["active"] = False
            if rec["ack"] is not None or not rec["announced"]:
                # acknowledged, or never announced (raised and cleared while shelved):
                # nothing is left for anyone to respond to
                self._retire(d["alarm_id"], rec)
            else:
                self._bound(config)
            self._schedule(rec, config)
        elif typ == "alarm.acknowledged":
            aid = d["alarm_id"]
            rec = self.standing.get(aid)
            if rec is None or rec["ack"] is not None:
                return
            rec["ack"] = {"by": d.get("by"), "note": d.get("note"), "ts": ev.ts}
            rec["next_esc"] = None
            if not rec["active"]:
                self._retire(aid, rec)
        elif typ == "alarm.escalated":
            rec = self.standing.get(d.get("alarm_id"))
            if rec is not None and isinstance(d.get("level"), int) and d["level"] > rec["level"]:
                rec["level"] = d["level"]
                self._schedule(rec, config)
        elif typ == "alarm.shelved":
            code = d.get("code")
            spec = CATALOG.get(code)
            if spec is None or spec.legal:      # never: the handler refuses; a forged event is ignored
                return
            self.shelves[self.shelf_key(code, d.get("scope"))] = {
                "code": code, "scope": d.get("scope"), "until": at(d.get("until")),
                "reason": d.get("reason"), "by": d.get("by"), "since": ev.epoch}
        elif typ == "alarm.unshelved":
            self.shelves.pop(self.shelf_key(d.get("code"), d.get("scope")), None)
        elif typ == "device.maintenance":
            dev = d.get("device")
            if dev:
                self.maintenance[dev] = {"until": at(d.get("until")),
                                         "reason": d.get("reason"), "by": d.get("by"), "since": ev.epoch}
        elif typ == "device.maintenance_ended":
            self.maintenance.pop(d.get("device"), None)
        self.recompute_due()

    def _retire(self, aid: str, rec: dict) -> None:
        del self.standing[aid]
        if rec["ack"] is not None:
            self.recent_acked[aid] = rec["ack"].get("by") or ""
            while len(self.recent_acked) > RECENT_ACKED_MAX:
                del self.recent_acked[next(iter(self.recent_acked))]

    def _bound(self, config) -> None:
        """Keep the cleared-unacknowledged set bounded: the oldest goes, counted."""
        limit = setting(config, "max_unacked_cleared")
        cleared = [aid for aid, r in self.standing.items() if not r["active"]]
        for aid in cleared[:max(0, len(cleared) - limit)]:
            del self.standing[aid]
            self.dropped_unacked += 1

    def _schedule(self, rec: dict, config) -> None:
        d = rec["data"]
        if (rec["ack"] is not None or d.get("severity") != "critical" or d.get("shelved")):
            rec["next_esc"] = None
            return
        cap = int(setting(config, "escalate_max_level"))
        if cap and rec["level"] >= cap:
            rec["next_esc"] = None          # escalated as far as this center wants
            return
        after = float(setting(config, "escalate_after_s"))
        every = float(setting(config, "escalate_every_s"))
        rec["next_esc"] = rec["since"] + after + rec["level"] * every

    def recompute_due(self) -> None:
        due = None
        for rec in self.standing.values():
            n = rec["next_esc"]
            if n is not None and (due is None or n < due):
                due = n
        for s in self.shelves.values():
            if due is None or s["until"] < due:
                due = s["until"]
        for m in self.maintenance.values():
            if due is None or m["until"] < due:
                due = m["until"]
        self.due = due


def _epoch(ts: Any, default: float) -> float:
    if isinstance(ts, (int, float)):
        return float(ts)
    if isinstance(ts, str):
        try:
            return parse_ts(ts)
        except ValueError:
            pass
    return default


# ---- suppression: is this alarm shelved or under maintenance? -----------------------------
# What equipment an alarm concerns is what its rule declares (rules.declare.Equipment):
# the details keys naming it, the subject being the device, a device of some capability
# covering the alarm's room or owning the door that is its subject.
def _equipment(spec: AlarmSpec, data: dict) -> set[str]:
    det = data.get("details") or {}
    return {v for k in spec.equipment.details if isinstance(v := det.get(k), str)}


def _shelf_matches(shelf: dict, spec: AlarmSpec, subject: str, data: dict) -> bool:
    scope = shelf["scope"]
    if not scope:
        return True
    return (scope == data.get("room") or scope == subject or subject.startswith(scope + ":")
            or scope in _equipment(spec, data))


def _maintenance_covers(engine, device: str, spec: AlarmSpec, subject: str, data: dict) -> bool:
    eq = spec.equipment
    if eq.subject and (subject == device or subject.startswith(device + ":")):
        return True
    if device in _equipment(spec, data):
        return True
    caps, rooms, doors = engine.alarm_devices.get(device, (frozenset(), (), ()))
    if eq.room_of is not None and eq.room_of in caps and data.get("room") in rooms:
        return True
    return eq.door_of is not None and eq.door_of in caps and subject in doors


def suppression(engine, key: tuple[str, str], data: dict) -> str | None:
    """"shelved", "maintenance" or None for the alarm ``key`` with ``data``."""
    book: AlarmBook = engine.book
    if not book.shelves and not book.maintenance:
        return None
    code, subject = key
    spec = CATALOG.get(code)
    if spec is None or spec.legal:
        return None
    for s in book.shelves.values():
        if s["code"] == code and _shelf_matches(s, spec, subject, data):
            return "shelved"
    for dev in book.maintenance:
        if _maintenance_covers(engine, dev, spec, subject, data):
            return "maintenance"
    return None


def flag(engine, key: tuple[str, str], data: dict) -> dict:
    """Set or remove the suppression flags of ``data`` (in place); returns it."""
    why = suppression(engine, key, data)
    if why is None:
        data.pop("shelved", None)
        data.pop("suppressed_by", None)
    else:
        data["shelved"] = True
        data["suppressed_by"] = why
    return data


def reflag(engine, t: float) -> list[Draft]:
    """After a shelve, unshelve or maintenance change: re-send every active
    alarm whose suppression changed (``alarm.raised`` with the same id: an
    update). Unsuppressed ones are thereby re-published."""
    out: list[Draft] = []
    for key, data in list(engine.alarms.items()):
        new = flag(engine, key, dict(data))
        if new.get("shelved") != data.get("shelved") or new.get("suppressed_by") != data.get("suppressed_by"):
            engine.alarms[key] = new
            out.append(Draft("alarm.raised", new, "rules", engine.journal_time(t)))
    return out


# ---- the engine's side: fold + timers ----------------------------------------------------------
FOLDED = frozenset({"alarm.raised", "alarm.cleared", "alarm.acknowledged", "alarm.escalated",
                    "alarm.shelved", "alarm.unshelved", "device.maintenance", "device.maintenance_ended"})
REFLAG_ON = frozenset({"alarm.shelved", "alarm.unshelved", "device.maintenance", "device.maintenance_ended"})


def fold(engine, ev, t: float) -> list[Draft]:
    engine.book.note(ev, engine.config, engine.clock_shift)
    if ev.type in REFLAG_ON:
        return reflag(engine, t)
    return []


class _Raised:
    """A timer's ``alarm.raised`` draft seen as the event it will be (for ``note``)."""

    def __init__(self, draft: Draft, t: float):
        self.type, self.data, self.epoch, self.ts = draft.type, draft.data, t, None


def note_timer_alarms(engine, drafts, t: float) -> None:
    """An alarm a rule timer raises inside one ``Engine.advance`` is known to the book at
    once, not only when the writer folds its draft back: over a long gap (a start after
    downtime), the later catch-up drafts, each folded at its own past time, would
    otherwise escalate it once per draft (issue 28 item 3). Folding the draft later is
    then an update of a standing alarm, which keeps its level."""
    book: AlarmBook = engine.book
    for d in drafts:
        if getattr(d, "type", None) == "alarm.raised" and d.data.get("alarm_id") not in book.standing:
            book.note(_Raised(d, t), engine.config, engine.clock_shift)


def reschedule(engine) -> None:
    """A reloaded [alarms] table applies to the escalations still pending."""
    book: AlarmBook = engine.book
    for rec in book.standing.values():
        book._schedule(rec, engine.config)
    book.recompute_due()


def fire(engine, limit: float, horizon: float | None = None) -> list[Draft]:
    """Escalations and expiries due by ``limit``, each at its own time, in time order.

    ``horizon`` (≥ limit; the end of the whole advance this is part of) decides an
    escalation's level: one ``Engine.advance`` over a long gap (a restart after a weekend
    down, whose rule timers fire one after the other in between) escalates each alarm once,
    to the level due at its end, not once per timer (issue 28 item 3: 3 days down with
    1,002 standing alarms queued 33,386 catch-up levels)."""
    horizon = limit if horizon is None else max(limit, horizon)
    book: AlarmBook = engine.book
    out: list[Draft] = []
    rounds = 0
    while book.due is not None and book.due <= limit:
        rounds += 1
        if rounds > 100_000:                  # a bug, not a workload: never hang the writer
            engine.errors += 1
            break
        d = book.due
        drafts = _fire_one(engine, d, max(d, engine.now), limit, horizon)   # never back in time
        if drafts:
            # a tick with an effect moves the clock (see Engine.advance)
            # (drafts carry journal time; the engine's clock is rule time)
            engine.now = max(engine.now, round((drafts[-1].ts - engine.clock_shift) * 1000) / 1000)
            out.extend(drafts)
        book.recompute_due()
        if not drafts and book.due == d:      # nothing fired and the same item still due: never spin
            break
    return out


def _fire_one(engine, d: float, t: float, limit: float, horizon: float | None = None) -> list[Draft]:
    book: AlarmBook = engine.book
    cfg = engine.config
    horizon = limit if horizon is None else horizon
    for aid, rec in book.standing.items():
        if rec["next_esc"] is not None and rec["next_esc"] <= d:
            after = float(setting(cfg, "escalate_after_s"))
            every = float(setting(cfg, "escalate_every_s"))
            # the highest level due by the horizon (a late timer jumps, it does not burst)
            level = 1 + int((horizon - rec["since"] - after) // every)
            level = max(level, rec["level"] + 1)
            cap = int(setting(cfg, "escalate_max_level"))
            if cap:
                level = min(level, cap)
            if level <= rec["level"]:           # capped (a reload lowered it): nothing more
                rec["next_esc"] = None
                return []
            # stamped when that level fell due (never after this tick, never back in time)
            at = max(min(rec["since"] + after + (level - 1) * every, limit), engine.now)
            rec["level"] = level
            book._schedule(rec, cfg)
            return [_escalated(engine, rec, level, at)]
    for key, s in list(book.shelves.items()):
        if s["until"] <= d:
            del book.shelves[key]
            return [Draft("alarm.unshelved", {"code": s["code"], "scope": s["scope"], "by": None,
                                              "reason": "expired"}, "rules", engine.journal_time(t))]
    for dev, m in list(book.maintenance.items()):
        if m["until"] <= d:
            del book.maintenance[dev]
            return [Draft("device.maintenance_ended", {"device": dev, "by": None, "reason": "expired"},
                          "rules", engine.journal_time(t))]
    return []


def _escalated(engine, rec: dict, level: int, t: float) -> Draft:
    a = rec["data"]
    unacked = round(t - rec["since"], 3)
    tz = getattr(getattr(engine.config, "center", None), "timezone", None)
    since_local = format_local(engine.journal_time(rec["since"]), tz)
    state_zh = "" if rec["active"] else "（已恢复，未确认）"
    state_en = "" if rec["active"] else " (cleared, not acknowledged)"
    msg = a.get("message") or {}
    data = {"alarm_id": a["alarm_id"], "code": a["code"], "severity": a.get("severity"),
            "room": a.get("room"), "persons": list(a.get("persons") or []), "since": a.get("since"),
            "level": level, "unacked_s": unacked, "active": rec["active"],
            "message": {"zh": f"升级{level}级：{since_local}起{format_duration(unacked)}未确认{state_zh} - {msg.get('zh', '')}",
                        "en": f"Escalation level {level}: unacknowledged for {format_duration(unacked)} "
                              f"since {since_local}{state_en} - {msg.get('en', '')}"},
            "legal_basis": list(a.get("legal_basis") or [])}
    return Draft("alarm.escalated", data, "rules", engine.journal_time(t))


def device_map(config) -> dict[str, tuple[frozenset[str], tuple[str, ...], tuple[str, ...]]]:
    """device -> (capabilities, rooms it covers, door ids) for maintenance matching; each
    device config says these itself (drivers/common/config.py DeviceBase)."""
    return {dev.id: (frozenset(dev.capabilities), tuple(dict.fromkeys(r for _, r in dev.room_refs())),
                     tuple(dev.door_ids()))
            for dev in getattr(config, "devices", []) or []}
