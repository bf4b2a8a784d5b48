"""What a technician reads (issue 18 items 1 and 8): the center's local time with its offset in
every table, durations for people, clear "no such ..." errors, typo'd event types refused, and an
alarm update shown as "updated". The journal is written by the real Journal with seal() at fixed
times, so every expected local time is known exactly; --json keeps RFC 3339 UTC.
"""
from __future__ import annotations

import json

from helpers.daemon import cli

from rules.model import GENESIS, Draft, parse_ts, seal
from gateway.journal import Journal

T0 = parse_ts("2026-11-28T01:18:26Z")        # 09:18:26 in Asia/Shanghai


def make_journal(tmp_path, tz: str = "Asia/Shanghai"):
    state = tmp_path / "state"
    state.mkdir()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[center]\nid = "t-center"\ntimezone = "{tz}"\n[storage]\ndir = "{state}"\n'
                   '[mqtt]\nenabled = false\n[[rooms]]\nid = "waiting-1"\ntype = "waiting"\n')
    alarm = {"alarm_id": "unattended_suspect:00000000000000aa", "code": "unattended_suspect",
             "severity": "critical", "room": "waiting-1", "persons": ["s1"], "since": "2026-11-28T01:20:00.000Z",
             "message": {"zh": "无人看管", "en": "unattended"}, "details": {}, "legal_basis": [], "snapshot": None}
    drafts = [
        Draft("person.registered", {"person": "s1", "role": "suspect", "name": "", "gender": None,
                                    "minor": False, "case_id": None, "case_type": None, "limit_h": None},
              "cli", T0),
        Draft("presence.entered", {"person": "s1", "tag": "5B000001", "room": "waiting-1"}, "zone", T0 + 60),
        Draft("alarm.raised", alarm, "rules", T0 + 94),
        Draft("alarm.raised", dict(alarm, persons=["s1", "s2"]), "rules", T0 + 100),
        Draft("presence.left", {"person": "s1", "tag": "5B000001", "room": "waiting-1", "seconds": 1980},
              "zone", T0 + 60 + 1980),
        Draft("alarm.cleared", dict(alarm, persons=["s1", "s2"]), "rules", T0 + 2100),
        Draft("custody.ordered", {"order": "o-1", "item": "EPC0001", "action": "deposit", "case_id": "A-1",
                                  "by": "off-1", "expires": None}, "cli", T0 + 3000),
    ]
    j = Journal(state / "journal.db")
    prev, events = GENESIS, []
    for i, d in enumerate(drafts, 1):
        ev = seal(d, i, "t-center", prev, d.ts)
        prev = ev.hash
        events.append(ev)
    j.append(events)
    j.close()
    return cfg


def test_trace_in_local_time_with_durations(tmp_path):
    cfg = make_journal(tmp_path)
    r = cli("trace", "s1", config=cfg, env={"COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    assert "2026-11-28 09:19:26 +08:00" in r.stdout          # entered, local
    assert "2026-11-28 09:52:26 +08:00" in r.stdout          # left
    assert "33 min" in r.stdout and "1980" not in r.stdout
    assert "T01:19:26" not in r.stdout
    j = json.loads(cli("trace", "s1", "--json", config=cfg).stdout)
    assert j[0]["entered"] == "2026-11-28T01:19:26.000Z"    # --json stays RFC 3339 UTC


def test_local_time_follows_the_center_timezone(tmp_path):
    cfg = make_journal(tmp_path, tz="Europe/Berlin")
    r = cli("events", "--type", "presence.entered", config=cfg)
    assert "2026-11-28 02:19:26 +01:00" in r.stdout, r.stdout


def test_events_alarms_custody_show_local_time(tmp_path):
    cfg = make_journal(tmp_path)
    ev = cli("events", config=cfg).stdout
    assert "2026-11-28 09:18:26 +08:00" in ev and "2026-11-28T01:18:26" not in ev
    al = cli("alarms", config=cfg, env={"COLUMNS": "250"}).stdout
    assert "2026-11-28 09:20:00 +08:00" in al
    cu = cli("custody", "epc0001", config=cfg, env={"COLUMNS": "250"})
    assert cu.returncode == 0 and "2026-11-28 10:08:26 +08:00" in cu.stdout
    assert json.loads(cli("events", "--json", "--limit", "1", config=cfg).stdout)["ts"].endswith("Z")


def test_an_alarm_update_is_shown_as_updated(tmp_path):
    cfg = make_journal(tmp_path)
    r = cli("alarms", config=cfg, env={"COLUMNS": "250"})
    kinds = [line.split()[4] for line in r.stdout.splitlines()[1:] if "unattended_suspect" in line]
    assert kinds == ["raised", "updated", "cleared"], r.stdout
    hist = json.loads(cli("alarms", "--json", config=cfg).stdout)
    assert [h["event"] for h in hist] == ["alarm.raised", "alarm.raised", "alarm.cleared"]


def test_unknown_person_and_item_say_so(tmp_path):
    cfg = make_journal(tmp_path)
    r = cli("trace", "nobody", config=cfg)
    assert r.returncode == 1 and r.stderr.strip() == "casegate: no such person 'nobody' in the journal"
    assert r.stdout == ""
    r = cli("custody", "nothing-here", config=cfg)
    assert r.returncode == 1 and "no such item 'NOTHING-HERE'" in r.stderr


def test_events_with_a_typo_in_the_type_exits_2_naming_known_types(tmp_path):
    cfg = make_journal(tmp_path)
    r = cli("events", "--type", "alarm.raise", config=cfg)
    assert r.returncode == 2 and r.stdout == ""
    assert "unknown event type 'alarm.raise'" in r.stderr and "did you mean alarm.raised" in r.stderr
    assert "presence.entered" in r.stderr                   # the list of known types
    ok = cli("events", "--type", "custody.ordered", config=cfg)
    assert ok.returncode == 0 and "custody.ordered" in ok.stdout
    # every type of the event model is known, even one this journal has none of yet (v3 types
    # were missing from a hand-kept copy of the list)
    for typ in ("chain.signed", "request.refused", "config.legal_disabled"):
        r = cli("events", "--type", typ, config=cfg)
        assert r.returncode == 0 and "unknown event type" not in r.stderr, (typ, r.stderr)
