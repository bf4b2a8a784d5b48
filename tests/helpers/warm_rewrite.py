"""Rewrite the test modules' asserts once, before xdist starts its workers.

pytest rewrites each test module's asserts when it imports it and caches the result as a
pyc (under PYTHONPYCACHEPREFIX here, tests/conftest.py). On a fresh checkout (CI) the cache
is empty, and each of the ``-n 4`` workers rewrote all 113 test modules itself at the same
time: 6.6 s of CPU each (measured), 13 s of the run's start on 2 cores. Two processes
write the cache here first, half the files each (3.3 s); the workers then find it. pytest's
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
for name in sys.argv[1:]:
    fn = Path(name)
    cache = get_cache_dir(fn)
    pyc = cache / (fn.name[:-3] + PYC_TAIL)
    if _read_pyc(fn, pyc) is not None:
        continue
    cache.mkdir(parents=True, exist_ok=True)
    source_hash, co = _rewrite_test(fn, None)
    _write_pyc(state, co, source_hash, pyc)
"""


def test_modules(tests_dir: Path) -> list[str]:
    return sorted(str(p) for p in tests_dir.rglob("*.py")
                  if p.name.startswith("test_") or p.name == "conftest.py")


def warm(tests_dir: Path, processes: int = 2, timeout: float = 120) -> None:
    if not os.environ.get("PYTHONPYCACHEPREFIX"):
        return                    # the cache is beside the sources: not ours to fill
    files = test_modules(tests_dir)
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    procs = [subprocess.Popen([sys.executable, "-c", _SCRIPT, *files[i::processes]], env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for i in range(processes)]
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
