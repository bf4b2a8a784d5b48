"""Rewrite the test modules' asserts once, before xdist starts its workers.

pytest rewrites each test module's asserts when it imports it and caches the result as a
pyc (under PYTHONPYCACHEPREFIX here, tests/conftest.py). On a fresh checkout (CI) the cache
is empty, and each of the ``-n 4`` workers rewrote all 113 test modules itself at the same
time: 6.6 s of CPU each (measured), 13 s of the run's start on 2 cores, and compiled the
same libraries' bytecode four times over. Two processes write both caches here first, half
each; the workers then find them. pytest's
own functions do the work, so the pyc is the one a worker would have written (its config
changes nothing: ``enable_assertion_pass_hook`` is off). Anything unexpected - another
pytest, a read-only cache - leaves the workers to rewrite as before.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_SCRIPT = r"""
import sys
from pathlib import Path
from _pytest.assertion.rewrite import PYC_TAIL, _read_pyc, _rewrite_test, _write_pyc, get_cache_dir

class _State:
    def trace(self, *a):
        pass

state = _State()
packages, files = sys.argv[1].split(","), sys.argv[2:]
for name in files:
    fn = Path(name)
    cache = get_cache_dir(fn)
    pyc = cache / (fn.name[:-3] + PYC_TAIL)
    if _read_pyc(fn, pyc) is not None:
        continue
    cache.mkdir(parents=True, exist_ok=True)
    source_hash, co = _rewrite_test(fn, None)
    _write_pyc(state, co, source_hash, pyc)

# then compile what the workers import while collecting: importing writes the bytecode
import importlib, pkgutil
for top in filter(None, packages):
    try:
        pkg = importlib.import_module(top)
    except BaseException:
        continue
    for m in pkgutil.walk_packages(getattr(pkg, "__path__", []), top + "."):
        if not m.name.endswith("__main__"):
            try:
                importlib.import_module(m.name)
            except BaseException:
                pass
"""

# What the test modules import, split in two of about equal cost: the app's packages (and
# through them pydantic, paho, OpenCV, numpy...) and the test-only libraries.
PACKAGES = (("gateway", "rules"), ("drivers", "helpers", "hypothesis", "jsonschema", "yaml"))


def test_modules(tests_dir: Path) -> list[str]:
    return sorted(str(p) for p in tests_dir.rglob("*.py")
                  if p.name.startswith("test_") or p.name == "conftest.py")


def warm(tests_dir: Path, timeout: float = 30) -> None:
    if not os.environ.get("PYTHONPYCACHEPREFIX"):
        return                    # the cache is beside the sources: not ours to fill
    files = test_modules(tests_dir)
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join([str(tests_dir.parent), str(tests_dir)] +
                                        [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    n = len(PACKAGES)
    procs = [subprocess.Popen([sys.executable, "-c", _SCRIPT, ",".join(PACKAGES[i]), *files[i::n]], env=env,
                              cwd=tests_dir.parent, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
             for i in range(n)]
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
