"""Interrogation rules: lone_interrogation, officer_left_interrogation,
rest_overdue, minor_without_guardian.

Who counts: an *investigator* is a registered person with role ``officer``;
``staff`` (guards, auxiliary police) and ``visitor`` never count as
investigators. Tags not bound to anybody count as nobody.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from rules.base import NONE, ROOM_EVENTS, Facts, local, on_reconfigure, person_rule, room_rule, rule
from rules.citations import ADMIN, CRIM, PROC, PSAL
from rules.declare import RuleSettings, Spells, alarm
from rules.families.protections import RECORDING_EVENTS, recorder_evidence

INTERROGATION = frozenset({"interrogation"})


def _occupants(ctx, room):
    """(suspects, officers): registered persons present in room, in arrival order."""
    suspects, officers = [], []
    persons = ctx.state.persons
    for who in ctx.state.rooms.get(room, ()):
        p = persons.get(who)
        if p is None or p.left:
            continue
        if p.role == "suspect":
            suspects.append(p)
        elif p.role == "officer":
            officers.append(p)
    return suspects, officers


class LoneInterrogation(RuleSettings):
    grace_s: float = Field(default=30, ge=0)
    window_s: float = Field(default=300, ge=0)      # absences within this window add up to grace_s (0 = each alone)
    min_absence_s: float = Field(default=5, ge=0)   # shorter spells (tag flapping between stations) do not count
    min_investigators: int = Field(default=2, ge=1)
    # case types for which one investigator is enough, only while the room records (治安管理处罚法 2025 art. 108)
    relaxed_case_types: list[Literal["criminal", "administrative"]] = []


alarm("lone_interrogation", "critical", "单人讯问", "Interrogation with fewer than two investigators",
      LoneInterrogation, legal=True, order=10,
      basis=(f"{CRIM} 第118条", f"{PROC} 第202条", f"{ADMIN} 第52条", f"{PSAL} 第108条"))


@room_rule("lone_interrogation", INTERROGATION, on=ROOM_EVENTS + RECORDING_EVENTS)
def lone_interrogation(ctx, room, t):
    """≥ 2 investigators at an interrogation: 刑事诉讼法 art. 118 (讯问的时候，侦查人员不得少于二人);
    公安机关办理刑事案件程序规定 (2020) art. 202; 公安机关办理行政案件程序规定 (2019) art. 52.

    A suspect in an ``interrogation`` room with fewer than ``min_investigators``
    officers for ``grace_s``. When every suspect present has a case type listed
    in ``relaxed_case_types`` **and the room is recording** (治安管理处罚法 2025
    art. 108: one officer only with full audio/video recording; see
    rules.protections.recorder_evidence: the room's recorder, never a report by
    hand), one investigator is enough (off by
    default). Subject: the room. Clears when enough officers are back or no
    suspect is left.
    """
    c = ctx.state.counts.get(room)
    if not c or not c.get("suspect"):
        return None
    s = ctx.settings["lone_interrogation"]
    need = s.min_investigators
    n = c.get("officer", 0)
    if n >= need:
        return None
    suspects, officers = _occupants(ctx, room)
    relaxed = s.relaxed_case_types
    recording = bool(relaxed) and recorder_evidence(ctx, room, t)
    if relaxed and recording and all(p.case_type in relaxed for p in suspects):
        need = 1
    if n >= need:
        return None
    sus = sorted(p.id for p in suspects)
    offs = sorted(p.id for p in officers)

    def text():
        rl = ctx.room_label(room)
        return (f"{rl} 嫌疑人{'、'.join(ctx.label(x) for x in sus)}在场，办案民警{n}人（应不少于{need}人）",
                f"{rl}: suspect {', '.join(ctx.label(x) for x in sus)} with {n} investigator(s), "
                f"{need} required")
    details = {"investigators": offs, "required": need}
    if relaxed:
        details["recording"] = recording        # why the relaxation did (not) apply
    return Facts(room, sus + offs, text, None, details)


def _in_interrogation(ctx, pid) -> str | None:
    rooms = ctx.state.presence.get(pid)
    if rooms:
        rt = ctx.room_types
        for r in rooms:
            if rt.get(r) == "interrogation":
                return r
    return None


class MinorGuardian(Spells):
    grace_s: float = Field(default=10, ge=0)
    guardian_kinds: list[str] = ["guardian"]   # 法定代理人/合适成年人 (DOMAIN v3)


alarm("minor_without_guardian", "major", "未成年人无监护人", "Minor questioned without guardian", MinorGuardian,
      legal=True, order=270,
      basis=(f"{CRIM} 第281条", f"{PROC} 第323条", f"{PROC} 第324条", f"{ADMIN} 第75条", f"{PSAL} 第98条"))


@person_rule("minor_without_guardian", INTERROGATION, room_keys=("visitor:", "for:"))
def minor_without_guardian(ctx, pid, t):
    """Minors: a guardian (法定代理人) or appropriate adult (合适成年人) must be
    present: 刑事诉讼法 art. 281; 程序规定 arts. 323–324; 行政程序规定 art. 75;
    治安管理处罚法 2025 art. 98.

    A minor suspect in an ``interrogation`` room with no ``visitor`` whose
    ``visitor_kind`` is in ``guardian_kinds`` **and whose ``for`` is that
    minor** present in that room, for ``grace_s``: another minor's guardian
    represents that minor only. Subject: the minor.
    """
    p = ctx.person(pid)
    if p is None or not p.minor or p.role != "suspect":
        return None
    room = _in_interrogation(ctx, pid)
    if room is None:
        return None
    kinds = ctx.settings["minor_without_guardian"].guardian_kinds
    c = ctx.state.counts.get(room, {})
    others = []
    if any(c.get(f"visitor:{k}") for k in kinds):
        persons = ctx.state.persons
        for who in ctx.state.rooms.get(room, ()):
            q = persons.get(who)
            if q is None or q.left or q.role != "visitor" or q.visitor_kind not in kinds:
                continue
            if q.for_person == pid:
                return None
            others.append(who)
    others.sort()

    def text():
        rl = ctx.room_label(room)
        return (f"{rl} 未成年嫌疑人{ctx.label(pid)}无其法定代理人或合适成年人在场",
                f"{rl}: minor {ctx.label(pid)} without his or her guardian or appropriate adult")
    return Facts(room, [pid], text, None, {"guardian_kinds": list(kinds), "guardians_for_others": others})


# ---- officer_left_interrogation -------------------------------------------------------
class OfficerLeft(RuleSettings):
    grace_s: float = Field(default=60, ge=0)


OL = alarm("officer_left_interrogation", "minor", "审讯离位", "Officer left an interrogation in progress",
           OfficerLeft, order=30)


def _ol_check(ctx, subject, t):
    """The officer is still away from the room while a suspect of the session
    he left is still in it."""
    entry = ctx.memo[OL].get("away", {}).get(subject)
    if entry is None:
        return None
    room, officer, session = entry
    st = ctx.state
    p = st.persons.get(officer)
    if p is None or p.left or room in st.presence.get(officer, ()):
        return None
    occ = st.rooms.get(room)
    if not occ:
        return None
    sus = [x for x in session if x in occ]       # present => registered and not departed
    if not sus:
        return None
    remaining = ctx.state.counts.get(room, {}).get("officer", 0)

    def text():
        rl = ctx.room_label(room)
        return (f"{rl} 民警{ctx.label(officer)}离开正在进行的讯问",
                f"{rl}: officer {ctx.label(officer)} left the interrogation of "
                f"{', '.join(ctx.label(x) for x in sus)}")
    return Facts(room, [officer] + sus, text, None,
                 {"officer": officer, "officers_in_room": remaining})


@rule(OL, on=ROOM_EVENTS, check=_ol_check)
def officer_left_interrogation(ctx, ev, t):
    """审讯离位: an officer leaves an interrogation in progress (a suspect present)
    for more than ``grace_s``, even if a colleague remains. Source: DOMAIN.md
    catalog; it backs the two-investigator rule (刑事诉讼法 art. 118, 程序规定
    art. 202) but is not itself a statutory article. The session is the
    suspects present when he left. Subject: (room, officer). Clears when the
    officer is back in the room, or none of those suspects is left in it.
    Work is O(persons the event concerns): sessions are indexed by person.
    """
    m = ctx.memo[OL]
    away = m.setdefault("away", {})      # subject -> (room, officer, session suspects)
    watch = m.setdefault("watch", {})    # person -> {subject: None}
    out = NONE
    if ev.type == "presence.left":
        room = ev.data.get("room")
        who = ev.data.get("person")
        if who and ctx.room_types.get(room) == "interrogation":
            p = ctx.person(who)
            subject = f"{room}|{who}"
            if (p is not None and p.role == "officer" and subject not in away
                    and room not in ctx.state.presence.get(who, ())):
                suspects, _ = _occupants(ctx, room)
                if suspects:
                    session = tuple(sorted(s.id for s in suspects))
                    away[subject] = (room, who, session)
                    for x in (who,) + session:
                        watch.setdefault(x, {})[subject] = None
    for who in ctx.dirty_people:
        subs = watch.get(who)
        if not subs:
            continue
        for subject in list(subs):
            facts = _ol_check(ctx, subject, t)
            r = ctx.hold(OL, subject, t, facts)
            if r:
                out = out + r if out else r
            if facts is None:
                room, officer, session = away.pop(subject)
                for x in (officer,) + session:
                    w = watch.get(x)
                    if w is not None:
                        w.pop(subject, None)
                        if not w:
                            del watch[x]
    return out


# ---- rest_overdue --------------------------------------------------------------------------
class RestOverdue(RuleSettings):
    limit_h: float = Field(default=4, gt=0)
    # An absence from interrogation rooms shorter than this (a door transit, a
    # toilet trip) does not end the continuous period; the alarm clears and
    # the period restarts once the suspect has been out this long (a real
    # break) or a rest/meal is recorded (person/rest).
    break_min: float = Field(default=30, gt=0)


RO = alarm("rest_overdue", "major", "未保证休息", "Rest overdue: continuous interrogation too long", RestOverdue,
           legal=True, basis=(f"{CRIM} 第119条", f"{PROC} 第201条", f"{ADMIN} 第71条"), order=60)


RO_EVENTS = ("presence.entered", "presence.left", "person.left", "wristband.bound",
             "wristband.unbound", "person.rest")


@rule(RO, on=RO_EVENTS, suspects_only=RO_EVENTS,
      timer=lambda ctx, pid, kind, d: _ro_timer(ctx, pid, kind, d))
def rest_overdue(ctx, ev, t):
    """Food and necessary rest must be guaranteed and recorded: 刑事诉讼法 art. 119
    (应当保证犯罪嫌疑人的饮食和必要的休息时间); 程序规定 art. 201; 行政程序规定 art. 71.

    A suspect continuously in ``interrogation`` rooms for more than ``limit_h``
    raises (at that deadline). Only two things end the continuous period:
    a recorded rest or meal (``person.rest``: the period restarts at its end,
    ``to``, or at the record when no end is given), or a real break: out of
    every interrogation room for ``break_min`` (default 30 min). A toilet trip
    or a walk down the corridor does not. The alarm clears when the period
    ends (with the reason) or at ``person.left``. Subject: the suspect.
    """
    m = ctx.memo[RO]          # suspect -> [period start, out since | None]
    out = NONE
    room = ev.data.get("room")
    if room is not None and ctx.room_types.get(room) != "interrogation":
        for pid in ctx.dirty_suspects:
            if pid in m:
                break
        else:
            return NONE      # a move that cannot start, continue or end an interrogation period
    limit = ctx.settings[RO].limit_h * 3600.0
    for pid in ctx.dirty_suspects:
        p = ctx.state.persons[pid]
        s = m.get(pid)
        if p.left:
            if s is not None:
                del m[pid]
                ctx.disarm(RO, pid, "limit")
                ctx.disarm(RO, pid, "break")
                out = _cat(out, ctx.clear(RO, pid, t))
            continue
        room = _in_interrogation(ctx, pid)
        if ev.type == "person.rest":
            if s is None and room is None:
                continue
            start, end, _ = p.rests[-1] if p.rests else (t, None, "")
            restart = end if end is not None else t
            out = _cat(out, ctx.clear_because(RO, pid, t, "rest recorded"))
            if s is None:
                s = m[pid] = [restart, None]
            else:
                s[0] = restart
            if s[1] is None:
                ctx.arm(RO, pid, restart + limit, "limit")
            continue
        if room is not None:
            if s is None:
                m[pid] = [t, None]
                ctx.arm(RO, pid, t + limit, "limit")
            elif s[1] is not None:           # back before a real break: still continuous
                s[1] = None
                ctx.disarm(RO, pid, "break")
                if t >= s[0] + limit and ctx.alarm(RO, pid) is None:
                    out = _cat(out, ctx.raise_(RO, pid, t, _ro_facts(ctx, pid, room, s[0], t)))
                elif ctx.armed(RO, pid, "limit") is None and t < s[0] + limit:
                    ctx.arm(RO, pid, s[0] + limit, "limit")
        elif s is not None and s[1] is None:
            s[1] = t
            ctx.arm(RO, pid, t + ctx.settings[RO].break_min * 60.0, "break")
    return out


def _cat(out, r):
    if r:
        return out + r if out else r
    return out


def _ro_facts(ctx, pid, room, start, t):
    from rules.model import format_ts
    h = (t - start) / 3600.0
    rl = ctx.room_label(room)
    lim = ctx.settings[RO].limit_h
    return Facts(room, [pid], f"{rl} 嫌疑人{ctx.label(pid)}自{local(ctx, start)}起连续讯问已超过{lim:g}小时，"
                 f"无休息或饮食记录",
                 f"{rl}: suspect {ctx.label(pid)} in interrogation since {local(ctx, start)}, more than "
                 f"{lim:g} h without a recorded rest or meal",
                 {"period_since": format_ts(start), "limit_h": ctx.settings[RO].limit_h,
                  "hours": round(h, 3)})


@on_reconfigure(RO)
def _ro_reconfigure(ctx, t):
    """A reloaded limit_h / break_min applies to periods under way, as a restart
    (a replay under the new config) would apply it."""
    out = []
    limit = ctx.settings[RO].limit_h * 3600.0
    for pid, (start, out_since) in sorted(ctx.memo[RO].items()):
        if out_since is not None:
            ctx.arm(RO, pid, out_since + ctx.settings[RO].break_min * 60.0, "break")
            continue
        if ctx.alarm(RO, pid) is not None:
            if start + limit > t:
                out += ctx.clear_because(RO, pid, t, "limit changed")
                ctx.arm(RO, pid, start + limit, "limit")
        else:
            ctx.arm(RO, pid, start + limit, "limit")
    return out


def _ro_timer(ctx, pid, kind, d):
    m = ctx.memo[RO]
    s = m.get(pid)
    if s is None:
        return NONE
    if kind == "limit":
        room = _in_interrogation(ctx, pid)
        if room is None or s[1] is not None:
            return NONE          # out on a short break: raised on return if still continuous
        return ctx.raise_(RO, pid, d, _ro_facts(ctx, pid, room, s[0], d))
    # kind == "break": out long enough, the period is over
    del m[pid]
    ctx.disarm(RO, pid, "limit")
    return ctx.clear_because(RO, pid, d, "break")
