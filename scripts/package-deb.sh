#!/usr/bin/env bash
# Builds the Debian package: target/debian/hs2-proxy_<version>-1_<arch>.deb, from a release build of the proxy
# binary, with `cargo deb` (crates.io cargo-deb, pinned below; installed with `cargo install` when missing or
# at another version). What goes in is configured in Cargo.toml, [package.metadata.deb]; see docs/packaging.md.
#
# Usage: scripts/package-deb.sh          prints the path of the .deb on its last line of stdout
# Idempotent: a rerun with nothing changed rebuilds nothing and rewrites the same package.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

CARGO_DEB_VERSION=3.8.0

die() { echo "package-deb: ERROR: $*" >&2; exit 1; }
log() { echo "package-deb: $*" >&2; }

have_cargo_deb() { [[ "$(cargo deb --version 2>/dev/null)" == "cargo-deb $CARGO_DEB_VERSION" ]]; }
if ! have_cargo_deb; then
    log "cargo install cargo-deb $CARGO_DEB_VERSION (about 2 minutes on 2 cores, once)"
    nice -n 10 cargo install --quiet --locked cargo-deb --version "$CARGO_DEB_VERSION" >&2 \
        || die "cargo install cargo-deb --version $CARGO_DEB_VERSION failed"
    have_cargo_deb || die "cargo deb --version does not say $CARGO_DEB_VERSION after installing it"
fi
# `depends = "$auto"` asks dpkg-shlibdeps (Debian's dpkg-dev) which libc the binary needs.
command -v dpkg-shlibdeps >/dev/null || die "dpkg-shlibdeps not found (apt-get install dpkg-dev)"

# --profile dist: what ships is optimized at link time (Cargo.toml's `[profile.dist]`; the bench measures it).
# --strip: the profile keeps line tables for profiling (debug = 1); the package does not need them.
log "cargo deb (the dist build of hs2-proxy)"
out="$(nice -n 10 cargo deb --locked --profile dist --strip --output target/debian 2> >(grep -v '^warning: .*copyright' >&2))" \
    || die "cargo deb failed"
deb="$(printf '%s\n' "$out" | tail -n1)"
[[ -f "$deb" && "$deb" == *.deb ]] || die "cargo deb printed no package path (got: $out)"
log "built $deb ($(du -h "$deb" | cut -f1))"
echo "$deb"
