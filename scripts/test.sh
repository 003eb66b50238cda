#!/usr/bin/env bash
# Runs every test: the fast cargo suites, then the suites against real peers (impyla, impala-shell, Spark
# Thrift Server, beeline, HAProxy, ZooKeeper, an MIT Kerberos KDC, OpenLDAP, Apache Thrift's compiler), then the
# shell suites (the Debian package, monitoring with Prometheus). Peers are installed first by the project's own
# scripts (idempotent); a missing peer fails the run. Real-peer tests are `#[ignore]`d in cargo so that
# `cargo test` stays fast.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

step() { printf '\n=== %s (%ss)\n' "$*" "$SECONDS"; }

step "unit and integration tests: cargo test"
cargo test --all-targets

step "installing real peers"
scripts/gen-thrift.sh --install
scripts/setup-python.sh
scripts/setup-spark.sh
scripts/setup-browser.sh
scripts/setup-haproxy.sh
scripts/setup-packaging.sh
scripts/setup-prometheus.sh
scripts/setup-zookeeper.sh
scripts/setup-kerberos.sh
scripts/setup-ldap.sh
scripts/setup-netns.sh

step "fuzz targets, briefly: scripts/fuzz.sh --brief (nightly)"
scripts/fuzz.sh --brief

step "real-peer tests: cargo test -- --ignored"
cargo test --all-targets -- --ignored --test-threads=1

step "Debian package, installed and run: tests/package/test-deb.sh"
tests/package/test-deb.sh

step "monitoring with a real Prometheus: tests/monitoring/test-prometheus.sh"
tests/monitoring/test-prometheus.sh

step "all tests passed"
