#!/usr/bin/env bash
# Install OpenLDAP for the LDAP tests: Debian's `slapd` (the server) and `ldap-utils` (ldapsearch,
# ldapwhoami). Nothing is configured or started here, and the system directory is never used: each test
# binary writes its own slapd.conf, database and users into a temporary directory and runs
#   slapd -f <dir>/slapd.conf -h ldap://127.0.0.1:<free port>/ -d 0
# on loopback (tests/ldap/slapd.rs). The image's policy-rc.d keeps Debian from starting the packaged one.
#
# Idempotent: dpkg tells what is missing; only that is installed, and `apt-get update` runs only when apt
# does not know the packages yet. Fails loudly.
# Usage: scripts/setup-ldap.sh
set -euo pipefail

die() { echo "setup-ldap: ERROR: $*" >&2; exit 1; }
log() { echo "setup-ldap: $*"; }

DEB_PKGS=(slapd ldap-utils)
# What tests/ldap/slapd.rs runs and reads (keep the two in step).
TOOLS=(/usr/sbin/slapd /usr/sbin/slapadd /usr/bin/ldapwhoami /usr/bin/ldapsearch)
FILES=(/usr/lib/ldap/back_mdb.so /etc/ldap/schema/core.schema /etc/ldap/schema/cosine.schema
       /etc/ldap/schema/inetorgperson.schema /etc/ldap/schema/nis.schema)

# Serialize concurrent runs (two test jobs at once) on this script file.
if command -v flock >/dev/null; then
    exec 9<"${BASH_SOURCE[0]}"
    flock 9
fi

need=()
for pkg in "${DEB_PKGS[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if (( ${#need[@]} )); then
    command -v apt-get >/dev/null || die "missing ${need[*]} and no apt-get to install them"
    sudo=()
    if (( EUID != 0 )); then
        command -v sudo >/dev/null || die "missing ${need[*]}: run as root or: apt-get install ${need[*]}"
        sudo=(sudo -n)
    fi
    known() { [[ -n "$(apt-cache policy slapd 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '(none)')" ]]; }
    if ! known; then
        log "apt-get update (apt does not know slapd yet)"
        "${sudo[@]}" apt-get update -qq || die "apt-get update failed"
    fi
    log "apt-get installing ${need[*]}"
    # slapd's debconf questions (domain, admin password) configure the system directory, which the tests never
    # use: accept the defaults without asking.
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
        >/dev/null || die "apt-get install ${need[*]} failed"
    for pkg in "${need[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || die "$pkg still not installed after apt-get install"
    done
fi

for f in "${TOOLS[@]}"; do
    [[ -x "$f" ]] || die "$f not found after installing ${DEB_PKGS[*]}"
done
for f in "${FILES[@]}"; do
    [[ -f "$f" ]] || die "$f not found after installing ${DEB_PKGS[*]}"
done
log "ok: $(dpkg-query -W -f='slapd ${Version}' slapd), $(dpkg-query -W -f='ldap-utils ${Version}' ldap-utils)"
