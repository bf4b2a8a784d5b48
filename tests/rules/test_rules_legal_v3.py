"""DOMAIN v3 in the rules (issue 23 items 1, 3, 4, 5; issue 30 item 5): what a journal says
is held to the law even when no request handler checked it (a hand-made file through
``replay --input``, an old journal). Each scenario runs live on an injectable clock and
again through ``casegate replay --input`` as a real subprocess: the same output."""
from __future__ import annotations

from helpers.rule_cases import into, left, rec, upd
from helpers.scenario import H, Scenario, arrive, enter, flatten, register
from helpers.rules_replay import produced, replay_cli

INT = "interrogation-1"


def live_equals_replay(s: Scenario, tmp_path, rules: dict | None = None) -> None:
    got = replay_cli(tmp_path, s.journal, rules)
    assert [(e["ts"], e["type"], e["data"]) for e in got] == produced(s)


def timed(steps) -> list[tuple]:
    return sorted(flatten(steps), key=lambda step: step[0])


def codes(s: Scenario, code: str) -> list[tuple[str, float]]:
    return [(typ.split(".")[1], t) for typ, _, t in s.events(code)]


def test_reregistration_changes_no_limit_and_a_late_lengthening_clears_nothing(tmp_path):
    """刑事诉讼法 第119条, 程序规定(刑) 第200条 (when the time is up the summons ends at once): a
    re-registration with limit_h 24 in the same stay leaves the 12 h; a person.updated to 24 h
    after the 12 h expired leaves the timeout standing."""
    s = Scenario(derive=True).run(timed(
        arrive(0, "O1", "officer") +
        [register(0, "S1", "suspect", gender="male", case_type="criminal"),
         register(1 * H, "S1", "suspect", gender="male", case_type="criminal", limit_h=24),
         upd(13 * H, "S1", limit_h=24)])).until(30 * H)
    assert codes(s, "detention_timeout") == [("raised", 12 * H)]
    live_equals_replay(s, tmp_path)


def test_detained_at_keeps_the_earliest_value(tmp_path):
    """刑事诉讼法 第85条, 程序规定(刑) 第126条 (to the detention house within 24 h of 拘留): a later
    detained_at never moves the 送押 deadline; an earlier correction does."""
    s = Scenario(derive=True).run(timed(
        arrive(0, "O1", "officer") +
        [register(0, "S1", "suspect", gender="male", case_type="criminal"),
         upd(2 * H, "S1", detained_at="2026-11-26T01:00:00Z"),
         upd(3 * H, "S1", detained_at="2026-11-26T03:00:00Z"),
         register(0, "S2", "suspect", gender="male", case_type="criminal"),
         upd(2 * H, "S2", detained_at="2026-11-26T02:00:00Z"),
         (3 * H, "person.updated", {"person": "S2", "changes": {"detained_at": "2026-11-26T00:30:00Z"},
                                    "by": "O1", "reason": "更正", "approved_by": "CHIEF"}),
         left(30 * H, "S1"), left(30 * H, "S2")])).until(31 * H)
    got = sorted((a["persons"][0], s.rel(a["since"])) for a in s.raised("custody_transfer_overdue"))
    assert got == [("S1", 25 * H), ("S2", 24.5 * H)]
    live_equals_replay(s, tmp_path)


def test_age_makes_a_minor_and_a_vulnerable_inquiry(tmp_path):
    """未成年人保护法 第2条 (under 18 is a minor); 公安机关适用继续盘问规定 第10条 (under 16 in continued
    inquiry: 4 h, never in a 候问室): derived from age even when the journal says otherwise."""
    s = Scenario(derive=True).run(timed(
        arrive(0, "O1", "officer") + arrive(0, "O2", "officer") +
        arrive(0, "S1", "suspect", gender="male", case_type="inquiry", age=15, minor=False) +
        [into(100, INT, "S1", "O1", "O2")])).until(5 * H)
    assert codes(s, "minor_without_guardian") == [("raised", 110)]
    assert codes(s, "detention_timeout") == [("raised", 4 * H)]
    s2 = Scenario(derive=True).run(timed(
        arrive(0, "ST1", "staff") + arrive(0, "S1", "suspect", gender="male", case_type="inquiry", age=15) +
        [into(100, "waiting-3", "S1", "ST1")])).until(300)
    assert [a["details"]["reasons"] for a in s2.raised("mixed_waiting_room")] == [["vulnerable"]]
    live_equals_replay(s, tmp_path)


def test_unknown_gender_is_an_alarm_not_a_pass(tmp_path):
    """公安机关适用继续盘问规定 第30条 / 刑事诉讼法 第280条 (men and women held apart); 刑事诉讼法 第132条
    (women searched by women): a suspect whose gender is not on record (an old journal) in a
    shared waiting room or a search raises; an officer without gender is no female staff."""
    s = Scenario(derive=True).run(timed(
        arrive(0, "ST1", "staff") + arrive(0, "O9", "officer") +
        arrive(0, "S1", "suspect", gender="male", case_id="C1", case_type="criminal") +
        arrive(0, "U1", "suspect", case_id="C2", case_type="criminal") +
        [into(100, "waiting-3", "ST1", "S1", "U1"), enter(500, "O9", "security-1"), enter(500, "U1", "security-1")]
    )).until(700)
    (mw,) = s.raised("mixed_waiting_room")
    assert mw["details"]["reasons"] == ["gender_unknown"] and s.rel(mw["since"]) == 130
    (fs,) = s.raised("female_search_without_female_staff")
    assert fs["persons"] == ["U1"] and fs["details"] == {"gender": None} and s.rel(fs["since"]) == 510
    live_equals_replay(s, tmp_path)


def test_only_the_recorder_enables_one_officer_questioning(tmp_path):
    """治安管理处罚法(2025) 第108条 (one officer only with full audio/video recording): a recording
    reported by an officer by hand keeps interrogation_not_recorded quiet but never enables the
    relaxation; the room's recorder does."""
    rules = {"lone_interrogation": {"relaxed_case_types": ["administrative"]}}
    team = arrive(0, "O1", "officer") + arrive(0, "S1", "suspect", gender="male", case_type="administrative")
    by_hand = [(t, typ, dict(d, recorder=False, by="O1")) for t, typ, d in rec(50, 600)]
    s = Scenario(derive=True, rules=rules).run(timed(team + by_hand + [into(100, INT, "S1", "O1")])).until(600)
    assert codes(s, "lone_interrogation") == [("raised", 130)]
    assert codes(s, "interrogation_not_recorded") == []
    live_equals_replay(s, tmp_path, rules)
    recorder = [(t, typ, dict(d, recorder=True)) for t, typ, d in rec(50, 600)]
    s2 = Scenario(derive=True, rules=rules).run(timed(team + recorder + [into(100, INT, "S1", "O1")])).until(600)
    assert codes(s2, "lone_interrogation") == []


def test_a_return_counts_only_into_an_evidence_locker(tmp_path):
    """程序规定(刑) 第235条, 行政程序规定 第190条 (seized property kept safe by the custodian): a
    withdrawn item put into a belongings locker is not returned; evidence_not_returned fires at
    its due and clears when it is back in an evidence locker."""
    ev = {"locker": "locker-ev1", "compartment": 5, "item": "E0001"}
    order = {"order": "ORD1", "item": "E0001", "action": "withdraw", "case_id": "C1", "by": "O1",
             "expires": None, "due": "2026-11-26T02:00:00Z"}
    bel = {"locker": "locker-b1", "compartment": 3, "item": "E0001"}
    s = Scenario(derive=True).run(timed(
        arrive(0, "O1", "officer") +
        [(10, "evidence.added", ev), (50, "custody.ordered", order), (100, "evidence.removed", ev),
         (1 * H, "evidence.added", bel), (3 * H, "evidence.removed", bel), (4 * H, "evidence.added", ev)]
    )).until(5 * H)
    assert codes(s, "evidence_not_returned") == [("raised", 2 * H), ("cleared", 4 * H)]
    live_equals_replay(s, tmp_path)


def test_the_same_identity_under_a_new_person_id_is_a_consecutive_summons(tmp_path):
    """刑事诉讼法 第119条, 程序规定(刑) 第200条 (no consecutive summons as disguised detention): the
    ``identity`` hash of the ID card links a new person id to the man who left 4 h earlier."""
    ident = "ab" * 32
    s = Scenario(derive=True).run(timed(
        [register(0, "S1", "suspect", gender="male", case_type="criminal", identity=ident), left(1 * H, "S1"),
         register(5 * H, "S9", "suspect", gender="male", case_type="criminal", identity=ident),
         register(5 * H, "S8", "suspect", gender="male", case_type="criminal", identity="cd" * 32)])).until(6 * H)
    assert [a["persons"] for a in s.raised("consecutive_summons")] == [["S9"]]
    live_equals_replay(s, tmp_path)


def test_identification_ends_by_itself_and_collusion_is_judged_again(tmp_path):
    """程序规定(刑) 第259条 (辨认 presided by at least two investigators) and 第202条 (co-suspects kept
    apart): a session ends after max_s, journaled as identification.ended; the co-suspects still
    together are then a collusion risk."""
    rules = {"lone_identification": {"max_s": 600}}
    ids = {"room": "identification-1", "case_id": "C1", "by": "O1"}
    s = Scenario(derive=True, rules=rules).run(timed(
        arrive(0, "O1", "officer") + arrive(0, "O2", "officer") +
        arrive(0, "S1", "suspect", gender="male", case_id="C1", case_type="criminal") +
        arrive(0, "S2", "suspect", gender="male", case_id="C1", case_type="criminal") +
        [(90, "identification.started", ids), into(100, "identification-1", "S1", "S2", "O1", "O2")])).until(1000)
    assert [(t, d["reason"]) for _, t, d in s.lifecycle("identification.ended")] == [(690, "max_s")]
    assert codes(s, "lone_identification") == []          # two officers from 100 s (grace 30 s)
    assert codes(s, "collusion_risk") == [("raised", 695)]
    assert s.engine.state.identifications == {}
    live_equals_replay(s, tmp_path, rules)
