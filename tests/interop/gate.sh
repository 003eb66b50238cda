#!/usr/bin/env bash
# A gate for a client script (beeline's `!sh`): touch READY, then wait until GO exists (at most 60 s).
#   gate.sh READY GO
# tests/interop_spark.rs changes the proxy's state while the client waits here, then creates GO.
set -euo pipefail
ready="${1:?usage: gate.sh READY GO}" go="${2:?usage: gate.sh READY GO}"
: > "$ready"
for (( i = 0; i < 600; i++ )); do
    [[ -e "$go" ]] && exit 0
    sleep 0.1
done
echo "gate.sh: $go did not appear within 60 s" >&2
exit 1
