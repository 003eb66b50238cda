#!/usr/bin/env bash
# Install what building and testing the Debian package needs, from Debian's packages: systemd (systemd-analyze
# verifies the unit, systemd-sysusers creates the service user in the package's postinst; no running systemd
# is needed), init-system-helpers (deb-systemd-helper, called by the postinst), dpkg-dev (dpkg-shlibdeps, for
# the package's Depends). cargo-deb itself comes from crates.io: scripts/package-deb.sh installs it.
#
# Idempotent and fast on rerun: nothing is done when every tool is there. `apt-get update` runs only when apt
# does not know a package yet.
# Usage: scripts/setup-packaging.sh
set -euo pipefail

die() { echo "setup-packaging: ERROR: $*" >&2; exit 1; }

# tool -> the Debian package that ships it
declare -A TOOLS=(
    [systemd-analyze]=systemd
    [systemd-sysusers]=systemd
    [deb-systemd-helper]=init-system-helpers
    [dpkg-shlibdeps]=dpkg-dev
    [setpriv]=util-linux
    [curl]=curl
)
missing() { for t in "${!TOOLS[@]}"; do command -v "$t" >/dev/null || echo "${TOOLS[$t]}"; done | sort -u; }

need=($(missing))
if (( ${#need[@]} )); then
    command -v apt-get >/dev/null || die "missing ${need[*]} and no apt-get to install them"
    sudo=()
    if (( EUID != 0 )); then
        command -v sudo >/dev/null || die "missing ${need[*]}: run as root or: apt-get install ${need[*]}"
        sudo=(sudo -n)
    fi
    if command -v flock >/dev/null; then
        exec 9<"${BASH_SOURCE[0]}"
        flock 9
    fi
    known() { [[ -n "$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '(none)')" ]]; }
    for p in "${need[@]}"; do
        if ! known "$p"; then
            echo "setup-packaging: apt-get update (apt does not know $p yet)"
            "${sudo[@]}" apt-get update -qq || die "apt-get update failed"
            break
        fi
    done
    echo "setup-packaging: apt-get install ${need[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
        >/dev/null || die "apt-get install ${need[*]} failed"
    still=($(missing))
    (( ${#still[@]} == 0 )) || die "still missing after apt-get install: ${still[*]}"
fi
echo "setup-packaging: $(systemd-analyze --version | head -n1), $(dpkg-shlibdeps --version 2>&1 | head -n1)"
