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
        lock_exclusive(&file)?;
        Ok(FileLock { file })
    }
}

impl FileLock {
    /// Like [`FileLock::exclusive`], but `None` at once if another open file
    /// description holds a lock on the file.
    pub fn try_exclusive(file: &File) -> std::io::Result<Option<Self>> {
        let file = file.try_clone()?;
        loop {
            // SAFETY: as in `lock_exclusive`.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(Some(FileLock { file }));
            }
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EWOULDBLOCK) => return Ok(None),
                Some(libc::EINTR) => continue,
                _ => return Err(err),
            }
        }
    }
}

/// Waits for an exclusive flock on `file`'s open file description.
fn lock_exclusive(file: &File) -> std::io::Result<()> {
    loop {
        // SAFETY: flock only reads the descriptor number of a file the caller
        // holds open for the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// An exclusive flock on a descriptor the caller keeps open, released when
/// dropped: no duplicate descriptor (two syscalls less than [`FileLock`]) for
/// a lock taken and given back while the caller holds the file.
pub struct BorrowedLock<'a> {
    file: &'a File,
}

impl<'a> BorrowedLock<'a> {
    pub fn exclusive(file: &'a File) -> std::io::Result<Self> {
        lock_exclusive(file)?;
        Ok(BorrowedLock { file })
    }
}

impl Drop for BorrowedLock<'_> {
    fn drop(&mut self) {
        // SAFETY: as in `lock_exclusive`; `file` is borrowed for the guard's
        // lifetime, so it is still open here.
        unsafe {
            libc::flock(self.file.as_raw_fd(), libc::LOCK_UN);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_exclusive_fails_while_another_description_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"").unwrap();
        let a = File::open(&p).unwrap();
        let b = File::open(&p).unwrap();
        let held = FileLock::try_exclusive(&a).unwrap().expect("free lock");
        assert!(FileLock::try_exclusive(&b).unwrap().is_none());
        // The same description may lock again (a commit under a held create lock).
        drop(FileLock::exclusive(&a).unwrap());
        drop(held);
        assert!(FileLock::try_exclusive(&b).unwrap().is_some());
    }

    #[test]
    fn a_borrowed_lock_excludes_others_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"").unwrap();
        let a = File::open(&p).unwrap();
        let b = File::open(&p).unwrap();
        let held = BorrowedLock::exclusive(&a).unwrap();
        assert!(FileLock::try_exclusive(&b).unwrap().is_none());
        drop(held);
        assert!(FileLock::try_exclusive(&b).unwrap().is_some());
    }
}
