"""The alarm catalog of DOMAIN.md: code, severity, messages, config schema.

Adding a rule = one entry here + one function in a rule-family module.
Each ``[rules.<code>]`` table is validated against its settings model; unknown
keys are errors, named with their full path.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rules import citations as _citations


class RuleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = True


class Grace(RuleSettings):
    grace_s: float = Field(default=30, ge=0)


class Spells(RuleSettings):
    """A grace-timed legal rule's flapping window (DOMAIN v3 "Flapping"): spells of the
    condition within ``window_s`` add up to ``grace_s`` (rules.engine.Engine.hold), so a
    condition broken off for a few seconds at a time (a band unbound 55 s / bound 5 s, a
    recorder stopped 55 s of every 60 s) still raises."""
    window_s: float = Field(default=300, ge=0)      # spells within this window add up to grace_s
    min_absence_s: float = Field(default=5, ge=0)   # shorter spells (tag flapping between stations) do not count


class LoneInterrogation(RuleSettings):
    grace_s: float = Field(default=30, ge=0)
    window_s: float = Field(default=300, ge=0)      # absences within this window add up to grace_s (0 = each alone)
    min_absence_s: float = Field(default=5, ge=0)   # shorter spells (tag flapping between stations) do not count
    min_investigators: int = Field(default=2, ge=1)
    # case types for which one investigator is enough, only while the room records (治安管理处罚法 2025 art. 108)
    relaxed_case_types: list[Literal["criminal", "administrative"]] = []


class Unattended(RuleSettings):
    grace_s: float = Field(default=60, ge=0)
    window_s: float = Field(default=300, ge=0)      # unattended spells within this window add up to grace_s
    min_absence_s: float = Field(default=5, ge=0)   # shorter spells (tag flapping between stations) do not count
    # rooms where a suspect meeting his lawyer (a lawyer visitor present) needs no attendant
    lawyer_rooms: list[str] = []


class OfficerLeft(RuleSettings):
    grace_s: float = Field(default=60, ge=0)


class DetentionTimeout(RuleSettings):
    # Default limits per case type when a person has no limit_h; a center may be
    # stricter than the law but never looser: at most the law's base limits (DOMAIN v3,
    # rules/legal_bounds.py, which names the article); longer ones per person, approved.
    criminal_h: float = Field(default=12, gt=0)          # 传唤/拘传: 12 h (24 h approved, per person)
    administrative_h: float = Field(default=8, gt=0)     # 询问查证: 8 h (12 h, 24 h per person)
    inquiry_h: float = Field(default=12, gt=0)           # 继续盘问: 12 h (24 h, 48 h approved, per person)
    vulnerable_inquiry_h: float = Field(default=4, gt=0)  # 继续盘问 of vulnerable persons: 4 h
    warn_before_min: list[float] = [60, 30]


class CustodyTransfer(RuleSettings):
    limit_h: float = Field(default=24, gt=0)              # 拘留 -> 看守所 within 24 h (刑诉 art. 85; ≤ 24: legal_bounds)
    warn_before_min: float = Field(default=120, ge=0)     # detention_warning this long before


class ConsecutiveSummons(RuleSettings):
    min_gap_h: float = Field(default=12, gt=0)            # registered again sooner than this after leaving (≥ 12: legal_bounds)


class SuspectUntracked(Spells):
    grace_s: float = Field(default=60, ge=0)              # a suspect in the center without a bound tag


class RestOverdue(RuleSettings):
    limit_h: float = Field(default=4, gt=0)
    # An absence from interrogation rooms shorter than this (a door transit, a
    # toilet trip) does not end the continuous period; the alarm clears and
    # the period restarts once the suspect has been out this long (a real
    # break) or a rest/meal is recorded (person/rest).
    break_min: float = Field(default=30, gt=0)


class FemaleSearch(Spells):
    grace_s: float = Field(default=10, ge=0)    # people walk in one after another


class NotRecorded(Spells):
    grace_s: float = Field(default=60, ge=0)
    # the recorder system re-sends its state; silent longer than this = not recording (0: never stale)
    stale_s: float = Field(default=120, ge=0)


class FemaleMinor(Spells):
    grace_s: float = Field(default=10, ge=0)    # people walk in one after another


class MixedWaiting(Spells):
    grace_s: float = Field(default=30, ge=0)    # a suspect led through a waiting room is not held there


class EvidenceHandover(RuleSettings):
    limit_h: float = Field(default=24, gt=0)    # deposit order -> item in an evidence locker


class CameraTamper(RuleSettings):
    # room types whose cameras must not be covered, moved or lose video
    room_types: list[str] = ["interrogation", "waiting"]


class MinorGuardian(Spells):
    grace_s: float = Field(default=10, ge=0)
    guardian_kinds: list[str] = ["guardian"]   # 法定代理人/合适成年人 (DOMAIN v3)


class Collusion(Spells):
    grace_s: float = Field(default=5, ge=0)


class ProcedureSkipped(RuleSettings):
    required: list[str] = ["security_check", "info_collection"]


class BelongingsOverdue(RuleSettings):
    limit_h: float = Field(default=24, gt=0)


class LowBattery(RuleSettings):
    below_pct: float = Field(default=20, ge=0, le=100)


class SignalLost(RuleSettings):
    after_s: float = Field(default=60, gt=0)


class VitalSigns(Spells):
    low_bpm: float = 45
    high_bpm: float = 130
    grace_s: float = Field(default=30, ge=0)


class Motionless(RuleSettings):
    after_s: float = Field(default=300, gt=0)


class DoorHeldOpen(RuleSettings):
    limit_s: float = Field(default=120, gt=0)


class LockerOpenTooLong(RuleSettings):
    limit_s: float = Field(default=60, gt=0)


class LockerUnauthorized(RuleSettings):
    window_s: float = Field(default=30, gt=0)


class LoneIdentification(Spells):
    grace_s: float = Field(default=30, ge=0)
    max_s: float = Field(default=3600, gt=0)    # an identification session ends by itself after this


class DeviceOffline(RuleSettings):
    # Not read by the rule (it follows device.offline): the daemon hands it to drivers with a
    # heartbeat (gateway/device_context.py DeviceContext.missed_intervals), which decide when.
    missed_intervals: int = Field(default=3, ge=1)


Severity = Literal["critical", "major", "minor", "warning"]


@dataclass(frozen=True)
class AlarmSpec:
    code: str
    severity: Severity
    zh: str
    en: str
    settings: type[RuleSettings]
    # The statutes' articles this alarm enforces (DOMAIN v2), carried on every
    # alarm event as ``legal_basis``; empty for facility alarms.
    legal_basis: tuple[str, ...] = ()
    # Legal alarms (DOMAIN "L") can never be shelved or disabled at run time.
    legal: bool = False


CRIM = "刑事诉讼法"
PROC = "公安机关办理刑事案件程序规定"
ADMIN = "公安机关办理行政案件程序规定"
PSAL = "治安管理处罚法(2025)"
INQ = "公安机关适用继续盘问规定"
POLICE = "人民警察法"


def _l(*basis: str) -> dict[str, Any]:
    return {"legal": True, "legal_basis": basis}


# DOMAIN v3 citations, one article per entry (rules/citations.py cites per case type / person)
_LIMITS = tuple(dict.fromkeys(a for k in ("criminal", "administrative", "administrative_before_2026", "inquiry")
                              for a in _citations.TIME_LIMIT[k]))
_ATTEND = _citations.ATTENDANCE + _citations.ATTENDANCE_CRIMINAL


CATALOG: dict[str, AlarmSpec] = {s.code: s for s in [
    AlarmSpec("lone_interrogation", "critical", "单人讯问", "Interrogation with fewer than two investigators", LoneInterrogation,
              **_l(f"{CRIM} 第118条", f"{PROC} 第202条", f"{ADMIN} 第52条", f"{PSAL} 第108条")),
    AlarmSpec("unattended_suspect", "critical", "无人看管", "Suspect unattended", Unattended, **_l(*_ATTEND)),
    AlarmSpec("officer_left_interrogation", "minor", "审讯离位", "Officer left an interrogation in progress", OfficerLeft),
    # the time-limit codes cite per case type (rules/citations.py); here: every article they may cite
    AlarmSpec("detention_warning", "major", "超时预警", "Detention time limit approaching", RuleSettings,
              **_l(*_LIMITS, *_citations.TRANSFER)),
    AlarmSpec("detention_timeout", "critical", "办案超时", "Detention time limit exceeded", DetentionTimeout,
              **_l(*_LIMITS)),
    AlarmSpec("rest_overdue", "major", "未保证休息", "Rest overdue: continuous interrogation too long", RestOverdue,
              **_l(f"{CRIM} 第119条", f"{PROC} 第201条", f"{ADMIN} 第71条")),
    AlarmSpec("custody_transfer_overdue", "critical", "送押超时", "Detained person not transferred within 24 h",
              CustodyTransfer, **_l(f"{CRIM} 第85条", f"{PROC} 第126条")),
    AlarmSpec("consecutive_summons", "major", "连续传唤", "Suspect summoned again within 12 h of leaving",
              ConsecutiveSummons, **_l(f"{CRIM} 第119条", f"{PROC} 第200条", f"{ADMIN} 第69条")),
    AlarmSpec("suspect_untracked", "critical", "轨迹缺失", "Suspect in the center without a bound tag",
              SuspectUntracked, **_l(*_ATTEND)),
    AlarmSpec("collusion_risk", "critical", "串供风险", "Co-suspects of one case together", Collusion,
              **_l(f"{PROC} 第202条", f"{ADMIN} 第72条")),
    AlarmSpec("unauthorized_exit", "critical", "越界/脱逃", "Suspect at an exit without checkout approval", RuleSettings,
              **_l(*_ATTEND)),
    AlarmSpec("procedure_skipped", "major", "未按流程", "Interrogation before mandatory procedure steps", ProcedureSkipped),
    AlarmSpec("belongings_forgotten", "minor", "物品遗忘", "Belongings left in the locker at checkout", RuleSettings),
    AlarmSpec("belongings_overdue", "minor", "暂存超时", "Belongings held too long", BelongingsOverdue),
    AlarmSpec("wristband_tamper", "critical", "手环防拆", "Wristband tampered", RuleSettings, **_l(*_ATTEND)),
    AlarmSpec("sos", "critical", "一键求助", "SOS button pressed", RuleSettings, **_l(*_ATTEND)),
    AlarmSpec("tag_low_battery", "warning", "低电压", "Tag battery low", LowBattery),
    AlarmSpec("tag_signal_lost", "major", "信号丢失", "Tag signal lost", SignalLost),
    AlarmSpec("vital_signs_abnormal", "critical", "生命体征异常", "Abnormal heart rate", VitalSigns,
              **_l(f"{CRIM} 第119条", f"{PROC} 第201条", f"{ADMIN} 第71条")),
    AlarmSpec("suspect_motionless", "major", "长时间静止", "Suspect motionless", Motionless, **_l(*_ATTEND)),
    AlarmSpec("headcount_mismatch", "minor", "人数不符", "Camera headcount differs from tag count", Grace),
    AlarmSpec("door_held_open", "warning", "门未关", "Door held open", DoorHeldOpen),
    AlarmSpec("locker_open_too_long", "minor", "柜门未关", "Locker compartment left open", LockerOpenTooLong),
    AlarmSpec("locker_unauthorized_open", "critical", "非授权开柜", "Locker opened without authorisation", LockerUnauthorized,
              **_l(f"{ADMIN} 第190条", f"{PROC} 第235条")),
    AlarmSpec("evidence_unauthorized_removal", "critical", "财物违规取出", "Evidence removed without a custody order", RuleSettings,
              **_l(f"{ADMIN} 第190条", f"{PROC} 第235条")),
    AlarmSpec("female_search_without_female_staff", "major", "女性检查无女性工作人员",
              "Female suspect searched without female staff", FemaleSearch,
              **_l(f"{CRIM} 第132条", f"{CRIM} 第139条", f"{PROC} 第217条", f"{PROC} 第225条",
                   f"{ADMIN} 第84条", f"{PSAL} 第103条")),
    AlarmSpec("minor_without_guardian", "major", "未成年人无监护人", "Minor questioned without guardian", MinorGuardian,
              **_l(f"{CRIM} 第281条", f"{PROC} 第323条", f"{PROC} 第324条", f"{ADMIN} 第75条", f"{PSAL} 第98条")),
    AlarmSpec("interrogation_not_recorded", "critical", "未同步录音录像",
              "Questioning in a room that is not recording", NotRecorded,
              **_l(f"{CRIM} 第123条", f"{PROC} 第208条", f"{PSAL} 第97条")),
    AlarmSpec("female_minor_without_female_staff", "major", "女性未成年人无女性工作人员",
              "Female minor questioned without a female officer or staff member", FemaleMinor,
              **_l(f"{CRIM} 第281条", f"{PROC} 第324条", f"{ADMIN} 第75条", f"{PSAL} 第98条")),
    AlarmSpec("mixed_waiting_room", "major", "分别看管", "Suspects who must be held apart share a waiting room",
              MixedWaiting, **_l(f"{INQ} 第10条", f"{INQ} 第30条", f"{CRIM} 第280条", f"{PROC} 第328条")),
    AlarmSpec("evidence_handover_overdue", "major", "财物移交超时",
              "Evidence not handed to the custodian in time", EvidenceHandover,
              **_l(f"{ADMIN} 第190条", f"{PROC} 第235条")),
    AlarmSpec("evidence_not_returned", "major", "调用未归还", "Withdrawn evidence not returned by its due time",
              RuleSettings, **_l(f"{ADMIN} 第190条", f"{PROC} 第235条")),
    AlarmSpec("camera_tamper", "critical", "视频遮挡", "Camera covered, moved or losing video", CameraTamper,
              **_l(f"{CRIM} 第123条", f"{PROC} 第208条", f"{PSAL} 第97条")),
    AlarmSpec("lone_identification", "major", "单人主持辨认", "Identification presided by fewer than two officers",
              LoneIdentification, **_l(f"{PROC} 第259条")),
    AlarmSpec("device_offline", "major", "设备离线", "Device offline", DeviceOffline),
    # A fake base station could feed presence that hides a lone interrogation or an
    # unattended suspect: it protects the presence record those two alarms stand on. It is
    # facility evidence of a legal alarm's blindness, and no article speaks to it (DOMAIN v3).
    AlarmSpec("station_impostor", "critical", "基站冒用", "Base station impostor", RuleSettings, **_l()),
    # v3 (SPEC §7): the gateway's clock not synchronised for [clock] unsynced_alarm_s (rules/clock.py)
    AlarmSpec("clock_unsynchronised", "major", "时钟未同步", "Clock not synchronised", RuleSettings),
]}


def validate_rules_config(raw: dict[str, Any]) -> dict[str, RuleSettings]:
    """Validate ``[rules.*]``; raise ValueError naming ``rules.<code>.<key>``."""
    from rules.validation import KeyPathError as _KeyError
    from rules.validation import format_validation_error
    from rules.legal_bounds import REASON_KEY, violations
    out: dict[str, RuleSettings] = {}
    for code, table in raw.items():
        if code == REASON_KEY:          # [rules] legal_disabled_reason (DOMAIN v3), not an alarm code
            if not isinstance(table, str):
                raise _KeyError(f"rules.{code}", "must be a string (who approved disabling a legal alarm, and why)")
            continue
        spec = CATALOG.get(code)
        if spec is None:
            from rules.validation import did_you_mean
            raise _KeyError(f"rules.{code}", "unknown alarm code" + did_you_mean(code, set(CATALOG)))
        if not isinstance(table, dict):
            raise _KeyError(f"rules.{code}", "must be a table")
        try:
            out[code] = spec.settings.model_validate(table)
        except ValidationError as e:
            first = format_validation_error("", e, model=spec.settings)[0].removeprefix(": ")
            path, _, reason = first.partition(": ")
            raise _KeyError(f"rules.{code}.{path}", reason) from None
    # legal alarms within the law's bounds (DOMAIN v3): every problem named, with its article
    problems = violations(raw, {**{c: s.settings() for c, s in CATALOG.items()}, **out})
    if problems:
        err = _KeyError(*problems[0])
        err.more = [_KeyError(path, reason) for path, reason in problems[1:]]
        raise err
    return out


def rule_settings(raw: dict[str, Any]) -> dict[str, RuleSettings]:
    """Settings for every code, defaults filled in."""
    given = validate_rules_config(raw)
    return {code: given.get(code) or spec.settings() for code, spec in CATALOG.items()}
