//! Deferred frees: before a file is unlinked or replaced by a rename (the FUSE
//! adapter's unlink, every atomic write), it is opened with `O_PATH` and that
//! descriptor goes to a background thread, which closes it. The inode then dies
//! (its blocks are freed) off the request path: on a backing filesystem mounted
//! with online discard each freed file costs a synchronous TRIM of a
//! millisecond or so, which otherwise every unlink and every sidecar update
//! waits for. Nothing about durability or crash safety changes: the name is
//! gone (or replaced) when the call returns, and after a crash the kernel drops
//! the orphaned inode.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Mutex;
use std::thread::JoinHandle;

static GLOBAL: std::sync::OnceLock<Reaper> = std::sync::OnceLock::new();

/// Starts (once) and returns the process-wide reaper that atomic writes and
/// the FUSE adapter share, so one bound holds for all held descriptors. Not
/// started on its own: a process that still has to fork (a background mount)
/// must not run threads yet; the daemon starts it once it serves, batch
/// commands at start.
pub fn start_global() -> &'static Reaper {
    GLOBAL.get_or_init(Reaper::start)
}

/// The process-wide reaper, if started.
pub fn global() -> Option<&'static Reaper> {
    GLOBAL.get()
}

pub struct Reaper {
    tx: Mutex<Option<SyncSender<File>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Most descriptors held at once: a quarter of the open-file limit, at most 4096,
/// so a long `rm -rf` cannot starve the daemon of descriptors. When the queue is
/// full the caller closes the file itself (the old, synchronous behaviour).
fn capacity() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the rlimit we pass and reads nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if rc != 0 {
        return 64;
    }
    ((lim.rlim_cur / 4) as usize).clamp(16, 4096)
}

impl Reaper {
    pub fn start() -> Reaper {
        let (tx, rx) = sync_channel::<File>(capacity());
        let thread = std::thread::Builder::new()
            .name("coffer-reaper".into())
            .stack_size(64 << 10)
            .spawn(move || {
                for f in rx {
                    drop(f);
                }
            })
            .ok();
        Reaper {
            tx: Mutex::new(thread.as_ref().map(|_| tx)),
            thread: Mutex::new(thread),
        }
    }

    /// Pins the inode at `path` (not following symlinks) across an unlink.
    pub fn hold(&self, path: &Path) -> Option<File> {
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
            .open(path)
            .ok()
    }

    /// Lets the background thread close `held` (or closes it now if the queue is full).
    pub fn release(&self, held: Option<File>) {
        let Some(f) = held else { return };
        let tx = crate::lock(&self.tx).clone();
        if let Some(tx) = tx {
            match tx.try_send(f) {
                Ok(()) => {}
                Err(TrySendError::Full(f)) | Err(TrySendError::Disconnected(f)) => drop(f),
            }
        }
    }

    /// Closes everything still queued and ends the thread (at unmount).
    pub fn stop(&self) {
        crate::lock(&self.tx).take();
        if let Some(t) = crate::lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn held_inode_outlives_unlink_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"data").unwrap();
        let r = Reaper::start();
        let held = r.hold(&p);
        let f = held.as_ref().unwrap();
        std::fs::remove_file(&p).unwrap();
        assert!(!p.exists());
        // The inode is still alive (link count 0) while we hold it.
        assert_eq!(f.metadata().unwrap().nlink(), 0);
        r.release(held);
        r.stop();
        // A release after stop closes at once instead of queueing.
        std::fs::write(&p, b"x").unwrap();
        let again = r.hold(&p);
        assert!(again.is_some());
        r.release(again);
        assert!(r.hold(&dir.path().join("missing")).is_none());
    }
}
