//! Hints to the kernel: read-ahead (posix_fadvise) for long sequential scans
//! such as `coffer verify`, and block allocation up front for small files that
//! replace others, or reserved by `fallocate(2)` in the mount. Hints ignore
//! failures; `try_reserve` reports them. This is a libc edge of the store layer.

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
/// they succeed on a disk that filled up in between. A hint: failures are ignored.
pub fn reserve(file: &File, offset: u64, len: u64) {
    let _ = try_reserve(file, offset, len);
}

/// [`reserve`] for a caller that must report a full disk (`fallocate(2)` in
/// the mount). A file system that cannot allocate ahead (`EOPNOTSUPP`) is
/// not an error: there is nothing to reserve with, as on a plain write.
pub fn try_reserve(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(std::io::Error::from_raw_os_error(libc::EFBIG));
    };
    if len == 0 {
        return Ok(());
    }
    loop {
        // SAFETY: fallocate only reads the descriptor number, which `file`
        // keeps open for the duration of the call; it touches no memory of ours.
        let rc =
            unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, offset, len) };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EOPNOTSUPP) => return Ok(()),
            _ => return Err(err),
        }
    }
}
