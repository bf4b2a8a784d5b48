# Rewrites the test helpers' old import names to the tests/helpers package (issue 26 item 6).
# Run over the merged tree, then delete this file:
#     find tests -name '*.py' -exec sed -i -f MERGE_IMPORTS.sed {} +
#     uv run ruff check tests --fix      # the `import sys` a deleted sys.path line leaves unused
# Only over tests/: bench/ scripts run outside pytest and keep their own sys.path lines (their
# imports of the old names are rewritten on this branch already).
# Idempotent (a second run changes nothing). GNU sed, basic regular expressions.
# A name that another branch added to an old module and that this branch did not move will fail
# at import after the rewrite (ImportError naming it): move it to the helpers module named here.
#
# Old helper modules, now in tests/helpers/ (pytest's `pythonpath = ["tests"]` makes `helpers` importable):
s/^\([[:space:]]*\)from \(tests\.\)\{0,1\}daemon_util import /\1from helpers.daemon import /
s/^\([[:space:]]*\)from brokers import /\1from helpers.brokers import /
s/^\([[:space:]]*\)from busy_journal import /\1from helpers.busy_journal import /
s/^\([[:space:]]*\)from case_day import /\1from helpers.case_day import /
s/^\([[:space:]]*\)from \(central\.\)\{0,1\}pg import /\1from helpers.pg import /
s/^\([[:space:]]*\)from \(central\.\)\{0,1\}contract_util import /\1from helpers.contract import /
s/^\([[:space:]]*\)from \(central\.\)\{0,1\}ingest_util import /\1from helpers.ingest import /
s/^\([[:space:]]*\)from \(central\.\)\{0,1\}hostile_util import /\1from helpers.hostile import /
s/^\([[:space:]]*\)from \(central\.\)\{0,1\}signing_util import /\1from helpers.signing import /
s/^\([[:space:]]*\)from rule_cases import /\1from helpers.rule_cases import /
s/^\([[:space:]]*\)from scenario import /\1from helpers.scenario import /
s/^\([[:space:]]*\)from rule_day import /\1from helpers.rule_day import /
s/^\([[:space:]]*\)from camera_util import /\1from helpers.camera import /
s/^\([[:space:]]*\)from child_entries import /\1from helpers.child_entries import /
s/^\([[:space:]]*\)from sec_helpers import /\1from helpers.security import /
# `import X [as Y]` of a moved module:
s/^\([[:space:]]*\)import brokers\b/\1from helpers import brokers/
s/^\([[:space:]]*\)import busy_journal\b/\1from helpers import busy_journal/
s/^\([[:space:]]*\)import case_day\b/\1from helpers import case_day/
s/^\([[:space:]]*\)import rule_cases\b/\1from helpers import rule_cases/
s/^\([[:space:]]*\)import scenario\b/\1from helpers import scenario/
s/^\([[:space:]]*\)import rule_day\b/\1from helpers import rule_day/
s/^\([[:space:]]*\)import child_entries\b/\1from helpers import child_entries/
s/^\([[:space:]]*\)import sec_mdwe\b/\1from helpers import sec_mdwe/
s/^\([[:space:]]*\)import daemon_util as /\1from helpers import daemon as /
s/^\([[:space:]]*\)import daemon_util\([[:space:]]*\(#.*\)\{0,1\}\)$/\1from helpers import daemon as daemon_util\2/
s/^\([[:space:]]*\)import contract_util as /\1from helpers import contract as /
s/^\([[:space:]]*\)import contract_util\([[:space:]]*\(#.*\)\{0,1\}\)$/\1from helpers import contract as contract_util\2/
s/^\([[:space:]]*\)import ingest_util as /\1from helpers import ingest as /
s/^\([[:space:]]*\)import ingest_util\([[:space:]]*\(#.*\)\{0,1\}\)$/\1from helpers import ingest as ingest_util\2/
s/^\([[:space:]]*\)import hostile_util as /\1from helpers import hostile as /
s/^\([[:space:]]*\)import hostile_util\([[:space:]]*\(#.*\)\{0,1\}\)$/\1from helpers import hostile as hostile_util\2/
s/^\([[:space:]]*\)import signing_util as /\1from helpers import signing as /
s/^\([[:space:]]*\)import signing_util\([[:space:]]*\(#.*\)\{0,1\}\)$/\1from helpers import signing as signing_util\2/
s/^\([[:space:]]*\)import camera_util as /\1from helpers import camera as /
s/^\([[:space:]]*\)import camera_util\([[:space:]]*\(#.*\)\{0,1\}\)$/\1from helpers import camera as camera_util\2/
s/^\([[:space:]]*\)import sec_helpers as /\1from helpers import security as /
s/^\([[:space:]]*\)import sec_helpers\([[:space:]]*\(#.*\)\{0,1\}\)$/\1from helpers import security as sec_helpers\2/
#
# Helpers that lived in test modules, now in helpers modules of their own:
#   test_daemon: Central, P -> helpers.central; its `daemon` fixture is in tests/conftest.py (drop the import)
/^[[:space:]]*from test_daemon import daemon\b[^,]*$/d
s/^\([[:space:]]*\)from test_daemon import /\1from helpers.central import /
/^[[:space:]]*from helpers\.central import /s/, daemon\b//
/^[[:space:]]*from helpers\.central import /s/import daemon, /import /
/^[[:space:]]*from helpers\.central import /s/ *# noqa: F401 *(daemon is a fixture)$//
#   test_retention: DAY, make_core, old_center, prune_now, submit, toml_for
s/^\([[:space:]]*\)from test_retention import /\1from helpers.retention import /
#   test_doctor: healthy_probes
s/^\([[:space:]]*\)from test_doctor import /\1from helpers.doctor import /
#   test_rules_detention: produced, replay_cli; test_rules_replay: _setup, _to_events, step
s/^\([[:space:]]*\)from test_rules_detention import /\1from helpers.rules_replay import /
s/^\([[:space:]]*\)from test_rules_replay import /\1from helpers.rules_replay import /
#   test_rules_state: check_indexes; test_rules_checkpoint: check
s/^\([[:space:]]*\)from test_rules_state import /\1from helpers.rules_checks import /
s/^\([[:space:]]*\)from test_rules_checkpoint import /\1from helpers.rules_checks import /
#   test_camera_events_driver: events, wait
s/^\([[:space:]]*\)from test_camera_events_driver import /\1from helpers.camera_events import /
#   test_e2e_drivers: ROOMS, zone_device; test_e2e_camera: S1, O1, people, alarms, wait
s/^\([[:space:]]*\)from test_e2e_drivers import /\1from helpers.e2e import /
s/^\([[:space:]]*\)from test_e2e_camera import /\1from helpers.e2e_camera import /
#   test_uplink: PREFIX, wait
s/^\([[:space:]]*\)from test_uplink import /\1from helpers.uplink import /
#   test_clock_steps: check_journal_and_replay
s/^\([[:space:]]*\)from test_clock_steps import /\1from helpers.clock_steps import /
#   test_ingest_e2e: CENTERS, start_centers, check_database, ingest_status, topic_of
s/^\([[:space:]]*\)from test_ingest_e2e import /\1from helpers.ingest import /
#   test_zone_reader_driver: TAG, S1, S2, make_cfg, Rig, raw_client, read_frames; its `rig` fixture is in
#   tests/drivers/conftest.py (drop it from the import, and the noqa that excused importing a fixture)
s/^\([[:space:]]*\)from test_zone_reader_driver import \(.*\), rig\b *\(#.*\)\{0,1\}$/\1from helpers.zone_reader import \2/
s/^\([[:space:]]*\)from test_zone_reader_driver import /\1from helpers.zone_reader import /
#   test_start_after_downtime: ALARMS, SUSPECTS, ROOMS, build
s/^\([[:space:]]*\)from test_start_after_downtime import /\1from helpers.downtime import /
#
# The sys.path inserts that made the old names importable (tests/, tests/rules, tests/central, the tree root):
/^[[:space:]]*sys\.path\.insert(0, str(\(ROOT\|HERE\|Path(__file__)\)[^)]*\(\.resolve()\)\{0,1\}\(\.parents\{0,1\}\)\{0,1\}\(\[[0-9]\]\)\{0,1\}\(\.parent\)*\( \/ "\(tests\|rules\|central\|drivers\)"\)*))[[:space:]]*$/d
