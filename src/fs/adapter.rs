//! The `fuser::Filesystem` implementation: unpacks requests, calls the adapter
//! methods (which return errno on failure) and turns results into replies.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, IoctlFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLseek, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use super::setid::Caller;
use super::{sys, Handle, Inner, TTL};

pub struct CofferFs {
    pub(crate) inner: Arc<Inner>,
}

fn errno(e: i32) -> Errno {
    Errno::from_i32(e)
}

fn time_spec(t: Option<TimeOrNow>) -> sys::TimeSpec {
    match t {
        None => None,
        Some(TimeOrNow::Now) => Some(None),
        Some(TimeOrNow::SpecificTime(st)) => Some(Some(match st.duration_since(UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i64, d.subsec_nanos() as i64),
            Err(e) => (-(e.duration().as_secs() as i64), 0),
        })),
    }
}

impl Filesystem for CofferFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // fuser keeps one request buffer per thread, resident up to the largest
        // request: 256 KiB writes keep four of them at 1 MiB, and wrote 768 MiB
        // into a tmpfs vault as fast as 1 MiB writes did (docs/BENCHMARKS.md).
        let _ = config.set_max_write(256 << 10);
        let _ = config.set_max_readahead(1 << 20);
        // Drop cached pages when another mount changes a file (mtime/size move).
        let _ = config.add_capabilities(InitFlags::FUSE_AUTO_INVAL_DATA);
        let _ = config.add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC);
        let _ = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS);
        let _ = config.add_capabilities(InitFlags::FUSE_MAX_PAGES);
        // We drop set-id bits ourselves (setid.rs), so the kernel stops asking
        // for `security.capability` before every write: one round trip fewer
        // per write request.
        let _ = config.add_capabilities(InitFlags::FUSE_HANDLE_KILLPRIV_V2);
        // Listings with attributes where the kernel finds them useful
        // (it switches to plain READDIR for directories only listed).
        let _ = config
            .add_capabilities(InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO);
        Ok(())
    }

    fn destroy(&mut self) {
        self.inner.flush_all();
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.inner.lookup(parent.0, name) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        crate::lock(&self.inner.inodes).forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.inner.getattr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let inner = &self.inner;
        let result = (|| {
            if inner.vault.read_only {
                return Err(libc::EROFS);
            }
            if let Some(size) = size {
                inner.set_size(ino.0, size)?;
            }
            // A chown, or a truncate by an unprivileged caller, drops the
            // set-id bits (setid.rs), judged on the group before the chown as
            // Linux does, unless this request sets the mode itself. A request
            // that sets nothing fuser passes on is the kernel's own "drop the
            // set-id bits" (FATTR_KILL_SUIDGID, sent before a write by an
            // unprivileged caller and for `chown(-1, -1)`): doing it here puts
            // the new mode into the reply, so the kernel's cached mode is right.
            let caller = Caller::of(req);
            let chown = uid.is_some() || gid.is_some();
            let sets_nothing =
                size.is_none() && mode.is_none() && atime.is_none() && mtime.is_none() && !chown;
            let drops_set_id = chown || sets_nothing || (size.is_some() && !caller.privileged());
            if mode.is_none() && !drops_set_id && atime.is_none() && mtime.is_none() {
                return inner.getattr(ino.0);
            }
            let path = inner.path_of(ino.0)?;
            if mode.is_none() && drops_set_id {
                inner.drop_set_id_at(&path, &caller)?;
            }
            if let Some(mode) = mode {
                use std::os::unix::fs::PermissionsExt;
                let m = std::fs::symlink_metadata(&path).map_err(Inner::io_err)?;
                if !m.file_type().is_symlink() {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))
                        .map_err(Inner::io_err)?;
                }
            }
            if chown {
                std::os::unix::fs::lchown(&path, uid, gid).map_err(Inner::io_err)?;
            }
            if atime.is_some() || mtime.is_some() {
                // Pending data would move mtime again when committed: commit first.
                inner.settle(ino.0);
                sys::utimens(&path, time_spec(atime), time_spec(mtime)).map_err(Inner::io_err)?;
            }
            inner.getattr(ino.0)
        })();
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.inner.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        match self
            .inner
            .mknod(parent.0, name, mode & !umask, rdev, req.uid(), req.gid())
        {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        match self
            .inner
            .mkdir(parent.0, name, mode & !umask, req.uid(), req.gid())
        {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.inner.unlink(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.inner.rmdir(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        match self
            .inner
            .symlink(parent.0, link_name, target, req.uid(), req.gid())
        {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        match self
            .inner
            .rename(parent.0, name, newparent.0, newname, flags.bits())
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        match self.inner.link(ino.0, newparent.0, newname) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.inner.open(ino.0, flags.0, &Caller::of(req)) {
            Ok((fh, fl)) => reply.opened(FileHandle(fh), fl),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.inner.read(fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let drops_set_id = write_flags
            .contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID)
            .then(|| Caller::of(req));
        match self.inner.write(fh.0, offset, data, drops_set_id.as_ref()) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        match self.inner.flush(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        match self.inner.release(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        match self.inner.lseek(fh.0, offset, whence) {
            Ok(at) => reply.offset(at),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        match self.inner.fallocate(fh.0, offset, length, mode) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.inner.fsync(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.inner.check_dir(ino.0) {
            Ok(()) => {
                let fh = self.inner.new_handle(Handle::Dir {
                    ino: ino.0,
                    entries: None,
                });
                reply.opened(FileHandle(fh), FopenFlags::empty())
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let h = match self.listing(fh, offset) {
            Ok(h) => h,
            Err(e) => return reply.error(errno(e)),
        };
        let h = crate::lock(&h);
        let Handle::Dir { entries, .. } = &*h else {
            return reply.error(Errno::ENOTDIR);
        };
        let entries = entries.as_deref().unwrap_or_default();
        for (i, e) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(e.ino), (i + 1) as u64, e.kind, &e.name) {
                break;
            }
        }
        reply.ok()
    }

    /// READDIR with each entry's attributes: the kernel then needs no LOOKUP
    /// for the entries it lists (`ls -l`, `find`, `grep -r`, `tar c`), and the
    /// listing has the `stat` of every entry anyway.
    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: fuser::ReplyDirectoryPlus,
    ) {
        let h = match self.listing(fh, offset) {
            Ok(h) => h,
            Err(e) => return reply.error(errno(e)),
        };
        let h = crate::lock(&h);
        let Handle::Dir { ino: dir, entries } = &*h else {
            return reply.error(Errno::ENOTDIR);
        };
        let dir_path = match self.inner.path_of(*dir) {
            Ok(p) => p,
            Err(e) => return reply.error(errno(e)),
        };
        let entries = entries.as_deref().unwrap_or_default();
        for (i, e) in entries.iter().enumerate().skip(offset as usize) {
            let (ino, attr, found) = match self.inner.listed_attr(*dir, &dir_path, e) {
                Ok(found) => found,
                // The directory itself is gone (`.` has no attributes left).
                Err(e) => return reply.error(errno(e)),
            };
            let full = reply.add(
                INodeNo(ino),
                (i + 1) as u64,
                &e.name,
                &TTL,
                &attr,
                Generation(0),
            );
            if full {
                break;
            }
            if let Some((key, path)) = found {
                self.inner.listed_sent(ino, key, &path);
            }
        }
        reply.ok()
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        crate::lock(&self.inner.handles).remove(&fh.0);
        reply.ok()
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let r = self.inner.path_of(ino.0).and_then(|p| {
            crate::store::open_nonblocking(&p, std::fs::OpenOptions::new().read(true))
                .and_then(|f| f.sync_all())
                .map_err(Inner::io_err)
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match sys::statvfs(&self.inner.vault.paths.root) {
            Ok(s) => reply.statfs(
                s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, 255, s.frsize,
            ),
            Err(e) => reply.error(errno(Inner::io_err(e))),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        match self.inner.setxattr(ino.0, name, value, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.inner.getxattr(ino.0, name) {
            Ok(v) if size == 0 => reply.size(v.len() as u32),
            Ok(v) if v.len() > size as usize => reply.error(Errno::from_i32(libc::ERANGE)),
            Ok(v) => reply.data(&v),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.inner.listxattr(ino.0) {
            Ok(v) if size == 0 => reply.size(v.len() as u32),
            Ok(v) if v.len() > size as usize => reply.error(Errno::from_i32(libc::ERANGE)),
            Ok(v) => reply.data(&v),
            Err(e) => reply.error(errno(e)),
        }
    }

    /// No ioctls: ENOTTY, as a plain file answers. fuser's default also logs a
    /// warning per call, and every `isatty` on an open file (Python's `open`
    /// does one) would add a line to the daemon log.
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(errno(libc::ENOTTY));
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.inner.removexattr(ino.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self
            .inner
            .create(parent.0, name, mode & !umask, req.uid(), req.gid(), flags)
        {
            Ok((attr, fh)) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(fh),
                super::files::fopen_flags(flags, false),
            ),
            Err(e) => reply.error(errno(e)),
        }
    }
}

impl CofferFs {
    /// The directory handle `fh`, listed when read from the start (or first
    /// read at all).
    fn listing(&self, fh: FileHandle, offset: u64) -> Result<Arc<std::sync::Mutex<Handle>>, i32> {
        let h = self.inner.handle(fh.0)?;
        {
            let mut guard = crate::lock(&h);
            let Handle::Dir { ino, entries } = &mut *guard else {
                return Err(libc::ENOTDIR);
            };
            if offset == 0 || entries.is_none() {
                *entries = Some(self.inner.list_dir(*ino)?);
            }
        }
        Ok(h)
    }
}
