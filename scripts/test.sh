#!/usr/bin/env bash
# Runs every test: the fast cargo suites, then the suites against real peers (impyla, impala-shell, ...).
# Real peers are installed first by the project's own scripts (idempotent). A missing peer fails the run.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

step() { printf '\n=== %s\n' "$*"; }

step "unit and integration tests (cargo test)"
cargo test --all-targets

step "installing real peers (scripts/setup-python.sh)"
scripts/setup-python.sh

step "real-peer tests (cargo test --test interop -- --ignored)"
cargo test --test interop -- --ignored --test-threads=1
