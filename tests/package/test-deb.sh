#!/usr/bin/env bash
# The Debian package, installed for real on this machine (root, dpkg): builds it (scripts/package-deb.sh),
# installs it with dpkg -i, checks its files and conffile marking, verifies the installed unit with
# systemd-analyze (no running systemd is needed), then runs the INSTALLED binary, as the service user, with the
# INSTALLED config: out of the box it refuses to start (no backends); with --backend flags pointing at two mock
# impalads (this build's target/release/mock-impalad) a real HS2 query goes through (hs2-bench), SIGHUP reloads
# and SIGTERM stops it cleanly. Finally dpkg -r keeps the conffile and dpkg --purge removes everything.
#
# Usage: tests/package/test-deb.sh      (run by scripts/test.sh; needs root and scripts/setup-packaging.sh)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
source tests/lib/procs.sh

PKG=hs2-proxy
CONF=/etc/hs2-proxy/hs2-proxy.toml
UNIT=/usr/lib/systemd/system/hs2-proxy.service

((EUID == 0)) || fail "installs a package with dpkg: run as root"
for t in dpkg dpkg-query systemd-analyze setpriv curl; do
    command -v "$t" >/dev/null || fail "$t not found (scripts/setup-packaging.sh installs it)"
done

# dpkg is machine-wide: one run of this test at a time.
exec 8>/tmp/hs2-proxy-package-test.lock
flock 8

WORK="$(mktemp -d)"
INSTALLED=0
cleanup() {
    stop_all
    if ((INSTALLED)); then dpkg --purge "$PKG" >/dev/null 2>&1 || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

note "building the package"
deb="$(scripts/package-deb.sh | tail -n1)"
nice -n 10 cargo build --release --locked --quiet --bin mock-impalad --bin hs2-bench
TOOLS="$REPO/target/release"

if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q 'install\|config-files'; then
    note "purging a $PKG left installed by an earlier run"
    dpkg --purge "$PKG" >/dev/null
fi

note "dpkg -i $deb"
INSTALLED=1
dpkg -i "$deb" >"$WORK/dpkg-i.log" 2>&1 || fail "dpkg -i failed: $(cat "$WORK/dpkg-i.log")"
[[ "$(dpkg-query -W -f='${Status}' "$PKG")" == "install ok installed" ]] || fail "not installed after dpkg -i"

note "files"
dpkg -L "$PKG" >"$WORK/files"
for f in /usr/bin/hs2-proxy "$CONF" "$UNIT" /usr/lib/sysusers.d/hs2-proxy.conf /usr/share/doc/hs2-proxy/copyright \
    /usr/share/doc/hs2-proxy/monitoring/alerts.yml /usr/share/doc/hs2-proxy/monitoring/grafana-dashboard.json; do
    grep -qx "$f" "$WORK/files" || fail "dpkg -L $PKG does not list $f"
    [[ -e "$f" ]] || fail "$f listed but not on disk"
done
# Only the proxy: the mock impalad and the load generator are test tools.
if grep -E 'mock-impalad|hs2-bench' "$WORK/files"; then fail "test tools are in the package"; fi
[[ "$(grep -c '^/usr/bin/' "$WORK/files")" == 1 ]] || fail "more than one binary: $(grep '^/usr/bin/' "$WORK/files")"
/usr/bin/hs2-proxy --version | grep -q '^hs2-proxy ' || fail "/usr/bin/hs2-proxy --version"

note "conffile"
conffiles="$(dpkg-query -W -f='${Conffiles}\n' "$PKG")"
sum="$(md5sum "$CONF" | cut -d' ' -f1)"
grep -qE "^ $CONF $sum\$" <<<"$conffiles" || fail "$CONF is not a conffile with its md5 ($sum): $conffiles"
cmp -s "$CONF" packaging/hs2-proxy.toml || fail "$CONF differs from packaging/hs2-proxy.toml"

note "service user and unit"
getent passwd hs2-proxy >/dev/null || fail "the postinst created no hs2-proxy user"
[[ "$(getent passwd hs2-proxy | cut -d: -f7)" == */nologin ]] || fail "hs2-proxy user can log in"
[[ ! -e /etc/systemd/system/multi-user.target.wants/hs2-proxy.service ]] || fail "the service was enabled on install"
if ! systemd-analyze verify "$UNIT" >"$WORK/verify.log" 2>&1 || [[ -s "$WORK/verify.log" ]]; then
    fail "systemd-analyze verify $UNIT: $(cat "$WORK/verify.log")"
fi
exposure="$(systemd-analyze security --offline=true "$UNIT" 2>/dev/null | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')"
[[ -n "$exposure" ]] || fail "systemd-analyze security printed no exposure level"
awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }' || fail "unit exposure $exposure > 2.0 (systemd-analyze security)"
for line in 'ExecStart=/usr/bin/hs2-proxy --config /etc/hs2-proxy/hs2-proxy.toml' 'ExecReload=/bin/kill -HUP $MAINPID' \
    'User=hs2-proxy' 'NoNewPrivileges=yes' 'ProtectSystem=strict' 'ProtectHome=yes' 'PrivateTmp=yes' \
    'CapabilityBoundingSet=' 'LimitNOFILE=65536' 'TimeoutStopSec=35s' 'RestartPreventExitStatus=2'; do
    grep -qxF "$line" "$UNIT" || fail "the unit lacks: $line"
done
if grep -q '^ReadWritePaths=' "$UNIT"; then fail "the unit grants ReadWritePaths"; fi
note "unit verified; exposure $exposure"

# The service as systemd would run it: the service user, no new privileges, the unit's ExecStart.
AS_SERVICE=(setpriv --reuid=hs2-proxy --regid=hs2-proxy --init-groups --no-new-privs --)

note "out of the box: no backends, so the service refuses to start"
set +e
timeout 20 "${AS_SERVICE[@]}" /usr/bin/hs2-proxy --config "$CONF" >"$WORK/oob.log" 2>&1
rc=$?
set -e
((rc == 2)) || fail "with the installed config alone: exit $rc, want 2 (configuration error): $(cat "$WORK/oob.log")"
grep -q 'configuration error: backends:' "$WORK/oob.log" || fail "the error does not name backends: $(cat "$WORK/oob.log")"

note "installed binary + installed config + two mock impalads"
start_mock "$TOOLS/mock-impalad" "$WORK/mock-1.log" impalad-1
M1=$MOCK_ADDR
start_mock "$TOOLS/mock-impalad" "$WORK/mock-2.log" impalad-2
M2=$MOCK_ADDR
start "$WORK/proxy.log" "${AS_SERVICE[@]}" /usr/bin/hs2-proxy --config "$CONF" --listen 127.0.0.1:0 \
    --admin-listen 127.0.0.1:0 --backend "$M1" --backend "$M2"
PROXY_PID=$STARTED_PID
wait_proxy_listening "$PROXY_PID" "$WORK/proxy.log"
[[ "$(ps -o user= -p "$PROXY_PID")" == hs2-proxy ]] || fail "the proxy does not run as hs2-proxy"
ready() { curl -fsS -o /dev/null "http://$ADMIN_ADDR/readyz"; }
wait_for "the proxy to be ready (a backend up)" 30 ready || fail "never ready: $(cat "$WORK/proxy.log")"

"$TOOLS/hs2-bench" run --label package --scenario query --clients 1 --duration 300ms --target "$PROXY_ADDR" \
    >"$WORK/bench.json"
read -r ops errors < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["ops"], r["errors"])' \
    "$WORK/bench.json")
((ops > 0 && errors == 0)) || fail "HS2 queries through the installed proxy: $(cat "$WORK/bench.json")"
curl -fsS "http://$ADMIN_ADDR/metrics" >"$WORK/metrics"
executed="$(metric_sum "$WORK/metrics" '^hs2_proxy_rpcs_total[{]method="ExecuteStatement",backend="127')"
[[ "$executed" == "$ops" ]] || fail "the proxy counted $executed ExecuteStatement calls, the client made $ops"
note "$ops queries (OpenSession, ExecuteStatement, fetch, close) went through the installed proxy"

note "SIGHUP (ExecReload) re-reads the installed config"
kill -HUP "$PROXY_PID"
reloaded() { grep -q 'SIGHUP: reloading the backend list' "$WORK/proxy.log"; }
wait_for "the reload" 10 reloaded || fail "no reload logged: $(cat "$WORK/proxy.log")"

note "SIGTERM (systemctl stop) ends the proxy cleanly within TimeoutStopSec"
kill -TERM "$PROXY_PID"
stopped() { ! kill -0 "$PROXY_PID" 2>/dev/null; }
wait_for "the proxy to exit" 35 stopped || fail "still running 35 s after SIGTERM"
set +e
wait "$PROXY_PID"
rc=$?
set -e
((rc == 0)) || fail "exit status $rc after SIGTERM: $(cat "$WORK/proxy.log")"

note "an edited conffile survives reinstalling"
echo '# local edit' >>"$CONF"
dpkg -i "$deb" >"$WORK/dpkg-re.log" 2>&1 || fail "reinstall failed: $(cat "$WORK/dpkg-re.log")"
tail -n1 "$CONF" | grep -qx '# local edit' || fail "reinstalling replaced the edited $CONF"

note "dpkg -r keeps the conffile, dpkg --purge removes it"
dpkg -r "$PKG" >/dev/null
[[ ! -e /usr/bin/hs2-proxy && ! -e "$UNIT" ]] || fail "dpkg -r left the binary or the unit"
[[ -e "$CONF" ]] || fail "dpkg -r removed the conffile"
[[ "$(dpkg-query -W -f='${Status}' "$PKG")" == "deinstall ok config-files" ]] || fail "status after dpkg -r"
dpkg --purge "$PKG" >/dev/null
INSTALLED=0
[[ ! -e "$CONF" && ! -d /etc/hs2-proxy ]] || fail "dpkg --purge left /etc/hs2-proxy"
if dpkg-query -W "$PKG" >/dev/null 2>&1 && dpkg-query -W -f='${Status}' "$PKG" | grep -qv 'not-installed'; then
    fail "dpkg still knows $PKG after purge"
fi

echo "package test: 1 passed, 0 failed"
