"""Measure how long each test file takes and write tests/file_weights.json, the order
`pytest -n 4 --dist loadfile` starts files in (longest first: tests/conftest.py).

    uv run python bench/file_weights.py            # runs the suite once (~5 min)
    uv run python bench/file_weights.py LOG        # from a `pytest --durations=0` output

Seconds per file are its tests' setup + call + teardown as pytest reports them.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINE = re.compile(r"^([\d.]+)s (?:setup|call|teardown)\s+(\S+?)::")


def weights(text: str) -> dict[str, float]:
    per_file: Counter = Counter()
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            per_file[m.group(2)] += float(m.group(1))
    return {f: round(s, 1) for f, s in sorted(per_file.items(), key=lambda kv: (-kv[1], kv[0]))}


def main() -> int:
    if len(sys.argv) > 1:
        text = Path(sys.argv[1]).read_text()
    else:
        r = subprocess.run([sys.executable, "-m", "pytest", "-n", "4", "--dist", "loadfile", "-q",
                            "--durations=0", "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True)
        text = r.stdout
        if r.returncode != 0:
            print(text[-3000:], file=sys.stderr)
            print("the suite failed: weights not written", file=sys.stderr)
            return 1
    w = weights(text)
    if not w:
        print("no durations found (was --durations=0 given?)", file=sys.stderr)
        return 1
    out = ROOT / "tests" / "file_weights.json"
    out.write_text(json.dumps(w, indent=0) + "\n")
    print(f"{len(w)} files, {sum(w.values()):.0f} s in all -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
