#!/usr/bin/env bash
# Tools for the upgrade drills (tests/upgrade.rs, tests/interop_spark/upgrade.rs), which run themselves
# again in a private network namespace with net.ipv4.tcp_migrate_req = 1 (nothing on the host changes):
# `unshare` (util-linux), `ip` (iproute2), `sysctl` (procps); and a check that this user may create a
# network namespace (root, as CI runs scripts/test.sh) on a kernel that has tcp_migrate_req (5.14+).
#
# Idempotent: installs only what is missing; `apt-get update` only when apt does not know a package yet.
# Usage: scripts/setup-netns.sh
set -euo pipefail

die() { echo "setup-netns: ERROR: $*" >&2; exit 1; }

need=()
command -v unshare >/dev/null || need+=(util-linux)
command -v ip >/dev/null || need+=(iproute2)
command -v sysctl >/dev/null || need+=(procps)
if (( ${#need[@]} > 0 )); then
    command -v apt-get >/dev/null || die "missing ${need[*]} and no apt-get to install them"
    (( EUID == 0 )) || die "missing ${need[*]}: run as root or: apt-get install ${need[*]}"
    known() { [[ -n "$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '(none)')" ]]; }
    for p in "${need[@]}"; do
        known "$p" || { apt-get update -qq || die "apt-get update failed"; break; }
    done
    echo "setup-netns: apt-get install ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
        || die "apt-get install ${need[*]} failed"
fi
unshare -n sh -c 'ip link set lo up && sysctl -qw net.ipv4.tcp_migrate_req=1' \
    || die "cannot create a network namespace with tcp_migrate_req (needs root and Linux 5.14+)"
echo "setup-netns: unshare, ip, sysctl present; a private network namespace with tcp_migrate_req=1 works ($(uname -r))"
