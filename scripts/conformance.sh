#!/usr/bin/env bash
# POSIX conformance of a coffer mount: runs pjdfstest (the POSIX file system
# test suite of FreeBSD, Rust rewrite; ~400 cases of chmod, chown, link,
# mkdir, mkfifo, mknod, open, rename, rmdir, symlink, truncate, unlink,
# utimensat, posix_fallocate, errno and timestamp rules) in a fresh vault
# mounted with allow_other, as root and as two unprivileged users.
#
#   bash scripts/conformance.sh
#
# The test cases coffer fails on purpose are listed, with the reasons, in
# tests/conformance/pjdfstest.toml; the run fails on any other failure and on
# any listed case passing. Needs root and /dev/fuse (skips without them).
#
# Environment:
#   COFFER_BIN=PATH       coffer binary (default: cargo build --release first)
#   COFFER_SETUP_SKIP=1   do not check/install Debian packages
#   extra arguments go to pjdfstest, e.g. `bash scripts/conformance.sh rename`
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root_dir="$PWD"

if [ "$(id -u)" != 0 ] || [ ! -c /dev/fuse ]; then
    echo "conformance: needs root and /dev/fuse; skipped"
    exit 0
fi

# shellcheck source=scripts/setup.sh
source scripts/setup.sh
coffer_setup
coffer_ensure_pjdfstest

# The unprivileged users pjdfstest switches to (tests/conformance/pjdfstest.toml).
getent group nogroup >/dev/null || groupadd nogroup
getent passwd nobody >/dev/null || useradd -g nogroup -M -s /usr/sbin/nologin nobody
getent group tests >/dev/null || groupadd tests
getent passwd tests >/dev/null || useradd -g tests -M -s /usr/sbin/nologin tests

if [ -n "${COFFER_BIN:-}" ]; then
    coffer="$COFFER_BIN"
else
    cargo build --release --quiet
    coffer="$root_dir/target/release/coffer"
fi

work="$(mktemp -d /tmp/coffer-conformance.XXXXXX)"
mnt="$work/mnt"
# shellcheck disable=SC2317 # runs from the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT
    if grep -qs " $mnt " /proc/mounts; then
        # `coffer unmount` returns once the mount process has written what is
        # pending and exited: nothing writes into the vault after it.
        "$coffer" unmount "$mnt" >/dev/null 2>&1 || umount -l "$mnt" 2>/dev/null || true
    fi
    rm -rf "$work" || true
    exit "$rc"
}
trap cleanup EXIT

# The users pjdfstest switches to must reach its directory under /tmp.
chmod 755 "$work"
mkdir "$mnt"
export XDG_STATE_HOME="$work/state"
export COFFER_IDENTITY="$work/alice.key"
"$coffer" keygen --out "$COFFER_IDENTITY" --name alice --no-passphrase >/dev/null
"$coffer" init "$work/vault" >/dev/null
"$coffer" mount "$work/vault" "$mnt" --allow-other
chmod 1777 "$mnt"
mkdir -m 0777 "$mnt/t"
# A second file system for the EXDEV cases (rename and link across mounts).
mkdir -m 0777 "$work/other"

echo "==> pjdfstest in $mnt/t ($(pjdfstest --version))"
rc=0
pjdfstest -c tests/conformance/pjdfstest.toml -p "$mnt/t" -s "$work/other" "$@" >"$work/pjdfstest.log" 2>&1 || rc=$?
# The outcome of every case that did not pass, then the summary line.
grep -E '(FAILED|PASSED UNEXPECTEDLY)$' "$work/pjdfstest.log" || true
grep -A3 -E '(FAILED|PASSED UNEXPECTEDLY)$' "$work/pjdfstest.log" | grep -E '^\s' | grep -v -E '^\s+[0-9]+:|^\s+at ' | sort | uniq -c || true
grep -E '^Summary' "$work/pjdfstest.log" || tail -20 "$work/pjdfstest.log"
if [ "$rc" -ne 0 ]; then
    echo "conformance: pjdfstest found failures beyond the expected ones (exit $rc)" >&2
    # What the mount logged besides its start and stop (errors name the file).
    echo "--- mount log (warnings and errors, last 40):" >&2
    grep -h -E ' (WARN|ERROR) ' "$XDG_STATE_HOME"/coffer/mount-*.log 2>/dev/null | tail -40 >&2 || true
    exit 1
fi
echo "conformance: ok"
