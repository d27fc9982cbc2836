//! Atomic file replacement: write a temp file beside the target, optionally fsync
//! it, rename over the target, optionally fsync the directory. After a crash the
//! target holds the old or the new bytes, never a mix.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// fsync the file and its directory before returning (survives power loss).
    Sync,
    /// Rename without fsync: atomic against process crashes (kill -9), durable
    /// once the page cache is written back or the user calls fsync.
    Lazy,
}

pub fn atomic_write(path: &Path, bytes: &[u8], durability: Durability) -> Result<()> {
    atomic_write_parts(path, &[bytes], durability)
}

/// [`atomic_write`] of the concatenation of `parts`, written one after the
/// other (no copy into one buffer: a journal holds megabytes).
pub fn atomic_write_parts(path: &Path, parts: &[&[u8]], durability: Durability) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(
        ".{name}.tmp.{}",
        crate::crypto::hex(&crate::crypto::random_bytes::<6>())
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        super::advise::allocate(&f, parts.iter().map(|p| p.len() as u64).sum());
        for part in parts {
            f.write_all(part)?;
        }
        if durability == Durability::Sync {
            f.sync_all()?;
        }
        drop(f);
        // The replaced file's blocks are freed in the background (see reaper).
        let reaper = super::reaper::global();
        let replaced = reaper.and_then(|r| r.hold(path));
        fs::rename(&tmp, path)?;
        if let Some(r) = reaper {
            r.release(replaced);
        }
        if durability == Durability::Sync {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    result.map_err(|e: std::io::Error| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Creates `path`, which must not exist (`AlreadyExists` otherwise), holding
/// the concatenation of `parts`, so that no process or crash ever sees it
/// without them. The file is made unnamed (`O_TMPFILE`) and linked into place
/// once written: one directory change instead of a temp name created, linked
/// and removed. Where the backing filesystem has no `O_TMPFILE`, it falls
/// back to a hidden temp file hard-linked into place. Returns the file, open
/// for reading and writing.
pub fn create_new_with(
    path: &Path,
    mode: u32,
    parts: &[&[u8]],
    durability: Durability,
) -> std::io::Result<File> {
    create_new_then(path, mode, parts, durability, |_| Ok(()))
}

/// [`create_new_with`], calling `before_name` with the filled file just before
/// it gets its name: what must exist before anyone (or a crash) can see the
/// file, such as its record in the history or a lock on it. If it fails, the
/// file is never named.
pub fn create_new_then(
    path: &Path,
    mode: u32,
    parts: &[&[u8]],
    durability: Durability,
    before_name: impl FnOnce(&File) -> std::io::Result<()>,
) -> std::io::Result<File> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let unnamed = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(mode & 0o7777)
        .open(dir);
    let f = match unnamed {
        Ok(f) => {
            fill_new(&f, mode, parts, durability)?;
            before_name(&f)?;
            link_unnamed(&f, path)?;
            f
        }
        // No O_TMPFILE here (EOPNOTSUPP, EISDIR or EINVAL on older kernels
        // and some filesystems).
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
            ) =>
        {
            create_new_via_temp(path, mode, parts, durability, before_name)?
        }
        Err(e) => return Err(e),
    };
    if durability == Durability::Sync {
        File::open(dir)?.sync_all()?;
    }
    Ok(f)
}

/// Mode (the process umask must not change it), content, and the fsync of a
/// file made by [`create_new_with`].
fn fill_new(f: &File, mode: u32, parts: &[&[u8]], durability: Durability) -> std::io::Result<()> {
    use std::os::unix::fs::{FileExt, PermissionsExt};
    if !open_keeps_mode(mode) {
        f.set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
    }
    let mut at = 0u64;
    for part in parts {
        f.write_all_at(part, at)?;
        at += part.len() as u64;
    }
    if durability == Durability::Sync {
        f.sync_all()?;
    }
    Ok(())
}

/// Whether `open(…, mode)` makes a file with exactly `mode`: no bit the
/// process umask takes away and no set-id or sticky bit (which `open` may
/// drop). Then the `fchmod` after it is skipped: one inode update less per
/// created file. The umask is read once; coffer never changes it.
fn open_keeps_mode(mode: u32) -> bool {
    static UMASK: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    let umask = UMASK.get_or_init(|| {
        let status = fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
        u32::from_str_radix(line.trim(), 8).ok()
    });
    matches!(umask, Some(u) if mode & 0o7000 == 0 && mode & u & 0o777 == 0)
}

/// Gives an `O_TMPFILE` file its name (fails with `AlreadyExists` if taken).
fn link_unnamed(f: &File, path: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    // linkat(AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH; the /proc link of the
    // descriptor, followed, does not.
    let from = std::ffi::CString::new(format!("/proc/self/fd/{}", f.as_raw_fd()))
        .map_err(std::io::Error::other)?;
    let to = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: both arguments are NUL-terminated strings that outlive the call;
    // linkat only reads them.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The fallback of [`create_new_with`]: a hidden temp file, filled, then
/// hard-linked into place (the caller syncs the directory).
fn create_new_via_temp(
    path: &Path,
    mode: u32,
    parts: &[&[u8]],
    durability: Durability,
    before_name: impl FnOnce(&File) -> std::io::Result<()>,
) -> std::io::Result<File> {
    let tmp = path.parent().unwrap_or(Path::new(".")).join(format!(
        ".create.tmp.{}",
        crate::crypto::hex(&crate::crypto::random_bytes::<8>())
    ));
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(mode & 0o7777)
        .open(&tmp)?;
    let linked = fill_new(&f, mode, parts, durability)
        .and_then(|_| before_name(&f))
        .and_then(|_| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    linked?;
    Ok(f)
}

/// Reads a whole file, refusing files larger than `max` (hostile storage).
pub fn read_limited(path: &Path, max: usize, kind: &'static str) -> Result<Vec<u8>> {
    let (f, meta) = super::open_regular_stat(path, OpenOptions::new().read(true)).map_err(|e| {
        match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::NotFound(format!("{kind} not found: {}", path.display()))
            }
            _ => Error::io(path, e),
        }
    })?;
    // Sized from the file's length: one read instead of a doubling series
    // from 32 bytes (a sidecar took seven `read` calls).
    let len = meta.len().min(max as u64) as usize;
    let mut out = Vec::with_capacity(len + 1);
    f.take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::io(path, e))?;
    if out.len() > max {
        return Err(Error::corrupt(
            kind,
            format!("{} is larger than the {max}-byte limit", path.display()),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        atomic_write(&p, b"one", Durability::Sync).unwrap();
        atomic_write(&p, b"two", Durability::Lazy).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn creates_new_files_whole_with_their_mode_and_never_replaces() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("new");
        // A umask must not change the mode asked for.
        let f = create_new_with(&p, 0o640, &[b"head", b"-body"], Durability::Sync).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"head-body");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        // The returned file is the named one, open for writing.
        std::os::unix::fs::FileExt::write_all_at(&f, b"H", 0).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"Head-body");
        let again = create_new_with(&p, 0o644, &[b"other"], Durability::Lazy);
        assert_eq!(
            again.map(|_| ()).unwrap_err().kind(),
            std::io::ErrorKind::AlreadyExists
        );
        assert_eq!(fs::read(&p).unwrap(), b"Head-body");
        // The fallback for filesystems without O_TMPFILE behaves the same.
        let q = dir.path().join("via-temp");
        create_new_via_temp(&q, 0o600, &[b"x"], Durability::Lazy, |_| Ok(())).unwrap();
        assert_eq!(fs::read(&q).unwrap(), b"x");
        assert_eq!(
            fs::metadata(&q).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(create_new_via_temp(&q, 0o600, &[b"y"], Durability::Lazy, |_| Ok(())).is_err());
        assert_eq!(fs::read(&q).unwrap(), b"x");
        // Bits the usual umask (022) takes, and set-id bits, are set all the
        // same (by the fchmod that open_keeps_mode then asks for).
        for (name, mode) in [("wide", 0o666), ("setgid", 0o2750)] {
            let r = dir.path().join(name);
            create_new_with(&r, mode, &[b"z"], Durability::Lazy).unwrap();
            assert_eq!(
                fs::metadata(&r).unwrap().permissions().mode() & 0o7777,
                mode,
                "{name}"
            );
        }
        // No temp names left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 4);
    }

    #[test]
    fn the_name_comes_after_before_name_and_not_at_all_if_it_fails() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        let f = create_new_then(&p, 0o600, &[b"head"], Durability::Lazy, |f| {
            // Filled, not yet named.
            assert!(!p.exists());
            assert_eq!(f.metadata()?.len(), 4);
            Ok(())
        })
        .unwrap();
        assert_eq!(f.metadata().unwrap().len(), 4);
        assert_eq!(fs::read(&p).unwrap(), b"head");
        let q = dir.path().join("y");
        let err = create_new_then(&q, 0o600, &[b"head"], Durability::Lazy, |_| {
            Err(std::io::Error::other("refused"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "refused");
        assert!(!q.exists());
        // Nothing left behind either (no temp name in the directory).
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x")]);
    }

    #[test]
    fn read_limit_is_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        fs::write(&p, vec![0u8; 11]).unwrap();
        assert!(read_limited(&p, 10, "test").is_err());
        assert_eq!(read_limited(&p, 11, "test").unwrap().len(), 11);
        assert!(matches!(
            read_limited(&dir.path().join("none"), 1, "t"),
            Err(Error::NotFound(_))
        ));
    }
}
