"""Presence rules: unattended_suspect, collusion_risk, unauthorized_exit,
procedure_skipped, female_search_without_female_staff.
"""
from __future__ import annotations

from rules.base import NONE, ROOM_EVENTS, Facts, is_card, person_rule, rule

ATTENDANTS = frozenset({"officer", "staff"})


def _cat(out, r):
    if r:
        return out + r if out else r
    return out


@person_rule("unattended_suspect", room_keys=("attendant",))
def unattended_suspect(ctx, pid, t):
    """无人看管. Source: DOMAIN.md (the Ministry's one-stop center requirement to
    warn against unattended suspects); no single statutory article is cited.

    A suspect present in a room (any type) where no ``officer`` or ``staff`` is
    present, for ``grace_s``. With presence in several rooms at once (zone
    overlap), an attendant in any of them is enough. Visitors never attend.
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
    for room in rooms:
        c = counts.get(room)
        if c and c.get("attendant"):
            return None
    room = next(iter(rooms))

    def text():
        rl = ctx.room_label(room)
        return (f"{rl} 嫌疑人{ctx.label(pid)}无民警或工作人员看管",
                f"{rl}: suspect {ctx.label(pid)} without an officer or staff member")
    return Facts(room, [pid], text, None, {"rooms": list(rooms)})


@person_rule("female_search_without_female_staff", frozenset({"security_check"}), room_keys=("female_attendant",))
def female_search_without_female_staff(ctx, pid, t):
    """Women are searched/examined by women: 刑事诉讼法 arts. 132, 139 (检查妇女的
    身体，应当由女工作人员或者医师进行); 程序规定 art. 155.

    A female suspect in a ``security_check`` room with no female ``officer`` or
    ``staff`` present in that room, for ``grace_s``. Subject: the suspect.
    """
    p = ctx.person(pid)
    if p is None or p.role != "suspect" or p.gender != "female":
        return None
    rt = ctx.room_types
    counts = ctx.state.counts
    for room in ctx.state.presence.get(pid, ()):
        if rt.get(room) != "security_check" or counts.get(room, {}).get("female_attendant"):
            continue
        rl = ctx.room_label(room)
        return Facts(room, [pid], f"{rl} 女性嫌疑人{ctx.label(pid)}检查时无女性工作人员在场",
                     f"{rl}: female suspect {ctx.label(pid)} with no female officer or staff", {})
    return None


# ---- collusion_risk ----------------------------------------------------------------------------
CR = "collusion_risk"


def _partners(ctx, pid) -> dict[str, tuple[str, str]]:
    """Co-suspects of pid's case in the same or an adjacent room: partner -> (room, partner's room).
    Identification rooms are left out entirely (a session there is supervised by design)."""
    p = ctx.person(pid)
    if p is None or p.role != "suspect" or not p.case_id:
        return {}
    rooms = ctx.state.presence.get(pid)
    if not rooms:
        return {}
    res: dict[str, tuple[str, str]] = {}
    rt = ctx.room_types
    adjacent = ctx.adjacent
    occ = ctx.state.rooms
    counts = ctx.state.counts
    persons = ctx.state.persons
    case = p.case_id
    key = f"case:{case}"
    for r in rooms:
        if rt.get(r) == "identification":
            continue
        for rr in (r,) + adjacent.get(r, ()):
            if rr != r and rt.get(rr) == "identification":
                continue
            c = counts.get(rr)
            if not c or c.get(key, 0) <= (1 if rr in rooms else 0):
                continue      # no co-suspect of the case there (pid itself counts once)
            for who in occ.get(rr, ()):
                if who == pid or who in res:
                    continue
                q = persons.get(who)
                if q is not None and q.case_id == case and q.role == "suspect" and not q.left:
                    res[who] = (r, rr)
    return res


def _pair(a: str, b: str) -> str:
    return f"{a}|{b}" if a < b else f"{b}|{a}"


def _cr_facts(ctx, a, b):
    where = _partners(ctx, a).get(b)
    if where is None:
        return None
    ra, rb = where
    case = ctx.state.persons[a].case_id

    def text():
        la, lb = ctx.label(a), ctx.label(b)
        if ra == rb:
            return (f"{ctx.room_label(ra)} 同案嫌疑人{la}、{lb}同处一室（案件{case}）",
                    f"{ctx.room_label(ra)}: co-suspects {la} and {lb} of case {case} in one room")
        return (f"同案嫌疑人{la}（{ctx.room_label(ra)}）与{lb}（{ctx.room_label(rb)}）处于相邻房间（案件{case}）",
                f"co-suspects {la} ({ctx.room_label(ra)}) and {lb} ({ctx.room_label(rb)}) "
                f"of case {case} in adjacent rooms")
    first, second = (a, b) if a < b else (b, a)
    return Facts(ra, [first, second], text, None, {"case_id": case, "rooms": {a: ra, b: rb}})


def _cr_check(ctx, subject, t):
    a, _, b = subject.partition("|")
    return _cr_facts(ctx, a, b)


@rule(CR, on=ROOM_EVENTS, check=_cr_check, suspects_only=ROOM_EVENTS)
def collusion_risk(ctx, ev, t):
    """Co-suspects are questioned separately (串供): 程序规定 art. 202;
    行政程序规定 art. 72 (as cited in DOMAIN.md).

    Two suspects of the same ``case_id`` present in the same room or in rooms
    marked ``adjacent`` (either direction) for ``grace_s``. Identification
    rooms do not count (an identification session is supervised). Subject:
    the pair. Only the moving person's pairs are re-evaluated: O(neighbourhood).
    """
    pairs = ctx.memo[CR]       # suspect -> {partner: None} for pairs pending or active
    out = NONE
    for pid in ctx.dirty_suspects:
        now = _partners(ctx, pid)
        watched = pairs.get(pid)
        if watched:
            for q in [q for q in watched if q not in now]:
                out = _cat(out, ctx.hold(CR, _pair(pid, q), t, None))
                watched.pop(q, None)
                w2 = pairs.get(q)
                if w2 is not None:
                    w2.pop(pid, None)
                    if not w2:
                        del pairs[q]
            if not watched:
                del pairs[pid]
        for q in now:
            a, b = (pid, q) if pid < q else (q, pid)
            out = _cat(out, ctx.hold(CR, f"{a}|{b}", t, _cr_facts(ctx, a, b)))
            pairs.setdefault(pid, {})[q] = None
            pairs.setdefault(q, {})[pid] = None
    return out


# ---- unauthorized_exit -------------------------------------------------------------------------
UE = "unauthorized_exit"


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
PS = "procedure_skipped"


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
SU = "suspect_untracked"
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
