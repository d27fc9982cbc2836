//! Read-ahead across files. When a program opens a file in a directory the
//! mount has just listed, a background thread asks the kernel
//! (`posix_fadvise(WILLNEED)`) for the first blocks of the other files' content
//! files in that directory and then for their sidecars, so a program that opens
//! them one after another (`cat dir/*`, `tar c`, `grep -r`) finds both in the
//! page cache instead of waiting for two disk reads per file in turn. A listing
//! alone starts nothing: `rm -rf` and `ls -l` list but never open, and would
//! only pay for reads they do not need. Hints only: nothing read here is
//! trusted or kept; every open still reads and checks the sidecar and content.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Mutex;

use crate::format::data::{DataHeader, HEADER_LEN};
use crate::store::{advise, is_internal_name, VaultPaths};

/// Files of one directory hinted at most (its first entries).
const MAX_FILES: usize = 16_384;
/// Directories listed and not yet opened in that are remembered (a tree walk
/// has one pending listing per level).
const RECENT_DIRS: usize = 64;
/// Content files held open at once while their headers are read (a small
/// share of the daemon's descriptors: the reaper may hold a quarter).
const GROUP: usize = 64;
/// Bytes of each content file asked for: the header and the first two chunks.
const CONTENT_BYTES: u64 = 128 << 10;

pub struct Prefetcher {
    jobs: SyncSender<PathBuf>,
    /// Backing directories listed lately whose files nobody opened yet.
    listed: Mutex<VecDeque<PathBuf>>,
}

impl Prefetcher {
    /// Starts the background thread; it ends when the prefetcher is dropped.
    pub fn start(paths: VaultPaths) -> Prefetcher {
        // Two directories queued at most: an open that finds the queue full
        // hints nothing (the thread is behind; more hints would not help).
        let (jobs, rx) = sync_channel::<PathBuf>(2);
        let spawned = std::thread::Builder::new()
            .name("coffer-prefetch".into())
            .stack_size(64 << 10)
            .spawn(move || {
                for dir in rx {
                    hint(&paths, &files_in(&dir));
                }
            });
        if let Err(e) = spawned {
            log::debug!("no read-ahead across files: {e}");
        }
        Prefetcher {
            jobs,
            listed: Mutex::new(VecDeque::new()),
        }
    }

    /// The mount listed this backing directory (with `files` regular files).
    pub fn listed(&self, dir: &Path, files: usize) {
        if files < 2 {
            return; // nothing to overlap
        }
        let mut listed = crate::lock(&self.listed);
        if !listed.iter().any(|d| d == dir) {
            if listed.len() == RECENT_DIRS {
                listed.pop_front();
            }
            listed.push_back(dir.to_path_buf());
        }
    }

    /// A file (backing path) is being opened: the first open in a directory
    /// listed lately hints the rest of it.
    pub fn opening(&self, file: &Path) {
        let Some(dir) = file.parent() else { return };
        let mut listed = crate::lock(&self.listed);
        if let Some(i) = listed.iter().position(|d| d == dir) {
            let dir = listed.remove(i).expect("position is in range");
            drop(listed);
            // A busy thread drops the hint rather than make the open wait.
            let _ = self.jobs.try_send(dir);
        }
    }
}

/// The regular files of a backing directory but coffer's own (the directory
/// record, long-name side files, temporaries), at most [`MAX_FILES`].
fn files_in(dir: &Path) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| !is_internal_name(e.file_name().as_bytes()))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .take(MAX_FILES)
        .collect()
}

fn hint(paths: &VaultPaths, files: &[PathBuf]) {
    for group in files.chunks(GROUP) {
        // First every content file of the group (the reads are queued at
        // once and proceed in parallel), then each one's sidecar, named by the
        // file id in its header (by then mostly read).
        let opened: Vec<File> = group
            .iter()
            .filter_map(|p| crate::store::open_regular_read(p).ok())
            .inspect(|f| advise::will_need(f, 0, CONTENT_BYTES))
            .collect();
        for f in &opened {
            let mut h = [0u8; HEADER_LEN as usize];
            if f.read_exact_at(&mut h, 0).is_err() {
                continue;
            }
            let Ok(header) = DataHeader::decode(&h) else {
                continue;
            };
            if let Ok(sidecar) = crate::store::open_regular_read(&paths.sidecar(&header.file_id)) {
                advise::will_need(&sidecar, 0, 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Missing files, short files, files that are not content files, and a
    /// content file whose sidecar is there: each is hinted or skipped without
    /// an error or a panic, in groups larger than one.
    #[test]
    fn odd_entries_are_skipped_and_nothing_stays_open() {
        let dir = tempfile::tempdir().unwrap();
        let paths = VaultPaths::new(dir.path());
        let header = DataHeader {
            format_version: crate::format::FORMAT_VERSION,
            chunk_log2: 16,
            file_id: [7; 16],
        }
        .encode();
        let mut files = vec![dir.path().join("missing")];
        for (i, bytes) in [&b"short"[..], &[0u8; 64][..], &header[..]]
            .iter()
            .enumerate()
        {
            let p = dir.path().join(format!("f{i}"));
            std::fs::write(&p, bytes).unwrap();
            files.push(p);
        }
        std::fs::create_dir_all(paths.sidecar(&[7; 16]).parent().unwrap()).unwrap();
        std::fs::write(paths.sidecar(&[7; 16]), b"sidecar").unwrap();
        let many: Vec<PathBuf> = (0..50).flat_map(|_| files.iter().cloned()).collect();
        hint(&paths, &many);
        // Through the thread too: only an open in a listed directory starts
        // it, once per listing, and a full queue drops hints, never blocks.
        let p = Prefetcher::start(paths);
        for _ in 0..20 {
            p.listed(dir.path(), files.len());
            p.opening(&files[1]);
            assert!(crate::lock(&p.listed).is_empty());
            p.opening(&files[2]);
        }
        for i in 0..RECENT_DIRS + 5 {
            p.listed(&dir.path().join(format!("sub{i}")), 3);
        }
        assert_eq!(crate::lock(&p.listed).len(), RECENT_DIRS, "bounded");
        assert_eq!(files_in(dir.path()).len(), 3, "the regular files");
    }
}
