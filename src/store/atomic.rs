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

/// Reads a whole file, refusing files larger than `max` (hostile storage).
pub fn read_limited(path: &Path, max: usize, kind: &'static str) -> Result<Vec<u8>> {
    let f = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::NotFound(format!("{kind} not found: {}", path.display()))
        }
        _ => Error::io(path, e),
    })?;
    // Sized from the file's length: one read instead of a doubling series
    // from 32 bytes (a sidecar took seven `read` calls).
    let len = f.metadata().map_or(0, |m| m.len()).min(max as u64) as usize;
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
