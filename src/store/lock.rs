//! Advisory whole-file locks (flock) that serialize commits of one file between
//! mounts on the same machine. This is the libc edge of the store layer.

use std::fs::File;
use std::os::fd::AsRawFd;

/// Holds an exclusive flock until dropped.
pub struct FileLock {
    file: File,
}

impl FileLock {
    /// Locks the open file description behind `file` (a duplicate descriptor is kept).
    pub fn exclusive(file: &File) -> std::io::Result<Self> {
        let file = file.try_clone()?;
        loop {
            // SAFETY: flock only reads the descriptor number, which `file` keeps open
            // for the lifetime of the guard.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(FileLock { file });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // SAFETY: as above; unlocking a descriptor we hold cannot violate memory safety.
        unsafe {
            libc::flock(self.file.as_raw_fd(), libc::LOCK_UN);
        }
    }
}
