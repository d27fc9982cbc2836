#!/usr/bin/env bash
# Crash-consistency trials: mount a vault in the foreground, run a write storm
# (in-place chunk rewrites, appends, creates, renames, fsyncs), kill -9 the
# daemon at a random moment, remount, and check that every fsync'ed byte is
# there, every chunk reads as one version that was written (never a torn mix),
# no read fails with EIO, and `coffer verify` exits 0 with no repair by hand.
#
#   bash scripts/crash-trials.sh            # 100 trials
#   TRIALS=10 bash scripts/crash-trials.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TRIALS="${TRIALS:-100}"
cargo build --release --quiet
COFFER="$PWD/target/release/coffer"
WORK="$(mktemp -d /var/tmp/coffer-crash.XXXXXX)"
export XDG_STATE_HOME="$WORK/state" COFFER_IDENTITY="$WORK/a.key" COFFER_TEST_FAST_KDF=1
MNT="$WORK/mnt"
cleanup() {
    umount -l "$MNT" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$MNT"
"$COFFER" keygen --out "$WORK/a.key" --name alice --no-passphrase >/dev/null
"$COFFER" init "$WORK/vault" >/dev/null
failures=0
for trial in $(seq 1 "$TRIALS"); do
    "$COFFER" mount "$WORK/vault" "$MNT" --foreground 2>>"$WORK/daemon.log" &
    daemon=$!
    for _ in $(seq 1 50); do
        grep -q " $MNT " /proc/mounts && break
        sleep 0.1
    done
    python3 scripts/crash_storm.py write "$MNT" "$WORK/state.json" &
    storm=$!
    sleep "0.$((RANDOM % 9 + 1))$((RANDOM % 10))"
    kill -9 "$daemon"
    wait "$storm" 2>/dev/null || true
    wait "$daemon" 2>/dev/null || true
    umount -l "$MNT" 2>/dev/null || true
    "$COFFER" mount "$WORK/vault" "$MNT"
    result="ok"
    if ! python3 scripts/crash_storm.py check "$MNT" "$WORK/state.json"; then
        result="FAILED (data)"
    fi
    "$COFFER" unmount "$MNT"
    if ! "$COFFER" verify "$WORK/vault" >"$WORK/verify.txt" 2>&1; then
        result="FAILED (verify)"
        cat "$WORK/verify.txt"
    fi
    [ "$result" = ok ] || failures=$((failures + 1))
    echo "trial $trial/$TRIALS: $result"
done
echo "crash trials: $((TRIALS - failures)) passed, $failures failed"
[ "$failures" -eq 0 ]
