#!/usr/bin/env bash
# Install HAProxy (Debian's package) for the interop suite's baseline: HAProxy `mode tcp`, `balance leastconn`
# in front of the same Spark Thrift Servers as hs2-proxy (tests/interop_spark.rs writes its own config to a
# temp dir and runs haproxy in the foreground; the system service is never used).
#
# Idempotent and fast on rerun: nothing is done when `haproxy -v` already works. `apt-get update` runs only
# when apt does not know the package yet (no package lists), so a rerun never touches the network.
# Usage: scripts/setup-haproxy.sh
set -euo pipefail

die() { echo "setup-haproxy: ERROR: $*" >&2; exit 1; }

show() { echo "setup-haproxy: $(haproxy -v 2>&1 | head -n1) ($(command -v haproxy))"; }

if command -v haproxy >/dev/null && haproxy -v >/dev/null 2>&1; then
    show
    exit 0
fi

command -v apt-get >/dev/null || die "haproxy not found and no apt-get to install it (install HAProxy 2.x by hand)"
sudo=()
if (( EUID != 0 )); then
    command -v sudo >/dev/null || die "haproxy missing: run as root or: apt-get install haproxy"
    sudo=(sudo -n)
fi

# Serialize concurrent runs (dpkg takes its own lock, but two `apt-get update`s would race for nothing).
if command -v flock >/dev/null; then
    exec 9<"${BASH_SOURCE[0]}"
    flock 9
fi

known() { [[ -n "$(apt-cache policy haproxy 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '(none)')" ]]; }
if ! known; then
    echo "setup-haproxy: apt-get update (apt does not know haproxy yet)"
    "${sudo[@]}" apt-get update -qq || die "apt-get update failed"
    known || die "apt knows no haproxy package even after apt-get update"
fi

# Debian's postinst starts the service unless policy-rc.d forbids it (containers usually do). Remember
# which haproxy processes ran before, so a daemon the package starts can be stopped again.
before="$(pgrep -x haproxy || true)"
echo "setup-haproxy: apt-get install haproxy"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy >/dev/null \
    || die "apt-get install haproxy failed"
after="$(pgrep -x haproxy || true)"
if [[ -n "$after" && "$after" != "$before" ]]; then
    echo "setup-haproxy: the package started the system service; stopping it (the tests run their own haproxy)"
    "${sudo[@]}" /etc/init.d/haproxy stop >/dev/null 2>&1 || true
fi

command -v haproxy >/dev/null && haproxy -v >/dev/null 2>&1 || die "haproxy still not runnable after apt-get install"
show
