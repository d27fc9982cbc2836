#!/usr/bin/env bash
# Runs every check coffer has, the same way locally and in CI (.ci/run):
#
#   bash scripts/test.sh
#
# 1. shellcheck on the project's shell scripts
# 2. cargo fmt --all -- --check
# 3. cargo clippy --all-targets -- -D warnings
# 4. cargo test --release -- --test-threads=2
# 5. scripts/conformance.sh: pjdfstest on a mount (POSIX rules; root + /dev/fuse)
#
# The integration tests mount real vaults through FUSE: they need root and
# /dev/fuse. Without /dev/fuse they still run and the tests themselves decide
# to skip. Every step runs even if an earlier one failed, so one run shows all
# problems; the script exits non-zero if any step failed.
#
# Environment:
#   COFFER_SETUP_SKIP=1       do not check/install Debian packages first
#   COFFER_TEST_TIMEOUT=SECS  upper bound for `cargo test` (default 3600)
#   extra arguments are passed to the test binaries, e.g. `bash scripts/test.sh mount`
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/setup.sh
source scripts/setup.sh
coffer_setup

section() {
    printf '\n==> %s\n' "$*"
}

failed=()
run_step() {
    local name="$1"
    shift
    section "$name"
    local start=$SECONDS rc=0
    "$@" || rc=$?
    if [ "$rc" -eq 0 ]; then
        printf -- '--- %s: ok (%ss)\n' "$name" "$((SECONDS - start))"
    else
        printf -- '--- %s: FAILED with exit code %s (%ss)\n' "$name" "$rc" "$((SECONDS - start))"
        failed+=("$name")
    fi
}

# FUSE mounts that exist before the tests; anything new left behind afterwards
# is a leak from a test: report it and detach it so the machine stays usable.
fuse_mounts() {
    awk '$3 ~ /^fuse/ { print $2 }' /proc/mounts 2>/dev/null | sort || true
}
mounts_before="$(fuse_mounts)"
cleanup_leaked_mounts() {
    local leaked mp
    leaked="$(comm -13 <(printf '%s\n' "$mounts_before") <(fuse_mounts) | sed '/^$/d')"
    [ -z "$leaked" ] && return 0
    printf 'WARNING: FUSE mounts left behind by the tests (detaching them):\n%s\n' "$leaked" >&2
    while IFS= read -r mp; do
        mp="$(printf '%b' "$mp")" # /proc/mounts escapes spaces as \040
        fusermount3 -u -z "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
    done <<<"$leaked"
}
trap cleanup_leaked_mounts EXIT

section "environment"
echo "rustc:  $(rustc --version)"
echo "cargo:  $(cargo --version)"
echo "kernel: $(uname -sr), user: $(id -un), cores: $(nproc)"
if [ -c /dev/fuse ]; then
    echo "fuse:   /dev/fuse present (mount tests will run)"
else
    echo "fuse:   /dev/fuse MISSING (mount tests will skip themselves)"
fi

lint_scripts() {
    local scripts=()
    local f
    for f in scripts/*.sh .ci/run; do
        [ -f "$f" ] && scripts+=("$f")
    done
    shellcheck -x "${scripts[@]}"
}
if command -v shellcheck >/dev/null 2>&1; then
    run_step "shellcheck scripts/*.sh .ci/run" lint_scripts
else
    section "shellcheck: not installed, skipped"
fi

run_step "cargo fmt --all -- --check" cargo fmt --all -- --check
run_step "cargo clippy --all-targets -- -D warnings" cargo clippy --all-targets -- -D warnings
# --no-fail-fast: a failing test binary does not keep the others from running.
test_log="$(mktemp)"
cargo_tests() {
    timeout --kill-after=60 "${COFFER_TEST_TIMEOUT:-3600}" \
        cargo test --release --no-fail-fast -- --test-threads=2 "$@" 2>&1 | tee "$test_log"
}
run_step "cargo test --release --no-fail-fast -- --test-threads=2" cargo_tests "$@"
if [ "$#" -eq 0 ]; then
    run_step "scripts/conformance.sh (pjdfstest)" env COFFER_SETUP_SKIP=1 bash scripts/conformance.sh
fi

section "summary"
# Totals over every test binary ("ignored" counts as skipped).
totals="$(awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i + 1) ~ /^passed;?$/) p += $i
            if ($(i + 1) ~ /^failed;?$/) f += $i
            if ($(i + 1) ~ /^ignored;?$/) s += $i
        } }
    END { printf "%d passed, %d failed, %d skipped", p, f, s }' "$test_log")"
rm -f "$test_log"
if [ "${#failed[@]}" -ne 0 ]; then
    printf 'FAILED steps:\n'
    printf '  - %s\n' "${failed[@]}"
    echo "tests: $totals"
    exit 1
fi
echo "all steps ok"
echo "tests: $totals"
