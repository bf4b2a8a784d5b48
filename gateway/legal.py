"""What the law asks of a request before it changes a legal matter (DOMAIN v3 "who may
decide, whose records count"; SPEC §3 v3): approvals of longer limits, the law's steps,
the 送押 clock kept, protections derived from the data held, attributable records.

The command handlers (gateway/commands/) call these inside the writer thread, against
the folded state; each raises :class:`RequestError` with a message that says how to do
it right. A refusal of a command listed in :data:`LEGAL_COMMANDS` is journaled as
``request.refused`` [command, code, by?] (:func:`refusal`), so the oversight department
(法制部门) sees what was tried, not only what was done.
"""
from __future__ import annotations

from typing import Any

from gateway.core import Core, RequestError
from rules.model import format_local
from rules.families.custody_time import ARTICLES, LAW, allowed_limits, default_limit, effective_limit
from rules.state import MINOR_BELOW_AGE, VULNERABLE_BELOW_AGE, Person

# Commands that touch a legal matter: their forbidden / bad_request refusals are journaled.
LEGAL_COMMANDS = frozenset({"person/register", "person/update", "person/rest", "person/checkout",
                            "custody/order", "recording/state", "identification/start", "identification/end"})
REFUSALS_JOURNALED = frozenset({"forbidden", "bad_request"})

# 继续盘问规定 art. 9: continued inquiry is not for a filed criminal case; a criminal
# summons is not continued as an inquiry either.
APART = frozenset({frozenset({"criminal", "inquiry"})})
# The law's steps where it names them: 继续盘问 12 -> 24 -> 48, never 12 -> 48 (art. 17).
STEPS = {"inquiry": LAW["inquiry"]}
BASIS_EXPIRED = "程序规定(刑) 第200条 (the summons ends at once when the time is up); 继续盘问规定 第17条"


def refusal_journaled(command: str, args: Any, err: RequestError) -> bool:
    """Whether a refused request is journaled as ``request.refused`` (SPEC §3 v3): a legal
    matter refused as forbidden or bad_request (its data: gateway/commands/ refused_data)."""
    return command in LEGAL_COMMANDS and err.code in REFUSALS_JOURNALED and args is not None


def approver(core: Core, pid: str | None, what: str) -> Person:
    """``approved_by`` must be a registered officer with ``approver = true`` (办案部门负责人)."""
    if not pid:
        raise RequestError("forbidden", f"{what} needs approved_by = an officer registered with approver = true "
                                        f"(办案部门负责人), and a reason")
    p = core.state.persons.get(pid)
    if p is None or p.left or p.role != "officer" or not p.approver:
        who = "not registered" if p is None or p.left else (
            f"a {p.role}" if p.role != "officer" else "an officer without approver = true")
        raise RequestError("forbidden", f"{what} needs approved_by = an officer registered with approver = true "
                                        f"(办案部门负责人); {pid} is {who}")
    return p


def derive_protection(a_role: str, age: int | None, minor: bool | None, case_type: str | None,
                      vulnerable: bool) -> tuple[bool, bool]:
    """(minor, vulnerable) from the data held (DOMAIN v3): under 18 is a minor — a
    contradicting ``minor = false`` is refused (未成年人保护法 art. 2); under 16 in
    continued inquiry is vulnerable (继续盘问规定 art. 10)."""
    is_minor = bool(minor)
    if a_role == "suspect" and age is not None and age < MINOR_BELOW_AGE:
        if minor is False:
            raise RequestError("bad_request", f"age {age} is under {MINOR_BELOW_AGE}: a minor (未成年人保护法 第2条); "
                                              f"leave minor out or send minor = true")
        is_minor = True
    if a_role == "suspect" and age is not None and age < VULNERABLE_BELOW_AGE and case_type == "inquiry":
        vulnerable = True
    return is_minor, vulnerable


def check_lengthening(core: Core, p: Person | None, case_type: str, old_h: float | None, new_h: float,
                      approved_by: str | None, now: float, arrived: float) -> None:
    """A limit moves up only with an approver, before the current limit expires, one
    legal step at a time (DOMAIN v3). ``old_h`` None: a first registration, compared
    with the law's base limit."""
    base = allowed_limits(case_type, False)[0] if case_type in LAW else None
    ref = old_h if old_h is not None else base
    if ref is None or new_h <= ref + 1e-9:
        return
    what = (f"a first registration above the base limit of {base:g} h" if old_h is None
            else f"lengthening the limit from {old_h:g} to {new_h:g} h")
    if old_h is not None:
        expired_at = arrived + old_h * 3600.0
        if now >= expired_at:
            tz = core.config.center.timezone
            raise RequestError("bad_request", f"{what}: the {old_h:g} h limit expired at "
                                              f"{format_local(expired_at, tz)}; a limit is lengthened only before "
                                              f"it expires ({BASIS_EXPIRED})")
    steps = STEPS.get(case_type)
    if steps is not None:
        nxt = next((x for x in steps if x > ref + 1e-9), None)
        if nxt is not None and new_h > nxt + 1e-9:
            raise RequestError("bad_request", f"{what}: {case_type} moves one step at a time "
                                              f"({' -> '.join(f'{x:g}' for x in steps)} h); ask for {nxt:g} h first "
                                              f"({ARTICLES[case_type]}; 公安机关适用继续盘问规定 第17条)")
    approver(core, approved_by, what)


def check_register(core: Core, a, again: Person | None, now: float, arrived: float | None) -> dict[str, Any]:
    """person/register of a suspect: gender, derived protections, the limit it starts with
    (the center's default written into the event: a reload never moves it), approval of a
    first limit above the base one; a re-registration of a present suspect changes no limit."""
    out: dict[str, Any] = {}
    minor, vulnerable = derive_protection(a.role, a.age, a.minor if "minor" in a.model_fields_set else None,
                                          a.case_type, a.vulnerable)
    out["minor"], out["vulnerable"] = minor, vulnerable
    if a.role != "suspect":
        return out
    if a.gender is None:
        raise RequestError("bad_request", "a suspect needs gender: male | female (the sex-separation and search "
                                          "rules judge by it)")
    settings = core.engine.settings["detention_timeout"]
    if again is not None:
        old = effective_limit(settings, again.case_type, again.limit_h, again.vulnerable)
        new = effective_limit(settings, a.case_type, a.limit_h if a.limit_h is not None else again.limit_h,
                              vulnerable) if a.case_type == again.case_type else None
        if new is None or abs(new - old) > 1e-9 or vulnerable != again.vulnerable:
            raise RequestError("bad_request", f"{a.person} is present: a re-registration changes no limit "
                                              f"(case_type {again.case_type}, {old:g} h); change it with person/update "
                                              f"(by, reason; approved_by to lengthen)")
        out["case_type"], out["limit_h"], out["vulnerable"] = again.case_type, again.limit_h, again.vulnerable
        return out
    if a.limit_h is None:
        out["limit_h"] = default_limit(settings, a.case_type, vulnerable)
        return out
    check_lengthening(core, None, a.case_type, None, a.limit_h, a.approved_by, now,
                      arrived if arrived is not None else now)
    if a.limit_h > allowed_limits(a.case_type, vulnerable)[0] and not a.reason:
        raise RequestError("bad_request", "a limit above the base one needs a reason (the approval's grounds)")
    return out


def check_update(core: Core, p: Person, a, changes: dict[str, Any], now: float, detained: float | None) -> None:
    """person/update: measures kept apart, lengthening approved and in time, the 送押
    clock kept (issue 30.5)."""
    settings = core.engine.settings["detention_timeout"]
    if p.role == "suspect":
        new_type = changes.get("case_type", p.case_type)
        if p.case_type and new_type != p.case_type and frozenset({p.case_type, new_type}) in APART:
            raise RequestError("bad_request", f"case_type {p.case_type} -> {new_type}: continued inquiry is not "
                                              f"for a filed criminal case, nor the other way (公安机关适用继续盘问规定 "
                                              f"第9条); end this stay and start the other measure anew")
        new_vul = changes.get("vulnerable", p.vulnerable)
        _, derived = derive_protection("suspect", p.age, None, new_type, False)
        if derived and not new_vul:
            raise RequestError("bad_request", f"{p.id} is {p.age}: under "
                                              f"{VULNERABLE_BELOW_AGE} in continued inquiry is vulnerable "
                                              f"(公安机关适用继续盘问规定 第10条)")
        new_vul = new_vul or derived
        old_h = effective_limit(settings, p.case_type, p.limit_h, p.vulnerable)
        if "limit_h" in changes:
            lim = changes["limit_h"]
        elif new_type != p.case_type:
            lim = None
        else:
            lim = p.limit_h
        if lim is None:
            lim = default_limit(settings, new_type, new_vul)
            if new_type != p.case_type:
                changes["limit_h"] = lim    # the new measure's default, fixed now (a reload never moves it)
        new_h = effective_limit(settings, new_type, lim, new_vul)
        if p.detained_at is None and new_h > old_h + 1e-9:
            check_lengthening(core, p, new_type, old_h, new_h, getattr(a, "approved_by", None), now, p.arrived_at)
    if "detained_at" in changes and p.detained_at is not None:
        tz = core.config.center.timezone
        if detained is None:
            raise RequestError("bad_request", f"detained_at was set ({format_local(p.detained_at, tz)}) and is kept "
                                              f"for the stay: the 送押 deadline never moves (刑事诉讼法 第85条)")
        if detained > p.detained_at + 1e-3:
            raise RequestError("bad_request", f"detained_at keeps the earliest value of the stay "
                                              f"({format_local(p.detained_at, tz)}): a later one would move the 24 h "
                                              f"送押 deadline (刑事诉讼法 第85条; 程序规定(刑) 第126条)")
        if detained < p.detained_at - 1e-3:
            approver(core, getattr(a, "approved_by", None), "correcting detained_at")


def check_rest(core: Core, p: Person, start: float, end: float | None, now: float) -> None:
    """A rest or meal is refused for a span the presence record puts the suspect in an
    interrogation room (刑事诉讼法 art. 119: rest is time out of questioning)."""
    if p.role != "suspect":
        return
    types = core.engine.room_types
    stop = end if end is not None else now
    tz = core.config.center.timezone
    for room, since, until in p.room_log:
        if types.get(room) != "interrogation":
            continue
        hi = until if until is not None else now
        if since < stop and hi > start:
            raise RequestError("bad_request", f"{p.id} was in {room} (interrogation) from {format_local(since, tz)}"
                                              f" to {format_local(hi, tz) if until is not None else 'now'}: a rest "
                                              f"or meal cannot be recorded for a span of questioning")


def recorder_report(core: Core, room: str, source: str, journal_source: str) -> bool:
    """True when a ``recording/state`` is the room's configured recorder (审讯主机)
    speaking for itself: ``source`` is the room's ``recorder`` and the request came from
    that client (journal source ``mqtt:<recorder>``; with identities from the broker,
    its MQTT user name). Anything else is an operator's report by hand (DOMAIN v3)."""
    for r in core.config.rooms:
        if r.id == room:
            rec = getattr(r, "recorder", "") or ""
            return bool(rec) and source == rec and journal_source == f"mqtt:{rec}"
    return False
