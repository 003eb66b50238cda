# Shared by the shell tests (tests/package, tests/monitoring): start real processes on loopback port 0, learn
# their ports from their logs, await events with a bound, stop exactly what was started. Source it; it defines
# functions only. Needs bash 4+.

PROCS_PIDS=()

fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "--- $*" >&2; }

# wait_for DESCRIPTION SECONDS COMMAND...: runs COMMAND every 0.1 s until it succeeds, at most SECONDS.
wait_for() {
    local desc=$1 limit=$2
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@"; do
        ((SECONDS < deadline)) || { echo "timed out after ${limit}s waiting for $desc" >&2; return 1; }
        sleep 0.1
    done
}

# start LOG COMMAND...: runs COMMAND in the background with stdout and stderr in LOG; sets STARTED_PID.
start() {
    local log=$1
    shift
    : >"$log"
    "$@" >"$log" 2>&1 &
    STARTED_PID=$!
    PROCS_PIDS+=("$STARTED_PID")
}

# stop_all: SIGTERM to every process started here (by pid), then waits for them.
stop_all() {
    local p
    for p in "${PROCS_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PROCS_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PROCS_PIDS=()
}

# log_value LOG PATTERN: the first capture of sed regex PATTERN in LOG, if any (empty otherwise).
log_value() { sed -n "s/$2/\1/p" "$1" | head -n1; }

# start_mock BIN LOG NAME [ARGS...]: a mock impalad on 127.0.0.1:0; sets MOCK_ADDR (host:port) once it listens.
start_mock() {
    local bin=$1 log=$2 name=$3
    shift 3
    start "$log" "$bin" --listen 127.0.0.1:0 --name "$name" "$@"
    local pid=$STARTED_PID
    has_mock_addr() {
        MOCK_ADDR="$(log_value "$log" '.*mock impalad listening.* addr=\([0-9.]*:[0-9]*\).*')"
        [[ -n "$MOCK_ADDR" ]] || { kill -0 "$pid" 2>/dev/null || fail "mock impalad exited: $(cat "$log")"; false; }
    }
    wait_for "mock impalad $name to listen" 20 has_mock_addr || fail "mock impalad $name: $(cat "$log")"
}

# wait_proxy_listening PID LOG: once the proxy logs "hs2-proxy listening", sets PROXY_ADDR and ADMIN_ADDR.
wait_proxy_listening() {
    local pid=$1 log=$2
    is_listening() {
        local line
        line="$(grep -m1 'hs2-proxy listening' "$log" || true)"
        if [[ -z "$line" ]]; then
            kill -0 "$pid" 2>/dev/null || fail "hs2-proxy exited before listening: $(cat "$log")"
            return 1
        fi
        PROXY_ADDR="$(sed -n 's/.* listen=\([0-9.]*:[0-9]*\).*/\1/p' <<<"$line")"
        ADMIN_ADDR="$(sed -n 's/.* admin=Some(\([0-9.]*:[0-9]*\)).*/\1/p' <<<"$line")"
    }
    wait_for "hs2-proxy to listen" 30 is_listening || fail "hs2-proxy did not listen: $(cat "$log")"
    [[ -n "$PROXY_ADDR" && -n "$ADMIN_ADDR" ]] || fail "no listen/admin address in: $(grep 'hs2-proxy listening' "$log")"
}

# metric_sum TEXT_FILE REGEX: the sum of the samples whose series (name and labels) match the ERE REGEX.
metric_sum() { awk -v re="$2" '$0 !~ /^#/ && $1 ~ re { s += $2 } END { printf "%g\n", s + 0 }' "$1"; }

# free_port: a loopback port that was free a moment ago (for servers that cannot report a port 0 they bound).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
