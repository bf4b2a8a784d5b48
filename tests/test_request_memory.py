"""Stored request answers are bounded in memory (issue 24 item 4) and still never acted on
twice: the newest REQUESTS_KEPT stay in memory, older ones are found in the journal's
requests table. Real Core, journal and request router; the bound is made 3 here."""
from __future__ import annotations

import json

import pytest

import gateway.core as core_module
from gateway.commands.router import Request, RequestRouter
from gateway.config import parse_config
from gateway.core import Core
from gateway.journal import Journal
from rules.engine import Engine


def open_core(cfg) -> Core:
    core = Core(cfg, Journal(cfg.journal_path, "normal"), Engine(cfg), clock=lambda: 1.0e9)
    core.rebuild()
    core.start()
    return core


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.setattr(core_module, "REQUESTS_KEPT", 3)
    return parse_config({"center": {"id": "mem"}, "storage": {"dir": str(tmp_path / "state")},
                         "mqtt": {"enabled": False}})


def test_old_answers_leave_memory_and_are_found_in_the_journal(cfg):
    acted: list[int] = []

    def act(i):
        return lambda core: (acted.append(i) or {"n": i}, [])

    core = open_core(cfg)
    router = RequestRouter(None, core, respond=lambda req, payload: None, max_bytes=65536)
    try:
        first = [router.answer(Request("system/ping", None, f"r{i}"), act(i)) for i in range(5)]
        assert acted == [0, 1, 2, 3, 4]
        assert list(core.requests_done) == ["r2", "r3", "r4"]          # the newest 3, oldest first
        assert list(core.requests_asked) == ["r2", "r3", "r4"]
        again = router.answer(Request("system/ping", None, "r0"), act(99))
        assert acted == [0, 1, 2, 3, 4], "an answer older than the memory was acted on again"
        assert again == first[0] and again["data"] == {"n": 0}
        assert list(core.requests_done) == ["r3", "r4", "r0"]          # remembered again, newest
    finally:
        router.stop()
        core.stop()
        core.journal.close()

    core = open_core(cfg)            # a restart loads the 3 answered last (r0 was answered again)
    try:
        assert list(core.requests_done) == ["r3", "r4", "r0"]
        assert json.loads(core.recall_request("r1"))["data"] == {"n": 1}
        assert core.recall_request("never-asked") is None
    finally:
        core.stop()
        core.journal.close()
