#!/usr/bin/env bash
# Benchmarks hs2-proxy against a direct connection and HAProxy (mode tcp, balance leastconn), in one run:
# three mock impalads (fast mode), HAProxy and hs2-proxy in front of them, every scenario against every
# target, targets alternating within each round. Writes docs/benchmarks.md (figures, ratios, the machine).
#
#   scripts/bench.sh            # full run (~12 minutes on 2 cores)
#   scripts/bench.sh --smoke    # seconds: proves the bench builds and produces figures (used by the tests)
#
# Loopback only. Ports are taken from a free range picked at start.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

SMOKE=0
OUT="docs/benchmarks.md"
if [[ "${1:-}" == "--smoke" ]]; then
    SMOKE=1
    OUT="${BENCH_SMOKE_OUT:-target/bench-smoke.md}"
fi
ROUNDS=3; DURATION=5s; CONNS=10000; SESSIONS=100000; BULK=$((1 << 30)); POOLED=500; POOLED_FOR=10s
if (( SMOKE )); then
    ROUNDS=1; DURATION=300ms; CONNS=200; SESSIONS=1000; BULK=$((64 << 20)); POOLED=50; POOLED_FOR=1s
fi

log() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: ERROR: %s\n' "$*" >&2; exit 1; }

command -v haproxy >/dev/null || scripts/setup-haproxy.sh >&2
command -v haproxy >/dev/null || die "haproxy is required (scripts/setup-haproxy.sh)"
# 10k client connections, and HAProxy opens one backend connection per client connection. A sandbox may cap
# the hard limit (20,000 here): HAProxy then gets as many connections as its two descriptors each allow.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
FDS=$(ulimit -n)
HAPROXY_MAXCONN=$(( (FDS - 500) / 2 ))
HAPROXY_CONNS=$(( CONNS < HAPROXY_MAXCONN - 100 ? CONNS : HAPROXY_MAXCONN - 100 ))

# hs2-proxy as it ships (the `dist` profile, optimized at link time, as the Debian package builds it); the
# mocks and the load generator, the same for every target, in the release profile.
if (( SMOKE )); then
    PROFILE=debug; PROXY_PROFILE=debug; cargo build --bins >&2
else
    PROFILE=release; PROXY_PROFILE=dist
    cargo build --release --bin mock-impalad --bin hs2-bench >&2
    cargo build --profile dist --bin hs2-proxy >&2
fi
BIN="$REPO/target/$PROFILE"
PROXY_BIN="$REPO/target/$PROXY_PROFILE/hs2-proxy"

source "$REPO/scripts/bench-lib.sh"   # WORK, PIDS (stopped on exit), wait_listening, haproxy_baseline_cfg

# A base port with 7 free ports after it.
free_base() {
    python3 - <<'EOF'
import socket, random
for _ in range(200):
    base = random.randint(20000, 60000)
    try:
        socks = []
        for p in range(base, base + 7):
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", p)); socks.append(s)
        for s in socks: s.close()
        print(base); break
    except OSError:
        for s in socks: s.close()
EOF
}
BASE="$(free_base)"
MOCKS=($((BASE + 1)) $((BASE + 2)) $((BASE + 3))); PROXY=$BASE; HAPROXY=$((BASE + 4))
PROXY_TLS=$((BASE + 5)); HAPROXY_TLS=$((BASE + 6))

# TLS on the client side: one self-signed certificate for both proxies (ECDSA P-256, what a modern
# internal CA issues); the backends stay plaintext, so each proxy terminates TLS.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
    -keyout "$WORK/tls.key" -out "$WORK/tls.crt" >/dev/null 2>&1 || die "openssl could not make a test certificate"
cat "$WORK/tls.crt" "$WORK/tls.key" >"$WORK/tls.pem"

for p in "${MOCKS[@]}"; do
    "$BIN/mock-impalad" --listen "127.0.0.1:$p" --fast >"$WORK/mock-$p.log" 2>&1 &
    PIDS+=($!)
done
"$PROXY_BIN" --listen "127.0.0.1:$PROXY" --admin-listen 127.0.0.1:0 --backend "127.0.0.1:${MOCKS[0]}" --backend "127.0.0.1:${MOCKS[1]}" \
    --backend "127.0.0.1:${MOCKS[2]}" >"$WORK/proxy.log" 2>&1 &
PROXY_PID=$!; PIDS+=($PROXY_PID)
"$PROXY_BIN" --listen "127.0.0.1:$PROXY_TLS" --admin-listen 127.0.0.1:0 --tls-cert "$WORK/tls.crt" --tls-key "$WORK/tls.key" \
    --backend "127.0.0.1:${MOCKS[0]}" --backend "127.0.0.1:${MOCKS[1]}" --backend "127.0.0.1:${MOCKS[2]}" >"$WORK/proxy-tls.log" 2>&1 &
PROXY_TLS_PID=$!; PIDS+=($PROXY_TLS_PID)
haproxy_baseline_cfg "$HAPROXY_MAXCONN" "127.0.0.1:$HAPROXY" "127.0.0.1:$HAPROXY_TLS ssl crt $WORK/tls.pem" \
    -- "${MOCKS[@]}" >"$WORK/haproxy.cfg"
haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 &
HAPROXY_PID=$!; PIDS+=($HAPROXY_PID)

for p in "${MOCKS[@]}" "$PROXY" "$HAPROXY" "$PROXY_TLS" "$HAPROXY_TLS"; do wait_listening "$p"; done

RESULTS="$WORK/results.jsonl"
declare -A ADDR=([direct]="127.0.0.1:${MOCKS[0]}" [haproxy]="127.0.0.1:$HAPROXY" [hs2-proxy]="127.0.0.1:$PROXY"
    [haproxy-tls]="127.0.0.1:$HAPROXY_TLS" [hs2-proxy-tls]="127.0.0.1:$PROXY_TLS")
declare -A PID=([haproxy]=$HAPROXY_PID [hs2-proxy]=$PROXY_PID [haproxy-tls]=$HAPROXY_PID [hs2-proxy-tls]=$PROXY_TLS_PID)
# --pid for a target that is a proxy: its CPU per call (small), memory (bulk, idle), sockets (pooled).
pid_of() { [[ -n "${PID[$1]:-}" ]] && echo "--pid ${PID[$1]}"; true; }
run() { # target scenario args...
    local target=$1; shift
    local tls=(); [[ $target == *-tls ]] && tls=(--tls)
    "$BIN/hs2-bench" run --target "${ADDR[$target]}" --label "$target" "${tls[@]}" "$@" | tee -a "$RESULTS" >&2
}
ORDERS=("direct haproxy hs2-proxy" "hs2-proxy direct haproxy" "haproxy hs2-proxy direct")
for round in $(seq "$ROUNDS"); do
    log "round $round of $ROUNDS"
    order=${ORDERS[$(( (round - 1) % 3 ))]}
    # shellcheck disable=SC2046 # pid_of gives two words or none
    for t in $order; do run "$t" --scenario small --clients 1 --duration "$DURATION" $(pid_of "$t"); done
    # shellcheck disable=SC2046
    for t in $order; do run "$t" --scenario small --clients 64 --duration "$DURATION" $(pid_of "$t"); done
    for t in $order; do run "$t" --scenario query --clients 16 --duration "$DURATION"; done
    tls_order="haproxy-tls hs2-proxy-tls"; (( round % 2 == 0 )) && tls_order="hs2-proxy-tls haproxy-tls"
    for clients in 1 64; do
        # shellcheck disable=SC2046
        for t in $tls_order; do run "$t" --scenario small --clients "$clients" --duration "$DURATION" $(pid_of "$t"); done
    done
    for t in $order; do
        pidarg=(); [[ -n "${PID[$t]:-}" ]] && pidarg=(--pid "${PID[$t]}")
        run "$t" --scenario bulk --bulk-bytes "$BULK" "${pidarg[@]}"
    done
done
PORTS="$(IFS=,; echo "${MOCKS[*]}")"
for t in haproxy hs2-proxy; do
    run "$t" --scenario pooled --clients "$POOLED" --duration "$POOLED_FOR" --pid "${PID[$t]}" --upstream-ports "$PORTS"
done
# Last: memory per idle connection and per tracked session (sessions stay open in the mocks).
run haproxy --scenario idle --connections "$HAPROXY_CONNS" --sessions "$SESSIONS" --pid "$HAPROXY_PID"
run hs2-proxy --scenario idle --connections "$CONNS" --sessions "$SESSIONS" --pid "$PROXY_PID"

MACHINE="$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr), $(haproxy -v | head -n1 | awk '{print "HAProxy " $3}'), hs2-proxy: $PROXY_PROFILE build, mocks and client: $PROFILE build, $(date -u +%Y-%m-%d)"
CMD="scripts/bench.sh"; (( SMOKE )) && CMD="scripts/bench.sh --smoke"
mkdir -p "$(dirname "$OUT")"
"$BIN/hs2-bench" report --input "$RESULTS" --machine "$MACHINE" --command "$CMD" >"$OUT.tmp"
if [[ -f docs/benchmarks-notes.md && $SMOKE == 0 ]]; then cat docs/benchmarks-notes.md >>"$OUT.tmp"; fi
mv "$OUT.tmp" "$OUT"
log "wrote $OUT"
