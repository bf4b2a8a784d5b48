"""Presence rules: unattended_suspect, collusion_risk, unauthorized_exit,
procedure_skipped, female_search_without_female_staff.
"""
from __future__ import annotations

from pydantic import Field

from rules.base import NONE, ROOM_EVENTS, Facts, is_card, person_rule, rule
from rules.citations import ADMIN, ATTENDANCE, ATTENDANCE_CRIMINAL, CRIM, PROC, PSAL
from rules.declare import Equipment, RuleSettings, Spells, alarm

ATTEND = ATTENDANCE + ATTENDANCE_CRIMINAL     # every article an attendance alarm may cite (rules/citations.py)

ATTENDANTS = frozenset({"officer", "staff"})


def _cat(out, r):
    if r:
        return out + r if out else r
    return out


class Unattended(RuleSettings):
    grace_s: float = Field(default=60, ge=0)
    window_s: float = Field(default=300, ge=0)      # unattended spells within this window add up to grace_s
    min_absence_s: float = Field(default=5, ge=0)   # shorter spells (tag flapping between stations) do not count
    # rooms where a suspect meeting his lawyer (a lawyer visitor present) needs no attendant
    lawyer_rooms: list[str] = []


alarm("unattended_suspect", "critical", "无人看管", "Suspect unattended", Unattended, legal=True, basis=ATTEND,
      order=20)


@person_rule("unattended_suspect", room_keys=("attendant", "visitor:", "for:"))
def unattended_suspect(ctx, pid, t):
    """无人看管. Source: DOMAIN.md (the Ministry's one-stop center requirement to
    warn against unattended suspects); no single statutory article is cited.

    A suspect present in a room (any type) where no ``officer`` or ``staff`` is
    present, for ``grace_s``. With presence in several rooms at once (zone
    overlap), an attendant in any of them is enough. Visitors never attend,
    except that in the rooms listed in ``lawyer_rooms`` a suspect meeting his
    lawyer (a ``lawyer`` visitor whose ``for`` is the suspect or unset) is
    left alone with him by design (the lawyer's meeting is not overheard).
    A suspect seen nowhere is not judged here (see tag_signal_lost).
    Subject: the suspect.
    """
    p = ctx.person(pid)
    if p is None or p.role != "suspect":
        return None
    rooms = ctx.state.presence.get(pid)
    if not rooms:
        return None
    counts = ctx.state.counts
    lawyer_rooms = ctx.settings["unattended_suspect"].lawyer_rooms
    for room in rooms:
        c = counts.get(room)
        if c and c.get("attendant"):
            return None
        if c and c.get("visitor:lawyer") and room in lawyer_rooms and _lawyer_with(ctx, room, pid):
            return None
    room = next(iter(rooms))

    def text():
        rl = ctx.room_label(room)
        return (f"{rl} 嫌疑人{ctx.label(pid)}无民警或工作人员看管",
                f"{rl}: suspect {ctx.label(pid)} without an officer or staff member")
    return Facts(room, [pid], text, None, {"rooms": list(rooms)})


def _lawyer_with(ctx, room, pid) -> bool:
    persons = ctx.state.persons
    for who in ctx.state.rooms.get(room, ()):
        q = persons.get(who)
        if (q is not None and not q.left and q.role == "visitor" and q.visitor_kind == "lawyer"
                and (q.for_person is None or q.for_person == pid)):
            return True
    return False


class FemaleSearch(Spells):
    grace_s: float = Field(default=10, ge=0)    # people walk in one after another


alarm("female_search_without_female_staff", "major", "女性检查无女性工作人员",
      "Female suspect searched without female staff", FemaleSearch, legal=True, order=260,
      basis=(f"{CRIM} 第132条", f"{CRIM} 第139条", f"{PROC} 第217条", f"{PROC} 第225条",
             f"{ADMIN} 第84条", f"{PSAL} 第103条"))


@person_rule("female_search_without_female_staff", frozenset({"security_check"}),
             room_keys=("female_attendant", "visitor:"))
def female_search_without_female_staff(ctx, pid, t):
    """Women are searched/examined by women: 刑事诉讼法 arts. 132, 139 (检查妇女的
    身体，应当由女工作人员或者医师进行); 程序规定 arts. 217, 225; 行政程序规定
    art. 84; 治安管理处罚法 2025 art. 103.

    A female suspect in a ``security_check`` room with no female ``officer`` or
    ``staff`` and no doctor (a ``doctor`` visitor, of either sex: 或者医师)
    present in that room, for ``grace_s``. Subject: the suspect. A suspect of
    unknown gender counts as female (DOMAIN v3: an unknown is an alarm, not a pass).
    """
    p = ctx.person(pid)
    if p is None or p.role != "suspect" or p.gender == "male":
        return None
    rt = ctx.room_types
    counts = ctx.state.counts
    for room in ctx.state.presence.get(pid, ()):
        c = counts.get(room, {})
        if rt.get(room) != "security_check" or c.get("female_attendant") or c.get("visitor:doctor"):
            continue
        rl = ctx.room_label(room)
        if p.gender is None:
            return Facts(room, [pid], f"{rl} 性别未登记的嫌疑人{ctx.label(pid)}检查时无女性工作人员在场",
                         f"{rl}: suspect {ctx.label(pid)} of unregistered gender with no female officer or staff",
                         {"gender": None})
        return Facts(room, [pid], f"{rl} 女性嫌疑人{ctx.label(pid)}检查时无女性工作人员在场",
                     f"{rl}: female suspect {ctx.label(pid)} with no female officer or staff", {})
    return None


# ---- collusion_risk ----------------------------------------------------------------------------
class Collusion(Spells):
    grace_s: float = Field(default=5, ge=0)


CR = alarm("collusion_risk", "critical", "串供风险", "Co-suspects of one case together", Collusion,
           legal=True, basis=(f"{PROC} 第202条", f"{ADMIN} 第72条"), order=100)


def _case_groups(ctx, case: str) -> list[tuple[tuple[str, ...], dict[str, list[str]]]]:
    """The connected room groups holding ≥ 2 suspects of ``case``: [(persons,
    {room: persons there})], persons sorted. Rooms are connected when marked
    ``adjacent`` (either direction) or when one suspect is seen in both (zone
    overlap). A room with an approved identification session for the case
    (``identification.started``) does not count: the session is supervised.
    O(rooms + their occupants)."""
    key = f"case:{case}"
    st = ctx.state
    sessions = st.identifications
    persons = st.persons
    members: dict[str, list[str]] = {}
    for room, c in st.counts.items():
        if not c.get(key) or case in sessions.get(room, ()):
            continue
        lst = []
        for who in st.rooms.get(room, ()):
            q = persons.get(who)
            if q is not None and q.case_id == case and q.role == "suspect" and not q.left:
                lst.append(who)
        if lst:
            members[room] = sorted(lst)
    if len(members) == 0:
        return []
    parent = {r: r for r in members}

    def find(r):
        while parent[r] != r:
            parent[r] = parent[parent[r]]
            r = parent[r]
        return r

    def union(a, b):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    adjacent = ctx.adjacent
    first_room: dict[str, str] = {}
    for room in sorted(members):
        for a in adjacent.get(room, ()):
            if a in members:
                union(room, a)
        for who in members[room]:
            if who in first_room:
                union(first_room[who], room)
            else:
                first_room[who] = room
    comps: dict[str, dict[str, list[str]]] = {}
    for room in sorted(members):
        comps.setdefault(find(room), {})[room] = members[room]
    out = []
    for rooms in comps.values():
        who = tuple(sorted({x for lst in rooms.values() for x in lst}))
        if len(who) >= 2:
            out.append((who, rooms))
    out.sort()
    return out


def _near_co_suspect(ctx, pid: str, case: str) -> bool:
    """Is another suspect of ``case`` in pid's rooms or next door? (Cheap: room
    counters only.) When not, and the case has no group pending or active,
    pid's move cannot have formed one: the common case costs O(neighbourhood)."""
    rooms = ctx.state.presence.get(pid)
    if not rooms:
        return False
    key = f"case:{case}"
    counts = ctx.state.counts
    adjacent = ctx.adjacent
    for r in rooms:
        for rr in (r,) + adjacent.get(r, ()):
            c = counts.get(rr)
            if c and c.get(key, 0) > (1 if rr in rooms else 0):
                return True
    return False


def _match(known: dict[str, tuple[str, ...]], groups: list) -> tuple[dict[str, tuple], list]:
    """Carry alarm subjects over to the new groups: each known subject (in its
    own order) takes the untaken group sharing most of its persons. Returns
    (subject -> group, groups left for new subjects). Deterministic, so replay
    assigns the same subjects."""
    taken: set[int] = set()
    res: dict[str, tuple] = {}
    for subject in sorted(known, key=_subject_order):
        mine = set(known[subject])
        best, overlap = None, 0
        for i, g in enumerate(groups):
            if i in taken:
                continue
            n = len(mine.intersection(g[0]))
            if n > overlap:
                best, overlap = i, n
        if best is not None:
            taken.add(best)
            res[subject] = groups[best]
    return res, [g for i, g in enumerate(groups) if i not in taken]


def _subject_order(subject: str):
    case, _, n = subject.rpartition("#")
    return (case, int(n) if n.isdigit() else 0)


def _cr_facts(ctx, case, group):
    who, rooms = group
    # the alarm's room: the one holding most of them (then the first by id)
    room = min(rooms, key=lambda r: (-len(rooms[r]), r))
    names = sorted(rooms)

    def text():
        labels = "、".join(ctx.label(x) for x in who)
        if len(names) == 1:
            return (f"{ctx.room_label(room)} 同案嫌疑人{labels}同处一室（案件{case}）",
                    f"{ctx.room_label(room)}: co-suspects {', '.join(ctx.label(x) for x in who)} "
                    f"of case {case} in one room")
        where = "、".join(ctx.room_label(r) for r in names)
        return (f"同案嫌疑人{labels}处于相邻房间{where}（案件{case}）",
                f"co-suspects {', '.join(ctx.label(x) for x in who)} of case {case} in adjacent rooms "
                f"{', '.join(ctx.room_label(r) for r in names)}")
    where = {}                      # person -> room (as before: one room per person)
    for r in names:
        for x in rooms[r]:
            where.setdefault(x, r)
    return Facts(room, list(who), text, None, {"case_id": case, "rooms": dict(sorted(where.items()))})


def _cr_check(ctx, subject, t):
    """A pending subject's grace ran out: is its group still there?"""
    case = subject.rpartition("#")[0]
    known = ctx.memo[CR].get("groups", {}).get(case, {})
    if subject not in known:
        return None
    res, _ = _match(known, _case_groups(ctx, case))
    g = res.get(subject)
    return _cr_facts(ctx, case, g) if g is not None else None


@rule(CR, on=ROOM_EVENTS + ("identification.started", "identification.ended", "person.updated"),
      check=_cr_check, suspects_only=ROOM_EVENTS + ("person.updated",))
def collusion_risk(ctx, ev, t):
    """Co-suspects are questioned separately (串供): 程序规定 art. 202;
    行政程序规定 art. 72 (as cited in DOMAIN.md).

    ONE alarm per case and connected room group (see _case_groups): two or
    more suspects of one ``case_id`` in the same room or in connected
    ``adjacent`` rooms for ``grace_s``. The alarm lists the persons and is
    updated (same alarm_id) as suspects come and go; it clears when fewer
    than 2 suspects of the case remain in the group. The only exemption is an
    approved identification session for the case in a room
    (``identification/start`` .. ``identification/end``); identification
    rooms are not exempt by type. Subject: ``<case>#<n>``. Only the cases of
    the moving suspects (or of the session) are re-evaluated.
    """
    m = ctx.memo[CR]
    groups = m.setdefault("groups", {})     # case -> {subject: persons} pending or active
    counter = m.setdefault("n", {})         # case -> last subject number used
    cases: dict[str, None] = {}
    if ev.type.startswith("identification."):
        case = ev.data.get("case_id")
        if case:
            cases[case] = None
    persons = ctx.state.persons
    re_registered = ev.type == "person.registered" or ev.type == "person.updated"
    for pid in ctx.dirty_suspects:
        p = persons.get(pid)
        if p is not None and p.case_id and (p.case_id in groups or _near_co_suspect(ctx, pid, p.case_id)):
            cases[p.case_id] = None
        if re_registered:
            for case, known in groups.items():     # a suspect re-registered under another case
                if case not in cases and any(pid in who for who in known.values()):
                    cases[case] = None
    out = NONE
    for case in cases:
        known = groups.get(case, {})
        now = _case_groups(ctx, case)
        if not known and not now:
            continue
        res, new = _match(known, now)
        for subject in [s for s in known if s not in res]:
            out = _cat(out, ctx.hold(CR, subject, t, None))
            del known[subject]
        for subject, g in res.items():
            known[subject] = g[0]
            out = _cat(out, ctx.hold(CR, subject, t, _cr_facts(ctx, case, g)))
        for g in new:
            n = counter.get(case, 0) + 1
            counter[case] = n
            subject = f"{case}#{n}"
            known[subject] = g[0]
            out = _cat(out, ctx.hold(CR, subject, t, _cr_facts(ctx, case, g)))
        if known:
            groups[case] = known
        else:                                   # nothing pending or active: forget the case
            groups.pop(case, None)
            counter.pop(case, None)
    return out


# ---- unauthorized_exit -------------------------------------------------------------------------
UE = alarm("unauthorized_exit", "critical", "越界/脱逃", "Suspect at an exit without checkout approval",
           legal=True, basis=ATTEND, equipment=Equipment(details=("door",)), order=110)


UE_EVENTS = ROOM_EVENTS + ("door.opened", "door.passed")


def _unapproved_suspect(ctx, who):
    p = ctx.state.persons.get(who)
    return p is not None and not p.left and p.role == "suspect" and not p.checkout_approved


def _is_exit_door(ctx, door, room) -> bool:
    return door in ctx.exit_doors or ctx.room_types.get(room) == "exit"


@rule(UE, on=UE_EVENTS, suspects_only=ROOM_EVENTS)
def unauthorized_exit(ctx, ev, t):
    """越界/脱逃 (escape prevention; DOMAIN v2: every way out). Without
    ``person.checkout_approved``:

    * a suspect present in an ``exit`` room (raised on ``presence.entered``),
    * an exit room's door, or any door marked ``exit = true``, opening while
      such a suspect is in the door's room,
    * a door tag passing **out** (``door.passed``) through an ``exit = true``
      door or an exit room's door reader.

    Raised at once (no grace). Subject: the suspect. Clears (with
    ``details.cleared_reason``) at ``person.left`` or when the suspect is seen
    back in a non-exit room and in no exit room. A checkout approved after
    the alarm never rewrites the escape: the alarm is cleared with the reason
    "checkout approved after the exit" and stays in the record. A suspect
    who leaves the exit room for nowhere keeps the alarm active.
    """
    out = NONE
    rt = ctx.room_types
    persons = ctx.state.persons
    presence = ctx.state.presence
    typ = ev.type
    if typ == "door.opened":
        room, door = ev.data.get("room"), ev.data.get("door")
        if not _is_exit_door(ctx, door, room):
            return NONE
        for who in list(ctx.state.rooms.get(room, ())):
            if _unapproved_suspect(ctx, who):
                out = _cat(out, ctx.raise_(UE, who, t, _ue_facts(ctx, who, room, door, "exit_door")))
        return out
    if typ == "door.passed":
        d = ev.data
        room, door = d.get("room"), d.get("door")
        who = d.get("person") or ctx.state.tag_owner.get(d.get("tag") or "")
        if d.get("direction") != "out" or not who or not _is_exit_door(ctx, door, room):
            return NONE
        if _unapproved_suspect(ctx, who):
            return ctx.raise_(UE, who, t, _ue_facts(ctx, who, room, door, "door_passed_out"))
        return NONE
    room = ev.data.get("room")
    exit_event = room is None or rt.get(room) == "exit"
    for pid in ctx.dirty_suspects:
        active = ctx.alarm(UE, pid)
        if active is None and not exit_event:
            continue         # neither at an exit nor alarmed: nothing can change
        p = persons[pid]
        if p.left or p.checkout_approved:
            if active is not None:
                why = "left the center" if p.left else "checkout approved after the exit"
                out = _cat(out, ctx.clear_because(UE, pid, t, why))
            continue
        rooms = presence.get(pid, ())
        exit_room = next((r for r in rooms if rt.get(r) == "exit"), None)
        if exit_room is not None:
            if active is None:
                out = _cat(out, ctx.raise_(UE, pid, t, _ue_facts(ctx, pid, exit_room, None, "exit_room")))
        elif active is not None and rooms and typ == "presence.entered":
            out = _cat(out, ctx.clear_because(UE, pid, t, "back inside"))
    return out


def _ue_facts(ctx, pid, room, door, way):
    rl = ctx.room_label(room)
    a = ctx.alarm(UE, pid)
    if door is None and a is not None:
        door = a["details"].get("door")
        way = a["details"].get("way", way)
    if way == "door_passed_out":
        zh = f"{rl} 嫌疑人{ctx.label(pid)}未经出区审批经出口门{door}外出"
        en = f"{rl}: suspect {ctx.label(pid)} passed out through exit door {door} without checkout approval"
    elif door:
        zh = f"{rl} 嫌疑人{ctx.label(pid)}未经出区审批在出口，门{door}已打开"
        en = f"{rl}: suspect {ctx.label(pid)} at the exit without checkout approval, door {door} opened"
    else:
        zh = f"{rl} 嫌疑人{ctx.label(pid)}未经出区审批到达出口"
        en = f"{rl}: suspect {ctx.label(pid)} at the exit without checkout approval"
    details = {"way": way}
    if door:
        details["door"] = door
    return Facts(room, [pid], zh, en, details)


# ---- procedure_skipped -------------------------------------------------------------------------
class ProcedureSkipped(RuleSettings):
    required: list[str] = ["security_check", "info_collection"]


PS = alarm("procedure_skipped", "major", "未按流程", "Interrogation before mandatory procedure steps",
           ProcedureSkipped, order=120)


@rule(PS, on=("presence.entered", "person.left"), suspects_only=("presence.entered", "person.left"))
def procedure_skipped(ctx, ev, t):
    """未按流程: a suspect is searched (人身安全检查) and registered (信息采集)
    before questioning. Source: DOMAIN.md alarm catalog (center procedure);
    no single statutory article is cited.

    A suspect entering an ``interrogation`` room without having been, since
    registration, in a room of every type in ``required`` raises at once
    (details.missing). Clears when the missing steps are done (the suspect
    enters the missing room types) or at ``person.left``. Subject: the suspect.
    """
    out = NONE
    rt = ctx.room_types
    entering = ev.data.get("room") if ev.type == "presence.entered" else None
    into_interrogation = entering is not None and rt.get(entering) == "interrogation"
    for pid in ctx.dirty_suspects:
        p = ctx.state.persons[pid]
        active = ctx.alarm(PS, pid)
        if active is None and (not into_interrogation or p.left):
            continue
        if p.left:
            out = _cat(out, ctx.clear(PS, pid, t))
            continue
        seen_types = ctx.state.visited_types(pid, rt)
        missing = [x for x in ctx.settings[PS].required if x not in seen_types]
        if active is not None:
            if not missing:
                out = _cat(out, ctx.clear(PS, pid, t))
            continue
        if not missing:
            continue
        rl = ctx.room_label(entering)
        out = _cat(out, ctx.raise_(PS, pid, t, Facts(
            entering, [pid], f"{rl} 嫌疑人{ctx.label(pid)}未经{'、'.join(_ZH.get(m, m) for m in missing)}即进入讯问室",
            f"{rl}: suspect {ctx.label(pid)} entered interrogation before {', '.join(missing)}",
            {"missing": missing})))
    return out


_ZH = {"security_check": "人身安全检查", "info_collection": "信息采集", "belongings": "随身物品保管",
       "entrance": "入区登记", "waiting": "候问"}


# ---- suspect_untracked -------------------------------------------------------------------------
class SuspectUntracked(Spells):
    grace_s: float = Field(default=60, ge=0)              # a suspect in the center without a bound tag


SU = alarm("suspect_untracked", "critical", "轨迹缺失", "Suspect in the center without a bound tag",
           SuspectUntracked, legal=True, basis=ATTEND, order=90)
SU_EVENTS = ("person.registered", "person.left", "wristband.bound", "wristband.unbound")


def _su_check(ctx, pid, t):
    p = ctx.person(pid)
    if p is None or p.role != "suspect":
        return None
    st = ctx.state
    for tag in st.person_tags.get(pid, ()):
        if not is_card(tag):
            return None             # a bound wristband tracks him
    rooms = st.presence.get(pid)
    room = next(iter(rooms)) if rooms else None
    former = sorted(st.former_tags.get(pid, ()))

    def text():
        where = f"，最后位置{ctx.room_label(room)}" if room else ""
        where_en = f", last seen in {ctx.room_label(room)}" if room else ""
        return (f"嫌疑人{ctx.label(pid)}在办案中心内未绑定手环{where}",
                f"suspect {ctx.label(pid)} in the center without a bound wristband{where_en}")
    return Facts(room, [pid], text, None, {"last_room": room, "unbound_tags": former})


@rule(SU, on=SU_EVENTS, check=_su_check, suspects_only=SU_EVENTS[1:])
def suspect_untracked(ctx, ev, t):
    """轨迹缺失 (the record must have no gap: DOMAIN v2; 程序规定 art. 202,
    行政程序规定 art. 72): a suspect in the center (registered, not left) with
    no bound wristband (8-hex active tag; a 125 kHz card is not tracking) for
    ``grace_s`` (60). Covers a suspect registered without a band and a band
    unbound while he is inside; the unbinding itself clears nothing (he is
    kept where he was last seen, rules.state). Clears when a band is bound or
    at ``person.left``. Subject: the suspect."""
    out = NONE
    # (a new person is no suspect yet when the event is touched, before the fold)
    who = [ev.data.get("person")] if ev.type == "person.registered" else ctx.dirty_suspects
    for pid in who:
        if pid:
            out = _cat(out, ctx.hold(SU, pid, t, _su_check(ctx, pid, t)))
    return out
