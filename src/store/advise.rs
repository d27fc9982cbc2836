//! Hints to the kernel: read-ahead (posix_fadvise) for long sequential scans
//! such as `coffer verify`, and block allocation up front for small files that
//! replace others. Hints only: failures are ignored. This is a libc edge of
//! the store layer.

use std::fs::File;
use std::os::fd::AsRawFd;

/// The whole file will be read in order: the kernel doubles its read-ahead window.
pub fn sequential(file: &File) {
    advise(file, 0, 0, libc::POSIX_FADV_SEQUENTIAL);
}

/// `len` bytes at `offset` will be read soon: the kernel starts reading them now.
pub fn will_need(file: &File, offset: u64, len: u64) {
    advise(file, offset, len, libc::POSIX_FADV_WILLNEED);
}

fn advise(file: &File, offset: u64, len: u64, advice: libc::c_int) {
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return;
    };
    // SAFETY: posix_fadvise only reads the descriptor number, which `file` keeps
    // open for the duration of the call; it touches no memory of ours.
    let _ = unsafe { libc::posix_fadvise(file.as_raw_fd(), offset, len, advice) };
}

/// Allocates `len` bytes of a new, empty file before it is written. On ext4 a
/// file written without allocated blocks (delayed allocation) and then renamed
/// over another is flushed to disk inside `rename` (`auto_da_alloc`); with its
/// blocks allocated first, `rename` does not wait for that write. Keeps the
/// file size at 0 (`FALLOC_FL_KEEP_SIZE`), so a short write leaves no zeros.
pub fn allocate(file: &File, len: u64) {
    reserve(file, 0, len);
}

/// Allocates blocks for `len` bytes at `offset` without changing the file's
/// size (`FALLOC_FL_KEEP_SIZE`): later writes there need no new blocks, so
/// they succeed on a disk that filled up in between.
pub fn reserve(file: &File, offset: u64, len: u64) {
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return;
    };
    if len == 0 {
        return;
    }
    // SAFETY: fallocate only reads the descriptor number, which `file` keeps
    // open for the duration of the call; it touches no memory of ours.
    let _ = unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, offset, len) };
}
