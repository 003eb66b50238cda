#!/usr/bin/env bash
# Coverage-guided fuzzing of hs2-proxy's sans-I/O core with cargo-fuzz (libFuzzer), see fuzz/ and
# docs/reliability.md ("Fuzzing").
#
#   scripts/fuzz.sh --brief [TARGET...]   each target ~30 s (FUZZ_SECONDS) from the committed corpus; new
#                                         inputs go to a scratch dir, the committed corpus is not touched.
#                                         For scripts/test.sh and CI: fails on any crash or build error.
#   scripts/fuzz.sh --long [TARGET...]    each target, one after the other, at nice 19, until 10 million
#                                         executions (FUZZ_RUNS) or 30 minutes (FUZZ_LONG_SECONDS); new inputs
#                                         are added to fuzz/corpus/TARGET; logs in fuzz/logs/.
#   scripts/fuzz.sh --cmin [TARGET...]    minimizes fuzz/corpus/TARGET together with fuzz/seeds/TARGET: the
#                                         fewest files that keep every feature (libFuzzer -set_cover_merge=1,
#                                         about half of what -merge=1, `cargo fuzz cmin`, keeps).
#   scripts/fuzz.sh --repro TARGET FILE   runs one input (a crash artifact) through TARGET.
#   scripts/fuzz.sh --list                the targets.
#
# Needs the nightly toolchain (rustup) and cargo-fuzz, which this script installs from crates.io at the
# pinned version when missing. A missing nightly fails the run: it cannot be installed here.
# Inputs found crashing are written to fuzz/artifacts/TARGET/; make each a file in fuzz/regressions/TARGET/
# with a named test in tests/fuzz_regressions.rs.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ="$REPO/fuzz"
CARGO_FUZZ_VERSION=0.13.1
TARGETS=(scanner_splits request_parse error_reply deframer sasl sniff config http_auth value_roundtrip)
# Safe Rust only in the targets: no sanitizer, twice the executions. Debug assertions stay on (cargo-fuzz's
# default), so arithmetic overflow panics like any other broken invariant.
BUILD_FLAGS=(--sanitizer none)
BIN_DIR="$FUZZ/target/x86_64-unknown-linux-gnu/release"

die() { echo "fuzz: ERROR: $*" >&2; exit 1; }
log() { echo "fuzz: $*"; }

require_toolchain() {
    command -v rustup >/dev/null || die "rustup not found: the fuzz targets need rustup's nightly toolchain"
    local nightly
    nightly="$(rustup toolchain list | awk '/^nightly-/ { print $1; exit }')"
    [[ -n "$nightly" ]] || die "the nightly toolchain is missing ('rustup toolchain list' shows no nightly-*);" \
        "libFuzzer instrumentation (-Zsanitizer-coverage) needs nightly: rustup toolchain install nightly"
    log "toolchain $nightly ($(rustup run nightly rustc --version))"
    if ! cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
        log "installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io"
        cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked \
            || die "cargo install cargo-fuzz --version $CARGO_FUZZ_VERSION failed"
    fi
}

build() {
    log "building the fuzz targets (cargo +nightly fuzz build ${BUILD_FLAGS[*]})"
    (cd "$FUZZ" && nice -n 10 cargo +nightly fuzz build "${BUILD_FLAGS[@]}") \
        || die "cargo +nightly fuzz build failed"
}

check_target() {
    local t
    for t in "${TARGETS[@]}"; do [[ "$t" == "$1" ]] && return 0; done
    die "unknown target $1 (targets: ${TARGETS[*]})"
}

# Corpus directories that exist, the writable one first.
corpus_dirs() {
    local first="$1" t="$2" d
    echo "$first"
    for d in "$FUZZ/corpus/$t" "$FUZZ/seeds/$t" "$FUZZ/regressions/$t"; do
        [[ -d "$d" ]] && echo "$d"
    done
}

# One libFuzzer run; prints a summary line from its final statistics.
run_target() {
    local t="$1" first="$2" logf="$3"; shift 3
    local dirs; mapfile -t dirs < <(corpus_dirs "$first" "$t")
    mkdir -p "$first" "$FUZZ/artifacts/$t" "$(dirname "$logf")"
    local start=$SECONDS rc=0
    nice -n "${FUZZ_NICE:-10}" "$BIN_DIR/$t" -artifact_prefix="$FUZZ/artifacts/$t/" -print_final_stats=1 -timeout=10 "$@" "${dirs[@]}" \
        >"$logf" 2>&1 || rc=$?
    local secs=$((SECONDS - start))
    local execs cov ft corp
    execs="$(awk '/stat::number_of_executed_units/ { print $NF }' "$logf" | tail -1)"
    cov="$(grep -oE 'cov: [0-9]+' "$logf" | tail -1 | cut -d' ' -f2)"
    ft="$(grep -oE 'ft: [0-9]+' "$logf" | tail -1 | cut -d' ' -f2)"
    corp="$(grep -oE 'corp: [0-9]+/[0-9]+[bKM]*' "$logf" | tail -1 | cut -d' ' -f2)"
    printf 'fuzz: %-15s execs=%s secs=%s cov=%s ft=%s corpus=%s rc=%s\n' \
        "$t" "${execs:-?}" "$secs" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$rc"
    if (( rc != 0 )); then
        echo "fuzz: $t FAILED (exit $rc); the end of $logf:" >&2
        grep -E 'panicked|assertion|SUMMARY|Test unit written|artifact' "$logf" | head -20 >&2 || true
        tail -5 "$logf" >&2
        return 1
    fi
}

brief() {
    local scratch; scratch="$(mktemp -d)"
    trap 'rm -rf "$scratch"' RETURN
    local t failed=()
    for t in "$@"; do
        run_target "$t" "$scratch/$t" "$scratch/$t.log" -max_total_time="${FUZZ_SECONDS:-30}" || failed+=("$t")
    done
    (( ${#failed[@]} == 0 )) || die "crashes in: ${failed[*]} (artifacts in fuzz/artifacts/)"
}

long() {
    local t failed=()
    for t in "$@"; do
        log "long run of $t (nice 19)"
        FUZZ_NICE=19 run_target "$t" "$FUZZ/corpus/$t" "$FUZZ/logs/long-$t.log" \
            -runs="${FUZZ_RUNS:-10000000}" -max_total_time="${FUZZ_LONG_SECONDS:-1800}" || failed+=("$t")
    done
    (( ${#failed[@]} == 0 )) || die "crashes in: ${failed[*]} (artifacts in fuzz/artifacts/)"
}

cmin() {
    local t
    for t in "$@"; do
        local tmp; tmp="$(mktemp -d)"
        local dirs; mapfile -t dirs < <(corpus_dirs "$FUZZ/corpus/$t" "$t" | grep -v '/regressions/')
        mkdir -p "$FUZZ/corpus/$t"
        "$BIN_DIR/$t" -set_cover_merge=1 -timeout=10 "$tmp" "${dirs[@]}" >"$tmp.log" 2>&1 \
            || { tail -5 "$tmp.log" >&2; die "$t: merge failed"; }
        # Seeds stay in fuzz/seeds: the corpus keeps only what they do not already cover.
        rm -rf "$FUZZ/corpus/$t"
        mkdir -p "$FUZZ/corpus/$t"
        local seen; seen="$( (cd "$FUZZ/seeds/$t" 2>/dev/null && sha1sum -- * 2>/dev/null) | cut -d' ' -f1 || true)"
        local f
        for f in "$tmp"/*; do
            [[ -e "$f" ]] || continue
            grep -qxF "$(sha1sum < "$f" | cut -d' ' -f1)" <<<"$seen" || cp "$f" "$FUZZ/corpus/$t/"
        done
        log "$t: corpus $(find "$FUZZ/corpus/$t" -type f | wc -l) files, $(cat "$FUZZ/corpus/$t"/* 2>/dev/null | wc -c) bytes"
        rm -rf "$tmp" "$tmp.log"
    done
}

mode="${1:-}"; [[ $# -gt 0 ]] && shift
case "$mode" in
    --list) printf '%s\n' "${TARGETS[@]}"; exit 0 ;;
    --brief|--long|--cmin|--repro) ;;
    *) die "usage: $0 --brief|--long|--cmin [TARGET...] | --repro TARGET FILE | --list" ;;
esac
require_toolchain
build
if [[ "$mode" == --repro ]]; then
    [[ $# -eq 2 ]] || die "usage: $0 --repro TARGET FILE"
    check_target "$1"
    exec "$BIN_DIR/$1" "$2"
fi
(( $# > 0 )) || set -- "${TARGETS[@]}"
for t in "$@"; do check_target "$t"; done
case "$mode" in
    --brief) brief "$@" ;;
    --long) long "$@" ;;
    --cmin) cmin "$@" ;;
esac
log "done"
