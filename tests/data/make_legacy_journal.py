"""Write tests/data/legacy-v1-journal.db: a small journal in the schema of the
first release (main at d870053), so the upgrade path stays tested after the
schema changes (tests/test_retention.py::test_legacy_journal_opens_migrates_verifies).

Run ONCE with the old code (it was, at d870053); re-running it with newer code
would write the NEW schema and defeat the purpose. The scenario: a lone
interrogation (alarm raised and cleared), a suspect still inside, an evidence
item deposited under an order, wristband telemetry and a card swipe.

    PYTHONPATH=tests uv run python tests/data/make_legacy_journal.py
"""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent

from helpers.scenario import Scenario, arrive, enter, leave, status  # noqa: E402

from gateway.journal import Journal  # noqa: E402

OUT = HERE / "legacy-v1-journal.db"
INT = "interrogation-1"
LO = {"locker": "locker-ev1", "compartment": 5}


def steps() -> list:
    return [
        arrive(0, "S1", "suspect", case_id="C1", case_type="criminal"),
        arrive(0, "O1", "officer"), arrive(0, "O2", "officer"),
        enter(100, "S1", INT), enter(100, "O1", INT), enter(200, "O2", INT),       # lone 130..200
        status(150, "S1", heart_rate=88), status(160, "S1", heart_rate=91),
        (300, "custody.ordered", {"order": "ORD1", "item": "E0001", "action": "deposit", "case_id": "C1",
                                  "by": "O1", "expires": None}),
        (310, "locker.unlock_requested", dict(LO, by="O1", order="ORD1")),
        (312, "locker.opened", LO),
        (320, "evidence.added", dict(LO, item="E0001")),
        (330, "locker.closed", LO),
        (400, "card.swiped", {"card": "14008EC793", "reader": "card-int1", "room": INT, "person": "O1"}),
        leave(500, "O1", INT), leave(500, "O2", INT),
    ]


def main() -> None:
    sc = Scenario().run(steps()).until(900)
    for suffix in ("", "-wal", "-shm"):
        Path(str(OUT) + suffix).unlink(missing_ok=True)
    j = Journal(OUT, "full")
    events = sc.journal
    j.append(events, [("req-1", "person/register", '{"ok":true}', events[0].ts)],
             delivered=[e.seq for e in events[: len(events) // 2]])
    j.checkpoint()
    j.close()
    for suffix in ("-wal", "-shm"):
        Path(str(OUT) + suffix).unlink(missing_ok=True)
    print(f"{OUT}: {len(events)} events, alarms {[(e.type, e.data['code']) for e in sc.alarm_events]}")


if __name__ == "__main__":
    main()
