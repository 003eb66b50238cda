#!/usr/bin/env bash
# Watchdog of tests/interop_spark.rs: waits until its standard input closes, then stops every peer the
# suite started under ROOT and removes ROOT.
#
#   stop-peers-on-eof.sh ROOT      (started with setsid, stdin a pipe whose write end only the test holds)
#
# The test process holds the pipe's write end for its whole life, so stdin closes however it ends: a normal
# exit (its atexit handler closes the pipe, then waits for this script, so no JVM outlives `cargo test`), a
# panic, or SIGINT/SIGKILL (then this script finishes a second or two after the test). Peers are found by
# their pid files, and each pid is checked against ROOT before it is signalled, so nothing else is touched:
#   ROOT/*/server.pid   Spark Thrift Servers (stopped by scripts/spark-thrift-server.sh, which checks the JVM)
#   ROOT/*.pid          other peers (haproxy) whose command line names a file under ROOT
# HS2_INTEROP_KEEP=1 keeps ROOT (server logs, metastores) for a post-mortem.
set -uo pipefail
trap '' INT HUP TERM   # Ctrl-C reaches the test's process group; this script must outlive it

root="${1:?usage: stop-peers-on-eof.sh ROOT}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

cat >/dev/null   # returns when the test process closed the pipe (or died)

for pidfile in "$root"/*.pid; do
    [[ -f "$pidfile" ]] || continue
    pid="$(cat "$pidfile")"
    if [[ "$pid" =~ ^[0-9]+$ ]] && { tr '\0' ' ' < "/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$root/"; then
        kill -TERM "$pid" 2>/dev/null
    fi
done
for pidfile in "$root"/*/server.pid; do
    [[ -f "$pidfile" ]] || continue
    "$REPO/scripts/spark-thrift-server.sh" stop --dir "$(dirname "$pidfile")" >/dev/null 2>&1 &
done
wait
[[ "${HS2_INTEROP_KEEP:-0}" == 1 ]] || rm -rf "$root"
