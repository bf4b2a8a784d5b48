#!/usr/bin/env bash
# Build the offline install bundle (issue 24, docs/operations.md §1):
#
#   systemd/build-bundle.sh [--python /usr/bin/python3] [--out dist/]
#
# -> dist/casegate-<version>-<python tag>-<platform>.tar.gz holding
#      wheels/          casegate's wheel and a wheel of every runtime dependency, exactly
#                       the versions of uv.lock (`uv export --no-dev`), for the target Python
#      requirements.txt those pins (no hashes: face-recognition-models is an sdist on PyPI and
#                       is built into a wheel here, so its PyPI hash cannot match)
#      SHA256SUMS       of every wheel; install.sh checks it before installing anything
#      install.sh       the installer (systemd/install.sh)
#      systemd/ config/ the unit, sysusers.d entry and example configs
#
# The target Python is the one the center's box has (Debian 12: /usr/bin/python3, 3.11; needs
# python3-venv): wheels are chosen for its version and platform, so build on the same
# distribution and architecture, with PyPI reachable (pip and uv cache what they fetch).
# dlib: face-recognition declares `dlib`, which would compile for half an hour; uv.lock overrides
# it away (pyproject [tool.uv] override-dependencies) and `dlib-bin` provides the same module,
# so install.sh installs the locked list with --no-deps (the lock is the resolution).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=python3
out="$root/dist"
while [ $# -gt 0 ]; do
    case "$1" in
        --python) py=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "build-bundle.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
command -v uv >/dev/null || { echo "build-bundle.sh: needs uv (pip install uv)" >&2; exit 2; }
"$py" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null || {
    echo "build-bundle.sh: $py is not Python >= 3.11 (pass --python PATH)" >&2; exit 2; }

version=$(cd "$root" && "$py" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
tag=$("$py" -c 'import sys, sysconfig; print(f"cp{sys.version_info[0]}{sys.version_info[1]}-" + sysconfig.get_platform().replace("-", "_"))')
name="casegate-$version-$tag"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage="$work/$name"
mkdir -p "$stage/wheels" "$out"

echo "== $name: casegate wheel"
uv build --quiet --wheel --out-dir "$stage/wheels" "$root"

echo "== dependencies from uv.lock"
(cd "$root" && uv export --quiet --frozen --no-dev --no-emit-project --no-hashes --no-header \
    --no-annotate --format requirements-txt) | grep -v '^\s*#' | grep -v '^\s*$' > "$stage/requirements.txt"

# pip of the target Python (a throwaway venv: Debian's python3 has no pip of its own).
"$py" -m venv "$work/buildenv"
# --use-pep517: face-recognition-models is a setup.py-only sdist; an isolated build brings
# its own setuptools and wheel (Debian's venv pip has no `wheel` for the legacy path).
"$work/buildenv/bin/python" -m pip wheel --quiet --disable-pip-version-check --no-deps --use-pep517 \
    -r "$stage/requirements.txt" -w "$stage/wheels"

# Every pin must have produced exactly one wheel (a missing one would fail only on the box).
"$work/buildenv/bin/python" - "$stage" <<'EOF'
import re, sys
from pathlib import Path
stage = Path(sys.argv[1])
norm = lambda s: re.sub(r"[-_.]+", "_", s).lower()
have = {norm(p.name.split("-")[0]) for p in (stage / "wheels").glob("*.whl")}
missing = []
for line in (stage / "requirements.txt").read_text().splitlines():
    req, _, marker = line.partition(";")
    if "sys_platform == 'never'" in marker:
        continue
    pkg = norm(req.split("==")[0].split("[")[0].strip())
    if pkg not in have:
        missing.append(req.strip())
if missing:
    sys.exit(f"build-bundle.sh: no wheel for: {', '.join(missing)}")
EOF

cp "$root/systemd/install.sh" "$stage/install.sh"
chmod 0755 "$stage/install.sh"
mkdir -p "$stage/systemd" "$stage/config"
cp "$root/systemd/casegate.service" "$root/systemd/casegate.sysusers" "$root/systemd/time-wait-sync-casegate.conf" \
   "$stage/systemd/"
mkdir -p "$stage/docs"      # the unit's Documentation= and the technician's pages, offline
cp "$root/docs/operations.md" "$root/docs/security.md" "$root/docs/case-bundle.md" "$root/docs/central.md" "$stage/docs/"
cp "$root/config/small-center.toml" "$root/config/large-center.toml" "$root/config/reference.toml" "$stage/config/"
echo "$version" > "$stage/VERSION"
(cd "$stage/wheels" && sha256sum -- *.whl > ../SHA256SUMS)

tar -C "$work" -czf "$out/$name.tar.gz.part" "$name"
mv "$out/$name.tar.gz.part" "$out/$name.tar.gz"
n=$(ls "$stage/wheels" | wc -l)
echo "== $out/$name.tar.gz: $n wheels, $(du -m "$out/$name.tar.gz" | cut -f1) MB"
