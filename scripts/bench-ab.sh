#!/usr/bin/env bash
# A/B of hs2-proxy builds against HAProxy on the small-RPC scenario (GetInfo), for changes too small for
# one `scripts/bench.sh` run to tell apart from the host's swing:
#   scripts/bench-ab.sh ROUNDS CLIENTS BIN [BIN...]
#   e.g. scripts/bench-ab.sh 4 64 old/hs2-proxy target/dist/hs2-proxy
# Three fast mock impalads; each BIN as a proxy over all three, and HAProxy (`mode tcp`, `balance
# leastconn`) over the same three. Each round runs every target for 5 s, the order reversed every other
# round. Prints, per round, each target's calls/s and its CPU per call (user + kernel µs, /proc/PID/stat).
# The mocks and the load generator are this checkout's release build (built first).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
die() { echo "bench-ab: ERROR: $*" >&2; exit 1; }
(($# >= 3)) || die "usage: $0 ROUNDS CLIENTS BIN [BIN...]"
ROUNDS=$1; CLIENTS=$2; shift 2; BINS=("$@")
for b in "${BINS[@]}"; do [[ -x $b ]] || die "$b is not an executable"; done
command -v haproxy >/dev/null || "$REPO/scripts/setup-haproxy.sh" >&2
command -v haproxy >/dev/null || die "haproxy is required (scripts/setup-haproxy.sh)"
cargo build --release --bin mock-impalad --bin hs2-bench --manifest-path "$REPO/Cargo.toml" >&2
R="$REPO/target/release"
source "$REPO/scripts/bench-lib.sh"   # WORK, PIDS (stopped on exit), free_port, wait_listening, haproxy_baseline_cfg

MOCKS=()
for i in 1 2 3; do
    p=$(free_port); "$R/mock-impalad" --listen "127.0.0.1:$p" --fast >"$WORK/mock-$i.log" 2>&1 & PIDS+=($!); MOCKS+=("$p")
done
for p in "${MOCKS[@]}"; do wait_listening "$p"; done
declare -A ADDR PID
TARGETS=(haproxy)
for i in "${!BINS[@]}"; do
    p=$(free_port)
    "${BINS[$i]}" --listen "127.0.0.1:$p" --admin-listen off --backend "127.0.0.1:${MOCKS[0]}" \
        --backend "127.0.0.1:${MOCKS[1]}" --backend "127.0.0.1:${MOCKS[2]}" >"$WORK/proxy-$i.log" 2>&1 &
    PIDS+=($!); ADDR[b$i]="127.0.0.1:$p"; PID[b$i]=$!; TARGETS+=("b$i")
done
H=$(free_port)
haproxy_baseline_cfg "" "127.0.0.1:$H" -- "${MOCKS[@]}" >"$WORK/haproxy.cfg"
haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 & PIDS+=($!); ADDR[haproxy]="127.0.0.1:$H"; PID[haproxy]=$!
for t in "${TARGETS[@]}"; do wait_listening "${ADDR[$t]##*:}"; done

field() { grep -o "\"$1\":[0-9.]*" <<<"$2" | cut -d: -f2; }
for t in "${TARGETS[@]}"; do   # warm-up: connections, pools
    "$R/hs2-bench" run --target "${ADDR[$t]}" --label warm --scenario small --clients "$CLIENTS" --duration 1s >/dev/null
done
for i in "${!BINS[@]}"; do echo "b$i = ${BINS[$i]}"; done
for r in $(seq "$ROUNDS"); do
    order=("${TARGETS[@]}")
    (( r % 2 == 0 )) && mapfile -t order < <(printf '%s\n' "${TARGETS[@]}" | tac)
    line="round $r:"
    for t in "${order[@]}"; do
        out=$("$R/hs2-bench" run --target "${ADDR[$t]}" --label "$t" --scenario small --clients "$CLIENTS" \
            --duration 5s --pid "${PID[$t]}") || die "hs2-bench failed against $t"
        [[ "$(field errors "$out")" == 0 ]] || die "$t answered with errors: $out"
        line+="  $t $(printf '%.0f' "$(field ops_per_sec "$out")") calls/s ($(field cpu_user_us_per_call "$out") + $(field cpu_sys_us_per_call "$out") µs)"
    done
    echo "$line"
done
