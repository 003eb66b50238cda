#!/usr/bin/env bash
# Reproduces the fuzz seeds captured from real peers (fuzz/seeds/*/peer-*): impyla (NOSASL, PLAIN, HTTP) and
# beeline (SASL, noSasl, HTTP) through hs2-proxy to a Spark Thrift Server, impala-shell (hs2, hs2-http)
# through hs2-proxy to the mock impalad. Recording relays (scripts/fuzz-seeds/relay.py) in front of each proxy
# and between proxy and backend keep both directions of every connection; split.py cuts them into seeds.
# Loopback only; peers come from the project's setup scripts. Afterwards: scripts/fuzz.sh --cmin.
#
# Usage: scripts/fuzz-seeds.sh [RECORDINGS_DIR]   (default: a temporary directory, removed afterwards)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
die() { echo "fuzz-seeds: ERROR: $*" >&2; exit 1; }

scripts/setup-python.sh >/dev/null || die "scripts/setup-python.sh failed"
scripts/setup-spark.sh >/dev/null || die "scripts/setup-spark.sh failed"
nice -n 10 cargo build --bin hs2-proxy --bin mock-impalad || die "cargo build failed"

rec="${1:-}"
if [[ -z "$rec" ]]; then
    rec="$(mktemp -d)"
    trap 'rm -rf "$rec"' EXIT
fi
rm -f fuzz/seeds/*/peer-*
python3 scripts/fuzz-seeds/capture.py --repo "$REPO" --out "$rec" \
    --proxy target/debug/hs2-proxy --mock target/debug/mock-impalad
python3 scripts/fuzz-seeds/split.py "$rec" fuzz
