#!/usr/bin/env bash
# coffer demo: from a fresh Debian 12 machine to three members sharing a vault.
#
#   bash scripts/demo.sh
#
# Installs what is missing, builds coffer, makes three identities (alice, bob,
# carol), creates a vault, mounts it as alice and writes into it with ordinary
# tools, shows that the vault directory holds only ciphertext, then mounts it as
# bob: bob sees the names but cannot read alice's files. Then the sharing
# commands: alice grants bob read, bob passes read on to carol but cannot pass
# on update, alice grants bob update and sees his change, rotates the file's key
# (the ciphertext changes, everyone still reads) and revokes bob (carol keeps
# reading); `coffer access`, `coffer verify` and `coffer log` show the result.
#
# COFFER_BIN=PATH uses a prebuilt binary instead of building
# target/release/coffer. Everything happens in a temporary workspace, with this
# machine's coffer state ($XDG_STATE_HOME) inside it, that is unmounted and
# removed at the end (KEEP=1 keeps it for a look around).
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
# Stop the demo with a message (the EXIT trap cleans up).
die() {
    echo "    UNEXPECTED: $*" >&2
    exit 1
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
# So the commands below read as a user types them.
coffer() {
    "$COFFER" "$@"
}

WORK="$(mktemp -d /tmp/coffer-demo.XXXXXX)"
VAULT="$WORK/vault"
MNT_ALICE="$WORK/mnt-alice"
MNT_BOB="$WORK/mnt-bob"
MNT_CAROL="$WORK/mnt-carol"
mkdir -p "$VAULT" "$MNT_ALICE" "$MNT_BOB" "$MNT_CAROL"
# This machine's coffer state (pinned admin keys, what it has seen of each
# vault, mount logs) normally lives in ~/.local/state/coffer; the demo keeps its
# own inside the workspace so it leaves nothing behind.
export XDG_STATE_HOME="$WORK/state"

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
    unmount_quietly "$MNT_CAROL"
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
# SHOWN, if set, is the command line to print instead of "$@".
expect_denied() {
    local out
    printf '    $ %s\n' "${SHOWN:-$*}"
    if out="$("$@" 2>&1)"; then
        printf '%s\n' "$out" | sed 's/^/      /' >&2
        die "this should have been refused"
    fi
    printf '%s\n' "$out" | sed 's/^/      /'
    case "$out" in
        *"Permission denied"*) note "(refused, as it should be)" ;;
        *) die "refused, but not with 'Permission denied'" ;;
    esac
}

# Run "$@", expecting exit code $1; show its output and the code.
expect_exit() {
    local want="$1" rc=0 out
    shift
    printf '    $ %s\n' "$*"
    out="$("$@" 2>&1)" || rc=$?
    printf '%s\n' "$out" | sed 's/^/      /'
    [ "$rc" -eq "$want" ] || die "exit code $rc, expected $want"
    note "(exit code $rc)"
}

# Run "$@" until it succeeds, for up to ~3 seconds (changes made through one
# mount or command show in the other mounts within a second).
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
# Succeeds when "$@" fails (for `eventually`).
fails() {
    ! "$@"
}
# Succeeds when file $1 holds the line $2.
has_line() {
    grep -qxF -- "$2" "$1"
}

# The content file in the vault that holds file id $1 (hex): every content file
# starts with "CFRC", its format version and chunk size, then the file id at
# byte 8 (docs/FORMAT.md).
content_file_of() {
    local f
    while IFS= read -r -d '' f; do
        if [ "$(xxd -s 8 -l 16 -p "$f")" = "$1" ]; then
            printf '%s\n' "$f"
            return 0
        fi
    done < <(find vault/tree -type f ! -name '.*' -print0)
    return 1
}

cd "$WORK"

step "Creating three identities: alice, bob and carol"
note "Real users run 'coffer keygen --out alice.key' and are asked for a passphrase"
note "that protects the private key (argon2id). The demo uses --no-passphrase so it"
note "can run unattended; such a key file is protected only by its 0600 permissions."
ALICE_PUB="$(coffer keygen --out alice.key --name alice --no-passphrase | tail -n 1)"
BOB_PUB="$(coffer keygen --out bob.key --name bob --no-passphrase | tail -n 1)"
CAROL_PUB="$(coffer keygen --out carol.key --name carol --no-passphrase | tail -n 1)"
note "alice's public key: $ALICE_PUB"
note "bob's public key:   $BOB_PUB"
note "carol's public key: $CAROL_PUB"
show ls -l alice.key bob.key carol.key

step "Creating a vault with alice as its admin and first member"
show coffer init vault --identity alice.key

step "alice adds bob and carol as members (they sent her their public keys)"
show coffer user add vault bob "$BOB_PUB" --identity alice.key
show coffer user add vault carol "$CAROL_PUB" --identity alice.key
show coffer user list vault --identity alice.key

step "Mounting the vault as alice"
show coffer mount vault mnt-alice --identity alice.key
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
    die "the plaintext is in the vault directory"
fi
note "no match: neither the text nor the file names appear in the vault"
if [ -n "$(find vault \( -name '*plans*' -o -name '*apollo*' -o -name '*numbers*' \) -print -quit)" ]; then
    die "a plaintext file name is in the vault directory"
fi

step "bob mounts the same vault with his own identity"
show coffer mount vault mnt-bob --identity bob.key
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

step "Sharing: alice grants bob the read right on plans.txt"
show coffer grant mnt-alice/plans.txt bob --read --identity alice.key
show coffer access mnt-alice/plans.txt --identity alice.key
eventually cat mnt-bob/plans.txt
show cat mnt-bob/plans.txt
note "bob can read it, but only read: writing is refused"
SHOWN='echo "changed by bob" >> mnt-bob/plans.txt' \
    expect_denied sh -c 'echo "changed by bob" >> mnt-bob/plans.txt'

step "bob, a reader, passes the read right on to carol"
note "holding read is enough to grant read (carol could be given a copy anyway)"
show coffer grant mnt-bob/plans.txt carol --read --identity bob.key
show coffer mount vault mnt-carol --identity carol.key
eventually cat mnt-carol/plans.txt
show cat mnt-carol/plans.txt
note "but update is not bob's to give: he does not hold it (exit code 3, access denied)"
expect_exit 3 coffer grant mnt-bob/plans.txt carol --update --identity bob.key

step "alice grants bob the update right; bob changes the file and alice sees it"
show coffer grant mnt-alice/plans.txt bob --update --identity alice.key
CHANGE="Update from bob: moved to 21 March."
printf '    $ echo "%s" >> mnt-bob/plans.txt\n' "$CHANGE"
# (bob's mount picks up his new right within a second)
eventually sh -c "echo '$CHANGE' >> mnt-bob/plans.txt"
eventually has_line mnt-alice/plans.txt "$CHANGE"
show cat mnt-alice/plans.txt
note "bob's version is signed by bob; alice's mount accepts it because the signed"
note "access list says bob holds update"
show coffer access mnt-alice/plans.txt --identity alice.key

step "alice rotates the file's key: a fresh key, the content re-encrypted"
FILE_ID="$(coffer access mnt-alice/plans.txt --identity alice.key --json |
    sed -n 's/.*"file_id":"\([0-9a-f]*\)".*/\1/p')"
CT_FILE="$(content_file_of "$FILE_ID")" || die "no content file holds file id $FILE_ID"
note "plans.txt has file id $FILE_ID; its ciphertext is $CT_FILE"
show sha256sum "$CT_FILE"
BEFORE="$(sha256sum <"$CT_FILE")"
show coffer rotate mnt-alice/plans.txt --identity alice.key
show sha256sum "$CT_FILE"
AFTER="$(sha256sum <"$CT_FILE")"
[ "$BEFORE" != "$AFTER" ] || die "the ciphertext did not change"
note "the stored ciphertext changed; alice, bob and carol all still read the file:"
eventually has_line mnt-bob/plans.txt "$CHANGE"
eventually has_line mnt-carol/plans.txt "$CHANGE"
show tail -n 1 mnt-alice/plans.txt mnt-bob/plans.txt mnt-carol/plans.txt
show coffer access mnt-alice/plans.txt --identity alice.key

step "alice revokes bob (a new key epoch, the content re-encrypted at once)"
show coffer revoke mnt-alice/plans.txt bob --identity alice.key
# Give the revocation the second it may take to reach bob's mount.
eventually fails cat mnt-bob/plans.txt
expect_denied cat mnt-bob/plans.txt
note "carol got read from bob, but rights do not cascade: she keeps reading"
eventually cat mnt-carol/plans.txt
show tail -n 1 mnt-carol/plans.txt
show coffer access mnt-alice/plans.txt --identity alice.key

step "Checking the whole vault offline, and its signed history"
note "every member record, directory, name, access list, signed manifest and chunk, and"
note "every member's signed history (also against what this machine saw before):"
expect_exit 0 coffer verify vault --identity alice.key
note "the history of plans.txt, from alice's and bob's signed logs (coffer log vault"
note "without a path shows the whole vault; entries are ordered by time, to the second):"
show coffer log vault plans.txt --identity alice.key

step "Unmounting"
show coffer unmount mnt-carol
show coffer unmount mnt-bob
show umount mnt-alice
note "(coffer unmount and plain umount both work)"

step "Done"
note "The vault directory is ordinary files: put it on a shared disk or a sync folder,"
note "and each member mounts it with their own identity."
if [ "${KEEP:-0}" != "1" ]; then
    note "The workspace $WORK is removed now (run with KEEP=1 to keep it)."
fi
