//! The FUSE adapter: maps kernel requests onto the vault layer.
//!
//! - `inodes.rs`: inode numbers and the backing paths behind them
//! - `attr.rs`: backing `stat` → FUSE attributes (sizes from the chunk layout)
//! - `namespace.rs`: lookup, mkdir, unlink, rename, link, symlink, readdir
//! - `files.rs`: open, read, write, flush, fsync, truncate (shared per-inode state)
//! - `xattr.rs`: encrypted `user.*` extended attributes
//! - `setid.rs`: dropping set-user-ID/set-group-ID bits on write, truncate, chown
//! - `adapter.rs`: the `fuser::Filesystem` impl that turns results into replies
//! - `reaper.rs`: closes unlinked backing files off the request path
//! - `sys.rs`: the libc calls std lacks (the only `unsafe` in the adapter)

mod adapter;
mod attr;
mod files;
mod inodes;
mod namespace;
mod prefetch;
mod setid;
mod sys;
mod xattr;

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::vault::{OpenFile, Vault};

/// How to mount.
#[derive(Clone, Debug, Default)]
pub struct MountOptions {
    pub read_only: bool,
    pub allow_other: bool,
    /// Extra comma-separated FUSE options (`-o`), already split.
    pub extra: Vec<String>,
}

/// errno results inside the adapter.
pub(crate) type FsResult<T> = std::result::Result<T, i32>;

/// How long the kernel may cache names and attributes: short, so another mount's
/// changes show within a second.
pub(crate) const TTL: Duration = Duration::from_millis(500);

/// Committed bytes after which the flusher gives free memory back at once.
const TRIM_AFTER: usize = 8 << 20;

/// Per-inode shared state of an open regular file.
pub(crate) struct OpenState {
    pub file: Mutex<OpenFile>,
    pub opens: AtomicU64,
    /// Handles the kernel opened to execute the file (a running program, or
    /// an `execve` still loading it), see [`FMODE_EXEC`].
    pub executing: AtomicU64,
}

/// The kernel's `__FMODE_EXEC`, set in the flags of the FUSE `OPEN` it sends
/// for `execve`; the handle stays open while the program runs.
pub(crate) const FMODE_EXEC: i32 = 0x20;

pub(crate) enum Handle {
    File {
        ino: u64,
        state: Arc<OpenState>,
        write: bool,
        append: bool,
        /// Opened for `execve` (counted in [`OpenState::executing`]).
        exec: bool,
    },
    /// Listed at the first `readdir` (and again when read from the start), not
    /// at `opendir`: programs open directories only to `fsync` them (sqlite,
    /// after each journal it creates), and listing costs a `statx` and a name
    /// decryption per entry.
    Dir {
        ino: u64,
        entries: Option<Vec<Listed>>,
    },
}

/// One entry of a directory listing.
pub(crate) struct Listed {
    pub ino: u64,
    pub kind: fuser::FileType,
    pub name: std::ffi::OsString,
    /// The entry's backing name and `stat` at listing time, for READDIRPLUS
    /// (none for `.` and `..`, which the kernel does not look up).
    pub found: Option<(std::ffi::OsString, std::fs::Metadata)>,
}

pub(crate) struct Inner {
    pub vault: Arc<Vault>,
    pub inodes: Mutex<inodes::InodeTable>,
    pub open: Mutex<HashMap<u64, Arc<OpenState>>>,
    pub handles: Mutex<HashMap<u64, Arc<Mutex<Handle>>>>,
    pub next_fh: AtomicU64,
    /// Directory ids by backing directory inode.
    pub dir_ids: Mutex<HashMap<u64, [u8; 16]>>,
    /// Manifest hash each inode had at its last open, to keep the page cache.
    pub seen_versions: Mutex<HashMap<u64, [u8; 32]>>,
    /// Frees the inodes of unlinked backing files in the background.
    pub reaper: &'static crate::store::reaper::Reaper,
    /// Reads the files of listed directories ahead (hints only).
    pub prefetch: prefetch::Prefetcher,
    pub stop: AtomicBool,
    /// Notifications to the kernel (cache invalidation), set once mounted.
    pub kernel: std::sync::OnceLock<fuser::Notifier>,
}

impl Inner {
    pub fn path_of(&self, ino: u64) -> FsResult<PathBuf> {
        crate::lock(&self.inodes).path(ino).ok_or(libc::ENOENT)
    }

    /// The plaintext path of a backing path, for log lines and messages
    /// (falls back to the backing name where a component cannot be decrypted).
    pub fn display(&self, backing: &Path) -> String {
        let rel = self.vault.tree_relative(backing);
        let mut dir = self.vault.paths.tree();
        let mut out = String::new();
        for comp in rel.components() {
            let name = comp.as_os_str();
            let plain = self
                .dir_id(&dir)
                .ok()
                .and_then(|id| self.vault.decrypt_name(&dir, &id, name).ok())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| format!("<{}>", name.to_string_lossy()));
            out.push('/');
            out.push_str(&plain);
            dir.push(name);
        }
        if out.is_empty() {
            out.push('/');
        }
        out
    }

    /// Maps a library error to errno, logging integrity failures with the path.
    pub fn fail(&self, what: &str, e: Error) -> i32 {
        match &e {
            Error::Integrity { .. } | Error::Corrupt { .. } => {
                log::error!("EIO: integrity failure ({what}): {e}");
            }
            Error::Io { .. } => log::warn!("{what}: {e}"),
            Error::AccessDenied(_) => log::debug!("{what}: {e}"),
            Error::BeingCreated(_) => log::info!("EACCES ({what}): {e}"),
            _ => log::debug!("{what}: {e}"),
        }
        e.errno()
    }

    pub fn io_err(e: std::io::Error) -> i32 {
        e.raw_os_error().unwrap_or(libc::EIO)
    }

    pub fn new_handle(&self, h: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles
            .lock()
            .unwrap()
            .insert(fh, Arc::new(Mutex::new(h)));
        fh
    }

    pub fn handle(&self, fh: u64) -> FsResult<Arc<Mutex<Handle>>> {
        self.handles
            .lock()
            .unwrap()
            .get(&fh)
            .cloned()
            .ok_or(libc::EBADF)
    }

    /// Commits every open file with dirty data and settles pending chunks
    /// (at unmount).
    pub fn flush_all(&self) {
        self.commit_dirty(Duration::ZERO);
        self.vault.save_state();
    }

    /// Commits every open file with dirty data (the periodic flusher), and
    /// folds the pending chunks of files idle for `settle_after` into their
    /// content files; drops the state of closed files with nothing left.
    fn commit_dirty(&self, settle_after: Duration) {
        let states: Vec<(u64, Arc<OpenState>)> = self
            .open
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        for (ino, st) in states {
            let mut f = crate::lock(&st.file);
            if f.is_dirty() {
                if let Err(e) = f.commit(&self.vault, crate::store::Durability::Lazy) {
                    let _ = self.fail(&format!("background commit of inode {ino}"), e);
                }
            }
            if !f.has_pending() || f.idle_for().is_some_and(|t| t < settle_after) {
                continue;
            }
            if let Err(e) = f.settle_pending(&self.vault) {
                let _ = self.fail(&format!("settling pending chunks of inode {ino}"), e);
            }
            let done = !f.is_dirty() && !f.has_pending();
            drop(f);
            if done && st.opens.load(Ordering::SeqCst) == 0 {
                let mut open = crate::lock(&self.open);
                let same = open.get(&ino).is_some_and(|cur| Arc::ptr_eq(cur, &st));
                if same && st.opens.load(Ordering::SeqCst) == 0 {
                    open.remove(&ino);
                }
            }
        }
    }
}

/// History entries appended since the last checkpoint from which the flusher
/// checkpoints on its next tick (0.4 s) rather than at the next ~5 s save.
const CHECKPOINT_BURST: u64 = 256;

/// How long a file goes without commits before the flusher folds the chunks
/// its sidecar carries into its content file (a database committing many
/// times a second keeps carrying them instead of paying a sync each time).
const SETTLE_AFTER: Duration = Duration::from_secs(1);

/// Sets up glibc's allocator for a long-running mount (one arena, large
/// buffers mapped): call before the process starts any thread.
pub fn tune_allocator() {
    sys::tune_allocator();
}

/// Mounts `vault` at `mountpoint` and serves until it is unmounted.
/// `on_ready` runs once the mount is live (the CLI uses it to release a waiting parent).
pub fn mount(
    vault: Vault,
    mountpoint: &Path,
    opts: &MountOptions,
    on_ready: Box<dyn FnOnce() + Send>,
) -> Result<()> {
    sys::tune_allocator();
    let tree = vault.paths.tree();
    let meta = std::fs::metadata(&tree).map_err(|e| Error::io(&tree, e))?;
    let read_only = opts.read_only || vault.read_only;
    let mut vault = vault;
    vault.read_only = read_only;
    // Its flusher folds pending chunks back into their content files.
    vault.carry_pending = true.into();
    let prefetch = prefetch::Prefetcher::start(vault.paths.clone());
    let inner = Arc::new(Inner {
        vault: Arc::new(vault),
        inodes: Mutex::new(inodes::InodeTable::new(tree.clone(), meta.ino())),
        open: Mutex::new(HashMap::new()),
        handles: Mutex::new(HashMap::new()),
        next_fh: AtomicU64::new(1),
        dir_ids: Mutex::new(HashMap::new()),
        seen_versions: Mutex::new(HashMap::new()),
        reaper: crate::store::reaper::start_global(),
        prefetch,
        stop: AtomicBool::new(false),
        kernel: std::sync::OnceLock::new(),
    });

    let mut options = vec![
        fuser::MountOption::FSName(format!("coffer:{}", inner.vault.paths.root.display())),
        fuser::MountOption::Subtype("coffer".into()),
        fuser::MountOption::DefaultPermissions,
    ];
    if read_only {
        options.push(fuser::MountOption::RO);
    }
    let mut acl = fuser::SessionACL::Owner;
    if opts.allow_other {
        acl = fuser::SessionACL::All;
    }
    for o in &opts.extra {
        match o.as_str() {
            "" | "rw" | "default_permissions" => {}
            "ro" => options.push(fuser::MountOption::RO),
            "allow_other" => acl = fuser::SessionACL::All,
            "allow_root" => acl = fuser::SessionACL::RootAndOwner,
            "noatime" => options.push(fuser::MountOption::NoAtime),
            "nodev" => options.push(fuser::MountOption::NoDev),
            "nosuid" => options.push(fuser::MountOption::NoSuid),
            "noexec" => options.push(fuser::MountOption::NoExec),
            "sync" => options.push(fuser::MountOption::Sync),
            other => options.push(fuser::MountOption::CUSTOM(other.to_string())),
        }
    }
    let mut config = fuser::Config::default();
    config.mount_options = options;
    config.acl = acl;
    config.n_threads = Some(4);
    config.clone_fd = true;

    let fs = adapter::CofferFs {
        inner: inner.clone(),
    };
    let session =
        fuser::Session::new(fs, mountpoint, &config).map_err(|e| Error::io(mountpoint, e))?;
    let _ = inner.kernel.set(session.notifier());

    // Background commits so other mounts see data written through long-open files.
    let flusher = {
        let inner = inner.clone();
        std::thread::spawn(move || {
            // Dirty data every 0.4 s (other mounts see it within a second); this
            // machine's state and a log checkpoint (both fsync'ed) every ~5 s.
            let mut tick = 0u32;
            let mut burst_checkpoints = true;
            while !inner.stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(400));
                inner.commit_dirty(SETTLE_AFTER);
                tick += 1;
                // The log is also checkpointed on every tick of a burst of
                // history entries: until the signed checkpoint covers them,
                // every other process (a `grant -r` run right after a copy)
                // checks each entry's signature again, ~50 us apiece.
                // After a failure (a full disk) only the ~5 s save tries again.
                if tick % 12 == 0 {
                    inner.vault.save_state();
                    burst_checkpoints = true;
                } else if burst_checkpoints
                    && inner.vault.unsigned_log_entries() >= CHECKPOINT_BURST
                {
                    burst_checkpoints = inner.vault.checkpoint_log();
                }
                // Give freed buffers back after a burst of commits, and now and
                // then for everything else (history windows, directory listings).
                if crate::vault::file::take_committed_bytes() >= TRIM_AFTER || tick % 12 == 0 {
                    let started = std::time::Instant::now();
                    sys::release_free_memory();
                    log::debug!("returned free memory in {:?}", started.elapsed());
                }
            }
        })
    };
    let background = session.spawn().map_err(|e| Error::io(mountpoint, e))?;
    on_ready();
    let result = background.join();
    inner.stop.store(true, Ordering::Relaxed);
    inner.flush_all();
    inner.reaper.stop();
    let _ = flusher.join();
    result.map_err(|e| Error::io(mountpoint, e))
}
