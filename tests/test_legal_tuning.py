"""Issue 23 item 2 on the real CLI and daemon: legal alarms cannot be tuned away (DOMAIN v3
"Tuning bounds of legal alarms"). The issue's "tuned to death" config is refused by
`config check` (exit 2, each key with its article) and by `casegate run`; a legal alarm
switched off with `[rules] legal_disabled_reason` is reported by config check, doctor and
status and journaled (config.legal_disabled) at every start and reload."""
from __future__ import annotations

import json
import signal

from helpers.daemon import DaemonProcess, cli, write_config
from helpers.doctor import healthy_probes

from gateway.checks import WARN
from gateway.config import parse_config
from gateway.doctor import run_checks
from gateway.legal_disabled import legal_disabled, legal_disabled_draft
from helpers import polling

ROOMS = """
[[rooms]]
id = "security_check"
type = "security_check"
[[rooms]]
id = "info_collection"
type = "info_collection"
[[rooms]]
id = "waiting-1"
type = "waiting"
[[rooms]]
id = "interrogation-1"
type = "interrogation"
"""

# The issue: "relaxed_case_types = ["criminal"], min_investigators = 1, one-day grace periods,
# rest limit_h = 1000, camera_tamper.room_types = [], guardian_kinds including lawyer: all pass
# config check (exit 0, no warning)." - (key, the article its problem must name)
TUNED_TO_DEATH = """
[rules.lone_interrogation]
relaxed_case_types = ["criminal"]
min_investigators = 1
grace_s = 86400
window_s = 86400
[rules.unattended_suspect]
grace_s = 86400
window_s = 86400
[rules.interrogation_not_recorded]
grace_s = 86400
window_s = 86400
[rules.rest_overdue]
limit_h = 1000
[rules.camera_tamper]
room_types = []
[rules.minor_without_guardian]
guardian_kinds = ["guardian", "lawyer"]
"""
EXPECTED = [
    ("rules.lone_interrogation.relaxed_case_types", "治安管理处罚法(2025) 第108条"),
    ("rules.lone_interrogation.min_investigators", "刑事诉讼法 第118条"),
    ("rules.lone_interrogation.grace_s", "刑事诉讼法 第118条"),
    ("rules.unattended_suspect.grace_s", "公安机关适用继续盘问规定 第29条"),
    ("rules.interrogation_not_recorded.grace_s", "公安机关办理刑事案件程序规定 第208条"),
    ("rules.rest_overdue.limit_h", "刑事诉讼法 第119条"),
    ("rules.camera_tamper.room_types", "刑事诉讼法 第123条"),
    ("rules.minor_without_guardian.guardian_kinds", "刑事诉讼法 第281条"),
]


def test_the_tuned_to_death_config_is_refused_by_config_check_and_run(tmp_path):
    """DOMAIN v3 tuning bounds (刑事诉讼法 art. 118 two investigators; 治安管理处罚法 2025 art. 108
    the one-officer relaxation for 治安 cases only; 程序规定 art. 208 recording; 刑事诉讼法 art. 119
    rest; art. 281 guardian; art. 123 recording): every problem named with file, key and article,
    exit 2; `casegate run` refuses the same config (exit 2) before journaling anything."""
    cfg = write_config(tmp_path, None, ROOMS + TUNED_TO_DEATH)
    r = cli("config", "check", config=cfg)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.splitlines()
    for key, article in EXPECTED:
        line = next((x for x in lines if f"{key}: " in x), None)
        assert line is not None, f"{key} not named:\n{r.stderr}"
        assert "casegate.toml" in line and article in line, line
    run = cli("run", config=cfg, timeout=60)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "rules.lone_interrogation.min_investigators" in run.stderr
    assert not (tmp_path / "state" / "journal.db").exists()
    # the same center within the law passes
    cfg.write_text(cfg.read_text().replace(TUNED_TO_DEATH, ""))
    assert cli("config", "check", config=cfg).returncode == 0


DISABLED = """
[rules]
legal_disabled_reason = "SOS buttons being replaced; 法制部门 approved 2026-12-06"
[rules.sos]
enabled = false
"""


def journaled(cfg, type_: str) -> list[dict]:
    r = cli("events", "--json", "--type", type_, config=cfg, check=True)
    return [json.loads(x)["data"] for x in r.stdout.splitlines() if x.strip()]


def wait_for(pred, timeout: float = 30):
    return polling.wait_for(pred, timeout, "the condition")


def test_a_legal_alarm_disabled_with_a_reason_is_reported_and_journaled_at_start_and_reload(tmp_path):
    """DOMAIN v3: `enabled = false` on a legal code only with [rules] legal_disabled_reason, then
    reported by config check, doctor, status and journaled at every start and reload; without a
    reason it is refused. (sos cites 继续盘问规定 art. 29: the 候问室 must be watched.)"""
    bare = write_config(tmp_path, None, ROOMS + "[rules.sos]\nenabled = false\n")
    r = cli("config", "check", config=bare)
    assert r.returncode == 2 and "rules.sos.enabled" in r.stderr and "legal_disabled_reason" in r.stderr
    cfg = write_config(tmp_path, None, ROOMS + DISABLED)
    r = cli("config", "check", config=cfg)
    assert r.returncode == 0, r.stderr
    assert "legal alarm disabled: sos" in r.stderr and "SOS buttons being replaced" in r.stderr
    d = DaemonProcess(cfg).start()
    try:
        (ev,) = wait_for(lambda: journaled(cfg, "config.legal_disabled"))
        assert ev["codes"] == ["sos"] and ev["trigger"] == "start"
        assert ev["reason"].startswith("SOS buttons being replaced")
        assert ev["legal_basis"]["sos"] == ["公安机关适用继续盘问规定 第29条", "公安机关办理刑事案件程序规定 第202条"]
        st = d.status()
        assert st["legal_disabled"]["codes"] == ["sos"] and "法制部门" in st["legal_disabled"]["reason"]
        text = cli("status", config=cfg).stdout
        assert "LEGAL ALARMS DISABLED sos" in text and "法制部门 approved" in text
        doctor = {f.check: f for f in run_checks(str(cfg), healthy_probes())}      # what `casegate doctor` prints
        assert doctor["rules.sos"].level == WARN and "法制部门 approved" in doctor["rules.sos"].message
        # a reload journals it again, with what the new config disables
        cfg.write_text(cfg.read_text() + "[rules.camera_tamper]\nenabled = false\n")
        d.proc.send_signal(signal.SIGHUP)
        evs = wait_for(lambda: (lambda x: x if len(x) == 2 else None)(journaled(cfg, "config.legal_disabled")))
        assert evs[1]["trigger"] == "reload" and evs[1]["codes"] == ["camera_tamper", "sos"]
        # a reload into a config outside the bounds is refused: the running one stays
        good = cfg.read_text()
        cfg.write_text(good + "[rules.lone_interrogation]\nmin_investigators = 1\n")
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in d.log() and "min_investigators" in d.log())
        cfg.write_text(good)                     # (the CLI below reads the file too)
        assert len(journaled(cfg, "config.legal_disabled")) == 2
        assert d.status()["legal_disabled"]["codes"] == ["camera_tamper", "sos"]
    finally:
        d.stop()
    # nothing disabled: nothing to journal or report
    assert legal_disabled(parse_config({"rules": {}})) is None
    assert legal_disabled_draft(parse_config({"rules": {}}), "start") is None
