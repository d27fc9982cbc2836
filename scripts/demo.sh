#!/usr/bin/env bash
# coffer demo: from a fresh Debian 12 machine to two members sharing a vault.
#
#   bash scripts/demo.sh
#
# Installs what is missing, builds coffer, makes two identities (alice, bob),
# creates a vault, mounts it as alice and writes into it with ordinary tools,
# shows that the vault directory holds only ciphertext, then mounts it as bob:
# bob sees the names but cannot read alice's files. When the sharing commands
# exist (coffer grant/revoke/rotate/access), alice shares a file with bob and
# takes it back again. COFFER_BIN=PATH uses a prebuilt binary instead of
# building target/release/coffer. Everything happens in a temporary workspace that is
# unmounted and removed at the end (KEEP=1 keeps it for a look around).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [ -t 1 ]; then
    BOLD=$'\033[1m' PLAIN=$'\033[0m'
else
    BOLD='' PLAIN=''
fi
step() {
    printf '\n%s==> %s%s\n' "$BOLD" "$*" "$PLAIN"
}
note() {
    printf '    %s\n' "$*"
}
# Echo a command, then run it.
show() {
    printf '    $ %s\n' "$*"
    "$@"
}

step "Setting up the machine (Debian packages, Rust toolchain, /dev/fuse)"
# shellcheck source=scripts/setup.sh
source scripts/setup.sh
coffer_setup
if [ ! -c /dev/fuse ]; then
    echo "error: /dev/fuse is not available on this machine, so nothing can be mounted." >&2
    exit 1
fi

if [ -n "${COFFER_BIN:-}" ]; then
    COFFER="$COFFER_BIN" # a prebuilt binary (for testing this script)
else
    step "Building coffer (cargo build --release)"
    cargo build --release --quiet
    COFFER="$ROOT/target/release/coffer"
fi
note "binary: $COFFER"

WORK="$(mktemp -d /tmp/coffer-demo.XXXXXX)"
VAULT="$WORK/vault"
MNT_ALICE="$WORK/mnt-alice"
MNT_BOB="$WORK/mnt-bob"
mkdir -p "$VAULT" "$MNT_ALICE" "$MNT_BOB"

is_mounted() {
    awk -v mp="$1" '$2 == mp { found = 1 } END { exit !found }' /proc/mounts
}
unmount_quietly() {
    local mp="$1"
    is_mounted "$mp" || return 0
    "$COFFER" unmount "$mp" >/dev/null 2>&1 || umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    unmount_quietly "$MNT_BOB"
    unmount_quietly "$MNT_ALICE"
    if [ "${KEEP:-0}" = "1" ]; then
        echo "workspace kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    if [ "$rc" -ne 0 ]; then
        echo "demo FAILED (exit $rc)" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Run "$@", expecting it to fail with "Permission denied"; show its message.
expect_denied() {
    local out
    printf '    $ %s\n' "$*"
    if out="$("$@" 2>&1)"; then
        echo "    UNEXPECTED: this should have been refused, got:" >&2
        printf '%s\n' "$out" | sed 's/^/      /' >&2
        return 1
    fi
    printf '%s\n' "$out" | sed 's/^/      /'
    case "$out" in
        *"Permission denied"*) note "(refused, as it should be)" ;;
        *)
            echo "    UNEXPECTED: refused, but not with 'Permission denied'" >&2
            return 1
            ;;
    esac
}

# Run "$@" until it succeeds, for up to ~3 seconds (changes made through one
# mount show in the others within a second).
eventually() {
    local _
    for _ in $(seq 1 30); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    "$@"
}

cd "$WORK"

step "Creating two identities: alice and bob"
note "Real users run 'coffer keygen --out alice.key' and are asked for a passphrase"
note "that protects the private key (argon2id). The demo uses --no-passphrase so it"
note "can run unattended; such a key file is protected only by its 0600 permissions."
ALICE_PUB="$("$COFFER" keygen --out alice.key --name alice --no-passphrase | tail -n 1)"
BOB_PUB="$("$COFFER" keygen --out bob.key --name bob --no-passphrase | tail -n 1)"
note "alice's public key: $ALICE_PUB"
note "bob's public key:   $BOB_PUB"
show ls -l alice.key bob.key

step "Creating a vault with alice as its admin and first member"
show "$COFFER" init vault --identity alice.key

step "alice adds bob as a member (bob sent her his public key)"
show "$COFFER" user add vault bob "$BOB_PUB" --identity alice.key
show "$COFFER" user list vault

step "Mounting the vault as alice"
show "$COFFER" mount vault mnt-alice --identity alice.key
note "the mount command returns once the filesystem is ready; the daemon serves it in the background"

step "alice works in the mount with ordinary tools"
SECRET="The launch is on 14 March. Tell no one."
show mkdir -p mnt-alice/projects/apollo
printf '    $ echo "%s" > mnt-alice/plans.txt\n' "$SECRET"
echo "$SECRET" >mnt-alice/plans.txt
show cp /etc/os-release mnt-alice/projects/apollo/os-release
printf '    $ seq 1 20000 > mnt-alice/projects/apollo/numbers.txt\n'
seq 1 20000 >mnt-alice/projects/apollo/numbers.txt
show cat mnt-alice/plans.txt
show ls -la mnt-alice mnt-alice/projects/apollo

step "What is actually stored in the vault directory: encrypted names and contents"
# (sed -n instead of head: it reads all input, so no SIGPIPE under pipefail)
printf '    $ find vault -type f | head\n'
find vault -type f | sed -n '1,10p'
CIPHER_FILE="$(find vault -type f -printf '%s %p\n' | sort -rn | sed -n '1s/^[0-9]* //p')"
printf '    $ xxd %s | head\n' "$CIPHER_FILE"
xxd -l 160 "$CIPHER_FILE"
printf '    $ grep -r "launch is on" vault\n'
if grep -rq "launch is on" vault; then
    echo "    UNEXPECTED: the plaintext is in the vault directory" >&2
    exit 1
fi
note "no match: neither the text nor the file names appear in the vault"
if [ -n "$(find vault \( -name '*plans*' -o -name '*apollo*' -o -name '*numbers*' \) -print -quit)" ]; then
    echo "    UNEXPECTED: a plaintext file name is in the vault directory" >&2
    exit 1
fi

step "bob mounts the same vault with his own identity"
show "$COFFER" mount vault mnt-bob --identity bob.key
note "bob sees the names and sizes (he is a member) ..."
eventually test -e mnt-bob/plans.txt
show ls -la mnt-bob
note "... but alice's files are encrypted to alice only, so he cannot read them:"
expect_denied cat mnt-bob/plans.txt

step "bob writes a file of his own; alice sees it appear within a second"
printf '    $ echo "bob was here" > mnt-bob/from-bob.txt\n'
echo "bob was here" >mnt-bob/from-bob.txt
eventually test -e mnt-alice/from-bob.txt
show ls -l mnt-alice/from-bob.txt
expect_denied cat mnt-alice/from-bob.txt

# The sharing commands land in a later version: run this part only when this
# build has them (`coffer grant --help` succeeds and describes grant).
if grant_help="$("$COFFER" grant --help 2>&1)" && grep -qiw grant <<<"$grant_help"; then
    step "Sharing: alice grants bob read access to plans.txt"
    show "$COFFER" grant mnt-alice/plans.txt bob --read --identity alice.key
    show "$COFFER" access mnt-alice/plans.txt --identity alice.key
    eventually cat mnt-bob/plans.txt
    show cat mnt-bob/plans.txt
    note "bob can read it, but only read: writing is refused"
    printf '    $ echo "changed by bob" >> mnt-bob/plans.txt\n'
    if (echo "changed by bob" >>mnt-bob/plans.txt) 2>/dev/null; then
        echo "    UNEXPECTED: bob could write without the update right" >&2
        exit 1
    fi
    note "(refused, as it should be)"

    step "alice revokes bob's access (this rotates the file key and re-encrypts)"
    show "$COFFER" revoke mnt-alice/plans.txt bob --identity alice.key
    # Give the revocation the second it may take to reach bob's mount.
    eventually sh -c '! cat mnt-bob/plans.txt'
    expect_denied cat mnt-bob/plans.txt
    show cat mnt-alice/plans.txt

    step "alice rotates the key of a file (fresh key, new ciphertext, same readers)"
    show "$COFFER" rotate mnt-alice/projects/apollo/numbers.txt --identity alice.key
    show "$COFFER" access mnt-alice/projects/apollo/numbers.txt --identity alice.key
    printf '    $ tail -n 1 mnt-alice/projects/apollo/numbers.txt\n'
    tail -n 1 mnt-alice/projects/apollo/numbers.txt
else
    step "Sharing (coffer grant / revoke / rotate / access): not in this build yet, skipped"
fi

step "Unmounting"
show "$COFFER" unmount mnt-bob
show umount mnt-alice
note "(coffer unmount and plain umount both work)"

step "Done"
note "The vault directory is ordinary files: put it on a shared disk or a sync folder,"
note "and each member mounts it with their own identity."
if [ "${KEEP:-0}" != "1" ]; then
    note "The workspace $WORK is removed now (run with KEEP=1 to keep it)."
fi
