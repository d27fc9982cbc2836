//! Read-ahead across files. When the mount lists a directory, a background
//! thread asks the kernel (`posix_fadvise(WILLNEED)`) for the first blocks of
//! its files' content files and then for their sidecars, so a program that
//! opens them one after another (`cat dir/*`, `tar c`, `grep -r`) finds both in
//! the page cache instead of waiting for two disk reads per file in turn.
//! Hints only: nothing read here is trusted or kept; every open still reads
//! and checks the sidecar and content as before.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, SyncSender};

use crate::format::data::{DataHeader, HEADER_LEN};
use crate::store::{advise, VaultPaths};

/// Files of one listing hinted at most (a listing's first entries).
const MAX_FILES: usize = 16_384;
/// Content files held open at once while their headers are read (a small
/// share of the daemon's descriptors: the reaper may hold a quarter).
const GROUP: usize = 64;
/// Bytes of each content file asked for: the header and the first two chunks.
const CONTENT_BYTES: u64 = 128 << 10;

pub struct Prefetcher {
    jobs: SyncSender<Vec<PathBuf>>,
}

impl Prefetcher {
    /// Starts the background thread; it ends when the prefetcher is dropped.
    pub fn start(paths: VaultPaths) -> Prefetcher {
        // Two listings queued at most: a listing that finds the queue full
        // is not hinted (the thread is behind; more hints would not help).
        let (jobs, rx) = sync_channel::<Vec<PathBuf>>(2);
        let spawned = std::thread::Builder::new()
            .name("coffer-prefetch".into())
            .stack_size(64 << 10)
            .spawn(move || {
                for files in rx {
                    hint(&paths, &files);
                }
            });
        if let Err(e) = spawned {
            log::debug!("no read-ahead across files: {e}");
        }
        Prefetcher { jobs }
    }

    /// Hints the content files (backing paths) of a directory just listed.
    pub fn listed(&self, mut files: Vec<PathBuf>) {
        if files.len() < 2 {
            return; // nothing to overlap
        }
        files.truncate(MAX_FILES);
        let _ = self.jobs.try_send(files);
    }
}

fn hint(paths: &VaultPaths, files: &[PathBuf]) {
    for group in files.chunks(GROUP) {
        // First every content file of the group (the reads are queued at
        // once and proceed in parallel), then each one's sidecar, named by the
        // file id in its header (by then mostly read).
        let opened: Vec<File> = group
            .iter()
            .filter_map(|p| File::open(p).ok())
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
            if let Ok(sidecar) = File::open(paths.sidecar(&header.file_id)) {
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
        // Through the thread too: a full queue drops listings, never blocks.
        let p = Prefetcher::start(paths);
        for _ in 0..20 {
            p.listed(files.clone());
        }
    }
}
