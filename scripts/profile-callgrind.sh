#!/usr/bin/env bash
# Counts a proxy's user-space instructions per proxied small RPC (GetInfo) with valgrind's callgrind, for
# hs2-proxy or HAProxy (mode tcp), in front of one mock impalad, with hs2-bench clients. Only the steady
# state counts: the counters are zeroed after a warm-up run (connections, sessions, pools and metric series
# exist by then) and dumped after the measured run, so start-up and shutdown are not in the figure.
# Instruction counts do not depend on machine noise: before/after comparisons of a change are exact.
#
#   scripts/profile-callgrind.sh [--target hs2-proxy|haproxy] [--clients N] [--scenario small|query] [--out FILE]
#       --scenario query: hs2-bench's query loop (open, execute, poll, fetch, close); "calls" are then loops
#   HS2_PROXY_BIN=/path/to/old/hs2-proxy scripts/profile-callgrind.sh    # profile another build (before/after)
#
# Prints one line: target=... scenario=... clients=... calls=... instructions=... per_call=...; leaves the callgrind
# file (default target/callgrind.<target>.out) for `callgrind_annotate --inclusive=yes`.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET=hs2-proxy; CLIENTS=1; SCENARIO=small; OUT=""; SECONDS_MEASURED=${CALLGRIND_SECONDS:-10}
while (($#)); do
    case "$1" in
        --target) TARGET=$2; shift 2 ;;
        --clients) CLIENTS=$2; shift 2 ;;
        --scenario) SCENARIO=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        *) echo "usage: $0 [--target hs2-proxy|haproxy] [--clients N] [--scenario small|query] [--out FILE]" >&2; exit 2 ;;
    esac
done
[[ $TARGET == hs2-proxy || $TARGET == haproxy ]] || { echo "unknown target $TARGET" >&2; exit 2; }
[[ $SCENARIO == small || $SCENARIO == query ]] || { echo "unknown scenario $SCENARIO" >&2; exit 2; }
OUT="${OUT:-$REPO/target/callgrind.$TARGET.out}"
rm -f "$OUT" "$OUT".*
die() { echo "profile-callgrind: ERROR: $*" >&2; exit 1; }
command -v valgrind >/dev/null || die "valgrind is required (apt-get install valgrind)"
command -v callgrind_control >/dev/null || die "callgrind_control is required (Debian's valgrind package)"
if [[ $TARGET == haproxy ]]; then
    command -v haproxy >/dev/null || "$REPO/scripts/setup-haproxy.sh" >&2
    command -v haproxy >/dev/null || die "haproxy is required (scripts/setup-haproxy.sh)"
fi
cargo build --release --bin mock-impalad --bin hs2-bench --manifest-path "$REPO/Cargo.toml" >&2
# hs2-proxy as it ships, unless another build is named or HAProxy is the target.
if [[ $TARGET == hs2-proxy && -z ${HS2_PROXY_BIN:-} ]]; then
    cargo build --profile dist --bin hs2-proxy --manifest-path "$REPO/Cargo.toml" >&2
fi
R="$REPO/target/release"
source "$REPO/scripts/bench-lib.sh"   # WORK, PIDS (stopped on exit), free_port, haproxy_baseline_cfg
MOCK=$(free_port); PROXY=$(free_port)
"$R/mock-impalad" --listen "127.0.0.1:$MOCK" --fast >"$WORK/mock.log" 2>&1 & PIDS+=($!)
# Nothing is instrumented until the warm-up is over (callgrind_control -i on).
VG=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT")
if [[ $TARGET == hs2-proxy ]]; then
    "${VG[@]}" "${HS2_PROXY_BIN:-$REPO/target/dist/hs2-proxy}" --listen "127.0.0.1:$PROXY" --admin-listen off --backend "127.0.0.1:$MOCK" \
        >"$WORK/target.log" 2>&1 &
else
    haproxy_baseline_cfg "" "127.0.0.1:$PROXY" -- "$MOCK" >"$WORK/haproxy.cfg"
    "${VG[@]}" haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/target.log" 2>&1 &
fi
VP=$!; PIDS+=($VP)
for _ in $(seq 150); do (exec 3<>"/dev/tcp/127.0.0.1/$PROXY") 2>/dev/null && break; sleep 0.2; done
(exec 3<>"/dev/tcp/127.0.0.1/$PROXY") 2>/dev/null || die "$TARGET under valgrind never listened (see $WORK/target.log)"
bench() { "$R/hs2-bench" run --target "127.0.0.1:$PROXY" --label cg --scenario "$SCENARIO" --clients "$CLIENTS" --duration "$1"; }
ops() { sed -n 's/.*"ops":\([0-9]*\).*/\1/p'; }
bench 3s >/dev/null                         # warm-up: connections, pools, metric series
callgrind_control -z "$VP" >/dev/null 2>&1
callgrind_control -i on "$VP" >/dev/null 2>&1
CALLS=$(bench "${SECONDS_MEASURED}s" | ops)
callgrind_control -i off "$VP" >/dev/null 2>&1
callgrind_control -d "$VP" >/dev/null 2>&1
[[ -n "$CALLS" && "$CALLS" -gt 0 ]] || die "the measured run made no calls"
# The first dump (OUT.1) holds the measured window only; callgrind writes it when it next gets to it.
DUMP="$OUT.1"
for _ in $(seq 150); do [[ -s "$DUMP" ]] && break; sleep 0.2; done
[[ -s "$DUMP" ]] || die "callgrind wrote no dump ($DUMP)"
sleep 0.5
IR=$(callgrind_annotate "$DUMP" 2>/dev/null | awk '/PROGRAM TOTALS/ && !n++ { gsub(",", "", $1); print $1 }')
[[ -n "$IR" ]] || die "no PROGRAM TOTALS in $DUMP"
echo "target=$TARGET scenario=$SCENARIO clients=$CLIENTS calls=$CALLS instructions=$IR per_call=$((IR / CALLS)) file=$DUMP"
