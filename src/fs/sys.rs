//! Thin wrappers over libc calls std does not offer (xattrs, utimensat, renameat2,
//! statvfs, mknod). This is the libc edge of the FUSE adapter; every `unsafe`
//! block of the adapter lives here.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub fn lsetxattr(path: &Path, name: &OsStr, value: &[u8], flags: i32) -> io::Result<()> {
    let (p, n) = (cpath(path)?, cstr(name)?);
    // SAFETY: p and n are NUL-terminated and live across the call; value is a valid
    // slice whose length is passed alongside.
    check(unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    })
}

pub fn lgetxattr(path: &Path, name: &OsStr) -> io::Result<Vec<u8>> {
    let (p, n) = (cpath(path)?, cstr(name)?);
    loop {
        // SAFETY: a null buffer with size 0 asks only for the value's length.
        let len = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
        if len < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; len as usize];
        // SAFETY: buf is writable for buf.len() bytes.
        let got =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if got < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ERANGE) {
                continue; // grew between the two calls
            }
            return Err(e);
        }
        buf.truncate(got as usize);
        return Ok(buf);
    }
}

pub fn llistxattr(path: &Path) -> io::Result<Vec<OsString>> {
    let p = cpath(path)?;
    loop {
        // SAFETY: a null buffer with size 0 asks only for the list's length.
        let len = unsafe { libc::llistxattr(p.as_ptr(), std::ptr::null_mut(), 0) };
        if len < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; len as usize];
        // SAFETY: buf is writable for buf.len() bytes.
        let got = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if got < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ERANGE) {
                continue;
            }
            return Err(e);
        }
        buf.truncate(got as usize);
        return Ok(buf
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| OsString::from_vec(s.to_vec()))
            .collect());
    }
}

pub fn lremovexattr(path: &Path, name: &OsStr) -> io::Result<()> {
    let (p, n) = (cpath(path)?, cstr(name)?);
    // SAFETY: both strings are NUL-terminated and outlive the call.
    check(unsafe { libc::lremovexattr(p.as_ptr(), n.as_ptr()) })
}

/// A time for `utimens`: `None` leaves it unchanged, `Some(None)` means now.
pub type TimeSpec = Option<Option<(i64, i64)>>;

fn timespec(t: TimeSpec) -> libc::timespec {
    match t {
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        Some(None) => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        Some(Some((s, ns))) => libc::timespec {
            tv_sec: s as libc::time_t,
            tv_nsec: ns as libc::c_long,
        },
    }
}

pub fn utimens(path: &Path, atime: TimeSpec, mtime: TimeSpec) -> io::Result<()> {
    let p = cpath(path)?;
    let times = [timespec(atime), timespec(mtime)];
    // SAFETY: p is NUL-terminated; times points at two initialized timespecs.
    check(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            p.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

pub fn renameat2(from: &Path, to: &Path, flags: u32) -> io::Result<()> {
    let (a, b) = (cpath(from)?, cpath(to)?);
    // SAFETY: both paths are NUL-terminated and outlive the call.
    check(unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    })
}

pub fn mknod(path: &Path, mode: u32, rdev: u64) -> io::Result<()> {
    let p = cpath(path)?;
    // SAFETY: p is NUL-terminated and outlives the call.
    check(unsafe { libc::mknod(p.as_ptr(), mode as libc::mode_t, rdev as libc::dev_t) })
}

pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub frsize: u32,
}

pub fn statvfs(path: &Path) -> io::Result<StatFs> {
    let p = cpath(path)?;
    // SAFETY: zeroed statvfs is a valid out-parameter; p is NUL-terminated.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; s is writable.
    check(unsafe { libc::statvfs(p.as_ptr(), &mut s) })?;
    Ok(StatFs {
        blocks: s.f_blocks as u64,
        bfree: s.f_bfree as u64,
        bavail: s.f_bavail as u64,
        files: s.f_files as u64,
        ffree: s.f_ffree as u64,
        bsize: s.f_bsize as u32,
        frsize: s.f_frsize as u32,
    })
}

/// Keeps the daemon's memory bounded under glibc: a fixed 1 MiB mmap threshold
/// (the dynamic threshold grows after the first large free, and freed
/// multi-MiB commit buffers then pile up in per-thread arenas: peak RSS 87 MiB
/// on a 256 MiB fio random-write job without it, 32 MiB with it), and one
/// arena instead of eight per core. With two, a commit's chunk buffers freed
/// in one arena could not serve the next commit running on a thread of the
/// other, so random writes kept two commits' worth resident (session 6: peak of
/// the suite-like sequence 37.4 MiB with two arenas, 32.9 with one; untar,
/// `tar c`, `grep -r`, sequential write and cold read unchanged within noise
/// in alternating runs, daemon CPU 10.8–11.1 s against 11.0–11.7 s).
pub fn tune_allocator() {
    // SAFETY: mallopt only adjusts allocator parameters; it is called before
    // the FUSE worker threads start, and an invalid value is rejected (returns 0).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Gives free heap memory back to the system: glibc keeps freed chunks
/// resident (only the top of each heap is trimmed on its own), so after a
/// burst of commits, whose 64 KiB chunk buffers land all over the heap, the
/// daemon would stay at its burst size. `malloc_trim` returns every free page,
/// inside the heaps too.
pub fn release_free_memory() {
    // SAFETY: malloc_trim takes the arenas' own locks and only returns whole
    // free pages (madvise); no pointer we hold is affected.
    unsafe {
        libc::malloc_trim(0);
    }
}
