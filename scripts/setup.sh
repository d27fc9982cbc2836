#!/usr/bin/env bash
# Shared machine setup for coffer on Debian 12 (bookworm), used by .ci/run,
# scripts/test.sh, scripts/demo.sh and scripts/bench.sh.
#
# Idempotent and quiet: apt-get update/install run only when something is
# missing. Works when run directly (`bash scripts/setup.sh [EXTRA_PKG...]`) and
# when sourced (`source scripts/setup.sh`), in which case it only defines the
# functions below and puts the Rust toolchain on PATH; call `coffer_setup`.
#
# Environment:
#   COFFER_SETUP_SKIP=1   do nothing (for machines set up by hand)
set -euo pipefail

# Rust toolchain (rustup) lives in ~/.cargo/bin; make sure it is on PATH.
_coffer_cargo_bin="${CARGO_HOME:-${HOME:-/root}/.cargo}/bin"
case ":${PATH}:" in
    *":${_coffer_cargo_bin}:"*) ;;
    *) export PATH="${_coffer_cargo_bin}:${PATH}" ;;
esac

_coffer_apt_updated=0

coffer_log() {
    printf '[setup] %s\n' "$*" >&2
}

# Run a command as root (directly, or through sudo when not root).
coffer_as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        coffer_log "need root (or sudo) to run: $*"
        return 1
    fi
}

# True when a Debian package is installed.
coffer_pkg_installed() {
    local status
    status="$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)"
    [ "$status" = "install ok installed" ]
}

# Install the given Debian packages that are not installed yet.
# apt-get update runs at most once per process, and only when needed.
coffer_ensure_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        coffer_pkg_installed "$pkg" || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        coffer_log "missing packages (${missing[*]}) and no apt-get: install them by hand"
        return 1
    fi
    coffer_log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    local log rc=0
    log="$(mktemp)"
    if [ "$_coffer_apt_updated" -eq 0 ]; then
        coffer_as_root apt-get update -qq >"$log" 2>&1 || rc=$?
        _coffer_apt_updated=1
    fi
    if [ "$rc" -eq 0 ]; then
        coffer_as_root apt-get install -y -qq --no-install-recommends \
            -o Dpkg::Use-Pty=0 "${missing[@]}" >>"$log" 2>&1 || rc=$?
    fi
    if [ "$rc" -ne 0 ]; then
        cat "$log" >&2
        coffer_log "apt-get failed (exit $rc) installing: ${missing[*]}"
    fi
    rm -f "$log"
    return "$rc"
}

# Make /dev/fuse available if the kernel can provide it. Never fails: when
# FUSE is unavailable the integration tests decide for themselves to skip.
coffer_ensure_fuse_device() {
    if [ -c /dev/fuse ]; then
        return 0
    fi
    if command -v modprobe >/dev/null 2>&1; then
        coffer_as_root modprobe fuse >/dev/null 2>&1 || true
    fi
    if [ ! -e /dev/fuse ] && grep -qw fuse /proc/filesystems 2>/dev/null; then
        coffer_as_root mknod -m 0666 /dev/fuse c 10 229 >/dev/null 2>&1 || true
    fi
    if [ -c /dev/fuse ]; then
        coffer_log "/dev/fuse created"
    else
        coffer_log "WARNING: /dev/fuse is not available; FUSE mount tests will skip"
    fi
}

# Everything coffer needs to build, test and run, plus EXTRA packages.
coffer_setup() {
    if [ "${COFFER_SETUP_SKIP:-0}" = "1" ]; then
        return 0
    fi
    local pkgs=(
        fuse3         # fusermount3, mount.fuse3 and /etc/fuse.conf
        libfuse3-dev  # only needed if fuser is built with its libfuse feature
        pkg-config
        # tools the integration tests and the demo drive inside a mount
        ca-certificates git rsync sqlite3 vim xxd psmisc procps attr
        python3       # scripts/stress.py (tests/mount_stress.rs, scripts/stress.sh)
        libc6-dev linux-libc-dev  # /usr/include, which the tar tests unpack
        shellcheck    # lints scripts/*.sh and .ci/run
    )
    if ! command -v cc >/dev/null 2>&1; then
        pkgs+=(build-essential)
    fi
    coffer_ensure_packages "${pkgs[@]}" "$@"

    if ! command -v cargo >/dev/null 2>&1; then
        # Fallback only: the machine image ships rustup's toolchain in ~/.cargo/bin.
        coffer_log "cargo not found in PATH; installing Debian's Rust toolchain as a fallback"
        coffer_ensure_packages cargo rustc rustfmt rust-clippy
    fi
    coffer_ensure_fuse_device
}

# fsx (Rust port of the FreeBSD file system exerciser) for scripts/stress.sh.
# Not part of coffer_setup: CI's test.sh runs fsx only when it is installed.
coffer_ensure_fsx() {
    if command -v fsx >/dev/null 2>&1; then
        return 0
    fi
    coffer_log "installing fsx (cargo install fsx)"
    cargo install --quiet --locked fsx
}

coffer_ensure_pjdfstest() {
    if command -v pjdfstest >/dev/null 2>&1; then
        return 0
    fi
    coffer_log "installing pjdfstest (cargo install pjdfstest)"
    cargo install --quiet --locked pjdfstest --version 0.2.2
}

# Executed directly (not sourced): run the setup now.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    coffer_setup "$@"
    coffer_log "ok: $(cargo --version 2>/dev/null || echo 'cargo missing')"
fi
