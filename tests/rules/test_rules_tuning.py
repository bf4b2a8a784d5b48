"""Issue 23 items 6, 7 and the "unrecorded time adds up" part of 4, on the rule engine:

* flapping: every grace-timed legal rule adds up the spells of its condition within
  ``window_s`` (DOMAIN v3 "Flapping"), live, through ``casegate replay --input`` (in process,
  and as a real subprocess) and across a checkpoint taken between two spells;
* citations (DOMAIN v3): one article per ``legal_basis`` entry, per case type, each of them
  an article heading of its law file in ../shared/law;
* the tuning bounds of legal alarms (DOMAIN v3), key by key, on the config parser.
The CLI side of the bounds (config check, run, doctor, status, the journaled
config.legal_disabled) is tests/test_legal_tuning.py.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigError
from rules.model import format_ts
from helpers.rule_cases import Case, rec, rec_stop
from rules import citations
from rules.catalog import CATALOG
from rules.legal_bounds import DETENTION_BASE
from rules.replay import alarm_rows, replay_input
from helpers.scenario import (H, T0, Scenario, arrive, bind, config_dict, enter, flatten, leave, make_config, move,
                      register, status, tag_of, to_toml)
from helpers.rules_checks import check as checkpoint_check

ROOT = Path(__file__).resolve().parents[2]
LAW_DIR = ROOT.parent / "shared" / "law"
INT = "interrogation-1"
R, C = "alarm.raised", "alarm.cleared"


def run(c: Case) -> Scenario:
    s = Scenario(make_config(c.rules), derive=True)
    s.run(c.steps)
    s.until(c.until)
    return s


def produced(s: Scenario) -> list[tuple]:
    return [(e.ts, e.type, e.data) for e in s.journal
            if e.source == "rules" or (e.type == "person.left" and e.source == "gateway")]


# ---- flapping (item 6; item 4: unrecorded time adds up) ----------------------------------------
def team(t=0, case_type="criminal"):
    return arrive(t, "S1", "suspect", case_id="C1", case_type=case_type, gender="male") + \
        arrive(t, "O1", "officer", gender="male") + arrive(t, "O2", "officer", gender="male")


def untracked_flapping(on_s: float, off_s: float, until: float = 1800):
    """S1's band unbound ``on_s`` s, bound again ``off_s`` s, over and over from t = 100."""
    out, t, tag = [], 100.0, tag_of("S1")
    while t < until:
        out += [(t, "wristband.unbound", {"tag": tag, "person": "S1"}),
                (t + on_s, "wristband.bound", {"tag": tag, "person": "S1"})]
        t += on_s + off_s
    return out


def mixed_flapping(until: float = 1800):
    """A woman led into a men's waiting room for 25 s and out for 5 s, over and over."""
    out, t = [], 100.0
    while t < until:
        out += move(t, "F1", "corridor", "waiting-1") + move(t + 25, "F1", "waiting-1", "corridor")
        t += 30
    return out


def recorder_flapping(until: float = 1800):
    """The recorder stopped 55 s of every 60 s (started again for 5 s each minute)."""
    out, t = [], 105.0
    while t < until:
        out += [rec_stop(t), (t + 55, "recording.started", {"room": INT, "source": "recorder-1"})]
        t += 60
    return out


def heart_flapping(until: float = 1800):
    """Heart rate 150 bpm for 25 s, 80 bpm for 5 s, over and over."""
    out, t = [], 100.0
    while t < until:
        out += [status(t, "S1", heart_rate=150), status(t + 25, "S1", heart_rate=80)]
        t += 30
    return out


def guardian_flapping(until: float = 600):
    """A minor's guardian out of the interrogation room 8 s, back 2 s, over and over."""
    out, t = [], 200.0
    while t < until:
        out += [leave(t, "G1", INT), enter(t + 8, "G1", INT)]
        t += 10
    return out


MINOR = arrive(0, "M1", "suspect", minor=True, case_id="C9", case_type="criminal", gender="male") + \
    arrive(0, "O1", "officer", gender="male") + arrive(0, "O2", "officer", gender="male") + \
    arrive(0, "G1", "visitor", visitor_kind="guardian", **{"for": "M1"})
WOMAN = arrive(0, "F1", "suspect", gender="female", case_id="C2", case_type="administrative")

FLAP = [
    # 轨迹缺失 (DOMAIN v3 flapping; the record has no gap: 继续盘问规定 art. 29): spell 1 is
    # 100-155, back at 160 with 55 of 60 s used: raised 5 s later, at 165
    Case("suspect_untracked", "band unbound 55 s / bound 5 s for 30 min",
         [team(), untracked_flapping(55, 5)], 1800, []),
    Case("suspect_untracked", "a band flapping 4 s off / 6 s on does not add up (min_absence_s)",
         [team(), untracked_flapping(4, 6)], 1800, []),
    # 分别看管 (继续盘问规定 art. 30): 25 s in, 5 s out, in again: 25 of 30 s used, raised at 135
    Case("mixed_waiting_room", "a woman in a men's waiting room 25 s / out 5 s for 30 min",
         [team(), WOMAN, enter(50, "S1", "waiting-1"), enter(50, "O1", "waiting-1"), enter(50, "F1", "corridor"),
          mixed_flapping()], 1800, []),
    # 全程不间断 (程序规定 art. 208, 刑事诉讼法 art. 123): stopped 105-160, 165-: raised at 170
    Case("interrogation_not_recorded", "recorder stopped 55 s of every 60 s for 30 min",
         [team(), rec(50, 100), [enter(100, p, INT) for p in ("S1", "O1", "O2")], recorder_flapping()],
         1800, []),
    # 生命体征 (DOMAIN catalog; 刑事诉讼法 art. 119 保证休息): 25 s abnormal, 5 s normal: raised at 135
    Case("vital_signs_abnormal", "heart rate abnormal 25 s of every 30 s",
         [team(), enter(50, "S1", "waiting-1"), enter(50, "O1", "waiting-1"), heart_flapping()], 1800, []),
    # 法定代理人到场 (刑事诉讼法 art. 281): out 200-208, out again at 210: raised at 215
    Case("minor_without_guardian", "guardian out 8 s / in 2 s",
         [MINOR, [enter(100, p, INT) for p in ("M1", "O1", "O2", "G1")], guardian_flapping()], 600, []),
]
FIRST_RAISE = {0: 165, 1: None, 2: 135, 3: 170, 4: 135, 5: 215}


@pytest.mark.parametrize("i", range(len(FLAP)), ids=[c.id for c in FLAP])
def test_flapping_conditions_add_up_within_the_window(i):
    """DOMAIN v3 "Flapping" (程序规定 art. 208 全程不间断 for the recorder; each code's own
    article otherwise): spells within window_s add up to grace_s; spells shorter than
    min_absence_s do not count. Live, then replay --input (in process) equal to live."""
    c = FLAP[i]
    s = run(c)
    raised = [t for typ, _, t in s.events(c.code) if typ == R]
    want = FIRST_RAISE[i]
    if want is None:
        assert raised == []
    else:
        assert raised and raised[0] == want, raised
        assert len(raised) >= 10, "raised again and again over the 30 min, not once"
    assert [(e.ts, e.type, e.data) for e in replay_input(s.journal, s.config)] == produced(s)


def test_without_the_window_the_flapping_recorder_would_never_raise():
    """程序规定 art. 208 (全程不间断, no selective recording): the window is what raises (the test
    can fail): grace 60 s and a window of exactly 60 s - the smallest the bounds allow - still adds
    the 55-s spells; each spell alone would not."""
    c = FLAP[3]
    s = Scenario(make_config({"interrogation_not_recorded": {"window_s": 60}}))
    s.run(c.steps)
    s.until(c.until)
    assert [t for typ, _, t in s.events(c.code) if typ == R][:1] == [170]
    one = Scenario(make_config())
    one.run([team(), rec(50, 100), [enter(100, p, INT) for p in ("S1", "O1", "O2")], rec_stop(105),
             (160, "recording.started", {"room": INT, "source": "recorder-1"})])
    one.until(270)                 # before the recorder's silence makes it stale (stale_s 120 after 160)
    assert one.events(c.code) == [], "one 55-s stop alone is within the 60-s grace"


@pytest.mark.parametrize("i", [0, 2, 3], ids=[FLAP[i].id for i in (0, 2, 3)])
def test_flapping_through_replay_input_cli_equals_live(tmp_path, i):
    """The issue's three flapping patterns (继续盘问规定 arts. 29, 30; 程序规定 art. 208) through
    ``casegate replay --input`` as a real subprocess: the same alarms as live."""
    c = FLAP[i]
    s = run(c)
    cfg = tmp_path / "replay.toml"
    cfg.write_text(to_toml(config_dict(c.rules)))
    inp = tmp_path / "day.jsonl"
    inp.write_text("".join(json.dumps(e.envelope(), ensure_ascii=False) + "\n" for e in s.journal))
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "replay", "--input", str(inp), "--config", str(cfg),
                        "--json", "--verify"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    out = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
    assert [(e["ts"], e["type"], e["data"]) for e in out] == produced(s)
    assert any(e["type"] == R and e["data"]["code"] == c.code for e in out)


@pytest.mark.parametrize("i", [0, 2, 3], ids=[FLAP[i].id for i in (0, 2, 3)])
def test_a_checkpoint_between_two_spells_keeps_them(i):
    """Restart = checkpoint + tail (SPEC §7): a checkpoint taken after the first spell of a
    flapping pattern (its spells are engine state, rules.engine memo[code]["_spells"]) gives
    the same state and the same alarms as a full replay; DOMAIN v3 flapping (继续盘问规定 arts. 29,
    30; 程序规定 art. 208)."""
    c = FLAP[i]
    steps = flatten(c.steps)
    start = FIRST_RAISE[i] - 10          # after the first spell ended, before the second began
    cut = max(n for n, st in enumerate(steps) if st[0] <= start) + 1
    s = Scenario(make_config(c.rules))
    s.run(steps[:cut])
    assert s.engine.memo[c.code].get("_spells"), "the first spell is in the checkpointed state"
    checkpoint_check(steps, cut, until_h=0, rules=c.rules)


# ---- citations (item 7) ----------------------------------------------------------------------------
_NUM = {"零": 0, "一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}


def _cn(text: str) -> int:
    total, cur = 0, 0
    for ch in text:
        if ch in _NUM:
            cur = _NUM[ch]
        elif ch == "十":
            total, cur = total + (cur or 1) * 10, 0
        elif ch == "百":
            total, cur = total + (cur or 1) * 100, 0
    return total + cur


def law_file(law: str) -> Path:
    """The file of a law as cited: its name as in the file names; a year in brackets picks the
    edition (治安管理处罚法(2025) -> 治安管理处罚法(2025-06-27).md); a name with two editions
    and no year is ambiguous, and no file."""
    m = re.fullmatch(r"(.+)\((\d{4})\)", law)
    name, year = (m.group(1), m.group(2)) if m else (law, None)
    files = [p for p in LAW_DIR.glob("*.md")
             if re.fullmatch(re.escape(name) + r"(\(\d{4}-\d\d-\d\d\)|\d{4})", p.stem)
             and (year is None or year in p.stem)]
    assert len(files) == 1, f"{law}: {[p.name for p in files] or 'no law file'} in {LAW_DIR}"
    return files[0]


def article_headings(path: Path) -> set[int]:
    """The article numbers of a law file: lines beginning 第<N>条 (Chinese numerals)."""
    return {_cn(m.group(1)) for m in re.finditer(r"^\s*第([一二三四五六七八九十百零]+)条", path.read_text(), re.M)}


def every_citation() -> set[str]:
    out = {a for spec in CATALOG.values() for a in spec.legal_basis}
    out |= {a for table in citations.ALL_TABLES for a in table}
    out |= {a for _, basis in DETENTION_BASE.values() for a in basis}
    return out


def missing_articles(cites) -> list[str]:
    missing = []
    for cite in sorted(cites):
        m = re.fullmatch(r"(\S+) 第(\d+)条", cite)
        assert m, f"{cite!r}: not in the form '<law> 第<N>条' (one article per entry)"
        if int(m.group(2)) not in article_headings(law_file(m.group(1))):
            missing.append(cite)
    return missing


@pytest.mark.skipif(not LAW_DIR.is_dir(), reason="../shared/law not present")
def test_every_cited_article_exists_in_its_law_file():
    """DOMAIN v3 citations: every legal_basis entry any alarm can carry (the catalog, the
    per-case-type tables, the bounds' messages) is one article, '<law> 第<N>条', whose law is
    a file in shared/law and whose number is among that file's article headings."""
    cites = every_citation()
    assert len(cites) > 30
    assert missing_articles(cites) == []
    # the check can fail: an article past the end of the law, and a range
    assert missing_articles({"公安机关适用继续盘问规定 第99条"}) == ["公安机关适用继续盘问规定 第99条"]
    with pytest.raises(AssertionError):
        missing_articles({"公安机关办理刑事案件程序规定 第78-80条"})
    with pytest.raises(AssertionError):
        law_file("治安管理处罚法")       # two editions: the year must say which


def _timeout_basis(case_type: str, arrived_at: str | None = None, **kw) -> list[str]:
    s = Scenario(make_config())
    extra = {"arrived_at": arrived_at} if arrived_at else {}
    s.run([register(0, "S1", "suspect", case_id="C1", case_type=case_type, gender="male", **extra, **kw),
           bind(0, "S1")])
    s.until(49 * H)
    (a,) = s.raised("detention_timeout")
    (w, *_) = s.raised("detention_warning")
    assert w["legal_basis"] == a["legal_basis"]
    assert [x[0] for x in alarm_rows(replay_input(s.journal, s.config)) if x[0] == R] == \
        [x[0] for x in alarm_rows(s.alarm_events) if x[0] == R]
    return a["legal_basis"]


def test_a_time_limit_cites_the_articles_of_its_case_type():
    """DOMAIN v3 citations per case type: criminal 刑事诉讼法 art. 119 + 程序规定(刑) art. 200;
    administrative 治安管理处罚法(2025) art. 97 (stays before 2026-01-01: 行政程序规定 art. 69);
    inquiry 人民警察法 art. 9 + 继续盘问规定 arts. 10, 11 - never another case type's law."""
    assert _timeout_basis("criminal") == ["刑事诉讼法 第119条", "公安机关办理刑事案件程序规定 第200条"]
    assert _timeout_basis("administrative") == ["治安管理处罚法(2025) 第97条"]
    # arrived 2025-12-31 23:00 in Shanghai: the 2012 law's time, 行政程序规定 art. 69
    assert _timeout_basis("administrative", "2025-12-31T23:00:00+08:00") == ["公安机关办理行政案件程序规定 第69条"]
    assert _timeout_basis("administrative", "2026-01-01T00:00:00+08:00") == ["治安管理处罚法(2025) 第97条"]
    assert _timeout_basis("inquiry") == ["人民警察法 第9条", "公安机关适用继续盘问规定 第10条",
                                         "公安机关适用继续盘问规定 第11条"]


def test_the_transfer_warning_cites_its_own_basis():
    """送押 within 24 h: 刑事诉讼法 art. 85, 程序规定(刑) art. 126 - on the 2 h warning as on
    custody_transfer_overdue, not the summons articles."""
    s = Scenario(make_config())
    s.run([register(0, "S1", "suspect", case_id="C1", case_type="criminal", gender="male"), bind(0, "S1"),
           (H, "person.updated", {"person": "S1", "changes": {"detained_at": format_ts(T0 + H)}, "by": "O1",
                                  "reason": "拘留"})])
    s.until(26 * H)
    (w,) = s.raised("detention_warning")
    (ct,) = s.raised("custody_transfer_overdue")
    assert w["details"]["kind"] == "custody_transfer"
    assert w["legal_basis"] == ct["legal_basis"] == ["刑事诉讼法 第85条", "公安机关办理刑事案件程序规定 第126条"]


def test_attendance_cites_inquiry_art_29_and_criminal_art_202_where_it_applies():
    """DOMAIN v3: unattended_suspect (and the other attendance/tracking codes) cite 继续盘问规定
    art. 29 (候问室 看管), and 程序规定(刑) art. 202 for a criminal suspect only."""
    def unattended(case_type):
        s = Scenario(make_config())
        s.run(arrive(0, "S1", "suspect", case_id="C1", case_type=case_type, gender="male") +
              [enter(10, "S1", "waiting-1")])
        s.until(200)
        (a,) = s.raised("unattended_suspect")
        return a["legal_basis"]
    assert unattended("criminal") == ["公安机关适用继续盘问规定 第29条", "公安机关办理刑事案件程序规定 第202条"]
    assert unattended("inquiry") == ["公安机关适用继续盘问规定 第29条"]
    assert unattended("administrative") == ["公安机关适用继续盘问规定 第29条"]
    assert CATALOG["station_impostor"].legal and CATALOG["station_impostor"].legal_basis == ()


# ---- tuning bounds (item 2), on the parser ---------------------------------------------------------------
BOUNDS = [
    # (rules table, key named, article named) - DOMAIN v3 "Tuning bounds of legal alarms"
    ({"lone_interrogation": {"min_investigators": 1}}, "rules.lone_interrogation.min_investigators", "第118条"),
    ({"lone_interrogation": {"relaxed_case_types": ["criminal"]}}, "rules.lone_interrogation.relaxed_case_types",
     "治安管理处罚法(2025) 第108条"),
    ({"unattended_suspect": {"grace_s": 301}}, "rules.unattended_suspect.grace_s", "继续盘问规定 第29条"),
    ({"interrogation_not_recorded": {"grace_s": 86400}}, "rules.interrogation_not_recorded.grace_s", "第208条"),
    ({"collusion_risk": {"window_s": 3}}, "rules.collusion_risk.window_s", "第202条"),
    ({"suspect_untracked": {"min_absence_s": 60}}, "rules.suspect_untracked.min_absence_s", "第29条"),
    ({"interrogation_not_recorded": {"stale_s": 0}}, "rules.interrogation_not_recorded.stale_s", "第208条"),
    ({"suspect_motionless": {"after_s": 3600}}, "rules.suspect_motionless.after_s", "第29条"),
    ({"rest_overdue": {"limit_h": 1000}}, "rules.rest_overdue.limit_h", "第119条"),
    ({"rest_overdue": {"break_min": 5}}, "rules.rest_overdue.break_min", "第201条"),
    ({"detention_timeout": {"criminal_h": 24}}, "rules.detention_timeout.criminal_h", "刑事诉讼法 第119条"),
    ({"detention_timeout": {"administrative_h": 12}}, "rules.detention_timeout.administrative_h",
     "治安管理处罚法(2025) 第97条"),
    ({"detention_timeout": {"inquiry_h": 24}}, "rules.detention_timeout.inquiry_h", "继续盘问规定 第11条"),
    ({"detention_timeout": {"criminal_h": 25}}, "rules.detention_timeout.criminal_h", "刑事诉讼法 第119条"),
    ({"detention_timeout": {"vulnerable_inquiry_h": 5}}, "rules.detention_timeout.vulnerable_inquiry_h",
     "继续盘问规定 第10条"),
    ({"custody_transfer_overdue": {"limit_h": 30}}, "rules.custody_transfer_overdue.limit_h", "刑事诉讼法 第85条"),
    ({"consecutive_summons": {"min_gap_h": 6}}, "rules.consecutive_summons.min_gap_h", "第200条"),
    ({"evidence_handover_overdue": {"limit_h": 48}}, "rules.evidence_handover_overdue.limit_h", "第190条"),
    ({"minor_without_guardian": {"guardian_kinds": ["guardian", "lawyer"]}},
     "rules.minor_without_guardian.guardian_kinds", "刑事诉讼法 第281条"),
    ({"camera_tamper": {"room_types": ["interrogation"]}}, "rules.camera_tamper.room_types", "第123条"),
    ({"sos": {"enabled": False}}, "rules.sos.enabled", "legal_disabled_reason"),
]


@pytest.mark.parametrize("rules,key,article", BOUNDS, ids=[b[1] for b in BOUNDS])
def test_a_legal_setting_outside_the_bounds_is_refused_naming_key_and_article(rules, key, article):
    """DOMAIN v3 tuning bounds: each legal setting looser than the law is a config error that
    names the key and the article (each bound's article in its id's table above)."""
    with pytest.raises(ConfigError) as e:
        make_config(rules)
    assert f"{key}: " in str(e.value) and article in str(e.value), str(e.value)


def test_within_the_bounds_is_accepted():
    """Stricter than the law is always allowed, the law's own limits too (DOMAIN v3: 治安管理处罚法
    2025 art. 108 for the administrative relaxation, 刑事诉讼法 art. 119 / 继续盘问规定 arts. 10-11
    for the limits); disabling needs a reason that says something."""
    make_config({"lone_interrogation": {"relaxed_case_types": ["administrative"], "grace_s": 300, "window_s": 300},
                 "rest_overdue": {"limit_h": 4, "break_min": 30},
                 "detention_timeout": {"criminal_h": 12, "administrative_h": 8, "inquiry_h": 12,
                                       "vulnerable_inquiry_h": 4},
                 "camera_tamper": {"room_types": ["interrogation", "waiting", "identification"]},
                 "minor_without_guardian": {"guardian_kinds": ["guardian"]},
                 "sos": {"enabled": False}, "legal_disabled_reason": "SOS buttons replaced, 法制 approved"})
    with pytest.raises(ConfigError):
        make_config({"sos": {"enabled": False}, "legal_disabled_reason": "  "})     # an empty reason is none
