"""Which articles an alarm cites (DOMAIN v3 "Citations").

Every ``legal_basis`` entry is one article, ``<law> 第<N>条``, the law named as in the file
names of shared/law (the 2025 治安管理处罚法 written ``治安管理处罚法(2025)``). Most codes
cite the fixed list of the catalog (rules.catalog.CATALOG); the codes here cite what fits
the person the alarm is about:

* a time limit (``detention_warning`` / ``detention_timeout``) by case type: criminal
  刑事诉讼法 art. 119 + 程序规定(刑) art. 200 (传唤/拘传 12 h, 24 h approved; art. 119
  para 2 covers 拘传 too); administrative 治安管理处罚法(2025) art. 97, for stays that began
  before it took force (2026-01-01, the center's local date) 行政程序规定 art. 69;
  inquiry 人民警察法 art. 9 + 继续盘问规定 arts. 10, 11;
* the 送押 warning (``detention_warning`` with ``details.kind = custody_transfer``):
  刑事诉讼法 art. 85 + 程序规定(刑) art. 126, as ``custody_transfer_overdue`` itself;
* attendance and tracking (``unattended_suspect``, ``suspect_untracked``,
  ``unauthorized_exit``, ``wristband_tamper``, ``sos``, ``suspect_motionless``):
  继续盘问规定 art. 29 (候问室 有被盘问人时，应当由人民警察值班、看管和巡查), and
  程序规定(刑) art. 202 where it applies: when a criminal suspect is among the persons.

Pure: (engine, code, facts) in, a tuple of articles out; the engine asks when it drafts an
alarm (rules.engine.Engine._data), so replay cites exactly what live cited.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

CRIM = "刑事诉讼法"
PROC = "公安机关办理刑事案件程序规定"
ADMIN = "公安机关办理行政案件程序规定"
PSAL = "治安管理处罚法(2025)"
INQ = "公安机关适用继续盘问规定"
POLICE = "人民警察法"

TIME_LIMIT: dict[str, tuple[str, ...]] = {
    "criminal": (f"{CRIM} 第119条", f"{PROC} 第200条"),
    "administrative": (f"{PSAL} 第97条",),
    "administrative_before_2026": (f"{ADMIN} 第69条",),
    "inquiry": (f"{POLICE} 第9条", f"{INQ} 第10条", f"{INQ} 第11条"),
}
TRANSFER: tuple[str, ...] = (f"{CRIM} 第85条", f"{PROC} 第126条")
ATTENDANCE: tuple[str, ...] = (f"{INQ} 第29条",)
ATTENDANCE_CRIMINAL: tuple[str, ...] = (f"{PROC} 第202条",)
ATTENDANCE_CODES = frozenset({"unattended_suspect", "suspect_untracked", "unauthorized_exit",
                              "wristband_tamper", "sos", "suspect_motionless"})

# Every list a code may cite, for the catalog's summary (union) and the test that checks each
# article against the statutes.
ALL_TABLES: tuple[tuple[str, ...], ...] = (*TIME_LIMIT.values(), TRANSFER, ATTENDANCE + ATTENDANCE_CRIMINAL)


@lru_cache(maxsize=16)
def psal_2025_in_force(timezone: str) -> float:
    """Epoch of 2026-01-01 00:00 in the center's timezone: the 2025 治安管理处罚法 in force."""
    from datetime import datetime
    from zoneinfo import ZoneInfo
    try:
        tz = ZoneInfo(timezone)
    except Exception:                       # an unknown zone was refused by config validation
        tz = ZoneInfo("UTC")
    return datetime(2026, 1, 1, tzinfo=tz).timestamp()


def time_limit_basis(person: Any, timezone: str) -> tuple[str, ...] | None:
    """The articles a person's time limit rests on (None: case type unknown: the catalog's)."""
    ct = getattr(person, "case_type", None)
    if ct == "administrative":
        arrived = getattr(person, "arrived_at", None)
        if arrived is not None and arrived < psal_2025_in_force(timezone):
            return TIME_LIMIT["administrative_before_2026"]
        return TIME_LIMIT["administrative"]
    return TIME_LIMIT.get(ct or "")


def basis_for(ctx, code: str, persons: list[str], details: dict) -> tuple[str, ...] | None:
    """The articles of this alarm when they depend on its persons; None = the catalog's list."""
    if code == "detention_warning" or code == "detention_timeout":
        if details.get("kind") == "custody_transfer":
            return TRANSFER
        p = ctx.state.persons.get(persons[0]) if persons else None
        return time_limit_basis(p, getattr(ctx.state, "timezone", "UTC")) if p is not None else None
    if code in ATTENDANCE_CODES:
        state_persons = ctx.state.persons
        for who in persons:
            p = state_persons.get(who)
            if p is not None and p.role == "suspect" and p.case_type == "criminal":
                return ATTENDANCE + ATTENDANCE_CRIMINAL
        return ATTENDANCE
    return None
