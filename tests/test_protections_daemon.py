"""Issue 14 through the real daemon and a real mosquitto: recording/state,
identification sessions, locker/open by a non-officer, custody times in the
center's timezone; and every alarm code's published payload carrying its
legal_basis where DOMAIN.md marks the alarm L."""
from __future__ import annotations

import json
import re
import time
import zlib
from pathlib import Path

import pytest

from helpers.daemon import DaemonProcess, write_config
from helpers.central import Central, P

from helpers.rule_cases import CASES  # noqa: E402
from helpers.scenario import ROOMS, T0, flatten  # noqa: E402

from rules.model import GENESIS, Draft, seal  # noqa: E402
from gateway.journal import Journal  # noqa: E402
from rules.catalog import CATALOG  # noqa: E402

DOMAIN = Path(__file__).resolve().parents[1].parent / "shared" / "DOMAIN.md"

ROOMS_TOML = "".join(
    f'[[rooms]]\nid = "{r["id"]}"\ntype = "{r["type"]}"\nadjacent = {json.dumps(r.get("adjacent", []))}\n\n'
    for r in ROOMS)


@pytest.fixture
def center(tmp_path, mosquitto):
    cfg = write_config(tmp_path, mosquitto.port, ROOMS_TOML + '[rules]\nlegal_disabled_reason = "test: the alarm under test would interleave (approved by the lead)"\n' + "[rules.interrogation_not_recorded]\nstale_s = 3\n"
                       "[rules.mixed_waiting_room]\nenabled = false\n")
    d = DaemonProcess(cfg).start()
    d.wait_status(lambda s: s["uplink"]["connected"])
    c = Central(mosquitto.port)
    yield d, c
    c.close()
    d.stop()


def test_recording_identification_locker_and_custody_requests(center, mosquitto, subscriber_factory):
    d, c = center
    # a legal alarm switched off is said at every start (config check says it too)
    assert "legal alarm disabled by config: mixed_waiting_room" in d.log()
    sub = subscriber_factory(mosquitto.port, [f"{P}/events/#"])
    assert c.request("person/register", person="o1", role="officer")["ok"]
    assert c.request("person/register", person="st1", role="staff")["ok"]

    # recording/state by hand (no recorder configured for the room): by an officer (DOMAIN v3);
    # a change is journaled; an immediate repeat is a heartbeat too soon
    r = c.request("recording/state", room="interrogation-1", recording=True, source="rec-1", by="o1")
    assert r["ok"] and r["data"]["event_id"]
    r = c.request("recording/state", room="interrogation-1", recording=True, source="rec-1", by="o1")
    assert r["ok"] and r["data"].get("unchanged") is True
    time.sleep(1.3)       # > stale_s/3 of wall time, and no other event meanwhile: a heartbeat
    r = c.request("recording/state", room="interrogation-1", recording=True, source="rec-1", by="o1")
    assert r["ok"] and r["data"].get("event_id"), r
    r = c.request("recording/state", room="interrogation-1", recording=False, source="rec-1", by="o1")
    assert r["ok"] and r["data"]["event_id"]
    r = c.request("recording/state", room="nowhere", recording=True, source="rec-1", by="o1")
    assert r["ok"] is False and r["error"]["code"] == "not_found"
    r = c.request("recording/state", room="interrogation-1", recording="yes", source="rec-1")
    assert r["ok"] is False and r["error"]["code"] == "bad_request"
    m = sub.wait_for(lambda m: m.topic == f"{P}/events/recording/stopped", 10)
    assert json.loads(m.payload)["data"] == {"room": "interrogation-1", "source": "rec-1", "recorder": False,
                                             "by": "o1"}
    assert len(sub.payloads(f"{P}/events/recording/started")) == 2

    # identification sessions: by a registered officer; one per case and room
    ids = {"room": "identification-1", "case_id": "c1"}
    r = c.request("identification/start", by="st1", **ids)
    assert r["ok"] is False and r["error"]["code"] == "forbidden"
    assert c.request("identification/start", by="o1", **ids)["ok"]
    r = c.request("identification/start", by="o1", **ids)
    assert r["ok"] is False and r["error"]["code"] == "conflict"
    assert c.request("identification/end", by="o1", **ids)["ok"]
    r = c.request("identification/end", by="o1", **ids)
    assert r["ok"] is False and r["error"]["code"] == "not_found"
    m = sub.wait_for(lambda m: m.topic == f"{P}/events/identification/ended", 10)
    assert json.loads(m.payload)["data"] == dict(ids, by="o1")

    # locker/open by somebody who is not a registered officer: forbidden, the board is never asked
    for who in ("st1", "ghost"):
        r = c.request("locker/open", locker="locker-x", compartment=1, by=who)
        assert r["ok"] is False and r["error"]["code"] == "forbidden", r
        assert who in r["error"]["message"]
    r = c.request("locker/open", locker="locker-x", compartment=1, by="o1")
    assert r["ok"] is False and r["error"]["code"] == "not_found"       # an officer gets to the device

    # custody times without an offset are the center's (Asia/Shanghai): 18:00 there = 10:00Z
    r = c.request("custody/order", order="w1", item="e1", action="withdraw", case_id="c1", by="o1",
                  expires="2026-11-28T18:00:00", due="2026-11-29T09:30:00+08:00")
    assert r["ok"], r
    m = sub.wait_for(lambda m: m.topic == f"{P}/events/custody/ordered", 10)
    data = json.loads(m.payload)["data"]
    assert data["expires"] == "2026-11-28T10:00:00.000Z" and data["due"] == "2026-11-29T01:30:00.000Z"
    r = c.request("custody/order", order="d1", item="e2", action="deposit", case_id="c1", by="o1",
                  due="2026-11-29T09:30:00")
    assert r["ok"] is False and r["error"]["code"] == "bad_request" and "withdraw" in r["error"]["message"]
    r = c.request("custody/order", order="d2", item="e2", action="deposit", case_id="c1", by="o1",
                  expires="tomorrow")
    assert r["ok"] is False and r["error"]["code"] == "bad_request" and "expires" in r["error"]["message"]


# ---- legal_basis on every published alarm -----------------------------------------------------
def domain_legal_codes() -> dict[str, bool]:
    """code -> marked L, from DOMAIN.md's alarm catalog table (codes joined by
    " / " share the row's marker: `detention_warning` / `detention_timeout` L)."""
    out: dict[str, bool] = {}
    for line in DOMAIN.read_text().splitlines():
        if not line.startswith("| `"):
            continue
        cell = line.split("|")[1]
        for group in cell.split(","):
            codes = re.findall(r"`([a-z_]+)`", group)
            legal = group.strip().endswith(" L")
            for code in codes:
                out[code] = legal
    return out


@pytest.mark.skipif(not DOMAIN.exists(), reason="../shared/DOMAIN.md not present")
def test_catalog_legal_marks_match_domain():
    marks = domain_legal_codes()
    assert len(marks) > 30
    for code, spec in CATALOG.items():
        if code in marks:
            assert spec.legal == marks[code], code
        if spec.legal and code != "station_impostor":     # DOMAIN v3: station_impostor cites nothing
            assert spec.legal_basis, code
        for cite in spec.legal_basis:      # DOMAIN v3: one article per entry, "<law> 第<N>条", no ranges
            assert re.fullmatch(r"\S+ 第\d+条", cite), cite


def _suffix(k: int):
    """Rename a case's ids so that many cases share one journal without meeting."""
    keys = {"person", "for", "by", "room", "camera", "device", "locker", "door", "item", "order", "case_id"}

    def ren(obj):
        if isinstance(obj, dict):
            out = {}
            for key, v in obj.items():
                if key == "tag" and isinstance(v, str):
                    out[key] = f"{zlib.crc32(f'{v}/{k}'.encode()):08X}" + ("00" if len(v) == 10 else "")
                elif key in keys and isinstance(v, str):
                    out[key] = f"{v}-{k}"
                else:
                    out[key] = ren(v)
            return out
        if isinstance(obj, list):
            return [ren(x) for x in obj]
        return obj
    return ren


def test_every_alarm_code_published_with_its_legal_basis(tmp_path, mosquitto, subscriber_factory):
    """One positive case per alarm code (rule_cases.py), each in its own copy of
    the rooms, cut right after its first raise, journaled; the real daemon
    starts (restart = replay + reconcile), publishes the alarms that are
    active, and each payload on P/alarms/<code> carries the catalog's
    legal_basis, non-empty for the alarms DOMAIN marks L."""
    chosen = {}
    for c in CASES:
        if c.expected and c.code not in chosen and not c.rules:
            chosen[c.code] = c
    for c in CASES:
        if c.expected and c.code not in chosen:
            chosen[c.code] = c
    assert set(chosen) == set(CATALOG)
    rooms_toml, rules_toml, steps = [], {}, []
    for k, code in enumerate(sorted(chosen)):
        c = chosen[code]
        ren = _suffix(k)
        for r in ROOMS:
            rooms_toml.append(f'[[rooms]]\nid = "{r["id"]}-{k}"\ntype = "{r["type"]}"\n'
                              f'adjacent = {json.dumps([f"{a}-{k}" for a in r.get("adjacent", [])])}\n')
        first = c.expected[0][1]
        for t, typ, data in flatten(c.steps):
            if t <= first:
                steps.append((t, typ, ren(data)))
        for rc, table in c.rules.items():       # per-code settings of that case (none clash)
            rules_toml.setdefault(rc, {}).update(table)
    steps.sort(key=lambda s: s[0])
    rules_text = ""
    for rc, table in rules_toml.items():
        rules_text += f"[rules.{rc}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())
    cfg = write_config(tmp_path, mosquitto.port, "\n".join(rooms_toml) + "\n" + rules_text)
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    j = Journal(state / "journal.db")
    prev, evs = GENESIS, []
    for seq, (t, typ, data) in enumerate(steps, 1):
        ev = seal(Draft(typ, data, "test", T0 + t), seq, "t-center", prev, T0 + t)
        prev = ev.hash
        evs.append(ev)
    j.append(evs)
    j.close()
    sub = subscriber_factory(mosquitto.port, [f"{P}/alarms/#"])
    d = DaemonProcess(cfg).start()
    try:
        codes: set[str] = set()

        def all_seen(m) -> bool:
            codes.add(json.loads(m.payload)["data"]["code"])
            return codes >= set(CATALOG)
        try:
            sub.wait_for(all_seen, 90)
        except TimeoutError:
            raise AssertionError(f"never published: {sorted(set(CATALOG) - codes)}") from None
    finally:
        d.stop()
    seen = {}
    for p in sub.payloads(f"{P}/alarms/"):
        seen.setdefault(p["data"]["code"], p)
    assert set(seen) >= set(CATALOG)
    for code, p in seen.items():
        spec = CATALOG[code]
        # per case type / person (rules/citations.py): always articles the catalog lists for the code
        assert set(p["data"]["legal_basis"]) <= set(spec.legal_basis), code
        if spec.legal and code != "station_impostor":
            assert p["data"]["legal_basis"], code


def test_config_check_warns_when_a_legal_alarm_is_disabled(tmp_path):
    from helpers.daemon import cli
    bare = write_config(tmp_path, None, ROOMS_TOML + "[rules.interrogation_not_recorded]\nenabled = false\n")
    r = cli("config", "check", config=bare)     # DOMAIN v3: not without a reason
    assert r.returncode == 2 and "rules.interrogation_not_recorded.enabled" in r.stderr
    assert "legal_disabled_reason" in r.stderr and "刑事诉讼法 第123条" in r.stderr
    cfg = write_config(tmp_path, None, ROOMS_TOML + '[rules]\nlegal_disabled_reason = "recorder replaced, 法制 OK"\n'
                       "[rules.interrogation_not_recorded]\nenabled = false\n"
                       "[rules.door_held_open]\nenabled = false\n")
    r = cli("config", "check", config=cfg)
    assert r.returncode == 0, r.stderr
    assert "recorder replaced, 法制 OK" in r.stderr
    assert "legal alarm disabled: interrogation_not_recorded" in r.stderr
    assert "刑事诉讼法 第123条" in r.stderr
    assert "door_held_open" not in r.stderr            # a facility alarm may be switched off
    j = json.loads(cli("config", "check", "--json", config=cfg).stdout)
    assert [w.split(" (")[0] for w in j["warnings"]] == ["legal alarm disabled: interrogation_not_recorded"]
    ok = write_config(tmp_path, None, ROOMS_TOML + "[rules.interrogation_not_recorded]\ngrace_s = 30\n")
    r = cli("config", "check", config=ok)
    assert r.returncode == 0 and "legal alarm disabled" not in r.stderr + r.stdout
