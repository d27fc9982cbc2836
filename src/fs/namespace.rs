//! Names: lookup, create, mkdir, mknod, symlink, link, unlink, rmdir, rename,
//! readlink and directory listings. Names are encrypted per directory; the
//! backing tree mirrors the plaintext tree, so renames are backing renames.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use fuser::{FileAttr, FileType};

use super::{FsResult, Inner, Listed};
use crate::store::{is_internal_name, DIR_RECORD};
use crate::vault::names::BackingName;

impl Inner {
    /// The dir id of a backing directory (cached by inode).
    pub fn dir_id(&self, dir: &Path) -> FsResult<[u8; 16]> {
        let m = fs::symlink_metadata(dir).map_err(Inner::io_err)?;
        if !m.is_dir() {
            return Err(libc::ENOTDIR);
        }
        if let Some(id) = crate::lock(&self.dir_ids).get(&m.ino()) {
            return Ok(*id);
        }
        let id = match self.vault.read_dir_record(dir) {
            Ok(rec) => rec.dir_id,
            Err(crate::Error::NotFound(_)) if dir_is_empty(dir) && !self.vault.read_only => {
                // A crash between mkdir and writing the record: the dir is empty, so
                // giving it a fresh id loses nothing.
                self.vault
                    .write_dir_record(dir)
                    .map_err(|e| self.fail("directory record", e))?
            }
            Err(e) => return Err(self.fail(&format!("directory {}", self.display(dir)), e)),
        };
        crate::lock(&self.dir_ids).insert(m.ino(), id);
        Ok(id)
    }

    /// Backing name of `name` inside the directory at `dir`.
    pub fn backing_name(&self, dir: &Path, name: &OsStr) -> FsResult<BackingName> {
        if name.len() > crate::vault::names::MAX_NAME {
            return Err(libc::ENAMETOOLONG);
        }
        let id = self.dir_id(dir)?;
        self.vault.encrypt_name(&id, name).map_err(|_| libc::EINVAL)
    }

    pub fn child_path(&self, parent: u64, name: &OsStr) -> FsResult<(PathBuf, BackingName)> {
        let dir = self.path_of(parent)?;
        let bn = self.backing_name(&dir, name)?;
        Ok((dir.join(&bn.name), bn))
    }

    /// A new entry `name` in `parent`: its backing path, its directory and its
    /// backing name, with the long-name side file (if any) already written.
    pub fn new_entry(
        &self,
        parent: u64,
        name: &OsStr,
        op: &str,
    ) -> FsResult<(PathBuf, PathBuf, BackingName)> {
        let (path, bn) = self.child_path(parent, name)?;
        let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        self.vault
            .write_long_name(&dir, &bn)
            .map_err(|e| self.fail(op, e))?;
        Ok((path, dir, bn))
    }

    /// Stats `path` and registers it as inode of a kernel lookup.
    pub fn entry(&self, path: &Path) -> FsResult<FileAttr> {
        let m = fs::symlink_metadata(path).map_err(Inner::io_err)?;
        Ok(self.attr_of(self.register_entry(path, &m), &m))
    }

    /// Registers `path`, whose backing inode `m` describes, and returns its
    /// inode number.
    pub fn register_entry(&self, path: &Path, m: &fs::Metadata) -> u64 {
        let key = super::inodes::key_of(m);
        let mut inodes = crate::lock(&self.inodes);
        let ino = inodes.ino_for(key);
        inodes.remember(ino, key, path);
        ino
    }

    pub fn lookup(&self, parent: u64, name: &OsStr) -> FsResult<FileAttr> {
        let (path, _) = self.child_path(parent, name)?;
        self.entry(&path)
    }

    pub fn getattr(&self, ino: u64) -> FsResult<FileAttr> {
        let stat = self
            .path_of(ino)
            .and_then(|p| fs::symlink_metadata(&p).map_err(Inner::io_err));
        match stat {
            Ok(m) => Ok(self.attr_of(ino, &m)),
            Err(e) => {
                // Unlinked but still open: answer from the open content file.
                let st = crate::lock(&self.open).get(&ino).cloned().ok_or(e)?;
                let m = st
                    .file
                    .lock()
                    .unwrap()
                    .data_file()
                    .metadata()
                    .map_err(Inner::io_err)?;
                Ok(self.attr_of(ino, &m))
            }
        }
    }

    /// Gives a new backing entry to the requesting user (the daemon may run as root).
    pub fn chown_to(&self, path: &Path, uid: u32, gid: u32) {
        if nix_geteuid() == 0 {
            let _ = std::os::unix::fs::lchown(path, Some(uid), Some(gid));
        }
    }

    /// [`Inner::chown_to`] for an open file.
    pub fn chown_file(&self, file: &std::fs::File, uid: u32, gid: u32) {
        if nix_geteuid() == 0 {
            let _ = std::os::unix::fs::fchown(file, Some(uid), Some(gid));
        }
    }

    /// Records in the signed history that `name` in `dir` names `id` (or not).
    /// Done before the backing change, so a crash leaves the history ahead of
    /// the tree, which `verify` reports as an interrupted operation, not tampering.
    pub fn note_link(
        &self,
        id: Option<[u8; 16]>,
        dir: &Path,
        name: &OsStr,
        linked: bool,
    ) -> FsResult<()> {
        let Some(id) = id else { return Ok(()) };
        self.vault
            .record_link(id, dir, name, linked)
            .map_err(|e| self.fail("history log", e))
    }

    fn check_writable(&self) -> FsResult<()> {
        if self.vault.read_only {
            Err(libc::EROFS)
        } else {
            Ok(())
        }
    }

    pub fn mkdir(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> FsResult<FileAttr> {
        self.check_writable()?;
        let (path, dir, bn) = self.new_entry(parent, name, "mkdir")?;
        fs::create_dir(&path).map_err(Inner::io_err)?;
        if let Err(e) = self.vault.write_dir_record(&path) {
            let _ = fs::remove_dir(&path);
            return Err(self.fail("mkdir", e));
        }
        set_mode(&path, mode);
        self.chown_to(&path, uid, gid);
        self.note_link(self.vault.entry_id(&path), &dir, &bn.name, true)?;
        self.entry(&path)
    }

    pub fn mknod(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        rdev: u32,
        uid: u32,
        gid: u32,
    ) -> FsResult<FileAttr> {
        self.check_writable()?;
        let fmt = mode & libc::S_IFMT;
        if fmt == libc::S_IFREG {
            let (attr, fh) = self.create(parent, name, mode, uid, gid, libc::O_RDWR)?;
            let _ = self.release(fh);
            return Ok(attr);
        }
        if fmt != libc::S_IFIFO && fmt != libc::S_IFSOCK {
            // Device nodes inside an encrypted vault would bypass it entirely.
            return Err(libc::EPERM);
        }
        let (path, _, _) = self.new_entry(parent, name, "mknod")?;
        super::sys::mknod(&path, mode, rdev as u64).map_err(Inner::io_err)?;
        set_mode(&path, mode);
        self.chown_to(&path, uid, gid);
        self.entry(&path)
    }

    pub fn symlink(
        &self,
        parent: u64,
        name: &OsStr,
        target: &Path,
        uid: u32,
        gid: u32,
    ) -> FsResult<FileAttr> {
        self.check_writable()?;
        let enc = self
            .vault
            .encrypt_symlink(target.as_os_str())
            .map_err(|_| libc::ENAMETOOLONG)?;
        let (path, _, _) = self.new_entry(parent, name, "symlink")?;
        std::os::unix::fs::symlink(&enc, &path).map_err(Inner::io_err)?;
        self.chown_to(&path, uid, gid);
        self.entry(&path)
    }

    pub fn readlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        use std::os::unix::ffi::OsStrExt;
        let path = self.path_of(ino)?;
        let stored = fs::read_link(&path).map_err(Inner::io_err)?;
        let plain = self
            .vault
            .decrypt_symlink(stored.as_os_str())
            .map_err(|e| self.fail(&format!("symlink {}", self.display(&path)), e))?;
        Ok(plain.as_bytes().to_vec())
    }

    pub fn link(&self, ino: u64, newparent: u64, newname: &OsStr) -> FsResult<FileAttr> {
        self.check_writable()?;
        let src = self.path_of(ino)?;
        let (path, dir, bn) = self.new_entry(newparent, newname, "link")?;
        let id = self.vault.entry_id(&src);
        self.note_link(id, &dir, &bn.name, true)?;
        if let Err(e) = fs::hard_link(&src, &path) {
            let _ = self.note_link(id, &dir, &bn.name, false);
            return Err(Inner::io_err(e));
        }
        self.entry(&path)
    }

    /// Deletes a gone file's sidecar and journal, its inode freed by the reaper.
    fn remove_file_meta(&self, id: &[u8; 16]) {
        let held = self.reaper.hold(&self.vault.paths.sidecar(id));
        self.vault.remove_file_meta(id);
        self.reaper.release(held);
    }

    /// Marks the open state of a file whose last link is gone.
    fn detach(&self, backing: &fs::Metadata) {
        let ino = crate::lock(&self.inodes).ino_for(super::inodes::key_of(backing));
        let mut open = crate::lock(&self.open);
        if let Some(st) = open.get(&ino).cloned() {
            crate::lock(&st.file).detached = true;
            // Nobody has it open: pending data that could not be committed
            // (a full disk) has no name left to go to; drop it and its fd.
            if st.opens.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                open.remove(&ino);
            }
        }
    }

    pub fn unlink(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.check_writable()?;
        let (path, bn) = self.child_path(parent, name)?;
        let m = fs::symlink_metadata(&path).map_err(Inner::io_err)?;
        if m.is_dir() {
            return Err(libc::EISDIR);
        }
        // Read the file id before the name is gone.
        let entry_id = if m.is_file() {
            self.vault.read_file_id(&path).ok()
        } else {
            None
        };
        let id = entry_id.filter(|_| m.nlink() <= 1);
        let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        // The history first (a deletion drops every name of the file), so a
        // crash in between reads as an interrupted delete, not as tampering.
        match id {
            Some(id) => self
                .vault
                .record_delete(&id)
                .map_err(|e| self.fail("history log", e))?,
            None => self.note_link(entry_id, &dir, &bn.name, false)?,
        }
        // The last link's inode (and the sidecar's) die in the reaper, not here.
        let held = id.and_then(|_| self.reaper.hold(&path));
        if let Err(e) = fs::remove_file(&path) {
            let _ = self.note_link(entry_id, &dir, &bn.name, true);
            return Err(Inner::io_err(e));
        }
        self.reaper.release(held);
        if let Some(id) = id {
            // Unlinked but open: keep serving it from memory and the open fd.
            self.detach(&m);
            self.remove_file_meta(&id);
        }
        if bn.long.is_some() {
            self.vault.remove_long_name(&dir, &bn.name);
        }
        crate::lock(&self.inodes).unlink_path(&path);
        Ok(())
    }

    pub fn rmdir(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.check_writable()?;
        let (path, bn) = self.child_path(parent, name)?;
        let m = fs::symlink_metadata(&path).map_err(Inner::io_err)?;
        if !m.is_dir() {
            return Err(libc::ENOTDIR);
        }
        if !dir_is_empty(&path) {
            return Err(libc::ENOTEMPTY);
        }
        let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        let dir_id = self.vault.entry_id(&path);
        self.note_link(dir_id, &dir, &bn.name, false)?;
        remove_internal_files(&path);
        let record = path.join(DIR_RECORD);
        let saved =
            crate::store::read_limited(&record, crate::format::DIR.max_len, "directory record")
                .ok();
        let held = (self.reaper.hold(&record), self.reaper.hold(&path));
        let _ = fs::remove_file(&record);
        self.reaper.release(held.0);
        if let Err(e) = fs::remove_dir(&path) {
            // Someone created an entry meanwhile: put the record back.
            if let Some(bytes) = saved {
                let _ = fs::write(&record, bytes);
            }
            let _ = self.note_link(dir_id, &dir, &bn.name, true);
            return Err(Inner::io_err(e));
        }
        self.reaper.release(held.1);
        crate::lock(&self.dir_ids).remove(&m.ino());
        if bn.long.is_some() {
            self.vault.remove_long_name(&dir, &bn.name);
        }
        crate::lock(&self.inodes).unlink_path(&path);
        Ok(())
    }

    pub fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
    ) -> FsResult<()> {
        self.check_writable()?;
        let (from, from_bn) = self.child_path(parent, name)?;
        let (to, to_bn) = self.child_path(newparent, newname)?;
        let from_dir = from.parent().unwrap_or(Path::new("/")).to_path_buf();
        let to_dir = to.parent().unwrap_or(Path::new("/")).to_path_buf();
        let src_meta = fs::symlink_metadata(&from).map_err(Inner::io_err)?;
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        // The entry about to be replaced, if it is the last link of a file.
        let replaced = if exchange {
            None
        } else {
            fs::symlink_metadata(&to).ok()
        };
        if let Some(m) = &replaced {
            if m.ino() == src_meta.ino() {
                return Ok(()); // same file: POSIX says do nothing
            }
            if m.is_dir() && !src_meta.is_dir() {
                return Err(libc::EISDIR);
            }
            if !m.is_dir() && src_meta.is_dir() {
                return Err(libc::ENOTDIR);
            }
            if m.is_dir() && !dir_is_empty(&to) {
                return Err(libc::ENOTEMPTY);
            }
        }
        let replaced_id = replaced
            .as_ref()
            .filter(|m| m.is_file() && m.nlink() <= 1)
            .and_then(|_| self.vault.read_file_id(&to).ok());
        self.vault
            .write_long_name(&to_dir, &to_bn)
            .map_err(|e| self.fail("rename", e))?;
        if exchange {
            self.vault
                .write_long_name(&from_dir, &from_bn)
                .map_err(|e| self.fail("rename", e))?;
        }
        if let Some(m) = &replaced {
            if m.is_dir() {
                // An empty target directory still holds its record; remove it first.
                remove_internal_files(&to);
                let _ = fs::remove_file(to.join(DIR_RECORD));
            }
        }
        let from_id = self.vault.entry_id(&from);
        let to_id = replaced.as_ref().and_then(|_| self.vault.entry_id(&to));
        let to_id = if exchange {
            self.vault.entry_id(&to)
        } else {
            to_id
        };
        // All of the rename's history in one append (one write, one lock).
        let link = |id: Option<[u8; 16]>, dir: &Path, name: &OsStr, linked: bool| {
            id.map(|id| self.vault.link_event(id, dir, name, linked))
        };
        let mut events = vec![link(from_id, &from_dir, &from_bn.name, false)];
        events.push(match replaced_id {
            Some(id) => Some(Ok(crate::history::log::Event::FileDeleted { file_id: id })),
            None => link(to_id, &to_dir, &to_bn.name, false),
        });
        events.push(link(from_id, &to_dir, &to_bn.name, true));
        if exchange {
            events.push(link(to_id, &from_dir, &from_bn.name, true));
        }
        let events = events
            .into_iter()
            .flatten()
            .collect::<crate::Result<Vec<_>>>()
            .and_then(|events| self.vault.record_all(events));
        events.map_err(|e| self.fail("history log", e))?;
        let held = replaced_id.and_then(|_| self.reaper.hold(&to));
        let result = if flags != 0 {
            super::sys::renameat2(&from, &to, flags)
        } else {
            fs::rename(&from, &to)
        };
        if let Err(e) = result {
            let _ = self.note_link(from_id, &to_dir, &to_bn.name, false);
            let _ = self.note_link(from_id, &from_dir, &from_bn.name, true);
            if !exchange {
                let _ = self.note_link(to_id, &to_dir, &to_bn.name, true);
            }
            if let Some(m) = &replaced {
                if m.is_dir() && to.exists() && !to.join(DIR_RECORD).exists() {
                    let _ = self.vault.write_dir_record(&to);
                }
            }
            return Err(Inner::io_err(e));
        }
        self.reaper.release(held);
        if let Some(m) = &replaced {
            if m.is_file() {
                if let Some(id) = replaced_id {
                    self.detach(m);
                    self.remove_file_meta(&id);
                }
            }
            if m.is_dir() {
                crate::lock(&self.dir_ids).remove(&m.ino());
            }
        }
        if !exchange && from_bn.long.is_some() && (from_dir != to_dir || from_bn.name != to_bn.name)
        {
            self.vault.remove_long_name(&from_dir, &from_bn.name);
        }
        let mut inodes = crate::lock(&self.inodes);
        if exchange {
            let tmp = from.with_extension("coffer-exchange-tmp");
            let to_is_dir = fs::symlink_metadata(&from)
                .map(|m| m.is_dir())
                .unwrap_or(true);
            inodes.rename(&from, &tmp, src_meta.is_dir());
            inodes.rename(&to, &from, to_is_dir);
            inodes.rename(&tmp, &to, src_meta.is_dir());
        } else {
            inodes.rename(&from, &to, src_meta.is_dir());
        }
        Ok(())
    }

    /// A snapshot of a directory's entries, names decrypted.
    /// What `opendir` checks before handing out a handle: the directory is
    /// still there and its directory record verifies (listing waits for
    /// `readdir`).
    pub fn check_dir(&self, ino: u64) -> FsResult<()> {
        let dir = self.path_of(ino)?;
        self.dir_id(&dir).map(|_| ())
    }

    pub fn list_dir(&self, ino: u64) -> FsResult<Vec<Listed>> {
        let dir = self.path_of(ino)?;
        let id = self.dir_id(&dir)?;
        let dot = |name: &str| Listed {
            ino,
            kind: FileType::Directory,
            name: OsString::from(name),
            found: None,
        };
        let mut out = vec![dot("."), dot("..")];
        let rd = fs::read_dir(&dir).map_err(Inner::io_err)?;
        let mut files = 0;
        for entry in rd {
            let entry = entry.map_err(Inner::io_err)?;
            let backing = entry.file_name();
            if is_internal_name(std::os::unix::ffi::OsStrExt::as_bytes(backing.as_os_str())) {
                continue;
            }
            let name = match self.vault.decrypt_name(&dir, &id, &backing) {
                Ok(n) => n,
                Err(e) => {
                    log::error!(
                        "skipping entry {:?} in {}: {e} (added or renamed outside coffer?)",
                        backing,
                        self.display(&dir)
                    );
                    continue;
                }
            };
            let Ok(m) = entry.metadata() else { continue };
            let child = crate::lock(&self.inodes).ino_for(super::inodes::key_of(&m));
            files += usize::from(m.is_file());
            out.push(Listed {
                ino: child,
                kind: super::attr::kind_of(&m),
                name,
                found: Some((backing, m)),
            });
        }
        self.prefetch.listed(&dir, files);
        Ok(out)
    }

    /// The inode and attributes READDIRPLUS hands the kernel for a listed
    /// entry of directory `dir_ino` (at backing path `dir`; `.`/`..`: the
    /// directory's own, which the kernel ignores), and the backing key and
    /// path under which to count it as looked up once sent. The name is
    /// looked at again now: a listing is kept for the directory's later
    /// requests, and the entry may have been replaced since (then its new
    /// file goes out) or renamed away or removed (then it goes out with
    /// inode 0, which the kernel takes as "no attributes": it makes no
    /// dentry for a name that no longer exists).
    pub fn listed_attr(
        &self,
        dir_ino: u64,
        dir: &Path,
        e: &Listed,
    ) -> FsResult<(u64, FileAttr, CountAs)> {
        let Some((backing, listed)) = &e.found else {
            return Ok((e.ino, self.getattr(dir_ino)?, None));
        };
        let path = dir.join(backing);
        match fs::symlink_metadata(&path) {
            Ok(now) => {
                let key = super::inodes::key_of(&now);
                let ino = crate::lock(&self.inodes).ino_for(key);
                Ok((ino, self.attr_of(ino, &now), Some((key, path))))
            }
            Err(_) => Ok((0, self.attr_of(0, listed), None)),
        }
    }

    /// Counts a lookup of a listed entry the kernel received in a
    /// READDIRPLUS reply: the kernel now holds it, as after LOOKUP, and
    /// sends FORGET for it later.
    pub fn listed_sent(&self, ino: u64, key: super::inodes::BackingKey, path: &Path) {
        crate::lock(&self.inodes).remember(ino, key, path);
    }
}

/// The backing key and path under which a listed entry sent with its
/// attributes counts as looked up (none: not counted).
pub(crate) type CountAs = Option<(super::inodes::BackingKey, PathBuf)>;

/// Empty as seen through the mount: nothing but coffer's own bookkeeping.
fn dir_is_empty(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    match fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .all(|e| is_internal_name(e.file_name().as_bytes())),
        Err(_) => false,
    }
}

/// Removes coffer's bookkeeping files from an empty directory before rmdir.
fn remove_internal_files(dir: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_name() != DIR_RECORD {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777));
}

fn nix_geteuid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    // The daemon never changes its uid: look it up once, not on every create.
    static EUID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    // The owner of /proc/self is the effective uid; avoids another unsafe call.
    *EUID.get_or_init(|| {
        fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(u32::MAX)
    })
}
