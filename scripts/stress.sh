#!/usr/bin/env bash
# Long stress run of a real mount (needs root and /dev/fuse):
#
#   bash scripts/stress.sh                      # 10 minutes
#   STRESS_SECONDS=60 bash scripts/stress.sh
#
# For STRESS_SECONDS, at the same time:
#  (a) fsx (the FreeBSD file system exerciser, Rust port `cargo install fsx`)
#      runs against a file in the mount, again and again with new seeds
#      (FSX_OPS operations per run); every read is checked against its model;
#  (b) scripts/stress.py runs STRESS_PROCS processes of random operations
#      (create, write, truncate, rename, link, unlink, mkdir, rmdir, read,
#      fsync, ...) checked against in-memory models, plus races on a shared
#      directory.
# Then the vault is unmounted, mounted again and compared with the models,
# unmounted, and `coffer verify` must exit 0. Any failure exits non-zero.
#
# Environment:
#   STRESS_SECONDS  duration (default 600)
#   STRESS_PROCS    stress.py workers (default 4)
#   FSX_OPS         operations per fsx run (default 20000)
#   STRESS_SEED     base seed (default random)
#   STRESS_KEEP=1   keep the work directory (vault, logs) afterwards
#   COFFER_SETUP_SKIP=1  do not check/install packages (fsx is installed by
#                   `cargo install fsx` unless it is on PATH)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$(pwd)"

# shellcheck source=scripts/setup.sh
source scripts/setup.sh
coffer_setup python3
coffer_ensure_fsx

seconds="${STRESS_SECONDS:-600}"
procs="${STRESS_PROCS:-4}"
fsx_ops="${FSX_OPS:-20000}"
seed="${STRESS_SEED:-$RANDOM$RANDOM}"

cargo build --release --quiet
coffer="$repo/target/release/coffer"

work="$(mktemp -d /tmp/coffer-stress.XXXXXX)"
mnt="$work/mnt"
mkdir -p "$mnt"
export XDG_STATE_HOME="$work/state"
export COFFER_IDENTITY="$work/alice.key"
unset COFFER_PASSPHRASE

fsx_pid=""
# shellcheck disable=SC2317 # runs from the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$fsx_pid" ]; then
        kill "$fsx_pid" 2>/dev/null || true
    fi
    if grep -qs " $mnt " /proc/mounts; then
        "$coffer" unmount "$mnt" >/dev/null 2>&1 || umount -l "$mnt" 2>/dev/null || true
    fi
    if [ "${STRESS_KEEP:-0}" = "1" ]; then
        echo "stress: work directory kept: $work"
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$coffer" keygen --out "$COFFER_IDENTITY" --name alice --no-passphrase >/dev/null
"$coffer" init "$work/vault" >/dev/null
"$coffer" mount "$work/vault" "$mnt"
echo "stress: vault $work/vault mounted at $mnt; ${seconds}s, seed $seed"

# (a) fsx, in the background until the deadline.
fsx_log="$work/fsx.log"
deadline=$((SECONDS + seconds))
(
    run=0
    mkdir -p "$work/fsx-artifacts"
    while [ "$SECONDS" -lt "$deadline" ]; do
        run=$((run + 1))
        if ! nice fsx -N "$fsx_ops" -S "$((seed + run))" -P "$work/fsx-artifacts" \
            "$mnt/fsx.file" >>"$fsx_log" 2>&1; then
            echo "fsx run $run (seed $((seed + run))) FAILED" >>"$fsx_log"
            exit 1
        fi
        echo "fsx run $run (seed $((seed + run))): $fsx_ops operations ok" >>"$fsx_log"
    done
) &
fsx_pid=$!

# (b) random operations in the foreground.
rc=0
nice python3 scripts/stress.py --dir "$mnt" --duration "$seconds" --procs "$procs" \
    --seed "$seed" --state "$work/state.json" || rc=$?
fsx_rc=0
wait "$fsx_pid" || fsx_rc=$?
grep -E "^fsx run" "$fsx_log" | tail -n 3 || true
echo "stress: fsx runs: $(grep -c ': .* operations ok' "$fsx_log" || true) ok"
if [ "$fsx_rc" -ne 0 ]; then
    echo "stress: fsx FAILED; the end of its log:" >&2
    tail -n 40 "$fsx_log" >&2
    rc=1
fi

"$coffer" unmount "$mnt"
if [ "$rc" -eq 0 ]; then
    # Everything the models hold must be there after a remount.
    "$coffer" mount "$work/vault" "$mnt" --read-only
    python3 scripts/stress.py --dir "$mnt" --check "$work/state.json" || rc=1
    "$coffer" unmount "$mnt"
fi
if ! "$coffer" verify "$work/vault"; then
    echo "stress: coffer verify FAILED" >&2
    rc=1
fi
if grep -qs panicked "$XDG_STATE_HOME"/coffer/mount-*.log; then
    echo "stress: the daemon panicked (see its log)" >&2
    rc=1
fi
if [ "$rc" -eq 0 ]; then
    echo "stress: PASSED (${seconds}s, seed $seed)"
else
    echo "stress: FAILED (seed $seed; rerun with STRESS_SEED=$seed STRESS_KEEP=1)" >&2
fi
exit "$rc"
