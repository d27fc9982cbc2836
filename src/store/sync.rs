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
