"""`casegate alarms --stats` (gateway/alarm_stats.py) against a hand-made journal
whose figures are worked out by hand below."""
from __future__ import annotations

import json

from helpers.daemon import cli, write_config
from rules.model import GENESIS, Draft, format_ts, parse_ts, seal
from gateway.journal import Journal

T0 = parse_ts("2026-11-26T00:00:00Z")
M, H = 60.0, 3600.0
CENTER = "t-center"


def alarm(code, n, t_since, severity="critical", **extra):
    d = {"alarm_id": f"{code}:{n:016x}", "code": code, "severity": severity, "room": "r1", "persons": [],
         "since": format_ts(T0 + t_since), "message": {"zh": "x", "en": "x"}, "details": {},
         "legal_basis": [], "snapshot": None}
    d.update(extra)
    return d


def script():
    """(t, type, data, source). Hand-worked figures in test_stats_figures."""
    ev = []
    # lone_interrogation: 2 alarms. A raised 0, updated 30 s, cleared 1 min, acked 3 min (tta 180 s);
    # B raised 10 min, acked 11 min (tta 60 s) while active, never cleared (stands to the end, 30 h)
    a = alarm("lone_interrogation", 1, 0)
    ev += [(0, "alarm.raised", a, "rules"), (30, "alarm.raised", dict(a, persons=["S1"]), "rules"),
           (M, "alarm.cleared", a, "rules"), (3 * M, "alarm.acknowledged", dict(a, by="O1", note=None), "cli"),
           (2 * M, "alarm.escalated", {"alarm_id": a["alarm_id"], "code": a["code"], "level": 1,
                                       "unacked_s": 120, "since": a["since"]}, "rules")]
    b = alarm("lone_interrogation", 2, 10 * M)
    ev += [(10 * M, "alarm.raised", b, "rules"), (11 * M, "alarm.acknowledged", dict(b, by="O2", note="ok"), "mqtt")]
    # door_held_open: chattering - 6 raises (and clears) within 10 min from 1 h; one raised while shelved
    for i in range(6):
        d = alarm("door_held_open", 10 + i, H + i * 60, severity="warning")
        ev += [(H + i * 60, "alarm.raised", d, "rules"), (H + i * 60 + 30, "alarm.cleared", d, "rules")]
    # shelved 2 h..2 h 30 (manual unshelve): 1800 s; then from 29 h to the end (30 h): 3600 s
    ev += [(2 * H, "alarm.shelved", {"code": "door_held_open", "scope": "r1", "until": format_ts(T0 + 3 * H),
                                     "reason": "faulty contact", "by": "O1"}, "mqtt"),
           (2 * H + 10, "alarm.raised", alarm("door_held_open", 20, 2 * H + 10, severity="warning",
                                              shelved=True, suppressed_by="shelved"), "rules"),
           (2.5 * H, "alarm.unshelved", {"code": "door_held_open", "scope": "r1", "by": "O1"}, "mqtt"),
           (29 * H, "alarm.shelved", {"code": "door_held_open", "scope": None, "until": format_ts(T0 + 37 * H),
                                      "reason": "works", "by": "O1"}, "mqtt")]
    # device_offline: raised 5 h, cleared 5 h + 25 h = 30 h -> standing > 24 h, never acked
    c = alarm("device_offline", 30, 5 * H, severity="major")
    ev += [(5 * H, "alarm.raised", c, "rules"), (30 * H, "alarm.cleared", c, "rules")]
    # a flood: 11 tag_low_battery alarms in 5 minutes from 20 h
    for i in range(11):
        ev.append((20 * H + i * 30, "alarm.raised", alarm("tag_low_battery", 100 + i, 20 * H + i * 30,
                                                         severity="warning"), "rules"))
    ev.append((30 * H, "gateway.stopped", {"reason": "end"}, "gateway"))
    ev.sort(key=lambda x: x[0])
    return ev


def make_journal(tmp_path):
    cfg = write_config(tmp_path, None, center=CENTER)
    (tmp_path / "state").mkdir(exist_ok=True)
    j = Journal(tmp_path / "state" / "journal.db")
    prev, batch = GENESIS, []
    for seq, (t, typ, data, src) in enumerate(script(), 1):
        e = seal(Draft(typ, data, src, T0 + t), seq, CENTER, prev, T0 + t)
        prev = e.hash
        batch.append(e)
    j.append(batch)
    j.close()
    return cfg


def test_stats_figures(tmp_path):
    cfg = make_journal(tmp_path)
    r = cli("alarms", "--stats", "--json", config=cfg)
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    li = st["codes"]["lone_interrogation"]
    assert (li["raised"], li["cleared"], li["acknowledged"]) == (2, 1, 2)     # the update is no new alarm
    assert (li["mean_ack_s"], li["max_ack_s"]) == (120.0, 180.0)             # (180 + 60) / 2
    assert li["standing_24h"] == 1                                             # B: 10 min .. 30 h
    assert (li["escalations"], li["max_level"]) == (1, 1)
    dh = st["codes"]["door_held_open"]
    assert (dh["raised"], dh["cleared"], dh["acknowledged"], dh["suppressed"]) == (7, 6, 0, 1)
    assert dh["max_raises_10min"] == 6 and dh["chattering"] is True
    assert dh["shelved_s"] == 1800.0 + 3600.0
    assert dh["mean_ack_s"] is None and dh["standing_24h"] == 1     # the shelved one, never cleared
    do = st["codes"]["device_offline"]
    assert (do["standing_24h"], do["chattering"], do["acknowledged"]) == (1, False, 0)
    tl = st["codes"]["tag_low_battery"]
    assert tl["raised"] == 11 and tl["chattering"] is True
    assert st["worst_10min"] == {"alarms": 11, "from": "2026-11-26T20:00:00.000Z"}
    assert st["flood"] is True
    # 2 + 7 + 1 + 11 = 21 raised, one of them shelved: 20 announced; within the worst hour from 20 h: 11
    assert st["totals"]["raised"] == 21 and st["totals"]["announced"] == 20
    assert st["worst_hour"]["alarms"] == 11
    assert st["totals"]["standing_24h"] == 3
    assert st["totals"]["chattering_codes"] == ["door_held_open", "tag_low_battery"]
    assert (st["from"], st["to"]) == ("2026-11-26T00:00:00.000Z", "2026-11-27T06:00:00.000Z")


def test_stats_since_and_human_output(tmp_path):
    cfg = make_journal(tmp_path)
    r = cli("alarms", "--stats", "--since", "2026-11-26T19:00:00Z", "--json", config=cfg)
    st = json.loads(r.stdout)
    assert set(st["codes"]) == {"tag_low_battery", "door_held_open", "device_offline"}
    assert st["codes"]["device_offline"]["raised"] == 0 and st["codes"]["device_offline"]["cleared"] == 1
    assert st["codes"]["door_held_open"]["shelved_s"] == 3600.0
    text = cli("alarms", "--stats", config=cfg, env={"COLUMNS": "250"})
    assert text.returncode == 0, text.stderr
    out = text.stdout
    # people's times: the center's timezone (default Asia/Shanghai) and durations
    assert "2026-11-27 04:00:00 +08:00" in out                      # worst 10 min from 20:00 UTC
    assert "FLOOD" in out and "CHATTERING" in out
    assert "2 min" in out and "3 min" in out                          # mean and max time to ack
    assert "1 h 30 min" in out                                        # door_held_open shelved 5400 s
