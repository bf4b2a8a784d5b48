"""report.html of a case bundle: one self-contained page (no network, A4 print) for a
legal department that never saw casegate. Chinese first, the center's local time.

Built only from the events in the bundle (and the registrations of the case's own
persons), so nothing of another case can appear in it."""
from __future__ import annotations

import base64
import html
from typing import Any

from rules.model import format_duration, format_local, parse_ts

ROLE_ZH = {"suspect": "嫌疑人 suspect", "visitor": "来访人 visitor", "officer": "民警 officer",
           "staff": "工作人员 staff"}
CASE_ZH = {"criminal": "刑事 criminal", "administrative": "行政 administrative", "inquiry": "继续盘问 inquiry"}
# The law's base limit per case type and the article that sets it (DOMAIN.md "Legal limits").
LIMITS = {"criminal": (12, "刑事诉讼法 第119条"), "administrative": (8, "治安管理处罚法(2025) 第97条"),
          "inquiry": (12, "人民警察法 第9条; 继续盘问规定 第10-11条")}
ACTION_ZH = {"deposit": "入库 deposit", "withdraw": "调用 withdraw", "return": "归还 return",
             "release": "发还 release", "dispose": "处置 dispose"}
COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#bab0ac"]

CSS = """
@page { size: A4; margin: 14mm; }
body { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "Microsoft YaHei", "PingFang SC", sans-serif;
       font-size: 10.5pt; color: #111; max-width: 190mm; margin: 0 auto; }
h1 { font-size: 16pt; margin: 0 0 4pt; } h2 { font-size: 13pt; border-bottom: 1.5pt solid #333;
     margin-top: 16pt; } h3 { font-size: 11.5pt; margin: 12pt 0 4pt; }
table { border-collapse: collapse; width: 100%; margin: 4pt 0; } td, th { border: 0.5pt solid #999;
     padding: 2pt 4pt; vertical-align: top; text-align: left; } th { background: #eee; }
.muted { color: #555; font-size: 9pt; } .ok { color: #176b1b; font-weight: bold; }
.bad { color: #a11; font-weight: bold; } .person { page-break-inside: avoid; }
svg { width: 100%; height: auto; } figure { margin: 6pt 0; page-break-inside: avoid; }
img.snap { max-width: 80mm; border: 0.5pt solid #999; }
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def render(meta: dict, events: list[dict], sel, snapshots: dict[str, bytes], room_names: dict[str, str],
           room_types: dict[str, str]) -> str:
    tz = meta.get("timezone") or "UTC"

    def loc(ts: str | float | None) -> str:
        if ts is None or ts == "":
            return "-"
        try:
            return format_local(ts if isinstance(ts, (int, float)) else parse_ts(ts), tz)
        except (ValueError, TypeError):
            return str(ts)

    def room_label(r: str | None) -> str:
        return f"{room_names[r]} ({r})" if r in room_names else str(r)

    def is_interrogation(r: str | None) -> bool:
        if r in room_types:
            return room_types[r] == "interrogation"
        return bool(r) and ("interrog" in r or "讯问" in r or "审讯" in r)

    end_of_record = parse_ts(meta["signed_at"])
    # recorders: intervals per room
    rec_on: dict[str, float] = {}
    recorded: dict[str, list[tuple[float, float]]] = {}
    for ev in events:
        if ev["type"] in ("recording.started", "recording.stopped"):
            r = ev["data"].get("room")
            t = parse_ts(ev["ts"])
            if ev["type"] == "recording.started":
                rec_on.setdefault(r, t)
            elif r in rec_on:
                recorded.setdefault(r, []).append((rec_on.pop(r), t))
    for r, t in rec_on.items():
        recorded.setdefault(r, []).append((t, end_of_record))

    parts = [f"<!DOCTYPE html><html lang='zh-CN'><head><meta charset='utf-8'>"
             f"<title>案件材料 {_e(meta['case'])}</title><style>{CSS}</style></head><body>"]
    parts.append(f"<h1>案件办案区记录 Case record: {_e(meta['case'])}</h1>"
                 f"<p>{_e(meta.get('center_name') or '')} ({_e(meta['center'])}) · 导出时间 exported "
                 f"{_e(loc(meta['created']))} · 时间均为办案中心当地时间 ({_e(tz)}) — all times are the "
                 f"center's local time.</p>")
    parts.append(_verification(meta, loc))
    parts.append("<p class='muted'>本报告由执法办案管理中心的网关(casegate)自动记录的事件生成:手环/门禁定位记录人员所在房间,"
                 "录音录像设备记录录制状态,规则按法律规定自动报警。This report is generated from the events the "
                 "center's gateway recorded automatically: wristbands and doors locate each person, recorders report "
                 "whether they record, and rules raise the alarms the law asks for.</p>")

    # persons
    parts.append("<h2>人员 Persons</h2>")
    by_person: dict[str, list[dict]] = {}
    for ev in events:
        d = ev["data"] if isinstance(ev["data"], dict) else {}
        for k in ("person",):
            p = d.get(k)
            if isinstance(p, str):
                by_person.setdefault(p, []).append(ev)
    persons = sorted(sel.persons.items(), key=lambda kv: (kv[1].get("role") != "suspect", kv[0]))
    for pid, reg in persons:
        parts.append(_person(pid, reg, by_person.get(pid, []), recorded, loc, room_label, is_interrogation,
                             end_of_record))

    parts.append(_alarms(events, loc, room_label))
    parts.append(_custody(events, loc))
    if snapshots:
        parts.append("<h2>现场抓拍 Snapshots</h2>")
        for name, blob in sorted(snapshots.items()):
            mime = "image/png" if blob[:4] == b"\x89PNG" else "image/jpeg"
            parts.append(f"<figure><img class='snap' alt='{_e(name)}' src='data:{mime};base64,"
                         f"{base64.b64encode(blob).decode()}'><figcaption class='muted'>{_e(name)}</figcaption>"
                         f"</figure>")
    parts.append("</body></html>")
    return "".join(parts)


def _verification(meta: dict, loc) -> str:
    withheld = meta.get("withheld", 0)
    return (
        "<h2>核验 Verification</h2><table>"
        f"<tr><th>事件 Events</th><td>{meta['events']} 条 events of this case, seq {meta['seqs'][0][0] if meta['seqs'] else '-'}"
        f"..{meta['signed_seq']}</td></tr>"
        f"<tr><th>签名 Signed head</th><td>{_e(loc(meta['signed_at']))}, 设备密钥 device key <b>{_e(meta['key_id'])}</b></td></tr>"
        f"<tr><th>未收录 Withheld</th><td>{withheld} 条涉及其他案件人员的事件仅保留哈希链接 "
        f"event(s) naming persons of other cases: only their hash link is included</td></tr>"
        f"<tr><th>来源 Origin</th><td>{_e(meta.get('origin'))}</td></tr></table>"
        "<p class='muted'>核验方法 How to verify: <code>casegate case verify 本文件.zip --key &lt;中心公布的公钥&gt;</code>"
        " — 重新计算每条事件的哈希,检查哈希链逐条相连直至经设备密钥签名的链头。recomputes every event's hash and "
        "checks that every link connects up to a head signed by the center's device key.</p>")


def _stays(evs: list[dict], end: float) -> list[tuple[str, float, float]]:
    open_: dict[str, float] = {}
    out: list[tuple[str, float, float]] = []
    for ev in evs:
        t = parse_ts(ev["ts"])
        d = ev["data"]
        if ev["type"] == "presence.entered":
            open_.setdefault(d.get("room"), t)
        elif ev["type"] == "presence.left" and d.get("room") in open_:
            out.append((d.get("room"), open_.pop(d.get("room")), t))
        elif ev["type"] == "person.left":
            for r, t0 in open_.items():
                out.append((r, t0, t))
            open_.clear()
    for r, t0 in open_.items():
        out.append((r, t0, end))
    return sorted(out, key=lambda s: s[1])


def _overlap(a: float, b: float, spans: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(b, y) - max(a, x)) for x, y in spans)


def _rests(evs: list[dict]) -> list[tuple[float, float, Any, Any]]:
    """(from, to, kind, by) of each person.rest (30 min when it has no end)."""
    rests = []
    for e in evs:
        if e["type"] == "person.rest":
            d = e["data"]
            try:
                a = parse_ts(d["from"])
                b = parse_ts(d["to"]) if d.get("to") else a + 1800
                rests.append((a, b, d.get("kind"), d.get("by")))
            except (KeyError, ValueError, TypeError):
                continue
    return rests


def _person_table(pid: str, reg: dict, arrived: float, left: float | None, end: float, loc) -> list[str]:
    """Who, when arrived and left, and (a suspect) the detention limit used."""
    role = reg.get("role")
    ctype = reg.get("case_type")
    base_h, article = LIMITS.get(ctype, (None, ""))
    limit_h = reg.get("limit_h") or base_h
    out = [f"<div class='person'><h3>{_e(reg.get('name') or pid)} <span class='muted'>({_e(pid)})</span></h3>"
           "<table>"
           f"<tr><th>身份 Role</th><td>{_e(ROLE_ZH.get(role, role))}"
           f"{' · ' + _e(CASE_ZH.get(ctype, ctype)) if ctype else ''}"
           f"{' · 未成年人 minor' if reg.get('minor') else ''}"
           f"{' · 性别 ' + ('女 female' if reg.get('gender') == 'female' else '男 male') if reg.get('gender') else ''}"
           f"{' · 陪同对象 for ' + _e(reg.get('for')) if reg.get('for') else ''}</td></tr>"
           f"<tr><th>到案 Arrived</th><td>{_e(loc(arrived))}</td></tr>"
           f"<tr><th>离开 Left</th><td>{_e(loc(left)) if left else '记录截止时仍在中心 still in the center when the record ends'}"
           f"</td></tr>"]
    if limit_h and role == "suspect":
        used = end - arrived
        over = used > limit_h * 3600
        out.append(f"<tr><th>时限 Time limit</th><td>{limit_h:g} h ({_e(article)}) · 已用 used "
                   f"{_e(format_duration(used))} · <span class='{'bad' if over else 'ok'}'>"
                   f"{'超过时限 over the limit' if over else '未超时限 within the limit'}</span></td></tr>")
    out.append("</table>")
    return out


def _interrogation_table(stays, recorded, loc, room_label, is_interrogation) -> list[str]:
    inter = [(r, a, b) for r, a, b in stays if is_interrogation(r)]
    if not inter:
        return []
    out = ["<p class='muted'>录制比例按录音录像设备报告的开始/停止计算;设备停止报告时规则视为未录制(见报警)。"
           "Recorded share from the recorder's start/stop reports; a recorder that stops reporting counts "
           "as not recording for the alarms.</p>",
           "<table><tr><th>讯问/询问 Interrogation</th><th>开始 from</th><th>结束 to</th><th>时长 duration</th>"
           "<th>同步录音录像 recorded</th></tr>"]
    for r, a, b in inter:
        cov = _overlap(a, b, recorded.get(r, [])) / (b - a) if b > a else 1.0
        cls = "ok" if cov >= 0.999 else "bad"
        out.append(f"<tr><td>{_e(room_label(r))}</td><td>{_e(loc(a))}</td><td>{_e(loc(b))}</td>"
                   f"<td>{_e(format_duration(b - a))}</td><td class='{cls}'>{cov * 100:.0f}%</td></tr>")
    out.append("</table>")
    return out


def _stays_and_rests_tables(stays, rests, loc, room_label) -> list[str]:
    out = []
    if stays:
        out.append("<table><tr><th>房间 Room</th><th>进入 entered</th><th>离开 left</th><th>时长 duration</th></tr>")
        for r, a, b in stays:
            out.append(f"<tr><td>{_e(room_label(r))}</td><td>{_e(loc(a))}</td><td>{_e(loc(b))}</td>"
                       f"<td>{_e(format_duration(b - a))}</td></tr>")
        out.append("</table>")
    if rests:
        out.append("<table><tr><th>休息/用餐 Rest, meal</th><th>从 from</th><th>至 to</th><th>记录人 by</th></tr>")
        for a, b, kind, by in rests:
            out.append(f"<tr><td>{'用餐 meal' if kind == 'meal' else '休息 rest'}</td><td>{_e(loc(a))}</td>"
                       f"<td>{_e(loc(b))}</td><td>{_e(by)}</td></tr>")
        out.append("</table>")
    return out


def _person(pid: str, reg: dict, evs: list[dict], recorded, loc, room_label, is_interrogation, end_rec) -> str:
    role = reg.get("role")
    arrived = parse_ts(reg["arrived_at"]) if reg.get("arrived_at") else (parse_ts(evs[0]["ts"]) if evs else end_rec)
    left = next((parse_ts(e["ts"]) for e in evs if e["type"] == "person.left"), None)
    end = left if left is not None else end_rec
    stays = _stays(evs, end)
    rests = _rests(evs)
    base_h, article = LIMITS.get(reg.get("case_type"), (None, ""))
    limit_h = reg.get("limit_h") or base_h
    out = _person_table(pid, reg, arrived, left, end, loc)
    out.append(_timeline(pid, arrived, end, stays, rests, recorded, limit_h if role == "suspect" else None,
                         article, loc, room_label, is_interrogation))
    out += _interrogation_table(stays, recorded, loc, room_label, is_interrogation)
    out += _stays_and_rests_tables(stays, rests, loc, room_label)
    out.append("</div>")
    return "".join(out)


def _timeline(pid, t0, t1, stays, rests, recorded, limit_h, article, loc, room_label, is_interrogation) -> str:
    """Inline SVG: one lane per room, then interrogation recording, rests, and the detention clock."""
    rooms = list(dict.fromkeys(r for r, _, _ in stays))
    horizon = max(t1, t0 + (limit_h or 0) * 3600) if limit_h else t1
    span = max(60.0, horizon - t0)
    left, width, lane = 150, 600, 18
    rows = len(rooms) + 3
    height = 24 + rows * lane + 20

    def x(t: float) -> float:
        return left + (min(max(t, t0), horizon) - t0) / span * width

    s = [f"<figure><svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {left + width + 10} {height}' "
         f"role='img' aria-label='timeline {_e(pid)}' data-person='{_e(pid)}' font-size='10'>"]
    # hour grid
    step = 3600 if span <= 36 * 3600 else 6 * 3600
    first_tick = t0 - (t0 % step) + step
    t = first_tick
    while t < horizon:
        s.append(f"<line x1='{x(t):.1f}' y1='14' x2='{x(t):.1f}' y2='{height - 18}' stroke='#ddd'/>"
                 f"<text x='{x(t):.1f}' y='{height - 6}' text-anchor='middle' fill='#555'>"
                 f"{_e(loc(t)[11:16])}</text>")
        t += step
    s.append(f"<text x='{left}' y='10' fill='#555'>{_e(loc(t0))}</text>")
    y = 18
    for i, r in enumerate(rooms):
        color = COLORS[i % len(COLORS)]
        s.append(f"<text x='4' y='{y + 12}'>{_e(room_label(r))[:26]}</text>")
        for rr, a, b in stays:
            if rr == r:
                s.append(f"<rect x='{x(a):.1f}' y='{y + 2}' width='{max(1.0, x(b) - x(a)):.1f}' height='{lane - 4}' "
                         f"fill='{color}'><title>{_e(room_label(r))}: {_e(loc(a))} – {_e(loc(b))}</title></rect>")
        y += lane
    s.append(f"<text x='4' y='{y + 12}'>讯问录像 recorded</text>")
    for r, a, b in stays:
        if is_interrogation(r):
            s.append(f"<rect x='{x(a):.1f}' y='{y + 2}' width='{max(1.0, x(b) - x(a)):.1f}' height='{lane - 4}' "
                     f"fill='#d62728'><title>讯问未录 not recorded</title></rect>")
            for ra, rb in recorded.get(r, []):
                a2, b2 = max(a, ra), min(b, rb)
                if b2 > a2:
                    s.append(f"<rect x='{x(a2):.1f}' y='{y + 2}' width='{max(1.0, x(b2) - x(a2)):.1f}' "
                             f"height='{lane - 4}' fill='#2ca02c'><title>录音录像中 recorded</title></rect>")
    y += lane
    s.append(f"<text x='4' y='{y + 12}'>休息 rest/meal</text>")
    for a, b, kind, _ in rests:
        s.append(f"<rect x='{x(a):.1f}' y='{y + 2}' width='{max(1.0, x(b) - x(a)):.1f}' height='{lane - 4}' "
                 f"fill='#8c564b'><title>{_e(kind)}</title></rect>")
    y += lane
    s.append(f"<text x='4' y='{y + 12}'>时限 time limit</text>")
    if limit_h:
        lim = t0 + limit_h * 3600
        s.append(f"<rect x='{x(t0):.1f}' y='{y + 4}' width='{x(lim) - x(t0):.1f}' height='{lane - 8}' fill='#eee' "
                 f"stroke='#999'/>")
        s.append(f"<rect x='{x(t0):.1f}' y='{y + 4}' width='{max(1.0, x(min(t1, lim)) - x(t0)):.1f}' "
                 f"height='{lane - 8}' fill='#1f77b4'/>")
        if t1 > lim:
            s.append(f"<rect x='{x(lim):.1f}' y='{y + 4}' width='{x(t1) - x(lim):.1f}' height='{lane - 8}' "
                     f"fill='#d62728'/>")
        s.append(f"<line x1='{x(lim):.1f}' y1='14' x2='{x(lim):.1f}' y2='{y + lane}' stroke='#d62728' "
                 f"stroke-dasharray='3,2'/><text x='{min(x(lim), left + width - 4):.1f}' y='{y - 2}' "
                 f"text-anchor='end' fill='#d62728'>{limit_h:g} h {_e(article)}</text>")
    s.append("</svg><figcaption class='muted'>时间轴 timeline: 所在房间、讯问及其录音录像(绿=录制,红=未录制)、休息、"
             "留置时间与法定时限 rooms, interrogations and their recording (green recorded, red not), rests, and "
             "the time held against the legal limit</figcaption></figure>")
    return "".join(s)


def _alarms(events: list[dict], loc, room_label) -> str:
    alarms: dict[str, dict] = {}
    for ev in events:
        if not ev["type"].startswith("alarm."):
            continue
        d = ev["data"]
        aid = d.get("alarm_id")
        if not aid:
            continue
        a = alarms.setdefault(aid, {"code": d.get("code"), "severity": d.get("severity"), "raised": None,
                                    "cleared": None, "acks": [], "message": {}, "room": d.get("room"),
                                    "basis": d.get("legal_basis") or [], "escalated": 0})
        if ev["type"] == "alarm.raised":
            a["raised"] = a["raised"] or ev["ts"]
            a["message"] = d.get("message") or a["message"]
        elif ev["type"] == "alarm.cleared":
            a["cleared"] = ev["ts"]
        elif ev["type"] == "alarm.acknowledged":
            a["acks"].append((ev["ts"], d.get("by"), d.get("note")))
        elif ev["type"] == "alarm.escalated":
            a["escalated"] = max(a["escalated"], int(d.get("level") or 0))
    out = ["<h2>报警 Alarms</h2>"]
    if not alarms:
        out.append("<p>无 none</p>")
        return "".join(out)
    from rules.catalog import CATALOG
    out.append("<p class='muted'>报警由网关按法律规定自动产生;确认表示值班民警已知悉,消除表示情况已结束。Alarms are raised "
               "automatically where the law is not met; acknowledged = an officer took note, cleared = the situation "
               "ended.</p>")
    out.append("<table><tr><th>报警 Alarm</th><th>房间 room</th><th>发生 raised</th><th>确认 acknowledged (by)</th>"
               "<th>消除 cleared</th><th>法律依据 legal basis</th></tr>")
    for aid, a in sorted(alarms.items(), key=lambda kv: kv[1]["raised"] or ""):
        msg = a["message"] if isinstance(a["message"], dict) else {}
        acks = "<br>".join(f"{_e(loc(t))} {_e(by)}{' — ' + _e(note) if note else ''}" for t, by, note in a["acks"])
        spec = CATALOG.get(a["code"])
        title = f"{spec.zh} {spec.en}" if spec else a["code"]
        out.append(f"<tr><td><b>{_e(title)}</b> ({_e(a['severity'])}, {_e(a['code'])})<br>{_e(msg.get('zh'))}<br>"
                   f"<span class='muted'>{_e(msg.get('en'))}</span>"
                   f"{'<br>升级 escalated to level ' + str(a['escalated']) if a['escalated'] else ''}</td>"
                   f"<td>{_e(room_label(a['room']) if a['room'] else '-')}</td><td>{_e(loc(a['raised']))}</td>"
                   f"<td>{acks or '<span class=bad>未确认 not acknowledged</span>'}</td>"
                   f"<td>{_e(loc(a['cleared'])) if a['cleared'] else '未消除 still active'}</td>"
                   f"<td>{_e('; '.join(map(str, a['basis'])))}</td></tr>")
    out.append("</table>")
    return "".join(out)


def _custody(events: list[dict], loc) -> str:
    items: dict[str, list[str]] = {}
    orders: dict[str, str] = {}
    for ev in events:
        d = ev["data"]
        t = ev["type"]
        if t == "custody.ordered":
            item = str(d.get("item"))
            orders[str(d.get("order"))] = item
            items.setdefault(item, []).append(
                f"<tr><td>{_e(loc(ev['ts']))}</td><td>指令 order {_e(d.get('order'))}: "
                f"{_e(ACTION_ZH.get(d.get('action'), d.get('action')))}</td><td>{_e(d.get('by'))}"
                f"{' / 批准 approved ' + _e(d.get('approved_by')) if d.get('approved_by') else ''}</td></tr>")
        elif t in ("evidence.added", "evidence.removed"):
            item = str(d.get("item"))
            what = "放入 put in" if t == "evidence.added" else "取出 taken out"
            items.setdefault(item, []).append(
                f"<tr><td>{_e(loc(ev['ts']))}</td><td>{what} {_e(d.get('locker'))} #{_e(d.get('compartment'))}</td>"
                f"<td>-</td></tr>")
        elif t == "locker.unlock_requested" and str(d.get("order")) in orders:
            items.setdefault(orders[str(d.get("order"))], []).append(
                f"<tr><td>{_e(loc(ev['ts']))}</td><td>开柜 unlock {_e(d.get('locker'))} #{_e(d.get('compartment'))}"
                f"</td><td>{_e(d.get('by'))}</td></tr>")
    out = ["<h2>涉案财物保管链 Evidence chain of custody</h2>"]
    if not items:
        out.append("<p>无 none</p>")
    for item, rows in items.items():
        out.append(f"<h3>{_e(item)}</h3><table><tr><th>时间 time</th><th>事项 what</th><th>经办 by</th></tr>"
                   + "".join(rows) + "</table>")
    return "".join(out)
