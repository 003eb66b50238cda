#!/usr/bin/env bash
# Install the Python HS2 peers used by the interop tests (impyla, thrift_sasl, pure-sasl, impala-shell) into
# $REPO/.venv, at the exact versions pinned in scripts/requirements-peers.txt.
#
# Idempotent and fast when nothing changed: a stamp file .venv/.installed-<hash> (hash of the pinned list and of
# the Python version) makes reruns skip apt and pip; the final checks run every time. Without a valid stamp (first
# run, pinned list or Python changed, or the checks fail) the venv is rebuilt from scratch.
# impala-shell's pinned `sasl` and `kerberos` are built from source: they need Debian libsasl2-dev, libkrb5-dev
# and g++ (and impala-shell -l needs libsasl2-modules at run time), which this script installs with apt-get when
# dpkg says they are missing.
#
# Usage: scripts/setup-python.sh        (PYTHON=/path/to/python3 to choose the interpreter; default python3)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
REQ="$REPO/scripts/requirements-peers.txt"
PYTHON="${PYTHON:-python3}"

die() { echo "setup-python: ERROR: $*" >&2; exit 1; }
log() { echo "setup-python: $*"; }
trap 'echo "setup-python: ERROR: command failed (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR

[[ -f "$REQ" ]] || die "pinned list $REQ not found"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 8))' || die "$PYTHON is older than 3.8"

# Serialize concurrent runs (two test jobs starting at once) by locking this script file itself.
if command -v flock >/dev/null; then
    exec 9<"${BASH_SOURCE[0]}"
    flock 9
fi

py_id="$("$PYTHON" -c 'import sys, platform; print(platform.python_version(), sys.implementation.name)')"
hash="$( { cat "$REQ"; echo "$py_id"; } | sha256sum | cut -c1-16)"
STAMP="$VENV/.installed-$hash"

# Checks that must hold at the end of every run. Prints what it verified; returns non-zero on the first failure.
verify() {
    local out
    out="$("$VENV/bin/python" -c 'import impala.dbapi, thrift_sasl, puresasl, impala; print(impala.__version__)' 2>&1)" \
        || { echo "setup-python: 'import impala.dbapi, thrift_sasl, puresasl' failed in $VENV:" >&2; echo "$out" >&2; return 1; }
    log "impyla $out imports (impala.dbapi, thrift_sasl, puresasl)"
    [[ -x "$VENV/bin/impala-shell" ]] || { echo "setup-python: $VENV/bin/impala-shell missing" >&2; return 1; }
    out="$("$VENV/bin/impala-shell" --version 2>&1)" \
        || { echo "setup-python: '$VENV/bin/impala-shell --version' failed:" >&2; echo "$out" >&2; return 1; }
    log "$out"
}

# Fast path: already installed from this exact pinned list with this Python.
if [[ -f "$STAMP" && -x "$VENV/bin/python" ]]; then
    if verify; then
        log "up to date ($VENV, stamp $(basename "$STAMP"))"
        exit 0
    fi
    log "stamp present but checks failed: reinstalling"
fi

# Build prerequisites of the sdists (sasl is C++, kerberos needs krb5-config, bitarray/thrift are C), plus
# libsasl2-modules: Cyrus SASL's PLAIN plugin, which impala-shell -l (LDAP = SASL PLAIN) loads at run time.
DEB_PKGS=(libsasl2-dev libkrb5-dev libsasl2-modules)
need_pkgs=()
for pkg in "${DEB_PKGS[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
command -v gcc >/dev/null || need_pkgs+=(gcc)
command -v g++ >/dev/null || need_pkgs+=(g++)
py_include="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
if [[ ! -f "$py_include/Python.h" ]]; then
    [[ "$(command -v "$PYTHON")" == /usr/bin/* ]] || die "Python.h not found in $py_include (install this Python's headers)"
    need_pkgs+=(python3-dev)
fi
if (( ${#need_pkgs[@]} )); then
    command -v apt-get >/dev/null || die "missing build packages ${need_pkgs[*]} and no apt-get to install them"
    sudo=()
    if (( EUID != 0 )); then
        command -v sudo >/dev/null || die "missing ${need_pkgs[*]}: run as root or: apt-get install ${need_pkgs[*]}"
        sudo=(sudo -n)
    fi
    log "apt-get installing ${need_pkgs[*]}"
    "${sudo[@]}" apt-get update -qq || die "apt-get update failed"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" \
        >/dev/null || die "apt-get install ${need_pkgs[*]} failed"
    for pkg in "${DEB_PKGS[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || die "$pkg still not installed after apt-get install"
    done
fi

# No valid stamp: start from an empty virtualenv, so nothing stale or half-installed survives.
log "creating virtualenv $VENV"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV" || die "cannot create virtualenv $VENV with $PYTHON"

log "pip installing $(grep -cE '^[A-Za-z]' "$REQ") pinned packages from $(basename "$REQ")"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$REQ" \
    || die "pip install -r $REQ failed (see pip's output above)"
check_out="$("$VENV/bin/python" -m pip check --disable-pip-version-check 2>&1)" \
    || die "pip check: installed packages conflict: $check_out"

verify || die "packages installed but the final checks failed"
touch "$STAMP"
log "installed into $VENV (stamp $(basename "$STAMP"))"
