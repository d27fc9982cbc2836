//! Regular-file I/O. All handles of one inode share one `OpenFile` (so hard links,
//! mmap and several open fds see one state); it is committed on flush (close),
//! fsync, release and by the periodic flusher.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use fuser::{FileAttr, FopenFlags};

use super::setid::Caller;
use super::{FsResult, Handle, Inner, OpenState};
use crate::store::Durability;

/// The open flags of a new handle: the kernel's cache kept when the file is
/// unchanged, and no FLUSH at close for a handle that cannot write (a flush
/// has nothing to commit there, and coffer keeps no POSIX locks of its own):
/// one round trip fewer per read-only open.
pub(crate) fn fopen_flags(open_flags: i32, keep_cache: bool) -> FopenFlags {
    let acc = open_flags & libc::O_ACCMODE;
    let mut fl = FopenFlags::empty();
    if keep_cache {
        fl |= FopenFlags::FOPEN_KEEP_CACHE;
    }
    if acc != libc::O_WRONLY && acc != libc::O_RDWR {
        fl |= FopenFlags::FOPEN_NOFLUSH;
    }
    fl
}

impl Inner {
    /// Returns the shared state of an inode, opening the file if needed.
    fn open_state(&self, ino: u64, path: &Path) -> FsResult<Arc<OpenState>> {
        if let Some(st) = self.pin_existing(ino) {
            let mut f = crate::lock(&st.file);
            // Pick up another mount's commit if we hold nothing unwritten.
            let refreshed = f.refresh(&self.vault);
            drop(f);
            if let Err(e) = refreshed {
                self.unpin(ino, &st);
                return Err(self.fail(&format!("open {}", self.display(path)), e));
            }
            return Ok(st);
        }
        let file = match self.vault.open_file(path, self.display(path)) {
            Ok(f) => f,
            // A rename or unlink replaced or removed the file while it was being
            // opened (its record or binding changed under us): the inode is
            // gone, not tampered with.
            Err(e) if self.replaced(ino, path) => {
                log::warn!(
                    "open {}: replaced or removed while opening ({e}); ENOENT",
                    self.display(path)
                );
                return Err(libc::ENOENT);
            }
            Err(e) => return Err(self.fail(&format!("open {}", self.display(path)), e)),
        };
        // The path was looked up by name: a rename running at the same time may
        // have put another file there. Serving that file under this inode would
        // pair its bytes with the kernel's size and cache of the old one.
        let opened = file
            .data_file()
            .metadata()
            .map(|m| crate::lock(&self.inodes).ino_for(super::inodes::key_of(&m)));
        if opened.map_or(true, |opened| opened != ino) {
            log::debug!(
                "open {}: the name now holds another file (a concurrent rename); ENOENT",
                self.display(path)
            );
            return Err(libc::ENOENT);
        }
        let st = Arc::new(OpenState {
            file: Mutex::new(file),
            opens: 0.into(),
            executing: 0.into(),
        });
        let mut open = crate::lock(&self.open);
        let st = open.entry(ino).or_insert(st).clone();
        st.opens.fetch_add(1, Ordering::SeqCst);
        Ok(st)
    }

    /// The open state of `ino` if there is one, pinned: counted in `opens`
    /// under the map's lock, so that a release of its last handle (or the
    /// flusher) cannot drop it from the map between the lookup and the count
    /// (an open handle on a state no longer in the map would miss an unlink's
    /// detach). [`Inner::unpin`] undoes it.
    fn pin_existing(&self, ino: u64) -> Option<Arc<OpenState>> {
        let open = crate::lock(&self.open);
        let st = open.get(&ino).cloned()?;
        st.opens.fetch_add(1, Ordering::SeqCst);
        Some(st)
    }

    /// Drops one pin (an open handle, or a pin taken for one operation); the
    /// last drops the state unless it was pinned again meanwhile or data is
    /// pending for a file that still has a name (unwritten, or chunks its
    /// sidecar carries until the flusher settles them).
    fn unpin(&self, ino: u64, st: &Arc<OpenState>) {
        if st.opens.fetch_sub(1, Ordering::SeqCst) != 1 {
            return;
        }
        let mut open = crate::lock(&self.open);
        let keep = {
            let f = crate::lock(&st.file);
            (f.is_dirty() || f.has_pending()) && !f.detached
        };
        let same = open.get(&ino).is_some_and(|cur| Arc::ptr_eq(cur, st));
        if same && st.opens.load(Ordering::SeqCst) == 0 && !keep {
            open.remove(&ino);
        }
    }

    /// Whether `path` no longer names inode `ino`.
    fn replaced(&self, ino: u64, path: &Path) -> bool {
        match std::fs::symlink_metadata(path) {
            Ok(m) => crate::lock(&self.inodes).ino_for(super::inodes::key_of(&m)) != ino,
            Err(_) => true,
        }
    }

    pub fn open(&self, ino: u64, flags: i32, caller: &Caller) -> FsResult<(u64, FopenFlags)> {
        let path = self.path_of(ino)?;
        let acc = flags & libc::O_ACCMODE;
        let write = acc == libc::O_WRONLY || acc == libc::O_RDWR;
        if write && self.vault.read_only {
            return Err(libc::EROFS);
        }
        self.prefetch.opening(&path);
        let st = self.open_state(ino, &path)?;
        let checked = self.check_open(&st, ino, &path, flags, write);
        let checked = checked.and_then(|keep| {
            // Linux drops set-id bits on O_TRUNC by an unprivileged caller.
            if flags & libc::O_TRUNC != 0 && !caller.privileged() {
                self.drop_set_id_of(ino, crate::lock(&st.file).data_file(), caller)?;
            }
            Ok(keep)
        });
        let keep_cache = match checked {
            Ok(keep) => keep,
            Err(e) => {
                self.unpin(ino, &st);
                return Err(e);
            }
        };
        let exec = flags & super::FMODE_EXEC != 0;
        if exec {
            st.executing.fetch_add(1, Ordering::SeqCst);
        }
        let fh = self.new_handle(Handle::File {
            ino,
            state: st,
            write,
            append: flags & libc::O_APPEND != 0,
            exec,
        });
        Ok((fh, fopen_flags(flags, keep_cache)))
    }

    /// What `open` checks and does once the state is pinned: the rights the
    /// flags need, `O_TRUNC`; returns whether the kernel may keep its cache.
    fn check_open(
        &self,
        st: &OpenState,
        ino: u64,
        path: &Path,
        flags: i32,
        write: bool,
    ) -> FsResult<bool> {
        let keep_cache = {
            let f = crate::lock(&st.file);
            if !f.can_read(&self.vault) {
                log::info!(
                    "open {}: denied, {} holds no read right",
                    self.display(path),
                    self.vault.me.member_id()
                );
                return Err(libc::EACCES);
            }
            if write && !f.can_update(&self.vault) {
                log::info!("open {}: denied, no update right", self.display(path));
                return Err(libc::EACCES);
            }
            let version = f.sidecar().manifest.hash();
            let mut seen = crate::lock(&self.seen_versions);
            let same = seen.get(&ino) == Some(&version) && !f.is_dirty();
            seen.insert(ino, version);
            same
        };
        // Linux truncates on O_TRUNC even when opening read-only (the kernel has
        // checked write permission); that needs the update right.
        if flags & libc::O_TRUNC != 0 {
            // The kernel refuses to open a running program for writing
            // (ETXTBSY), but with atomic O_TRUNC it checks a read-only
            // O_TRUNC open only after this reply: truncating here would cut
            // the program under its running process (or a loading `execve`,
            // which then dies and lets the open succeed), where ext4 leaves
            // it whole.
            if st.executing.load(Ordering::SeqCst) > 0 {
                return Err(libc::ETXTBSY);
            }
            let mut f = crate::lock(&st.file);
            if !f.can_update(&self.vault) {
                return Err(libc::EACCES);
            }
            if self.vault.read_only {
                return Err(libc::EROFS);
            }
            let was_empty = f.size() == 0;
            f.truncate(&self.vault, 0)
                .map_err(|e| self.fail("truncate on open", e))?;
            if was_empty {
                // Nothing to commit, but O_TRUNC still marks mtime and ctime
                // (as ext4 does); best effort, the open itself succeeded.
                let _ = f.data_file().set_modified(std::time::SystemTime::now());
            }
        }
        Ok(keep_cache)
    }

    pub fn create(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        uid: u32,
        gid: u32,
        flags: i32,
    ) -> FsResult<(FileAttr, u64)> {
        if self.vault.read_only {
            return Err(libc::EROFS);
        }
        let (path, _, _) = self.new_entry(parent, name, "create")?;
        let file = self
            .vault
            .create_file(&path, mode, self.display(&path))
            .map_err(|e| self.fail(&format!("create {}", self.display(&path)), e))?;
        // Through the open descriptor: no path walks for a file we just made.
        self.chown_file(file.data_file(), uid, gid);
        let m = file.data_file().metadata().map_err(Inner::io_err)?;
        let ino = self.register_entry(&path, &m);
        let version = file.sidecar().manifest.hash();
        let st = Arc::new(OpenState {
            file: Mutex::new(file),
            opens: 1.into(),
            executing: 0.into(),
        });
        crate::lock(&self.open).insert(ino, st.clone());
        crate::lock(&self.seen_versions).insert(ino, version);
        let acc = flags & libc::O_ACCMODE;
        let write = acc == libc::O_WRONLY || acc == libc::O_RDWR;
        let fh = self.new_handle(Handle::File {
            ino,
            state: st,
            write,
            append: flags & libc::O_APPEND != 0,
            exec: false,
        });
        Ok((self.attr_of(ino, &m), fh))
    }

    fn file_handle(&self, fh: u64) -> FsResult<(u64, Arc<OpenState>, bool, bool)> {
        let h = self.handle(fh)?;
        let h = crate::lock(&h);
        match &*h {
            Handle::File {
                ino,
                state,
                write,
                append,
                ..
            } => Ok((*ino, state.clone(), *write, *append)),
            Handle::Dir { .. } => Err(libc::EISDIR),
        }
    }

    /// Reads with the file's lock held only to plan and, if needed, to
    /// finish (`OpenFile::plan_read`): the `pread` and the decryption of
    /// several requests for one file (the kernel's read-ahead) run at once.
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let (_, st, _, _) = self.file_handle(fh)?;
        let plan = {
            let mut f = crate::lock(&st.file);
            f.plan_read(offset, size as usize)
                .map_err(|e| self.fail(&format!("read {}", f.display), e))?
        };
        match plan.run().into_complete() {
            Ok(bytes) => Ok(bytes),
            Err(rest) => {
                let f = crate::lock(&st.file);
                f.finish_read(rest)
                    .map_err(|e| self.fail(&format!("read {}", f.display), e))
            }
        }
    }

    /// Writes `data` at `offset` (at the end for `O_APPEND`); `drops_set_id`
    /// is the caller when the kernel asks for the set-id bits to go first.
    pub fn write(
        &self,
        fh: u64,
        offset: u64,
        data: &[u8],
        drops_set_id: Option<&Caller>,
    ) -> FsResult<u32> {
        let (ino, st, write, append) = self.file_handle(fh)?;
        if !write {
            return Err(libc::EBADF);
        }
        let mut f = crate::lock(&st.file);
        if let Some(caller) = drops_set_id {
            self.drop_set_id_of(ino, f.data_file(), caller)?;
        }
        let at = if append { f.size() } else { offset };
        let display = f.display.clone();
        f.write(&self.vault, at, data)
            .map_err(|e| self.fail(&format!("write {display}"), e))?;
        Ok(data.len() as u32)
    }

    fn commit(&self, st: &OpenState, durability: Durability) -> FsResult<()> {
        let mut f = crate::lock(&st.file);
        if !f.is_dirty() && durability == Durability::Lazy {
            return Ok(());
        }
        let display = f.display.clone();
        f.commit(&self.vault, durability)
            .map_err(|e| self.fail(&format!("commit {display}"), e))
    }

    pub fn flush(&self, fh: u64) -> FsResult<()> {
        let (_, st, write, _) = self.file_handle(fh)?;
        // A new file with nothing written waits for release (or the flusher)
        // to write its first sidecar: shells open, dup2 and close before they
        // write, and committing there would write a sidecar twice.
        if write && crate::lock(&st.file).content_dirty() {
            self.commit(&st, Durability::Lazy)?;
        }
        Ok(())
    }

    /// fallocate(2): mode 0 makes the file at least `offset + length` long,
    /// `FALLOC_FL_KEEP_SIZE` leaves its size. Either way the content file's
    /// slots for the range get their blocks now, so writing there later does
    /// not fail for want of space (`ENOSPC` comes here instead). Punching or
    /// zeroing ranges, collapsing and inserting are not supported
    /// (`EOPNOTSUPP`): a chunk is sealed whole, so they would be writes.
    pub fn fallocate(&self, fh: u64, offset: u64, length: u64, mode: i32) -> FsResult<()> {
        let (_, st, write, _) = self.file_handle(fh)?;
        if !write {
            return Err(libc::EBADF);
        }
        if mode & !libc::FALLOC_FL_KEEP_SIZE != 0 {
            return Err(libc::EOPNOTSUPP);
        }
        if length == 0 {
            return Err(libc::EINVAL);
        }
        let end = offset.checked_add(length).ok_or(libc::EFBIG)?;
        let mut f = crate::lock(&st.file);
        if !f.can_update(&self.vault) {
            return Err(libc::EACCES);
        }
        let layout = self.vault.layout();
        let from = layout.slot_offset(offset / layout.chunk_size());
        let to = layout.stored_len(end);
        crate::store::advise::try_reserve(f.data_file(), from, to - from).map_err(Inner::io_err)?;
        if mode & libc::FALLOC_FL_KEEP_SIZE == 0 && end > f.size() {
            let display = f.display.clone();
            f.truncate(&self.vault, end)
                .map_err(|e| self.fail(&format!("fallocate {display}"), e))?;
        }
        Ok(())
    }

    /// SEEK_DATA / SEEK_HOLE (the kernel handles the other kinds of seek).
    pub fn lseek(&self, fh: u64, offset: i64, whence: i32) -> FsResult<i64> {
        let (_, st, _, _) = self.file_handle(fh)?;
        let want_data = match whence {
            libc::SEEK_DATA => true,
            libc::SEEK_HOLE => false,
            _ => return Err(libc::EINVAL),
        };
        let offset = u64::try_from(offset).map_err(|_| libc::ENXIO)?;
        let found = crate::lock(&st.file).next_data_or_hole(offset, want_data);
        found.map(|at| at as i64).ok_or(libc::ENXIO)
    }

    pub fn fsync(&self, fh: u64) -> FsResult<()> {
        let (_, st, _, _) = self.file_handle(fh)?;
        self.commit(&st, Durability::Sync)
    }

    pub fn release(&self, fh: u64) -> FsResult<()> {
        let h = crate::lock(&self.handles).remove(&fh);
        let Some(h) = h else { return Err(libc::EBADF) };
        let h = crate::lock(&h);
        let Handle::File {
            ino, state, exec, ..
        } = &*h
        else {
            return Ok(());
        };
        if *exec {
            state.executing.fetch_sub(1, Ordering::SeqCst);
        }
        let result = self.commit(state, Durability::Lazy);
        self.unpin(*ino, state);
        result
    }

    /// truncate(2) / ftruncate(2).
    pub fn set_size(&self, ino: u64, size: u64) -> FsResult<()> {
        if self.vault.read_only {
            return Err(libc::EROFS);
        }
        // Pinned for the call (an unlinked file's state is found by inode).
        let st = match self.pin_existing(ino) {
            Some(st) => st,
            None => self.open_state(ino, &self.path_of(ino)?)?,
        };
        let mut f = crate::lock(&st.file);
        let r = if !f.can_update(&self.vault) {
            Err(libc::EACCES)
        } else {
            let display = f.display.clone();
            f.truncate(&self.vault, size)
                .and_then(|()| f.commit(&self.vault, Durability::Lazy))
                .map_err(|e| self.fail(&format!("truncate {display}"), e))
        };
        drop(f);
        self.unpin(ino, &st);
        r
    }

    /// Commits pending data of an inode before its times are set explicitly.
    pub fn settle(&self, ino: u64) {
        let st = crate::lock(&self.open).get(&ino).cloned();
        if let Some(st) = st {
            let _ = self.commit(&st, Durability::Lazy);
        }
    }
}
