#!/usr/bin/env bash
# Counts the proxy's user-space instructions per proxied small RPC (GetInfo) with valgrind's callgrind:
# a mock impalad, hs2-proxy under callgrind, one hs2-bench client for 15 s. Instruction counts do not
# depend on machine noise, so before/after comparisons of a change are exact. Prints the per-call figure
# and leaves the callgrind file for `callgrind_annotate`.
#   scripts/profile-callgrind.sh [OUT_FILE]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$REPO/target/callgrind.out}"
command -v valgrind >/dev/null || { echo "valgrind is required (apt-get install valgrind)" >&2; exit 1; }
cargo build --release --bins --manifest-path "$REPO/Cargo.toml" >&2
R="$REPO/target/release"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MOCK=$(port); PROXY=$(port)
"$R/mock-impalad" --listen "127.0.0.1:$MOCK" >/dev/null 2>&1 & MP=$!
valgrind --tool=callgrind --callgrind-out-file="$OUT" "$R/hs2-proxy" --listen "127.0.0.1:$PROXY" \
    --admin-listen off --backend "127.0.0.1:$MOCK" >/dev/null 2>&1 & VP=$!
trap 'kill $MP $VP 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PROXY") 2>/dev/null && break; sleep 0.2; done
OPS=$("$R/hs2-bench" run --target "127.0.0.1:$PROXY" --label cg --scenario small --clients 1 --duration 15s |
    sed 's/.*"ops":\([0-9]*\).*/\1/')
kill -INT $VP; wait $VP || true
IR=$(callgrind_annotate "$OUT" 2>/dev/null | grep -m1 "PROGRAM TOTALS" | awk '{gsub(",","",$1); print $1}')
echo "calls=$OPS instructions=$IR per_call=$(( IR / OPS ))"
