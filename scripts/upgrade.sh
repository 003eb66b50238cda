#!/usr/bin/env bash
# Upgrades a running hs2-proxy without refusing a connection: starts the new binary on the same addresses
# (listeners bind with SO_REUSEPORT, `reuse_port` on by default), waits until it listens, then sends the
# old one SIGTERM and waits until it has drained and exited (it stops accepting at once; open client
# connections finish their call; it exits within timeouts.shutdown_grace).
#
#   scripts/upgrade.sh --old-pid PID --log FILE [--timeout SECONDS] -- /usr/bin/hs2-proxy --config /etc/hs2-proxy/hs2-proxy.toml
#
# The new instance runs in the background with its stderr in FILE; its pid is printed on stdout. Exit
# codes: 0 upgraded; 1 the new instance did not come up (the old one is left running); 2 usage; 3 the
# old one did not exit in time (both are left running: look at it).
set -euo pipefail

die() { echo "upgrade: $*" >&2; exit "${2:-1}"; }
# Running and not a zombie (an exited child its parent has not reaped yet still answers kill -0).
alive() { kill -0 "$1" 2>/dev/null && [[ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" != Z ]]; }

old_pid="" log="" timeout=60
while [[ $# -gt 0 ]]; do
    case "$1" in
        --old-pid) old_pid="$2"; shift 2 ;;
        --log) log="$2"; shift 2 ;;
        --timeout) timeout="$2"; shift 2 ;;
        --) shift; break ;;
        *) die "unknown argument $1" 2 ;;
    esac
done
[[ -n "$old_pid" && -n "$log" && $# -gt 0 ]] || die "usage: upgrade.sh --old-pid PID --log FILE -- COMMAND..." 2
alive "$old_pid" || die "no process $old_pid" 2

"$@" 2>"$log" >/dev/null </dev/null &
new_pid=$!
# Ready once it logs that it listens (its listeners are bound and queueing connections by then).
deadline=$((SECONDS + timeout))
until grep -q "hs2-proxy listening" "$log" 2>/dev/null; do
    if ! alive "$new_pid"; then
        tail -n 20 "$log" >&2 || true
        die "the new instance exited before it listened: the old one ($old_pid) keeps serving"
    fi
    (( SECONDS < deadline )) || { kill "$new_pid" 2>/dev/null || true; die "the new instance did not listen within ${timeout}s"; }
    sleep 0.05
done
echo "upgrade: new instance $new_pid listens; stopping the old one ($old_pid)" >&2
kill -TERM "$old_pid"
deadline=$((SECONDS + timeout))
while alive "$old_pid"; do
    (( SECONDS < deadline )) || die "the old instance ($old_pid) is still running after ${timeout}s" 3
    sleep 0.05
done
echo "upgrade: the old instance exited; $new_pid serves" >&2
echo "$new_pid"
