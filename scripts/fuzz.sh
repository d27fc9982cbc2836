#!/usr/bin/env bash
# Long runs of hostile input against every decoder of on-disk bytes:
#
# 1. cargo-fuzz (libFuzzer + AddressSanitizer): one target per decoder in fuzz/
#    (vault config, member record, directory record, sidecar, manifest, access
#    entry, access list, journal, log entry, log file, checkpoint, long name,
#    encrypted names, content header, identity file, public key), each for RUNS
#    executions starting from the seeds in fuzz/corpus/<target>/ (regenerate
#    them with `cargo test --release --test hostile_bytes -- --ignored
#    write_fuzz_seeds`). A crash stops the script; its input is left in
#    fuzz/artifacts/<target>/.
# 2. the hostile-bytes property tests (tests/hostile_bytes.rs, proptest): random
#    and mutated inputs, CASES cases per property.
#
#   bash scripts/fuzz.sh                          # 10 million runs per target
#   RUNS=1000000 CASES=100000 bash scripts/fuzz.sh
#   FUZZ_TARGETS="sidecar manifest" bash scripts/fuzz.sh
#
# cargo-fuzz needs nightly compiler flags (-Zsanitizer); on a stable toolchain
# RUSTC_BOOTSTRAP=1 enables them. `cargo install cargo-fuzz` if it is missing.
#
# Environment:
#   RUNS           executions per fuzz target (default 10000000)
#   CASES          proptest cases per property (default 10000000; 0 skips)
#   FUZZ_TARGETS   space-separated subset of targets (default: all)
#   FUZZ_ARGS      extra libFuzzer arguments (e.g. "-max_total_time=600")
#   SANITIZER      address (default) or none: 2 to 10 times the executions
#                  per second; panics, aborts, timeouts and -rss_limit_mb still stop
#                  the run, -malloc_limit_mb needs a sanitizer (the decoders are
#                  safe Rust, so ASan mostly guards the fuzzer harness itself)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/setup.sh
source scripts/setup.sh
RUNS="${RUNS:-10000000}"
SANITIZER="${SANITIZER:-address}"
CASES="${CASES:-10000000}"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    coffer_log "installing cargo-fuzz (cargo install cargo-fuzz)"
    cargo install --quiet --locked cargo-fuzz
fi
export RUSTC_BOOTSTRAP=1

targets="${FUZZ_TARGETS:-$(cargo fuzz list --fuzz-dir fuzz)}"
work="$(mktemp -d /tmp/coffer-fuzz.XXXXXX)"
trap 'rm -rf "$work"' EXIT

echo "==> cargo fuzz build"
cargo fuzz build --fuzz-dir fuzz -O -s "$SANITIZER"
summary=()
for t in $targets; do
    echo "==> fuzz $t: $RUNS runs"
    mkdir -p "$work/$t"
    log="$work/$t.log"
    # New inputs go to the scratch corpus (first directory); the committed
    # seeds are only read. -rss_limit_mb catches unbounded allocations.
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of arguments
    if ! cargo fuzz run --fuzz-dir fuzz -O -s "$SANITIZER" "$t" "$work/$t" "fuzz/corpus/$t" -- \
        -runs="$RUNS" -rss_limit_mb=2048 -malloc_limit_mb=1024 -print_final_stats=1 \
        ${FUZZ_ARGS:-} >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "fuzz $t: FAILED (crash input in fuzz/artifacts/$t/)" >&2
        exit 1
    fi
    done_line="$(grep -E '^Done [0-9]+ runs' "$log" | tail -n 1)"
    cov="$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1)"
    echo "fuzz $t: ${done_line:-done} (${cov:-cov: ?})"
    summary+=("$t: ${done_line:-done} (${cov:-cov: ?})")
done

if [ "$CASES" != "0" ]; then
    echo "==> hostile bytes: $CASES cases per property"
    COFFER_FUZZ_CASES="$CASES" cargo test --release --test hostile_bytes -- --test-threads=2
fi

echo "==> summary"
printf '  %s\n' "${summary[@]}"
