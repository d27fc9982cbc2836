#!/usr/bin/env bash
# Where a command's time goes in a FUSE filesystem: every request the kernel
# sends while the command runs, by kind, with how many, the mean time from
# send to reply (the daemon's work plus its wake-up), and the total.
#
#   scripts/fuse-latency.sh [--mount DIR] -- COMMAND [ARGS...]
#
# --mount DIR counts only the FUSE mount at DIR (default: every FUSE mount).
# Works for any FUSE filesystem, so coffer and gocryptfs can be compared
# request by request (docs/BENCHMARKS.md, "per-request profiles"). Needs
# root and the kernel's fuse trace events (tracefs). Counts are exact; the
# times carry the tracing overhead (a few microseconds per request).
set -euo pipefail

mount_dir=""
while [ $# -gt 0 ]; do
    case "$1" in
        --mount) mount_dir="${2:?--mount needs a directory}"; shift 2 ;;
        --) shift; break ;;
        -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || { echo "usage: $0 [--mount DIR] -- COMMAND [ARGS...]" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "$0: needs root (kernel tracing)" >&2; exit 3; }

T=/sys/kernel/tracing
if [ ! -d "$T/events" ]; then
    mount -t tracefs nodev "$T" 2>/dev/null || true
fi
[ -d "$T/events/fuse" ] || { echo "$0: no fuse trace events in $T (kernel too old?)" >&2; exit 1; }

connection=""
if [ -n "$mount_dir" ]; then
    # The connection number is the minor device number of the mount.
    dev=$(stat -c %d "$mount_dir")
    connection=$((dev & 0xff | (dev >> 12 & 0xfff00)))
fi

out=$(mktemp)
# shellcheck disable=SC2317 # run by the EXIT trap
restore() {
    echo 0 >"$T/tracing_on"
    echo 0 >"$T/events/fuse/fuse_request_send/enable"
    echo 0 >"$T/events/fuse/fuse_request_end/enable"
    rm -f "$out"
}
trap restore EXIT
echo 0 >"$T/tracing_on"
echo >"$T/trace"
echo 65536 >"$T/buffer_size_kb"
echo 1 >"$T/events/fuse/fuse_request_send/enable"
echo 1 >"$T/events/fuse/fuse_request_end/enable"
echo 1 >"$T/tracing_on"
start=$(date +%s.%N)
status=0
"$@" || status=$?
end=$(date +%s.%N)
echo 0 >"$T/tracing_on"
cat "$T/trace" >"$out"

awk -v conn="$connection" -v start="$start" -v end="$end" '
function field(name,   i) { for (i = 1; i <= NF; i++) if ($i == name) return $(i + 1); return "" }
function stamp(   i, t) { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\.[0-9]+:$/) { t = $i; sub(":", "", t); return t } }
/fuse_request_send|fuse_request_end/ {
    c = field("connection"); if (conn != "" && c != conn) next
    key = c " " field("req")
}
/fuse_request_send/ {
    for (i = 1; i <= NF; i++) if ($i ~ /^\(FUSE_/) { op = $i; gsub(/[()]/, "", op) }
    sent[key] = stamp(); kind[key] = op
}
/fuse_request_end/ && (key in sent) {
    us = (stamp() - sent[key]) * 1e6
    n[kind[key]]++; sum[kind[key]] += us; total += us; count++
    delete sent[key]
}
END {
    printf "%-20s %9s %11s %11s\n", "request", "count", "mean us", "total ms"
    for (k in n) printf "%-20s %9d %11.1f %11.1f\n", k, n[k], sum[k] / n[k], sum[k] / 1000 | "sort -k4 -rn"
    close("sort -k4 -rn")
    printf "%d requests; %.1f ms waiting on the daemon in %.1f ms of wall time\n", count, total / 1000, (end - start) * 1000
}' "$out"
exit "$status"
