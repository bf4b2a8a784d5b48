"""Fixtures shared by tests/drivers."""
from __future__ import annotations

import pytest

from helpers.zone_reader import Rig


@pytest.fixture
def rig():
    """make(**kw) -> a started Rig; all closed after the test."""
    made = []

    def make(**kw):
        r = Rig(**kw)
        made.append(r)
        return r
    yield make
    for r in made:
        r.close()
