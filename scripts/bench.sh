#!/usr/bin/env bash
# coffer benchmark suite (issue 6): the same workloads on ext4 (the backing
# directory itself), bindfs (FUSE passthrough, no crypto), gocryptfs and coffer,
# in ONE run, interleaved over ROUNDS rounds; every target is freshly created and
# mounted for each round. Prints medians and ratios to bindfs and gocryptfs and
# writes them as markdown to OUT. Methodology: docs/BENCHMARKS.md.
#
#   bash scripts/bench.sh                  # full run (about 30-45 minutes)
#   QUICK=1 bash scripts/bench.sh          # small sizes, a smoke test of the harness
#   TARGETS="bindfs coffer" ROUNDS=5 bash scripts/bench.sh
#   WORKLOADS="small" TARGETS="gocryptfs coffer" ROUNDS=1 bash scripts/bench.sh
#
# Environment (defaults in brackets; QUICK=1 values after the slash):
#   ROUNDS [3]  TARGETS ["ext4 bindfs gocryptfs coffer"]  QUICK [0]
#   WORKLOADS ["small jobs seq fio"]: groups to run (small = the 10k files and
#     grant -r; jobs = untar, tar c, grep, rm, git, sqlite; seq = dd and rotate/
#     migrate; fio = random I/O); rows of groups left out show as "—"
#   OUT [docs/bench-results-latest.md]   BENCH_DIR [/var/tmp/coffer-bench] (not tmpfs)
#   SEQ_MB [1024/64]  FIO_MB [256/32]  FIO_RUNTIME [30/5] seconds per fio job
#   SMALL_FILES [10000/1000]  SMALL_BYTES [1024]  SQL_INSERTS [1000/100]
#   TREE_SRC [/usr/include/usr/include/linux]: the tree for untar / tar c / grep -r / git clone
#   COFFER_BIN [target/release/coffer]  BUILD [1]: cargo build --release first
#   STEP_TIMEOUT [900] seconds for any single step
# Needs root (mounting, drop_caches). Installs bindfs, gocryptfs, fio if missing.
set -euo pipefail
export LC_ALL=C

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# ---------------------------------------------------------------- parameters
QUICK="${QUICK:-0}"
ROUNDS="${ROUNDS:-3}"
TARGETS="${TARGETS:-ext4 bindfs gocryptfs coffer}"
WORKLOADS="${WORKLOADS:-small jobs seq fio}"
runs_group() { [[ " $WORKLOADS " == *" $1 "* ]]; }
OUT="${OUT:-docs/bench-results-latest.md}"
WORK="${BENCH_DIR:-/var/tmp/coffer-bench}"
COFFER="${COFFER_BIN:-$ROOT/target/release/coffer}"
BUILD="${BUILD:-1}"
STEP_TIMEOUT="${STEP_TIMEOUT:-900}"
if [ "$QUICK" = "1" ]; then
    SEQ_MB="${SEQ_MB:-64}"
    FIO_MB="${FIO_MB:-32}"
    FIO_RUNTIME="${FIO_RUNTIME:-5}"
    SMALL_FILES="${SMALL_FILES:-1000}"
    SQL_INSERTS="${SQL_INSERTS:-100}"
    TREE_SRC="${TREE_SRC:-/usr/include/linux}"
else
    SEQ_MB="${SEQ_MB:-1024}"
    FIO_MB="${FIO_MB:-256}"
    FIO_RUNTIME="${FIO_RUNTIME:-30}"
    SMALL_FILES="${SMALL_FILES:-10000}"
    SQL_INSERTS="${SQL_INSERTS:-1000}"
    TREE_SRC="${TREE_SRC:-/usr/include}"
fi
SMALL_BYTES="${SMALL_BYTES:-1024}"
TREE_NAME="$(basename "$TREE_SRC")"

log() { printf '%s\n' "$*" >&2; }
die() {
    log "bench: $*"
    exit 1
}

[ "$(id -u)" -eq 0 ] || die "must run as root (it mounts filesystems and drops caches)"
case "$ROUNDS" in '' | *[!0-9]* | 0) die "ROUNDS must be a positive integer" ;; esac
[ -d "$TREE_SRC" ] || die "TREE_SRC $TREE_SRC is not a directory"
case "$WORK" in /*) ;; *) die "BENCH_DIR must be an absolute path" ;; esac

# ---------------------------------------------------------------- setup
# shellcheck source=scripts/setup.sh
source scripts/setup.sh

read -r -a TARGET_LIST <<<"$TARGETS"
want_target() {
    local t
    for t in "${TARGET_LIST[@]}"; do [ "$t" = "$1" ] && return 0; done
    return 1
}
for t in "${TARGET_LIST[@]}"; do
    case "$t" in ext4 | bindfs | gocryptfs | coffer) ;; *) die "unknown target '$t' (known: ext4 bindfs gocryptfs coffer)" ;; esac
done

log "==> checking packages"
pkgs=(fio git sqlite3 procps tar)
want_target bindfs && pkgs+=(bindfs fuse3)
want_target gocryptfs && pkgs+=(gocryptfs fuse3)
coffer_ensure_packages "${pkgs[@]}"

HAVE_COFFER_CMD=() # coffer subcommands present in this build
# True when `coffer SUB --help` succeeds and its help text names SUB.
coffer_subcommand() {
    local help
    help="$("$COFFER" "$1" --help 2>&1)" || return 1
    grep -qiw -- "$1" <<<"$help"
}
if want_target coffer; then
    if [ "$BUILD" = "1" ] && [ -z "${COFFER_BIN:-}" ]; then
        log "==> building coffer (cargo build --release)"
        coffer_setup
        cargo build --release --quiet || log "bench: cargo build failed; coffer will be skipped"
    fi
    if [ -x "$COFFER" ] && coffer_subcommand mount; then
        for c in grant rotate migrate verify; do
            if coffer_subcommand "$c"; then HAVE_COFFER_CMD+=("$c"); fi
        done
    else
        log "bench: $COFFER has no 'mount' subcommand (not built yet?): skipping target coffer"
        kept=()
        for t in "${TARGET_LIST[@]}"; do [ "$t" = coffer ] || kept+=("$t"); done
        TARGET_LIST=("${kept[@]}")
    fi
fi
[ "${#TARGET_LIST[@]}" -gt 0 ] || die "no targets left to run"
coffer_has() {
    local c
    for c in "${HAVE_COFFER_CMD[@]}"; do [ "$c" = "$1" ] && return 0; done
    return 1
}

# ---------------------------------------------------------------- cleanup
DAEMON_PIDS=() # FUSE daemons started by this script

mounts_under() { # mountpoints below $1, deepest first
    awk -v pre="$1/" 'index($2, pre) == 1 { print $2 }' /proc/mounts | sort -r
}
unmount_all_under() {
    local mp
    while IFS= read -r mp; do
        [ -n "$mp" ] || continue
        mp="$(printf '%b' "$mp")"
        fusermount3 -u "$mp" 2>/dev/null || umount "$mp" 2>/dev/null ||
            fusermount3 -u -z "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
    done < <(mounts_under "$1")
}
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    [ -d "$WORK" ] && unmount_all_under "$WORK"
    for pid in "${DAEMON_PIDS[@]}"; do
        kill_our_daemon "$pid"
    done
    if [ -d "$WORK" ] && [ -z "$(mounts_under "$WORK")" ] && [ "${KEEP_WORK:-0}" != "1" ]; then
        rm -rf "$WORK/rounds" "$WORK/src" "$WORK/keys" "$WORK/state"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A previous run that was killed may have left mounts and data behind.
mkdir -p "$WORK"
unmount_all_under "$WORK"
[ -z "$(mounts_under "$WORK")" ] || die "could not unmount old mounts under $WORK"
rm -rf "$WORK/rounds" "$WORK/src" "$WORK/keys" "$WORK/state"
mkdir -p "$WORK/rounds" "$WORK/src" "$WORK/keys" "$WORK/state"
RESULTS="$WORK/results.tsv"
LOG="$WORK/bench.log"
: >"$RESULTS"
: >"$LOG"

need_mb=$((SEQ_MB + FIO_MB + 2048))
avail_mb=$(($(df -Pk "$WORK" | awk 'NR == 2 { print $4 }') / 1024))
[ "$avail_mb" -ge "$need_mb" ] || die "$WORK has ${avail_mb} MiB free, need about ${need_mb} MiB"

# ---------------------------------------------------------------- inputs (made once)
log "==> preparing inputs in $WORK/src"
tar -C "$(dirname "$TREE_SRC")" -cf "$WORK/src/tree.tar" "$TREE_NAME" 2>>"$LOG"
TREE_FILES=$(tar -tf "$WORK/src/tree.tar" | grep -vc '/$' || true)
TREE_MB=$(du -sm --apparent-size "$TREE_SRC" | cut -f1)
# a git repository of the same tree, packed, for `git clone`
mkdir -p "$WORK/src/repo"
tar -C "$WORK/src/repo" -xf "$WORK/src/tree.tar"
git -C "$WORK/src/repo" init -q
git -C "$WORK/src/repo" add -A
git -C "$WORK/src/repo" -c user.name=bench -c user.email=bench@localhost commit -q -m tree
git -C "$WORK/src/repo" gc -q
head -c "$((SEQ_MB * 1024 * 1024))" /dev/urandom >"$WORK/src/seq.src"
SMALL_PAYLOAD="$(head -c "$SMALL_BYTES" /dev/urandom | base64 -w0 | head -c "$SMALL_BYTES")"
row_payload="${SMALL_PAYLOAD:0:150}"
{
    echo "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL);"
    for ((i = 0; i < SQL_INSERTS; i++)); do
        echo "INSERT INTO t(v) VALUES('row $i $row_payload');"
    done
} >"$WORK/src/inserts.sql"
if want_target coffer; then
    export XDG_STATE_HOME="$WORK/state" # coffer's client state (trust-on-first-use pins)
    for u in alice bob carol; do
        "$COFFER" keygen --out "$WORK/keys/$u.key" --name "$u" --no-passphrase 2>>"$LOG" |
            tail -n 1 >"$WORK/keys/$u.pub"
    done
    export COFFER_IDENTITY="$WORK/keys/alice.key"
fi

# ---------------------------------------------------------------- helpers
CLK_TCK=$(getconf CLK_TCK)

# Cold measurements: write back and drop the page, dentry and inode caches
# first (outside the timed part).
drop_caches() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
}

# Ends PID only if it is still a daemon this run started (its command line
# names the work area), so a recycled PID is never hit.
kill_our_daemon() {
    local pid="$1"
    kill -0 "$pid" 2>/dev/null || return 0
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$WORK/" || return 0
    kill "$pid" 2>/dev/null || true
}

# record METRIC VALUE  (VALUE: a number, or "fail")
record() {
    printf '%s\t%s\t%s\t%s\n' "$ROUND" "$TARGET" "$1" "$2" >>"$RESULTS"
    printf '    %-18s %s\n' "$1" "$2" >&2
}

# timed CMD...: run CMD and set SECS to its wall-clock seconds; returns CMD's
# status. A program's output goes to the log and it is bounded by STEP_TIMEOUT;
# a function handles its own output and timeouts.
SECS=""
timed() {
    local t0 t1 rc=0
    SECS=""
    t0=$EPOCHREALTIME
    if [ "$(type -t "$1")" = "function" ]; then
        "$@" 2>>"$LOG" || rc=$?
    else
        timeout --kill-after=10 "$STEP_TIMEOUT" "$@" >>"$LOG" 2>&1 || rc=$?
    fi
    t1=$EPOCHREALTIME
    if [ "$rc" -ne 0 ]; then
        printf '[round %s %s] failed (exit %s): %s\n' "$ROUND" "$TARGET" "$rc" "$*" >>"$LOG"
        return "$rc"
    fi
    SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')
}
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.4f", a / b; else print "fail" }'; }

# measure_time METRIC CMD...      records seconds
measure_time() {
    local m="$1"
    shift
    if timed "$@"; then record "$m" "$SECS"; else record "$m" fail; fi
}
# measure_rate METRIC AMOUNT CMD...  records AMOUNT / seconds
measure_rate() {
    local m="$1" amount="$2"
    shift 2
    if timed "$@"; then record "$m" "$(div "$amount" "$SECS")"; else record "$m" fail; fi
}

backing_bytes() { # allocated bytes under the backing directory
    sync
    du -s -B1 "$BACKING" | cut -f1
}

# fio job on $DIR/fio.dat; prints its terse (v3) line. Later options win, so a
# job's own options come after the common ones.
FIO_COMMON=(--filename=fio.dat --bs=4k --ioengine=psync --fallocate=none --minimal)
fio_job() {
    (cd "$DIR" && timeout --kill-after=10 "$STEP_TIMEOUT" fio "${FIO_COMMON[@]}" "$@" 2>>"$LOG")
}

# ---------------------------------------------------------------- workloads
T=(timeout --kill-after=10 "$STEP_TIMEOUT") # no single step may hang the run
create_small_files() {
    # shellcheck disable=SC2016 # the inner script expands its own arguments
    "${T[@]}" bash -c '
        set -e
        dir=$1 n=$2 payload=$3
        for ((i = 0; i < n; i++)); do
            d=$((i / 100))
            if ((i % 100 == 0)); then mkdir -p "$dir/d$d"; fi
            printf "%s" "$payload" >"$dir/d$d/f$i"
        done' _ "$1" "$2" "$SMALL_PAYLOAD"
}
ls_r() { "${T[@]}" ls -lR "$1" >/dev/null; }
read_all() { "${T[@]}" find "$1" -type f -exec cat {} + >/dev/null; }
# GNU tar skips reading file data when it writes to /dev/null: go through a pipe
tar_c() { "${T[@]}" tar -C "$DIR" -cf - "$TREE_NAME" | cat >/dev/null; }
grep_r() {
    local rc=0
    "${T[@]}" grep -rF -- 'coffer-bench-string-that-is-nowhere' "$DIR/$TREE_NAME" >/dev/null || rc=$?
    [ "$rc" -le 1 ] # 1 = no match (expected); 2 = error
}
# Random data, read from a file kept in the page cache: zeros would let a target
# that stores all-zero blocks as holes skip its crypto (coffer does).
seq_write() {
    cat "$WORK/src/seq.src" >/dev/null
    "${T[@]}" dd if="$WORK/src/seq.src" of="$DIR/seq.dat" bs=1M count="$SEQ_MB" conv=fsync status=none
}
seq_read() { "${T[@]}" dd if="$DIR/seq.dat" of=/dev/null bs=1M status=none; }
sqlite_inserts() { "${T[@]}" sqlite3 "$DIR/bench.db" <"$WORK/src/inserts.sql"; }
git_clone() { "${T[@]}" git clone -q --no-local --no-hardlinks "$WORK/src/repo" "$DIR/clone"; }

run_small_files() {
    local before after
    before=$(backing_bytes)
    measure_rate small_create "$SMALL_FILES" create_small_files "$DIR/small" "$SMALL_FILES"
    after=$(backing_bytes)
    record small_backing "$(div $((after - before)) 1048576)"
    if [ "$TARGET" = coffer ]; then
        if coffer_has grant; then
            # three members holding read: alice (creator) + bob + carol
            measure_time coffer_grant_r "$COFFER" grant "$DIR/small" bob --read -r
            if timed "$COFFER" grant "$DIR/small" carol --read -r; then
                after=$(backing_bytes)
                record small_backing3 "$(div $((after - before)) 1048576)"
            else
                record small_backing3 fail
            fi
        fi
    else
        # no per-user keys: the same bytes, for the comparison with coffer
        record small_backing3 "$(div $((after - before)) 1048576)"
    fi
    drop_caches
    measure_rate small_ls "$SMALL_FILES" ls_r "$DIR/small"
    drop_caches
    measure_rate small_read "$SMALL_FILES" read_all "$DIR/small"
    measure_rate small_rm "$SMALL_FILES" rm -rf "$DIR/small"
}

run_jobs() {
    cat "$WORK/src/tree.tar" >/dev/null # the source is warm for every target
    measure_time untar tar -C "$DIR" -xf "$WORK/src/tree.tar"
    drop_caches
    measure_time tar_c tar_c
    measure_time grep_r grep_r
    measure_time tree_rm rm -rf "$DIR/$TREE_NAME"
    measure_time git_clone git_clone
    rm -rf "$DIR/clone" 2>>"$LOG" || true
    measure_rate sqlite_inserts "$SQL_INSERTS" sqlite_inserts
    rm -f "$DIR/bench.db" 2>>"$LOG" || true
}

run_seq() {
    measure_rate seq_write "$SEQ_MB" seq_write
    drop_caches
    measure_rate seq_read_cold "$SEQ_MB" seq_read
    measure_rate seq_read_warm "$SEQ_MB" seq_read
    if [ "$TARGET" = coffer ]; then
        if coffer_has rotate; then
            measure_rate coffer_rotate "$SEQ_MB" "$COFFER" rotate "$DIR/seq.dat"
        fi
        if coffer_has migrate && coffer_has grant; then
            if timed "$COFFER" grant "$DIR/seq.dat" bob --read &&
                timed "$COFFER" revoke "$DIR/seq.dat" bob --lazy; then
                measure_rate coffer_migrate "$SEQ_MB" "$COFFER" migrate "$BACKING" --json
            else
                record coffer_migrate fail
            fi
        fi
    fi
}

run_fio() {
    local line t0 t1 kb
    # lay the file out with real data (not fallocate), then start cold
    if ! fio_job --name=layout --rw=write --bs=1M --size="${FIO_MB}M" --end_fsync=1 >/dev/null; then
        record rand_read fail
        record rand_write fail
        record rand_read_direct fail
        return 0
    fi
    drop_caches
    if line=$(fio_job --name=randread --rw=randread --size="${FIO_MB}M" --runtime="$FIO_RUNTIME"); then
        record rand_read "$(awk -F';' '$5 == 0 { print $8; exit } END { if (NR == 0) print "fail" }' <<<"$line")"
    else
        record rand_read fail
    fi
    drop_caches
    # fio's own runtime leaves out the final fsync: time the whole job instead
    t0=$EPOCHREALTIME
    if line=$(fio_job --name=randwrite --rw=randwrite --size="${FIO_MB}M" --runtime="$FIO_RUNTIME" --end_fsync=1); then
        t1=$EPOCHREALTIME
        kb=$(awk -F';' '$5 == 0 { print $47; exit }' <<<"$line")
        if [ -n "$kb" ]; then
            record rand_write "$(awk -v kb="$kb" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", kb / 4 / (b - a) }')"
        else
            record rand_write fail
        fi
    else
        record rand_write fail
    fi
    drop_caches
    if line=$(fio_job --name=randread-direct --rw=randread --direct=1 --size="${FIO_MB}M" --runtime="$FIO_RUNTIME"); then
        record rand_read_direct "$(awk -F';' '$5 == 0 { print $8; exit } END { if (NR == 0) print "fail" }' <<<"$line")"
    else
        record rand_read_direct fail
    fi
}

# ---------------------------------------------------------------- targets
# The FUSE daemon serving mountpoint $1: the process whose command line names
# the mountpoint and whose name is $2 (right after mounting nothing else does).
find_daemon() {
    local mp="$1" name="$2" pid comm pat
    pat="$(printf '%s' "$mp" | sed 's/[][\.*^$+?(){}|]/\\&/g')"
    for pid in $(pgrep -f -- "$pat( |$)" || true); do
        [ "$pid" = "$$" ] && continue
        comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || continue
        case "$comm" in "$name"*)
            echo "$pid"
            return 0
            ;;
        esac
    done
    # fallback: a daemon that does not carry the mountpoint in its command line
    # is the newest process of that name (the mount command has just returned)
    pid="$(pgrep -n -x -- "$name" || true)"
    if [ -n "$pid" ]; then
        printf '[round %s %s] daemon found by name only: pid %s\n' "$ROUND" "$TARGET" "$pid" >>"$LOG"
        echo "$pid"
        return 0
    fi
    return 1
}

is_mounted() { awk -v mp="$1" '$2 == mp { f = 1 } END { exit !f }' /proc/mounts; }

# Sets DIR (where workloads run), BACKING (what du measures), DAEMON_PID, MNT.
setup_target() {
    local base="$1"
    DIR="" BACKING="" DAEMON_PID="" MNT=""
    mkdir -p "$base"
    case "$TARGET" in
    ext4)
        DIR="$base/plain"
        BACKING="$DIR"
        mkdir -p "$DIR"
        return 0
        ;;
    bindfs)
        BACKING="$base/back" MNT="$base/mnt"
        mkdir -p "$BACKING" "$MNT"
        bindfs "$BACKING" "$MNT" 2>>"$LOG" || return 1
        ;;
    gocryptfs)
        BACKING="$base/cipher" MNT="$base/mnt"
        mkdir -p "$BACKING" "$MNT"
        gocryptfs -q -init -extpass 'echo pw' "$BACKING" >>"$LOG" 2>&1 || return 1
        gocryptfs -q -extpass 'echo pw' "$BACKING" "$MNT" >>"$LOG" 2>&1 || return 1
        ;;
    coffer)
        BACKING="$base/vault" MNT="$base/mnt"
        mkdir -p "$BACKING" "$MNT"
        {
            "$COFFER" init "$BACKING" &&
                "$COFFER" user add "$BACKING" bob "$(cat "$WORK/keys/bob.pub")" &&
                "$COFFER" user add "$BACKING" carol "$(cat "$WORK/keys/carol.pub")" &&
                "$COFFER" mount "$BACKING" "$MNT"
        } >>"$LOG" 2>&1 || return 1
        ;;
    esac
    DIR="$MNT"
    is_mounted "$MNT" || return 1
    DAEMON_PID="$(find_daemon "$MNT" "$TARGET")" || DAEMON_PID=""
    if [ -n "$DAEMON_PID" ]; then
        DAEMON_PIDS+=("$DAEMON_PID")
    else
        log "    (could not find the $TARGET daemon for $MNT: no RSS/CPU figures)"
    fi
}

record_daemon_usage() {
    [ -n "$MNT" ] || return 0
    if [ -z "$DAEMON_PID" ] || [ ! -r "/proc/$DAEMON_PID/status" ]; then
        record daemon_rss fail
        record daemon_cpu fail
        return 0
    fi
    local hwm stat rest f
    hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$DAEMON_PID/status")
    stat="$(cat "/proc/$DAEMON_PID/stat")"
    rest="${stat##*) }" # fields after "pid (comm) ", starting at field 3
    read -r -a f <<<"$rest"
    record daemon_rss "$(div "$hwm" 1024)"
    record daemon_cpu "$(awk -v u="${f[11]}" -v s="${f[12]}" -v t="$CLK_TCK" 'BEGIN { printf "%.2f", (u + s) / t }')"
}

teardown_target() {
    [ -n "$MNT" ] || return 0
    if [ "$TARGET" = coffer ]; then
        "$COFFER" unmount "$MNT" >>"$LOG" 2>&1 || true
    fi
    if is_mounted "$MNT"; then
        fusermount3 -u "$MNT" 2>>"$LOG" || umount "$MNT" 2>>"$LOG" || umount -l "$MNT" 2>>"$LOG" || true
    fi
    if [ -n "$DAEMON_PID" ]; then
        local i
        for ((i = 0; i < 200; i++)); do
            kill -0 "$DAEMON_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$DAEMON_PID" 2>/dev/null; then
            log "    ($TARGET daemon $DAEMON_PID still running 20 s after unmount: terminating it)"
            kill_our_daemon "$DAEMON_PID"
        fi
    fi
}

ALL_METRICS=(seq_write seq_read_cold seq_read_warm rand_read rand_write rand_read_direct
    small_create small_ls small_read small_rm small_backing small_backing3
    untar tar_c grep_r tree_rm git_clone sqlite_inserts
    coffer_grant_r coffer_rotate coffer_migrate coffer_verify daemon_rss daemon_cpu)

run_target() {
    local base="$WORK/rounds/r$ROUND-$TARGET"
    log "--- round $ROUND/$ROUNDS: $TARGET"
    if ! setup_target "$base"; then
        log "    could not set up $TARGET (see $LOG)"
        printf '[round %s %s] setup failed\n' "$ROUND" "$TARGET" >>"$LOG"
        teardown_target
        local m
        for m in "${ALL_METRICS[@]}"; do
            case "$m" in coffer_*) [ "$TARGET" = coffer ] && record "$m" fail ;; *) record "$m" fail ;; esac
        done
        unmount_all_under "$base"
        [ -z "$(mounts_under "$base")" ] && rm -rf "$base"
        return 0
    fi
    if runs_group small; then run_small_files; fi
    if runs_group jobs; then run_jobs; fi
    if runs_group seq; then run_seq; fi
    if runs_group fio; then run_fio; fi
    record_daemon_usage
    teardown_target
    if [ "$TARGET" = coffer ] && coffer_has verify && runs_group seq && runs_group fio; then
        # content left in the vault: seq.dat and fio.dat
        measure_rate coffer_verify $((SEQ_MB + FIO_MB)) "$COFFER" verify "$BACKING"
    fi
    unmount_all_under "$base"
    if [ -z "$(mounts_under "$base")" ]; then rm -rf "$base"; fi
}

# ---------------------------------------------------------------- the run
log "==> targets: ${TARGET_LIST[*]}; rounds: $ROUNDS; quick: $QUICK; work area: $WORK"
log "    seq ${SEQ_MB} MiB, fio ${FIO_MB} MiB (<= ${FIO_RUNTIME}s/job), ${SMALL_FILES} small files of ${SMALL_BYTES} B,"
log "    tree $TREE_SRC (${TREE_FILES} files, ${TREE_MB} MiB), ${SQL_INSERTS} sqlite inserts; log: $LOG"
START=$SECONDS
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
n=${#TARGET_LIST[@]}
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    # interleave, and rotate the order every round so no target always goes first
    for ((k = 0; k < n; k++)); do
        TARGET="${TARGET_LIST[$(((k + ROUND - 1) % n))]}"
        run_target
    done
done
ELAPSED=$((SECONDS - START))
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- report
# metric | label | unit | sense: rate (higher is better), time (lower is
# better; ratios are speed-ups), size (lower is better; ratios are plain)
metric_info() {
    case "$1" in
    seq_write) echo "sequential write ${SEQ_MB} MiB (dd, conv=fsync)|MiB/s|rate" ;;
    seq_read_cold) echo "sequential read, cold (drop_caches)|MiB/s|rate" ;;
    seq_read_warm) echo "sequential re-read, warm|MiB/s|rate" ;;
    rand_read) echo "random 4 KiB read (fio psync, ${FIO_MB} MiB file)|IOPS|rate" ;;
    rand_write) echo "random 4 KiB write (fio psync + final fsync)|IOPS|rate" ;;
    rand_read_direct) echo "random 4 KiB read, O_DIRECT|IOPS|rate" ;;
    small_create) echo "${SMALL_FILES} small files: create|files/s|rate" ;;
    small_ls) echo "${SMALL_FILES} small files: ls -lR, cold|files/s|rate" ;;
    small_read) echo "${SMALL_FILES} small files: read, cold|files/s|rate" ;;
    small_rm) echo "${SMALL_FILES} small files: rm -rf|files/s|rate" ;;
    small_backing) echo "${SMALL_FILES} small files: backing dir used|MiB|size" ;;
    small_backing3) echo "${SMALL_FILES} small files: backing used, 3 readers|MiB|size" ;;
    untar) echo "untar ${TREE_SRC} (${TREE_FILES} files)|s|time" ;;
    tar_c) echo "tar c of the tree, cold|s|time" ;;
    grep_r) echo "grep -r of the tree, warm|s|time" ;;
    tree_rm) echo "rm -rf of the tree|s|time" ;;
    git_clone) echo "git clone (no-local) of the tree|s|time" ;;
    sqlite_inserts) echo "sqlite3: ${SQL_INSERTS} inserts, 1 transaction each|inserts/s|rate" ;;
    coffer_grant_r) echo "coffer grant -r --read, ${SMALL_FILES} files|s|time" ;;
    coffer_rotate) echo "coffer rotate of the ${SEQ_MB} MiB file|MiB/s|rate" ;;
    coffer_migrate) echo "coffer revoke --lazy + migrate, ${SEQ_MB} MiB|MiB/s|rate" ;;
    coffer_verify) echo "coffer verify (vault unmounted)|MiB/s|rate" ;;
    daemon_rss) echo "daemon peak RSS (VmHWM)|MiB|size" ;;
    daemon_cpu) echo "daemon CPU user+sys, whole round|s|size" ;;
    esac
}

# median METRIC TARGET: median of the numeric values over the rounds ("" if none)
median() {
    awk -F'\t' -v m="$1" -v t="$2" '$3 == m && $2 == t && $4 ~ /^[0-9.]+$/ { print $4 }' "$RESULTS" |
        sort -g | awk '{ v[NR] = $1 } END {
            if (NR == 0) exit
            if (NR % 2) printf "%.6g\n", v[(NR + 1) / 2]
            else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
fmt() {
    [ -n "$1" ] || {
        echo "—"
        return
    }
    awk -v v="$1" 'BEGIN {
        a = v < 0 ? -v : v
        if (a >= 100) printf "%.0f", v; else if (a >= 10) printf "%.1f", v
        else if (a >= 1) printf "%.2f", v; else printf "%.3f", v }'
}
# ratio VALUE REF SENSE: >1 means better than REF for rate/time; plain for size
ratio() {
    if [ -z "$1" ] || [ -z "$2" ]; then
        echo "—"
        return
    fi
    awk -v a="$1" -v b="$2" -v s="$3" 'BEGIN {
        if (s == "time") { if (a > 0) printf "%.2f×", b / a; else print "—" }
        else { if (b > 0) printf "%.2f×", a / b; else print "—" } }'
}

targets_ran=("${TARGET_LIST[@]}")
refs=()
want_target bindfs && [[ " ${TARGET_LIST[*]} " == *" bindfs "* ]] && refs+=(bindfs)
want_target gocryptfs && [[ " ${TARGET_LIST[*]} " == *" gocryptfs "* ]] && refs+=(gocryptfs)

present_metrics=()
for m in "${ALL_METRICS[@]}"; do
    if awk -F'\t' -v m="$m" '$3 == m { f = 1 } END { exit !f }' "$RESULTS"; then present_metrics+=("$m"); fi
done

report() {
    local m info label unit sense t r row
    echo "# coffer benchmark results"
    echo
    echo "Produced by \`scripts/bench.sh\` (methodology: [BENCHMARKS.md](BENCHMARKS.md))."
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); wall time of the run: $((ELAPSED / 60)) min $((ELAPSED % 60)) s"
    echo "- machine: $(nproc) cores, $(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo),"\
        "$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r)"
    echo "- load average (1/5/15 min) at start: $LOAD_START, at end: $LOAD_END (other work on the machine skews results)"
    echo "- OS: $(. /etc/os-release && echo "$PRETTY_NAME"); work area $WORK on" \
        "$(findmnt -n -o FSTYPE,SOURCE -T "$WORK" | tr -s ' ')"
    echo "- versions: $(fio --version)$(command -v bindfs >/dev/null && echo ", bindfs $(bindfs --version 2>&1 | awk '{ print $2; exit }')")$(command -v gocryptfs >/dev/null && echo ", gocryptfs $(gocryptfs -version 2>&1 | awk '{ print $2; exit }' | tr -d ';')")"
    if want_target coffer && [ -x "$COFFER" ]; then
        echo "- coffer: $("$COFFER" --version 2>/dev/null | head -n 1 || echo unknown), git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no commit')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes')"
    fi
    echo "- parameters: ROUNDS=$ROUNDS QUICK=$QUICK TARGETS=\"${targets_ran[*]}\" SEQ_MB=$SEQ_MB FIO_MB=$FIO_MB FIO_RUNTIME=$FIO_RUNTIME SMALL_FILES=$SMALL_FILES SMALL_BYTES=$SMALL_BYTES SQL_INSERTS=$SQL_INSERTS TREE_SRC=$TREE_SRC"
    echo
    echo "## Medians over $ROUNDS rounds"
    echo
    row="| workload | unit |"
    for t in "${targets_ran[@]}"; do row+=" $t |"; done
    echo "$row"
    row="| --- | --- |"
    for t in "${targets_ran[@]}"; do row+=" ---: |"; done
    echo "$row"
    for m in "${present_metrics[@]}"; do
        info="$(metric_info "$m")"
        IFS='|' read -r label unit sense <<<"$info"
        row="| $label | $unit |"
        for t in "${targets_ran[@]}"; do row+=" $(fmt "$(median "$m" "$t")") |"; done
        echo "$row"
    done
    if [ "${#refs[@]}" -gt 0 ]; then
        echo
        echo "## Ratios (same run)"
        echo
        echo "Speed rows: > 1.00× means faster than the reference (rates: value ÷ reference;"
        echo "times: reference ÷ value). Size, RSS and CPU rows: value ÷ reference, lower is better."
        echo
        local cols=()
        for r in "${refs[@]}"; do
            for t in "${targets_ran[@]}"; do
                [ "$t" = "$r" ] || cols+=("$t:$r")
            done
        done
        row="| workload | kind |"
        for c in "${cols[@]}"; do row+=" ${c%%:*} vs ${c##*:} |"; done
        echo "$row"
        row="| --- | --- |"
        for c in "${cols[@]}"; do row+=" ---: |"; done
        echo "$row"
        for m in "${present_metrics[@]}"; do
            case "$m" in coffer_*) continue ;; esac # coffer only: nothing to compare
            info="$(metric_info "$m")"
            IFS='|' read -r label unit sense <<<"$info"
            if [ "$sense" = size ]; then row="| $label | ratio, lower is better |"; else row="| $label | speed-up |"; fi
            for c in "${cols[@]}"; do
                row+=" $(ratio "$(median "$m" "${c%%:*}")" "$(median "$m" "${c##*:}")" "$sense") |"
            done
            echo "$row"
        done
    fi
    echo
    echo "## Every round"
    echo
    row="| workload | target |"
    for ((r = 1; r <= ROUNDS; r++)); do row+=" round $r |"; done
    echo "$row"
    row="| --- | --- |"
    for ((r = 1; r <= ROUNDS; r++)); do row+=" ---: |"; done
    echo "$row"
    for m in "${present_metrics[@]}"; do
        for t in "${targets_ran[@]}"; do
            awk -F'\t' -v m="$m" -v t="$t" '$3 == m && $2 == t { f = 1 } END { exit !f }' "$RESULTS" || continue
            row="| $m | $t |"
            for ((r = 1; r <= ROUNDS; r++)); do
                local v
                v="$(awk -F'\t' -v m="$m" -v t="$t" -v r="$r" '$1 == r && $3 == m && $2 == t { print $4; exit }' "$RESULTS")"
                case "$v" in '') v="—" ;; fail) ;; *) v="$(fmt "$v")" ;; esac
                row+=" $v |"
            done
            echo "$row"
        done
    done
    local nfail
    nfail=$(awk -F'\t' '$4 == "fail"' "$RESULTS" | wc -l)
    if [ "$nfail" -gt 0 ]; then
        echo
        echo "**$nfail measurement(s) failed** (marked \`fail\`); their causes are in \`$LOG\`."
    fi
}

mkdir -p "$(dirname "$OUT")"
report >"$OUT"
echo
cat "$OUT"
echo
log "==> results written to $OUT (raw values: $RESULTS, log: $LOG)"
