"""drivers/common/child.py: one supervised child process with typed messages.

Real child processes (``python -m drivers.common.child``) running the entries in
tests/helpers/child_entries.py (imported in the child by its module name: PYTHONPATH set per test;
a module without pytest, so that a child starts in a fraction of a second)."""
from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

import pytest

from drivers.base import CommandError
from drivers.common.child import ChildSupervisor, Stop, describe_exit

from helpers.polling import poll
from helpers.child_entries import Echo, Exit, Explode, Hello, Ignore, Refuse

TESTS = Path(__file__).resolve().parents[1]      # the parent of the helpers package


# ---- the parent side --------------------------------------------------------------------
@pytest.fixture
def supervised(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(TESTS))       # the child imports helpers.child_entries by name
    made: list[ChildSupervisor] = []

    def make(*args, **kw):
        got = {"hello": [], "crash": [], "ended": [], "started": 0}
        kw.setdefault("backoff_first", 0.05)
        kw.setdefault("backoff_cap", 0.4)

        def on_message(msg):
            if type(msg) is Hello:
                got["hello"].append(msg)

        def on_started():
            got["started"] += 1
        log = logging.getLogger("casegate.test-child")
        sup = ChildSupervisor("helpers.child_entries:echo_child", lambda: args, process_name="test process",
                              device_name="test child", on_message=on_message, log=log, child_log=log,
                              on_started=on_started, on_ended=got["ended"].append,
                              on_crash=lambda reason, delay: got["crash"].append((reason, delay)),
                              thread_name="test-child-supervisor", **kw)
        sup.start()
        made.append(sup)
        return sup, got

    yield make
    for sup in made:
        sup.stop(2.0, 0.5, 0.5, message=Stop(1.0))
        assert sup.process is None or not sup.process.is_alive()
        assert not sup.thread.is_alive()


def wait_for(pred, timeout=60.0):     # returns as soon as pred() holds; long for a loaded CI
    return bool(poll(pred, timeout, 0.01))


def test_typed_requests_replies_and_the_log_relay(supervised, caplog):
    caplog.set_level(logging.INFO)
    sup, got = supervised("hi")
    assert wait_for(lambda: got["hello"])
    hello = got["hello"][0]
    assert hello.greeting == "hi" and hello.pid == sup.pid != os.getpid()
    assert sup.request(Echo("abc"), 5, "echo") == "ABC"
    with pytest.raises(CommandError) as e:
        sup.request(Refuse("bad_request"), 5, "refuse")
    assert (e.value.code, e.value.message) == ("bad_request", "refused with bad_request")
    with pytest.raises(CommandError) as e:
        sup.request(Explode(), 5, "explode")
    assert (e.value.code, e.value.message) == ("device_refused", "child error: kaboom")
    with pytest.raises(CommandError) as e:
        sup.request(Ignore(), 0.3, "ignore")        # how long it waits: bench/stop_latency.py
    assert (e.value.code, e.value.message) == ("device_timeout", "no answer from test child to ignore")
    # the child's records reach the parent's logger; another logger's are prefixed with its name
    assert wait_for(lambda: any(r.name == "casegate.test-child" and r.getMessage() == f"child {hello.pid} up"
                                for r in caplog.records))
    assert any(r.getMessage() == "other.lib: from a library" and r.levelno == logging.WARNING
               for r in caplog.records)
    tb = [r for r in caplog.records if "kaboom" in r.getMessage() and "Traceback" in r.getMessage()]
    assert tb and tb[0].levelno == logging.ERROR         # the unexpected error, with its traceback
    assert sup.restarts == 0 and got["crash"] == []


def test_a_crashed_child_is_named_restarted_and_fails_what_it_owed(supervised, caplog):
    caplog.set_level(logging.INFO)
    sup, got = supervised("x", healthy_run_s=3600)
    assert wait_for(lambda: got["hello"])
    first = sup.pid
    result: list = []

    def ask():
        try:
            sup.request(Ignore(), 30, "ignore")
        except CommandError as e:
            result.append(e)
    t = threading.Thread(target=ask)
    t.start()
    assert wait_for(lambda: any(r.getMessage().startswith("ignoring request") for r in caplog.records))
    os.kill(first, signal.SIGKILL)                    # the child has the request and has not answered
    t.join(5)
    assert result and result[0].code == "device_timeout"
    assert result[0].message == "test process killed by SIGKILL before answering"
    assert wait_for(lambda: len(got["hello"]) == 2)
    assert sup.pid not in (None, first) and sup.restarts == 1 and got["started"] == 2
    assert got["crash"] == [("test process killed by SIGKILL", 0.05)]
    assert got["ended"] == ["test process killed by SIGKILL"]
    assert sup.send(Exit(3))
    assert wait_for(lambda: len(got["crash"]) == 2)
    assert got["crash"][1] == ("test process exited with code 3", 0.1)    # backoff doubles: not a healthy run
    assert wait_for(lambda: len(got["hello"]) == 3)


def test_a_healthy_run_resets_the_backoff(supervised):
    sup, got = supervised("x", 7, healthy_run_s=0.0)      # exits at once with code 7, every time
    assert wait_for(lambda: len(got["crash"]) >= 3)
    assert {d for _, d in got["crash"][:3]} == {0.05}    # each run counted as healthy: no doubling
    assert got["crash"][0][0] == "test process exited with code 7"
    assert got["hello"] == []


def test_a_crash_loop_backs_off_up_to_the_cap(supervised):
    sup, got = supervised("x", 7, healthy_run_s=3600)
    assert wait_for(lambda: len(got["crash"]) >= 5)
    assert [d for _, d in got["crash"][:5]] == [0.05, 0.1, 0.2, 0.4, 0.4]


def test_stop_is_prompt_even_for_a_hung_child(supervised):
    sup, got = supervised("x")
    assert wait_for(lambda: got["hello"])
    proc = sup.process
    os.kill(proc.pid, signal.SIGSTOP)                 # deaf to Stop and to SIGTERM
    sup.stop(0.5, 0.2, 0.3, message=Stop(0.3), join_within=0.5)
    # 0.5 + 0.2 waited out, then SIGKILL (how long that takes: bench/stop_latency.py)
    assert not proc.is_alive() and proc.exitcode == -signal.SIGKILL
    assert not sup.thread.is_alive() and got["crash"] == []    # our own stop is not a crash
    with pytest.raises(CommandError) as e:
        sup.request(Echo("late"), 1, "echo")
    assert e.value.message == "test child is not running (restarting)"


def test_a_cooperative_stop_exits_0_at_once(supervised):
    sup, got = supervised("x")
    assert wait_for(lambda: got["hello"])
    proc = sup.process
    sup.stop(2.0, 0.5, 0.5, message=Stop(1.0))
    assert proc.exitcode == 0           # it obeyed Stop: not killed after the 2 s grace (timing: bench/stop_latency.py)
    assert got["ended"] == ["test process exited with code 0"] and got["crash"] == []


def test_sigterm_to_the_whole_service_is_not_a_crash(supervised):
    sup, got = supervised("x", term_grace_s=2.0)
    assert wait_for(lambda: got["hello"])
    os.kill(sup.pid, signal.SIGTERM)                  # systemd signals every process of the unit ...
    assert wait_for(lambda: got["ended"])             # (the child is gone first)
    sup.stop(1.0, 0.2, 0.2)                           # ... and the parent stops within the grace
    assert got["ended"] == ["test process killed by SIGTERM"] and got["crash"] == [] and sup.restarts == 0


def test_exit_reasons_are_named():
    assert describe_exit(3, "camera process") == "camera process exited with code 3"
    assert describe_exit(-signal.SIGSEGV, "uplink process") == "uplink process killed by SIGSEGV"
    assert describe_exit(-200, "x process") == "x process killed by signal 200"
    assert describe_exit(None, "x process") == "x process ended"


def test_the_child_command_line_names_its_entry(supervised):
    sup, got = supervised("x")
    assert wait_for(lambda: got["hello"])
    argv = Path(f"/proc/{sup.pid}/cmdline").read_bytes().split(b"\0")
    assert argv[1:5] == [b"-P", b"-m", b"drivers.common.child", b"helpers.child_entries:echo_child"]
