"""drivers/common/presence.py: presence logic any RFID vendor's driver reuses, and
Driver.restore_presence, through which the daemon hands a presence driver the journal's view."""
from __future__ import annotations

import time
import tomllib

import pytest

from drivers.base import PrintContext
from drivers.common.presence import PresenceTracker, entered_data, left_data
from drivers.registry import specs
from drivers.zone_reader.driver import ZoneReaderDriver
from gateway.config import ZoneReaderConfig

TAG = "E3AF2232"


def test_sources_and_timeout():
    p = PresenceTracker(10)
    assert p.seen("T", "r", "A", 0.0) is True
    assert p.seen("T", "r", "B", 1.0) is False          # a second station of the same room
    assert p.gone("T", "r", "A", 2.0) is None           # B still hears it
    assert p.gone("T", "r", "B", 3.0) == 3.0
    assert p.gone("T", "r", "B", 3.0) is None
    p.seen("T", "r", "A", 10.0)
    p.seen("U", "r", "A", 15.0)
    assert p.expire(19.9) == []
    assert p.expire(20.0) == [("T", "r", 10.0)]
    p.seen("U", "r", "door", 16.0)
    assert p.gone("U", "r", None, 17.0) == 2.0          # door passed out: every source
    assert len(p) == 0


def test_a_tag_in_two_rooms_is_two_entries():
    p = PresenceTracker(10)
    assert p.seen("T", "a", "S1", 0.0) and p.seen("T", "b", "S2", 1.0)
    assert sorted(p.rooms_of("T")) == ["a", "b"]
    assert p.gone("T", "a", "S1", 4.0) == 4.0
    assert p.rooms_of("T") == ["b"]


def test_hold_keeps_what_a_doubted_source_established():
    p = PresenceTracker(10)
    p.seen("T", "r", "S1", 0.0)
    p.seen("U", "r", "S2", 0.0)
    assert p.hold("S1", 9.0) == 1
    assert p.expire(10.0) == [("U", "r", 10.0)]       # S2's tag times out, S1's is held
    assert p.expire(18.9) == [] and p.expire(19.0) == [("T", "r", 19.0)]


def test_restore_takes_over_only_untracked_entries_in_its_rooms():
    p = PresenceTracker(10)
    p.seen("T", "r", "S1", 100.0)
    wall = 1_700_000_000.0
    n = p.restore([("T", "r", wall - 50), ("U", "r", wall - 30), ("V", "other", wall - 5), ("W", "r", wall + 5)],
                  {"r"}, now=100.0, wall=wall)
    assert n == 2
    assert p.entries[("T", "r")][0] == 100.0            # tracked already: untouched
    assert p.entries[("U", "r")] == [70.0, 100.0, set()]    # since kept, no source yet
    assert p.entries[("W", "r")][0] == 100.0            # a since in the future counts from now
    assert ("V", "other") not in p.entries
    assert p.gone("U", "r", "S1", 101.0) == 31.0         # any station's out-of-range ends it
    assert p.expire(110.0) == [("T", "r", 10.0), ("W", "r", 10.0)]   # the timeout ends an unconfirmed one


def test_event_data_is_the_same_for_every_vendor():
    ctx = PrintContext("z", bindings={TAG: "suspect-1"})
    assert entered_data(ctx, TAG, "r") == {"person": "suspect-1", "tag": TAG, "room": "r"}
    assert left_data(ctx, "FFFF0000", "r", 1.23456) == {"person": None, "tag": "FFFF0000", "room": "r",
                                                         "seconds": 1.235}


@pytest.mark.parametrize("kind", sorted(k for k, s in specs().items() if "presence" in s.capabilities))
def test_every_presence_kind_takes_the_journals_presence(kind):
    """The daemon calls restore_presence on every driver whose device declares presence,
    before start(): a kind that tracks nothing (card swipes) takes over nothing, quietly."""
    s = specs()[kind]
    cfg = s.config.model_validate(tomllib.loads(s.example)["devices"][0])
    drv = s.driver_class()(cfg, PrintContext(cfg.id))
    rooms = [r for _, r in cfg.room_refs()] or ["r"]
    n = drv.restore_presence([(TAG, room, time.time() - 60) for room in rooms])
    assert isinstance(n, int) and 0 <= n <= len(rooms)


def test_the_zone_reader_restores_its_rooms_and_lets_them_time_out():
    cfg = ZoneReaderConfig(id="zone", driver="zone_reader", listen="127.0.0.1:0",
                           stations={"S1": "interrogation-1"}, exciters={"12": "exit"}, presence_timeout_s=10)
    ctx = PrintContext("zone", bindings={TAG: "suspect-1"})
    drv = ZoneReaderDriver(cfg, ctx)
    wall = time.time()
    assert drv.restore_presence([(TAG, "interrogation-1", wall - 100), (TAG, "exit", wall - 5),
                                 (TAG, "waiting-1", wall - 5)]) == 2      # waiting-1 is not its room
    now = time.monotonic()
    drv.tick(now + 5, wall + 5)
    assert [t for t, _ in ctx.events if t.startswith("presence.")] == []   # not re-announced, not gone yet
    drv.tick(now + 11, wall + 11)
    left = sorted((d["room"], d["seconds"]) for t, d in ctx.events if t == "presence.left")
    assert [r for r, _ in left] == ["exit", "interrogation-1"]
    assert 110 <= dict(left)["interrogation-1"] <= 112                       # since the journal's entry
