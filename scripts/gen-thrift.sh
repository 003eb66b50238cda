#!/usr/bin/env bash
# Apache Thrift's own code for the test bed: regenerates src/hs2/generated/{hs2,impala}.rs from our IDL
# (idl/hs2.thrift, idl/impala.thrift) with Debian's thrift-compiler, installing it first when it is missing.
# The generated files are checked in; tests/generated_code.rs fails when they drift from the IDL.
#
# idl/thrift.thrift is not compiled: it describes TApplicationException, which the `thrift` crate provides
# (thrift::ApplicationError), and exists only so that build.rs generates its numbers for the proxy.
#
# The compiler's version is pinned (its output names it and differs between versions): a different one fails.
# Idempotent: the install step does nothing when the right compiler is already there; `apt-get update` runs
# only when apt does not know the package yet.
#
# Usage: scripts/gen-thrift.sh            install the compiler if needed, then regenerate
#        scripts/gen-thrift.sh --install  only install the compiler
#        scripts/gen-thrift.sh --check    generate into a temporary directory; fail on any difference
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

WANT_VERSION="0.17.0"
OUT="src/hs2/generated"
IDL=(idl/hs2.thrift idl/impala.thrift)

die() { echo "gen-thrift: ERROR: $*" >&2; exit 1; }

have_compiler() { command -v thrift >/dev/null && [[ "$(thrift --version 2>/dev/null)" == "Thrift version $WANT_VERSION" ]]; }

install_compiler() {
    if have_compiler; then
        echo "gen-thrift: $(thrift --version) ($(command -v thrift))"
        return
    fi
    if command -v thrift >/dev/null; then
        die "found '$(thrift --version 2>&1)' at $(command -v thrift), need Thrift version $WANT_VERSION (Debian bookworm's thrift-compiler)"
    fi
    command -v apt-get >/dev/null || die "no thrift compiler and no apt-get to install it (install thrift-compiler $WANT_VERSION)"
    local sudo=()
    if (( EUID != 0 )); then
        command -v sudo >/dev/null || die "thrift-compiler missing: run as root or: apt-get install thrift-compiler"
        sudo=(sudo -n)
    fi
    # Serialize concurrent runs (two `apt-get update`s would race for nothing).
    if command -v flock >/dev/null; then
        exec 9<"${BASH_SOURCE[0]}"
        flock 9
    fi
    known() { [[ -n "$(apt-cache policy thrift-compiler 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '(none)')" ]]; }
    if ! known; then
        echo "gen-thrift: apt-get update (apt does not know thrift-compiler yet)"
        "${sudo[@]}" apt-get update -qq || die "apt-get update failed"
        known || die "apt knows no thrift-compiler package even after apt-get update"
    fi
    echo "gen-thrift: apt-get install thrift-compiler"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        thrift-compiler >/dev/null || die "apt-get install thrift-compiler failed"
    have_compiler || die "after apt-get install: '$(thrift --version 2>&1)', need Thrift version $WANT_VERSION"
    echo "gen-thrift: $(thrift --version) ($(command -v thrift))"
}

# Compiles every IDL file into directory $1 (one .rs per file; no -r: impala.rs refers to hs2.rs).
generate() {
    local dir="$1" f
    for f in "${IDL[@]}"; do
        # The compiler's only warnings are about `byte` and `list<byte>`, which the wire protocol fixes.
        thrift --gen rs -out "$dir" "$f" >/dev/null 2>&1 || { thrift --gen rs -out "$dir" "$f"; die "thrift failed on $f"; }
    done
}

case "${1:-}" in
    --install)
        install_compiler
        ;;
    --check)
        install_compiler
        tmp="$(mktemp -d)"
        trap 'rm -rf "$tmp"' EXIT
        generate "$tmp"
        for f in "${IDL[@]}"; do
            rs="$(basename "$f" .thrift).rs"
            diff -q "$tmp/$rs" "$OUT/$rs" >/dev/null || die "$OUT/$rs differs from the compiler's output for $f: run scripts/gen-thrift.sh"
        done
        echo "gen-thrift: $OUT matches the IDL"
        ;;
    "")
        install_compiler
        mkdir -p "$OUT"
        generate "$OUT"
        echo "gen-thrift: regenerated $(printf '%s.rs ' $(for f in "${IDL[@]}"; do basename "$f" .thrift; done))in $OUT"
        ;;
    *)
        die "usage: scripts/gen-thrift.sh [--install|--check]"
        ;;
esac
