//! Overwriting part of an existing file in place (a sidecar's older copy,
//! FORMAT.md "Sidecar copies"): no new inode, no rename, no directory sync.
//! The caller's format makes a cut-short write harmless; this module makes sure
//! the write lands only in the file the caller meant and that everyone who
//! compares the file's (inode, mtime, ctime, size) sees that it changed. This
//! is a libc edge of the store layer.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::Durability;

/// What identifies one version of a file on disk: every cache of verified
/// records, and every writer in place, compares it with the version it loaded.
/// ctime is part of it because no user can set it: a rewrite that restores the
/// mtime still changes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    ino: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    len: u64,
}

impl Stamp {
    pub fn of(m: &Metadata) -> Stamp {
        Stamp {
            ino: m.ino(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
            len: m.len(),
        }
    }

    /// The stamp of the file at `path` (following symlinks), if there is one.
    pub fn of_path(path: &Path) -> Option<Stamp> {
        std::fs::metadata(path).ok().map(|m| Stamp::of(&m))
    }
}

/// Writes `bytes` at `offset` of the regular file `path` if `accept` approves
/// its metadata (taken from the open descriptor, so it is the file written).
/// Returns the file's metadata after the write, or `None` if it declined: the
/// file is not a regular file of ours with one link (a symlink or hard link
/// planted in the vault must not redirect the write to another file), or
/// `accept` said no. Then nothing was written and the caller replaces the file
/// whole instead. A `Sync` write is on disk when this returns.
pub fn overwrite_at(
    path: &Path,
    offset: u64,
    bytes: &[u8],
    durability: Durability,
    accept: impl FnOnce(&Metadata) -> bool,
) -> io::Result<Option<Metadata>> {
    let file = match OpenOptions::new()
        .write(true)
        // O_NONBLOCK: a FIFO planted here must not block the open (see
        // `super::open_nonblocking`); without a reader it fails with ENXIO.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        // A symlink (ELOOP with O_NOFOLLOW), a FIFO, or not ours to write.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ELOOP) | Some(libc::EACCES) | Some(libc::ENXIO)
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let before = file.metadata()?;
    if !before.file_type().is_file()
        || before.nlink() != 1
        || (before.uid() != effective_uid() && effective_uid() != 0)
        || !accept(&before)
    {
        return Ok(None);
    }
    crash_point(&file, offset, bytes)?;
    file.write_all_at(bytes, offset)?;
    advance_mtime(&file, &before)?;
    if durability == Durability::Sync {
        file.sync_data()?;
    }
    file.metadata().map(Some)
}

/// Sets the mtime past both the one before the write and the one the write
/// set. The kernel stamps writes with a clock that may not tick between two
/// writes (and stamps the mtime before it copies the bytes), so without this a
/// reader could take the stamp of a half-written file for the finished one,
/// or two versions for one. Needs the file's owner, which `overwrite_at` checks.
fn advance_mtime(file: &File, before: &Metadata) -> io::Result<()> {
    let written = file.metadata()?;
    let ns = |secs: i64, nsec: i64| i128::from(secs) * 1_000_000_000 + i128::from(nsec);
    let next =
        ns(written.mtime(), written.mtime_nsec()).max(ns(before.mtime(), before.mtime_nsec())) + 1;
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: next.div_euclid(1_000_000_000) as libc::time_t,
            tv_nsec: next.rem_euclid(1_000_000_000) as libc::c_long,
        },
    ];
    // SAFETY: futimens reads the descriptor number, which `file` keeps open for
    // the call, and two timespecs from `times`, which outlives it.
    if unsafe { libc::futimens(file.as_raw_fd(), times.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid takes no arguments, touches no memory and cannot fail.
    unsafe { libc::geteuid() }
}

/// Test hook: with `COFFER_TEST_CRASH_IN_SIDECAR_COPY=N` in its environment a
/// process writes only the first N bytes of an in-place sidecar copy and then
/// aborts, as a `kill -9` inside the write would leave it. Like
/// [`super::crash_point`], it can only make the process that reads it stop early.
fn crash_point(file: &File, offset: u64, bytes: &[u8]) -> io::Result<()> {
    static CUT: std::sync::LazyLock<Option<usize>> = std::sync::LazyLock::new(|| {
        std::env::var("COFFER_TEST_CRASH_IN_SIDECAR_COPY")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if let Some(cut) = *CUT {
        file.write_all_at(&bytes[..cut.min(bytes.len())], offset)?;
        log::warn!("crash injected after {cut} bytes of a sidecar copy");
        std::process::abort();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_only_an_accepted_regular_file_and_always_moves_its_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, b"aaaaaaaa").unwrap();
        let before = std::fs::metadata(&path).unwrap();
        let mut last = (before.mtime(), before.mtime_nsec());
        for round in 0..20u8 {
            let after = overwrite_at(&path, 2, &[round; 3], Durability::Lazy, |_| true)
                .unwrap()
                .expect("written");
            let now = (after.mtime(), after.mtime_nsec());
            assert!(
                now > last,
                "mtime must move on every write, even within one clock tick"
            );
            last = now;
        }
        assert_eq!(std::fs::read(&path).unwrap(), b"aa\x13\x13\x13aaa");
        assert_eq!(before.ino(), std::fs::metadata(&path).unwrap().ino());

        assert!(overwrite_at(&path, 0, b"zz", Durability::Sync, |_| false)
            .unwrap()
            .is_none());
        // A symlink or a second hard link in the vault never redirects the write.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(overwrite_at(&link, 0, b"zz", Durability::Lazy, |_| true)
            .unwrap()
            .is_none());
        let hard = dir.path().join("hard");
        std::fs::hard_link(&path, &hard).unwrap();
        assert!(overwrite_at(&hard, 0, b"zz", Durability::Lazy, |_| true)
            .unwrap()
            .is_none());
        assert_eq!(std::fs::read(&path).unwrap(), b"aa\x13\x13\x13aaa");
        let missing = overwrite_at(&dir.path().join("none"), 0, b"z", Durability::Lazy, |_| {
            true
        });
        assert_eq!(missing.unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}
