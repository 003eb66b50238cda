#!/usr/bin/env bash
# Install Prometheus (Debian's package) for the monitoring tests: `promtool check rules` / `promtool test rules`
# on docs/monitoring/alerts.yml, and a real `prometheus` that tests/monitoring/test-prometheus.sh runs itself on
# loopback with a temporary data directory. The packaged system service is never used: if the install starts
# it, this script stops it again (it would listen on every interface, port 9090).
#
# Idempotent and fast on rerun: nothing is done when `promtool` and `prometheus` already run. `apt-get update`
# runs only when apt does not know the package yet.
# Usage: scripts/setup-prometheus.sh
set -euo pipefail

die() { echo "setup-prometheus: ERROR: $*" >&2; exit 1; }
show() { echo "setup-prometheus: $(prometheus --version 2>&1 | head -n1); $(promtool --version 2>&1 | head -n1)"; }
works() { command -v promtool >/dev/null && command -v prometheus >/dev/null && promtool --version >/dev/null 2>&1; }

if works; then
    show
    exit 0
fi

command -v apt-get >/dev/null || die "prometheus not found and no apt-get to install it"
sudo=()
if ((EUID != 0)); then
    command -v sudo >/dev/null || die "prometheus missing: run as root or: apt-get install prometheus"
    sudo=(sudo -n)
fi
if command -v flock >/dev/null; then
    exec 9<"${BASH_SOURCE[0]}"
    flock 9
fi

known() { [[ -n "$(apt-cache policy prometheus 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '(none)')" ]]; }
if ! known; then
    echo "setup-prometheus: apt-get update (apt does not know prometheus yet)"
    "${sudo[@]}" apt-get update -qq || die "apt-get update failed"
    known || die "apt knows no prometheus package even after apt-get update"
fi

# Debian's postinst starts the service unless policy-rc.d forbids it (containers usually do). Remember which
# prometheus processes ran before, so that one the package starts can be stopped again.
before="$(pgrep -x prometheus || true)"
echo "setup-prometheus: apt-get install prometheus"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
    || die "apt-get install prometheus failed"
after="$(pgrep -x prometheus || true)"
if [[ -n "$after" && "$after" != "$before" ]]; then
    echo "setup-prometheus: the package started the system service; stopping it (the tests run their own)"
    "${sudo[@]}" /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    for pid in $after; do
        grep -qx "$pid" <<<"$before" || "${sudo[@]}" kill "$pid" 2>/dev/null || true
    done
fi
works || die "promtool/prometheus still not runnable after apt-get install"
show
