#!/usr/bin/env bash
# casegate offline installer: run as root from the unpacked bundle (no network needed).
#
#   tar xzf casegate-<version>-<tag>.tar.gz && cd casegate-<version>-<tag>
#   ./install.sh [--prefix /opt/casegate] [--python /usr/bin/python3] [--root /]
#
# Installs this release beside any other under PREFIX/releases/<bundle name>/ (its own venv,
# made by the system Python's `python3 -m venv`, packages from ./wheels only: --no-index), then
# points PREFIX/current at it (one atomic symlink switch). Upgrade = install the new bundle;
# rollback = `ln -sfn releases/<old> PREFIX/current.new && mv -T PREFIX/current.new PREFIX/current`
# (see `--rollback`), then `systemctl restart casegate`.
#
# System part (skipped with --no-system): the service user from systemd/casegate.sysusers
# (systemd-sysusers), the unit in /etc/systemd/system, /usr/local/bin/casegate -> PREFIX/current,
# /etc/casegate (0755 root:root) with a config skeleton casegate.toml (0640 root:casegate, only if
# absent: an existing config is never overwritten) and secrets/ (0750 root:casegate),
# /var/lib/casegate (0700 casegate:casegate). --root DIR puts those system paths under DIR
# (a staging root; the tests use it). Nothing is written to /root or any home directory
# (pip runs with no cache, HOME=/nonexistent).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=/opt/casegate
py=python3
sysroot=
system=1
rollback=
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix=$2; shift 2 ;;
        --python) py=$2; shift 2 ;;
        --root) sysroot=${2%/}; shift 2 ;;
        --no-system) system=; shift ;;
        --rollback) rollback=$2; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "install.sh: run as root (it creates a user and system files)" >&2; exit 2; }
# Hermetic: only this bundle's wheels. No pip.conf, no PIP_* from the environment (an extra
# find-links or constraint file there would change what gets installed).
for v in $(env | sed -n 's/^\(PIP_[A-Za-z_]*\)=.*/\1/p'); do unset "$v"; done
export HOME=/nonexistent PIP_CONFIG_FILE=/dev/null PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
unset PYTHONDONTWRITEBYTECODE PYTHONPATH PYTHONHOME VIRTUAL_ENV
umask 022
cd /

switch() {   # atomic: a rename over the old symlink, never a moment without one
    ln -sfn "releases/$1" "$prefix/current.new"
    mv -T "$prefix/current.new" "$prefix/current"
    echo "PREFIX/current -> releases/$1 (systemctl restart casegate to run it)"
}

if [ -n "$rollback" ]; then
    [ -x "$prefix/releases/$rollback/venv/bin/casegate" ] || {
        echo "install.sh: $prefix/releases/$rollback is not an installed release; have: $(ls "$prefix/releases" | tr '\n' ' ')" >&2
        exit 2; }
    switch "$rollback"
    exit 0
fi

name=$(basename "$here")
version=$(cat "$here/VERSION")
rel="$prefix/releases/$name"
"$py" -c 'import sys, venv, ensurepip; assert sys.version_info >= (3, 11)' 2>/dev/null || {
    echo "install.sh: $py must be Python >= 3.11 with venv (Debian: apt-get install python3-venv)" >&2; exit 2; }
want=$(echo "$name" | sed -E 's/^casegate-[^-]+-(cp[0-9]+)-.*/\1/')
have=$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
[ "$want" = "$have" ] || {
    echo "install.sh: this bundle is for $want, $py is $have — build one for it (systemd/build-bundle.sh --python $py)" >&2
    exit 2; }

echo "== checking wheels (SHA256SUMS)"
(cd "$here/wheels" && sha256sum --quiet -c ../SHA256SUMS)

echo "== $rel"
if [ -e "$rel" ]; then
    echo "install.sh: $rel exists (this release is installed); to switch to it: install.sh --rollback $name" >&2
    exit 2
fi
mkdir -p "$prefix/releases"
chmod 0755 "$prefix" "$prefix/releases"
# A failed install leaves no half release behind (and current still points at the old one).
trap 'rm -rf "$rel"' ERR
"$py" -m venv "$rel/venv"
"$rel/venv/bin/python" -m pip install --quiet --no-index --no-deps --find-links "$here/wheels" \
    -r "$here/requirements.txt" "$here"/wheels/casegate-"$version"-*.whl
"$rel/venv/bin/casegate" --version >/dev/null
mkdir -p "$rel/share"
cp -r "$here/systemd" "$here/config" "$rel/share/"
chmod -R go-w,a+rX "$rel"
trap - ERR
switch "$name"

[ -n "$system" ] || exit 0

echo "== system files under ${sysroot:-/}"
mkdir -p "$sysroot/etc/sysusers.d" "$sysroot/etc/systemd/system" "$sysroot/usr/local/bin" "$sysroot/var/lib"
install -m 0644 "$here/systemd/casegate.sysusers" "$sysroot/etc/sysusers.d/casegate.conf"
if [ -n "$sysroot" ]; then
    # A staging root has no groups of its own: the sysusers file adds casegate to dialout, video.
    for g in dialout video; do
        grep -q "^$g:" "$sysroot/etc/group" 2>/dev/null || echo "g $g -" >> "$sysroot/etc/sysusers.d/00-casegate-groups.conf"
    done
    systemd-sysusers --root="$sysroot"
else
    systemd-sysusers /etc/sysusers.d/casegate.conf
fi
uid=$(awk -F: '$1 == "casegate" {print $3}' "$sysroot/etc/passwd")
gid=$(awk -F: '$1 == "casegate" {print $3}' "$sysroot/etc/group")
[ -n "$uid" ] && [ -n "$gid" ] || { echo "install.sh: user casegate was not created" >&2; exit 1; }

install -m 0644 "$here/systemd/casegate.service" "$sysroot/etc/systemd/system/casegate.service"
# start after NTP synchronised the clock, bounded (SPEC §7 v3; docs/operations.md §8 Time)
install -m 0644 -D "$here/systemd/time-wait-sync-casegate.conf" \
    "$sysroot/etc/systemd/system/systemd-time-wait-sync.service.d/casegate.conf"
# the unit's Documentation= (file:/usr/share/doc/casegate/...) and the pages a technician reads
install -d -m 0755 "$sysroot/usr/share/doc/casegate"
install -m 0644 "$here"/docs/*.md "$sysroot/usr/share/doc/casegate/"
ln -sfn "$prefix/current/venv/bin/casegate" "$sysroot/usr/local/bin/casegate"
install -d -m 0755 -o 0 -g 0 "$sysroot/etc/casegate"
install -d -m 0750 -o 0 -g "$gid" "$sysroot/etc/casegate/secrets"
if [ ! -e "$sysroot/etc/casegate/casegate.toml" ]; then
    install -m 0640 -o 0 -g "$gid" "$here/config/small-center.toml" "$sysroot/etc/casegate/casegate.toml"
    echo "config skeleton: $sysroot/etc/casegate/casegate.toml (edit it: center, rooms, devices, broker)"
fi
install -d -m 0700 -o "$uid" -g "$gid" "$sysroot/var/lib/casegate"
if [ -z "$sysroot" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable systemd-time-wait-sync.service 2>/dev/null || true   # time-sync.target = synchronised
fi
echo "== installed casegate $version; next: casegate config check, casegate doctor, systemctl enable --now casegate"
