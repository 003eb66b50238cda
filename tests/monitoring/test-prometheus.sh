#!/usr/bin/env bash
# Monitoring against a REAL Prometheus (Debian's, scripts/setup-prometheus.sh): the alert rules pass promtool's
# check and unit tests; then a Prometheus on loopback (free port, temporary data dir, 1 s scrapes) scrapes a
# running proxy's /metrics with the admin bearer token (`authorization: credentials_file`) and evaluates
# docs/monitoring/alerts.yml, while hs2-bench drives known traffic through the proxy to three mock impalads.
# The test polls Prometheus's HTTP API (bounded, no blind sleeps) until the series carry the values the clients
# and the proxy know: calls per method, errors by kind, sessions per backend, refused connections, the
# connection limit; and until a real alert fires. Last, every PromQL expression of the Grafana dashboard and
# of the rules must name only metrics the running exporter exports, and every dashboard query must evaluate.
#
# Usage: tests/monitoring/test-prometheus.sh      (run by scripts/test.sh)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
source tests/lib/procs.sh
MON="$REPO/docs/monitoring"

for t in prometheus promtool curl python3; do
    command -v "$t" >/dev/null || fail "$t not found (scripts/setup-prometheus.sh installs Prometheus)"
done

note "promtool check rules / test rules"
promtool check rules "$MON/alerts.yml" || fail "promtool check rules $MON/alerts.yml"
promtool test rules "$MON/alerts_test.yml" || fail "promtool test rules $MON/alerts_test.yml"

nice -n 10 cargo build --release --locked --quiet --bin hs2-proxy --bin mock-impalad --bin hs2-bench
BIN="$REPO/target/release"
WORK="$(mktemp -d)"
trap 'stop_all; rm -rf "$WORK"' EXIT

note "three mock impalads and a proxy with an admin token"
MOCKS=()
for i in 1 2 3; do
    start_mock "$BIN/mock-impalad" "$WORK/mock-$i.log" "impalad-$i"
    MOCKS+=("$MOCK_ADDR")
done
python3 -c 'import secrets; print(secrets.token_hex(16))' >"$WORK/admin-token"
TOKEN="$(cat "$WORK/admin-token")"
LIMIT=24
cat >"$WORK/hs2-proxy.toml" <<EOF
listen = "127.0.0.1:0"
backends = ["${MOCKS[0]}", "${MOCKS[1]}", "${MOCKS[2]}"]
[limits]
max_client_connections = $LIMIT
[health]
interval = "250ms"
[admin]
listen = "127.0.0.1:0"
token_file = "$WORK/admin-token"
EOF
start "$WORK/proxy.log" "$BIN/hs2-proxy" --config "$WORK/hs2-proxy.toml"
PROXY_PID=$STARTED_PID
wait_proxy_listening "$PROXY_PID" "$WORK/proxy.log"
ready() { curl -fsS -o /dev/null "http://$ADMIN_ADDR/readyz"; }
wait_for "the proxy to be ready" 30 ready || fail "never ready: $(cat "$WORK/proxy.log")"
code="$(curl -s -o /dev/null -w '%{http_code}' "http://$ADMIN_ADDR/metrics")"
[[ "$code" == 401 ]] || fail "/metrics without the token answered $code, want 401"

note "Prometheus on loopback"
PROM_PORT="$(free_port)"
PROM="http://127.0.0.1:$PROM_PORT"
cat >"$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $MON/alerts.yml
scrape_configs:
  - job_name: hs2-proxy
    authorization:
      credentials_file: $WORK/admin-token
    static_configs:
      - targets: ["$ADMIN_ADDR"]
  # The same target without the token: its scrapes must fail (up == 0).
  - job_name: hs2-proxy-no-token
    static_configs:
      - targets: ["$ADMIN_ADDR"]
EOF
start "$WORK/prometheus.log" prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
    --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn
PROM_PID=$STARTED_PID
prom_ready() {
    kill -0 "$PROM_PID" 2>/dev/null || fail "prometheus exited: $(cat "$WORK/prometheus.log")"
    curl -fsS -o /dev/null "$PROM/-/ready" 2>/dev/null
}
wait_for "Prometheus to be ready" 60 prom_ready || fail "Prometheus not ready: $(cat "$WORK/prometheus.log")"

# prom_value EXPR: the value of an instant query that returns one series (empty when it returns none).
prom_value() {
    curl -fsS --get "$PROM/api/v1/query" --data-urlencode "query=$1" | python3 -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
if len(r) > 1: sys.exit("more than one series: %s" % r)
print(r[0]["value"][1] if r else "")'
}
# prom_is EXPR WANT: the query's value is WANT (numerically).
prom_is() {
    local got
    got="$(prom_value "$1")" || return 1
    [[ -n "$got" ]] && python3 -c 'import sys; sys.exit(float(sys.argv[1]) != float(sys.argv[2]))' "$got" "$2"
}
# expect EXPR WANT: waits (bounded) until Prometheus says WANT for EXPR.
expect() {
    wait_for "Prometheus: $1 == $2" 30 prom_is "$1" "$2" \
        || fail "Prometheus: $1 is '$(prom_value "$1")', want $2"
    note "Prometheus: $1 = $2"
}

expect 'up{job="hs2-proxy"}' 1
expect 'up{job="hs2-proxy-no-token"}' 0

bench() { "$BIN/hs2-bench" run --label monitoring --target "$PROXY_ADDR" "$@"; }
json() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

note "traffic: 6 sessions held, then queries"
bench --scenario idle --sessions 6 --connections 6 >"$WORK/idle.json"
[[ "$(json "$WORK/idle.json" errors)" == 0 ]] || fail "idle run had errors: $(cat "$WORK/idle.json")"
bench --scenario query --clients 1 --duration 300ms >"$WORK/query.json"
QUERIES="$(json "$WORK/query.json" ops)"
[[ "$(json "$WORK/query.json" errors)" == 0 && "$QUERIES" -gt 0 ]] || fail "query run: $(cat "$WORK/query.json")"

note "errors: every backend drained, OpenSession fails with no_backend"
admin() { curl -fsS -X POST -H "Authorization: Bearer $TOKEN" "http://$ADMIN_ADDR/api/backends/$1/$2" >/dev/null; }
for m in "${MOCKS[@]}"; do admin "$m" drain; done
bench --scenario query --clients 1 --duration 200ms >"$WORK/drained.json"
REFUSED_OPENS="$(json "$WORK/drained.json" errors)"
((REFUSED_OPENS > 0)) || fail "no OpenSession failed while drained: $(cat "$WORK/drained.json")"
for m in "${MOCKS[@]}"; do admin "$m" undrain; done
wait_for "a backend to take sessions again" 10 ready || fail "not ready after undrain"

note "connections over the limit ($LIMIT) are refused"
# Every earlier client has gone (the proxy saw each EOF), so exactly 6 of 30 are over the limit.
no_clients() {
    curl -fsS -H "Authorization: Bearer $TOKEN" "http://$ADMIN_ADDR/metrics" >"$WORK/metrics-now"
    [[ "$(metric_sum "$WORK/metrics-now" '^hs2_proxy_client_connections$')" == 0 ]]
}
wait_for "the proxy to hold no client connection" 10 no_clients || fail "client connections still open"
bench --scenario idle --sessions 1 --connections $((LIMIT + 6)) >"$WORK/over.json"
[[ "$(json "$WORK/over.json" errors)" == 6 ]] || fail "want 6 refused connections: $(cat "$WORK/over.json")"

# The truth for the state read at scrape time: the proxy's own /metrics, now that the traffic is over.
curl -fsS -H "Authorization: Bearer $TOKEN" "http://$ADMIN_ADDR/metrics" >"$WORK/metrics"

note "series in Prometheus"
J='job="hs2-proxy"'
expect "sum(hs2_proxy_rpcs_total{$J,method=\"ExecuteStatement\"})" "$QUERIES"
expect "sum(hs2_proxy_rpc_duration_seconds_count{$J,method=\"ExecuteStatement\"})" "$QUERIES"
expect "sum(hs2_proxy_rpc_errors_total{$J,method=\"OpenSession\",kind=\"no_backend\"})" "$REFUSED_OPENS"
expect "sum(hs2_proxy_rpcs_total{$J,method=\"OpenSession\"})" "$((6 + QUERIES + REFUSED_OPENS + 1))"
expect "sum(hs2_proxy_sessions_opened_total{$J})" "$((6 + QUERIES + 1))"
expect "hs2_proxy_client_connections_refused_total{$J}" 6
expect "hs2_proxy_client_connections_max{$J}" "$LIMIT"
expect "hs2_proxy_sessions{$J}" 7
total=0
for m in "${MOCKS[@]}"; do
    want="$(metric_sum "$WORK/metrics" "^hs2_proxy_backend_sessions[{]backend=\"$m\"[}]")"
    expect "hs2_proxy_backend_sessions{$J,backend=\"$m\"}" "$want"
    total=$((total + want))
done
((total == 7)) || fail "the proxy's backend_sessions add up to $total, want 7"
expect "sum(hs2_proxy_upstream_connections_max{$J})" 96

note "the rules, loaded and evaluated by Prometheus; a real alert fires"
rules_ok() {
    curl -fsS "$PROM/api/v1/rules" >"$WORK/rules.json"
    python3 -c '
import json, sys
rules = [r for g in json.load(open(sys.argv[1]))["data"]["groups"] for r in g["rules"]]
bad = [r["name"] for r in rules if r.get("health") != "ok"]
sys.exit(len(rules) != 8 or bool(bad))' "$WORK/rules.json"
}
wait_for "8 rules evaluated with health ok" 30 rules_ok || fail "rules: $(cat "$WORK/rules.json")"
firing() {
    curl -fsS "$PROM/api/v1/alerts" | python3 -c '
import json, sys
alerts = json.load(sys.stdin)["data"]["alerts"]
sys.exit(not any(a["labels"]["alertname"] == "HS2ProxyClientConnectionsRefused" and a["state"] == "firing"
                 and a["labels"].get("job") == "hs2-proxy" for a in alerts))'
}
wait_for "HS2ProxyClientConnectionsRefused to fire" 30 firing || fail "alerts: $(curl -s "$PROM/api/v1/alerts")"
note "HS2ProxyClientConnectionsRefused is firing"

note "dashboard and rules name only exported metrics; every dashboard query evaluates"
python3 tests/monitoring/check_queries.py --metrics "$WORK/metrics" --dashboard "$MON/grafana-dashboard.json" \
    --rules-json "$WORK/rules.json" --prometheus "$PROM" || fail "check_queries.py"

echo "monitoring test: 1 passed, 0 failed"
