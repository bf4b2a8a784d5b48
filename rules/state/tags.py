"""Wristbands and tags: binding a tag to a person (and a band unbound from a suspect still
inside: its alarms stay his), the latest tag.status."""
from __future__ import annotations

from typing import TYPE_CHECKING

from rules.model import Event
from rules.state.registry import folds

if TYPE_CHECKING:
    from rules.state.center import State


@folds("wristband.bound")
def _bound(s: State, ev: Event) -> None:
    tag, pid = ev.data["tag"], ev.data["person"]
    old = s.tag_owner.get(tag)
    if old == pid:
        return
    forget_former(s, tag)
    old_key = old if old is not None else f"tag:{tag}"
    if old is not None:
        s.person_tags.get(old, set()).discard(tag)
    s.tag_owner[tag] = pid
    s.person_tags.setdefault(pid, set()).add(tag)
    s.bound_at[tag] = ev.epoch
    s.tag_seen[tag] = max(s.tag_seen.get(tag, ev.epoch), ev.epoch)
    s._move_tag(tag, old_key, pid, ev.epoch)
    if s.tag_rooms.get(tag):
        drop_untagged(s, pid)
    v = s.visited.get(pid)
    if v is not None:
        v.update(s.tag_rooms.get(tag, ()))


def forget_former(s: State, tag: str) -> None:
    pid = s.former_owner.pop(tag, None)
    if pid is not None:
        f = s.former_tags.get(pid)
        if f is not None:
            f.discard(tag)
            if not f:
                del s.former_tags[pid]


def drop_untagged(s: State, pid: str, keep: str | None = None) -> None:
    """The person is tracked by a tag again: presences kept without a tag
    (where an unbound suspect was last seen) end."""
    for room, p in list(s.presence.get(pid, {}).items()):
        if not p.tags and room != keep:
            s._remove_presence(pid, room, None)


@folds("wristband.unbound")
def _unbound(s: State, ev: Event) -> None:
    tag = ev.data["tag"]
    pid = s.tag_owner.pop(tag, None)
    s.bound_at.pop(tag, None)
    if pid is None:
        return
    tags = s.person_tags.get(pid)
    if tags is not None:
        tags.discard(tag)
        if not tags:
            del s.person_tags[pid]
    rooms = s.presence.get(pid, {})
    kept = {room: pr.since for room, pr in rooms.items() if tag in pr.tags}
    s._move_tag(tag, pid, f"tag:{tag}", ev.epoch)
    p = s.persons.get(pid)
    if p is not None and p.role == "suspect" and not p.left:
        # He is still in the center: keep him where he was last seen (every
        # presence rule keeps judging him) and keep the band's alarms his.
        s.former_owner[tag] = pid
        s.former_tags.setdefault(pid, set()).add(tag)
        for room, since in kept.items():
            if room not in s.presence.get(pid, {}):
                s._add_presence(pid, room, "", since)


@folds("tag.status")
def _tag_status(s: State, ev: Event) -> None:
    d = ev.data
    tag = d.get("tag")
    if not tag:
        return
    st = s.tag_status.get(tag)
    if st is None:
        st = s.tag_status[tag] = {}
    for k, v in d.items():
        if k not in ("tag", "person"):
            st[k] = v
    s.tag_seen[tag] = ev.epoch

