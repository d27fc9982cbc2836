//! syncfs(2): make everything written to one filesystem durable in one call
//! (used after batch operations instead of one fsync per file).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

pub fn syncfs(path: &Path) -> std::io::Result<()> {
    let f = File::open(path)?;
    // SAFETY: syncfs only reads the descriptor number, which `f` keeps open.
    let rc = unsafe { libc::syncfs(f.as_raw_fd()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Starts writeback of a byte range of `f` without waiting for it
/// (sync_file_range with SYNC_FILE_RANGE_WRITE), so a long rewrite reaches the
/// disk while it runs and its final fdatasync has little left to wait for. A
/// hint only: durability still comes from the fsync that follows.
pub fn start_writeback(f: &File, offset: u64, len: u64) {
    // SAFETY: sync_file_range only reads the descriptor number, which the
    // borrowed `f` keeps open; the range is plain integers.
    let _ = unsafe {
        libc::sync_file_range(
            f.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
}
