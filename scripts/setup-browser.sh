#!/usr/bin/env bash
# Install a headless browser (Debian's chromium) for the status-page test (tests/admin_browser.rs): the test
# runs `chromium --headless --dump-dom` and `--screenshot` against a proxy's admin listener on loopback.
#
# Idempotent and fast on rerun: nothing is done when `chromium --version` already works. `apt-get update` runs
# only when apt does not know the package yet, so a rerun never touches the network.
# Usage: scripts/setup-browser.sh
set -euo pipefail

die() { echo "setup-browser: ERROR: $*" >&2; exit 1; }

find_browser() { command -v chromium || command -v chromium-browser || true; }
show() { echo "setup-browser: $("$1" --version 2>/dev/null | head -n1) ($1)"; }

bin="$(find_browser)"
if [[ -n "$bin" ]] && "$bin" --version >/dev/null 2>&1; then
    show "$bin"
    exit 0
fi

command -v apt-get >/dev/null || die "chromium not found and no apt-get to install it (install Chromium by hand)"
sudo=()
if (( EUID != 0 )); then
    command -v sudo >/dev/null || die "chromium missing: run as root or: apt-get install chromium"
    sudo=(sudo -n)
fi

# Serialize concurrent runs (two `apt-get update`s would race for nothing).
if command -v flock >/dev/null; then
    exec 9<"${BASH_SOURCE[0]}"
    flock 9
fi

known() { [[ -n "$(apt-cache policy chromium 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '(none)')" ]]; }
if ! known; then
    echo "setup-browser: apt-get update (apt does not know chromium yet)"
    "${sudo[@]}" apt-get update -qq || die "apt-get update failed"
    known || die "apt knows no chromium package even after apt-get update"
fi

# Fonts so that a screenshot shows text, not boxes (fonts-liberation is small and has Latin metrics).
echo "setup-browser: apt-get install chromium"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium fonts-liberation >/dev/null || die "apt-get install chromium failed"

bin="$(find_browser)"
[[ -n "$bin" ]] && "$bin" --version >/dev/null 2>&1 || die "chromium still not runnable after apt-get install"
show "$bin"
