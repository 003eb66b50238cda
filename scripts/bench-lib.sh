# What the benchmark scripts share (bench.sh, bench-ab.sh, profile-callgrind.sh): sourced, not run.

# A work folder, and the processes to stop (add their pids to PIDS) when the script exits.
WORK="$(mktemp -d)"
PIDS=()
bench_cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap bench_cleanup EXIT

# A loopback port free now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits until something listens on 127.0.0.1:PORT (10 s at most).
wait_listening() {
    for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
    echo "$(basename "$0"): ERROR: nothing listens on 127.0.0.1:$1 (logs in $WORK)" >&2
    exit 1
}

# The HAProxy baseline's configuration on stdout: `mode tcp`, `balance leastconn` over mock impalads on
# loopback, one frontend per BIND (an address and its options: "127.0.0.1:PORT ssl crt FILE").
#   haproxy_baseline_cfg MAXCONN BIND... -- MOCK_PORT...      (MAXCONN "" leaves HAProxy's default)
haproxy_baseline_cfg() {
    local maxconn=$1 binds=() mocks=() after=0 n=0 a
    shift
    for a in "$@"; do
        if [[ $a == -- ]]; then after=1; elif ((after)); then mocks+=("$a"); else binds+=("$a"); fi
    done
    if [[ -n $maxconn ]]; then printf 'global\n    maxconn %s\n' "$maxconn"; fi
    printf 'defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 1h\n    timeout server 1h\n'
    for a in "${binds[@]}"; do
        n=$((n + 1)); printf 'frontend hs2-%d\n    bind %s\n    default_backend impalads\n' "$n" "$a"
    done
    printf 'backend impalads\n    balance leastconn\n'
    n=0
    for a in "${mocks[@]}"; do n=$((n + 1)); printf '    server i%d 127.0.0.1:%s\n' "$n" "$a"; done
}
