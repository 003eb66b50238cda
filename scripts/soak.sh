#!/usr/bin/env bash
# The soak with faults (docs/reliability.md, hs2_proxy::soak): builds the release proxy and hs2-soak, runs
# the proxy in front of three mock impalads under mixed clients while faults are injected, for --minutes N
# (default 30), with real impyla clients from the project's .venv (scripts/setup-python.sh). Writes OUT/report.md, OUT/samples.csv and the proxy's logs (default OUT=target/soak);
# exits non-zero when any check failed. The 2-minute version is tests/soak.rs (run by scripts/test.sh).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

MINUTES=30
OUT=target/soak
while [[ $# -gt 0 ]]; do
    case "$1" in
        --minutes) MINUTES="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        *) echo "usage: scripts/soak.sh [--minutes N] [--out DIR]" >&2; exit 2 ;;
    esac
done

scripts/setup-python.sh
nice -n 10 cargo build --release --bin hs2-proxy --bin hs2-soak
mkdir -p "$OUT"
echo "soak: $MINUTES minutes, report in $OUT/report.md"
target/release/hs2-soak --proxy target/release/hs2-proxy --minutes "$MINUTES" --out "$OUT" --python "$REPO/.venv/bin/python"
