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
    pub fn setxattr(&self, ino: u64, name: &OsStr, value: &[u8], flags: i32) -> FsResult<()> {
        if self.vault.read_only {
            return Err(libc::EROFS);
        }
        if !is_user(name) {
            return Err(libc::ENOTSUP);
        }
        let path = self.path_of(ino)?;
        let bname = self
            .vault
            .encrypt_xattr_name(name)
            .map_err(|_| libc::ERANGE)?;
        let id = self.vault.entry_id(&path).ok_or(libc::ENOTSUP)?;
        let sealed = self.vault.seal_xattr_value(&id, name, value);
        sys::lsetxattr(&path, &bname, &sealed, flags).map_err(Inner::io_err)
    }

    pub fn getxattr(&self, ino: u64, name: &OsStr) -> FsResult<Vec<u8>> {
        if !is_user(name) {
            return Err(libc::ENODATA);
        }
        let path = self.path_of(ino)?;
        let bname = self
            .vault
            .encrypt_xattr_name(name)
            .map_err(|_| libc::ENODATA)?;
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
        if self.vault.read_only {
            return Err(libc::EROFS);
        }
        if !is_user(name) {
            return Err(libc::ENODATA);
        }
        let path = self.path_of(ino)?;
        let bname = self
            .vault
            .encrypt_xattr_name(name)
            .map_err(|_| libc::ENODATA)?;
        sys::lremovexattr(&path, &bname).map_err(Inner::io_err)
    }
}
