//! `user.*` extended attributes, stored encrypted on the backing entry:
//! the name as `user.c.<SIV>` and the value sealed with XChaCha20-Poly1305.
//! Other namespaces are not supported (ENOTSUP), as on many FUSE filesystems.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use super::{sys, FsResult, Inner};

fn is_user(name: &OsStr) -> bool {
    name.as_bytes().starts_with(b"user.")
}

impl Inner {
    /// The backing path and backing xattr name of `name` on inode `ino`; a name
    /// outside `user.*` gives `not_user`.
    fn backing_xattr(
        &self,
        ino: u64,
        name: &OsStr,
        writes: bool,
        not_user: i32,
    ) -> FsResult<(std::path::PathBuf, std::ffi::OsString)> {
        if writes && self.vault.read_only {
            return Err(libc::EROFS);
        }
        if !is_user(name) {
            return Err(not_user);
        }
        let path = self.path_of(ino)?;
        // A name too long to encode: ERANGE when setting, absent when reading.
        let too_long = if writes { libc::ERANGE } else { libc::ENODATA };
        let bname = self.vault.encrypt_xattr_name(name).map_err(|_| too_long)?;
        Ok((path, bname))
    }

    pub fn setxattr(&self, ino: u64, name: &OsStr, value: &[u8], flags: i32) -> FsResult<()> {
        let (path, bname) = self.backing_xattr(ino, name, true, libc::ENOTSUP)?;
        let id = self.vault.entry_id(&path).ok_or(libc::ENOTSUP)?;
        let sealed = self.vault.seal_xattr_value(&id, name, value);
        sys::lsetxattr(&path, &bname, &sealed, flags).map_err(Inner::io_err)
    }

    pub fn getxattr(&self, ino: u64, name: &OsStr) -> FsResult<Vec<u8>> {
        let (path, bname) = self.backing_xattr(ino, name, false, libc::ENODATA)?;
        let sealed = sys::lgetxattr(&path, &bname).map_err(Inner::io_err)?;
        self.vault
            .open_xattr_value(
                &self.vault.entry_id(&path).ok_or(libc::ENODATA)?,
                name,
                &sealed,
            )
            .map_err(|e| self.fail(&format!("xattr of {}", self.display(&path)), e))
    }

    pub fn listxattr(&self, ino: u64) -> FsResult<Vec<u8>> {
        let path = self.path_of(ino)?;
        let names = sys::llistxattr(&path).map_err(Inner::io_err)?;
        let mut out = Vec::new();
        for n in names {
            if let Some(plain) = self.vault.decrypt_xattr_name(&n) {
                out.extend_from_slice(plain.as_bytes());
                out.push(0);
            }
        }
        Ok(out)
    }

    pub fn removexattr(&self, ino: u64, name: &OsStr) -> FsResult<()> {
        let (path, bname) = self.backing_xattr(ino, name, true, libc::ENODATA)?;
        sys::lremovexattr(&path, &bname).map_err(Inner::io_err)
    }
}
