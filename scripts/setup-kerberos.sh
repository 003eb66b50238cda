#!/usr/bin/env bash
# Install what the Kerberos tests need: an MIT KDC and its tools (krb5kdc, kdb5_util, kadmin.local), the user
# tools (kinit, klist), the GSS-API runtime hs2-proxy loads at run time (libgssapi_krb5.so.2) and Cyrus SASL's
# GSSAPI plugin (impala-shell -k). Nothing is configured or started here: every test creates its own private
# realm in a temporary directory (src/kerberos/testkdc.rs); no system Kerberos file is read or written.
#
# Idempotent: dpkg tells what is missing; only that is installed. Fails loudly.
# Usage: scripts/setup-kerberos.sh
set -euo pipefail

die() { echo "setup-kerberos: ERROR: $*" >&2; exit 1; }
log() { echo "setup-kerberos: $*"; }

# krb5-admin-server only for kadmin.local (kadmind never runs); the image's policy-rc.d keeps Debian from
# starting the packaged krb5kdc/kadmind services.
DEB_PKGS=(krb5-kdc krb5-admin-server krb5-user libgssapi-krb5-2 libsasl2-modules-gssapi-mit)
TOOLS=(krb5kdc kdb5_util kadmin.local kinit klist kdestroy)

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
    log "apt-get installing ${need[*]}"
    "${sudo[@]}" apt-get update -qq || die "apt-get update failed"
    # The packages ask for a default realm and KDC host names: answer nothing, we never use the system realm.
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
        >/dev/null || die "apt-get install ${need[*]} failed"
    for pkg in "${need[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || die "$pkg still not installed after apt-get install"
    done
fi

for tool in "${TOOLS[@]}"; do
    command -v "$tool" >/dev/null || [[ -x "/usr/sbin/$tool" ]] || die "$tool not found after installing ${DEB_PKGS[*]}"
done
{ ldconfig -p 2>/dev/null || /sbin/ldconfig -p; } | grep -q 'libgssapi_krb5\.so\.2 ' || die "libgssapi_krb5.so.2 is not in the loader cache"
ls /usr/lib/*/sasl2/libgssapiv2.so* >/dev/null 2>&1 || die "Cyrus SASL GSSAPI plugin (libgssapiv2.so) not found"
log "ok: $(krb5-config --version 2>/dev/null || dpkg-query -W -f='krb5-kdc ${Version}' krb5-kdc)"
