//! Dropping set-user-ID and set-group-ID bits on write, truncate and chown.
//!
//! The mount asks the kernel for `FUSE_HANDLE_KILLPRIV_V2`: the kernel then
//! stops asking for `security.capability` (a GETXATTR round trip) before every
//! write, and leaves it to us to drop the set-id bits as a local filesystem
//! would. It flags writes by callers without `CAP_FSETID`; for truncate, chown
//! and `O_TRUNC` fuser does not pass the kernel's flag on, so the caller is
//! judged here from the request (uid 0 stands for `CAP_FSETID`).

use std::fs::{File, Permissions};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::{FsResult, Inner};

/// Who made the request that may drop the bits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

impl Caller {
    pub fn of(req: &fuser::Request) -> Caller {
        Caller {
            uid: req.uid(),
            gid: req.gid(),
            pid: req.pid(),
        }
    }

    /// Stands for `CAP_FSETID`, which the request does not carry.
    pub fn privileged(&self) -> bool {
        self.uid == 0
    }

    /// Whether the caller is in group `gid` (primary or supplementary group),
    /// or privileged. Read from /proc only for the rare set-group-ID file
    /// that is not group-executable; an unreadable list counts as "not in it",
    /// which drops the bit (the safe side).
    fn in_group_or_privileged(&self, gid: u32) -> bool {
        if self.privileged() || self.gid == gid {
            return true;
        }
        let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", self.pid)) else {
            return false;
        };
        status
            .lines()
            .find_map(|l| l.strip_prefix("Groups:"))
            .is_some_and(|groups| {
                groups
                    .split_whitespace()
                    .any(|g| g.parse::<u32>() == Ok(gid))
            })
    }
}

/// What Linux leaves of `mode` (the permission bits, `0o7777`) after a write or
/// truncate by an unprivileged caller, or a chown: set-user-ID goes;
/// set-group-ID goes when the file is group-executable or the caller is
/// neither in its group nor privileged (`setattr_should_drop_sgid`).
pub(crate) fn without_set_id(mode: u32, caller_in_group: bool) -> u32 {
    let mut m = mode & 0o7777 & !libc::S_ISUID;
    if m & libc::S_ISGID != 0 && (m & libc::S_IXGRP != 0 || !caller_in_group) {
        m &= !libc::S_ISGID;
    }
    m
}

/// The mode to set if `m` (a regular file) has set-id bits `caller` drops.
fn mode_to_set(m: &std::fs::Metadata, caller: &Caller) -> Option<u32> {
    if !m.file_type().is_file() || m.mode() & (libc::S_ISUID | libc::S_ISGID) == 0 {
        return None;
    }
    let keep = without_set_id(m.mode(), caller.in_group_or_privileged(m.gid()));
    (keep != m.mode() & 0o7777).then_some(keep)
}

impl Inner {
    /// Drops the set-id bits of inode `ino`'s open content file `file`, if it
    /// has any. Used where no attributes go back to the kernel (a write, an
    /// open with `O_TRUNC`), so the kernel is told to fetch them again.
    pub(crate) fn drop_set_id_of(&self, ino: u64, file: &File, caller: &Caller) -> FsResult<()> {
        let m = file.metadata().map_err(Inner::io_err)?;
        if let Some(keep) = mode_to_set(&m, caller) {
            file.set_permissions(Permissions::from_mode(keep))
                .map_err(Inner::io_err)?;
            if let Some(kernel) = self.kernel.get() {
                // Attributes only (offset < 0): takes no page locks, so it is
                // safe inside a request. Fails only for an inode the kernel
                // has already forgotten, which has nothing cached.
                let _ = kernel.inval_inode(fuser::INodeNo(ino), -1, 0);
            }
        }
        Ok(())
    }

    /// Drops the set-id bits of the regular file at backing `path`, if it has
    /// any (directories and symlinks keep theirs, as on Linux).
    pub(crate) fn drop_set_id_at(&self, path: &Path, caller: &Caller) -> FsResult<()> {
        let m = std::fs::symlink_metadata(path).map_err(Inner::io_err)?;
        if let Some(keep) = mode_to_set(&m, caller) {
            std::fs::set_permissions(path, Permissions::from_mode(keep)).map_err(Inner::io_err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::without_set_id;

    #[test]
    fn the_bits_linux_drops() {
        // set-user-ID always goes.
        assert_eq!(without_set_id(0o104755, true), 0o755);
        // set-group-ID goes with group execute ...
        assert_eq!(without_set_id(0o6775, true), 0o775);
        // ... or when the caller is not in the group, and stays otherwise.
        assert_eq!(without_set_id(0o2765, false), 0o765);
        assert_eq!(without_set_id(0o2765, true), 0o2765);
        // The sticky bit and plain modes are untouched.
        assert_eq!(without_set_id(0o1777, false), 0o1777);
        assert_eq!(without_set_id(0o644, false), 0o644);
    }
}
