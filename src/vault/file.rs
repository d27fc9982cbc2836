//! The encrypted content of one file, open for reading and writing.
//!
//! Writes go to an in-memory map of dirty chunks (plaintext) and are committed
//! together: new chunks are sealed with fresh random nonces, a new manifest is
//! signed, and the sidecar is replaced atomically. Chunks that overwrite
//! committed ones go through a redo journal first, so after a crash the file
//! reads as its old or its new version, never a mix (docs/FORMAT.md, "Commit").

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::Vault;
use crate::access::{self, AccessState};
use crate::crypto::{chunk, wrap, SecretKey};
use crate::error::{Error, Result};
use crate::format::data::{DataHeader, Layout};
use crate::format::{
    self, AccessChange, ChunkRef, EpochKeys, Journal, Manifest, Sidecar, Signed, FORMAT_VERSION,
};
use crate::history;
use crate::history::log::Event;
use crate::store::lock::FileLock;
use crate::store::{atomic_write, read_limited, Durability};

/// Commit automatically once this much plaintext is dirty (bounds memory).
pub const DIRTY_LIMIT: usize = 4 << 20;

/// What identifies a sidecar version on disk, to notice another mount's commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Stamp {
    ino: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    len: u64,
}

pub(super) fn stamp_of(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        ino: m.ino(),
        mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        // ctime cannot be set by users: a rewrite in place that restores the
        // mtime still changes it.
        ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
        len: m.len(),
    })
}

/// Committed state: what the sidecar on disk says, verified.
#[derive(Clone)]
pub(super) struct Committed {
    pub(super) sidecar: Sidecar,
    pub(super) manifest: Manifest,
    pub(super) access: AccessState,
    pub(super) stamp: Option<Stamp>,
}

pub struct OpenFile {
    pub file_id: [u8; 16],
    pub(super) layout: Layout,
    pub(super) data: File,
    pub(super) data_path: PathBuf,
    pub(super) writable: bool,
    pub(super) committed: Committed,
    pub(super) keys: HashMap<u32, SecretKey>,
    /// Working chunk list (committed entries plus placeholders for dirty ones).
    pub(super) chunks: Vec<Option<ChunkRef>>,
    pub(super) size: u64,
    pub(super) dirty: BTreeMap<u64, Vec<u8>>,
    pub(super) dirty_bytes: usize,
    /// Size set by truncate since the last commit (wins over a merge).
    pub(super) truncated_to: Option<u64>,
    /// Chunks from a journal of an interrupted commit (read-only mounts).
    pub(super) journal_overlay: HashMap<u64, Vec<u8>>,
    /// Unlinked while open: keep working in memory, write no sidecar.
    pub detached: bool,
    /// The next commit must sign a new manifest even without content changes.
    pub(super) force_commit: bool,
    /// Name for log lines (backing path relative to the tree).
    pub display: String,
}

impl std::fmt::Debug for OpenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpenFile({})", crate::crypto::hex(&self.file_id))
    }
}

impl OpenFile {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn is_dirty(&self) -> bool {
        self.force_commit || !self.dirty.is_empty() || self.size != self.committed.manifest.size
    }

    pub fn can_update(&self, vault: &Vault) -> bool {
        self.committed.access.can_update(&vault.me.member_id())
    }

    pub fn can_read(&self, vault: &Vault) -> bool {
        self.committed.access.can_read(&vault.me.member_id())
    }

    pub fn access(&self) -> &AccessState {
        &self.committed.access
    }

    pub fn manifest(&self) -> &Manifest {
        &self.committed.manifest
    }

    pub fn sidecar(&self) -> &Sidecar {
        &self.committed.sidecar
    }

    pub fn data_file(&self) -> &File {
        &self.data
    }

    /// Reads up to `len` bytes at `offset` (short at end of file).
    pub fn read(&mut self, offset: u64, len: usize) -> Result<Vec<u8>> {
        if offset >= self.size || len == 0 {
            return Ok(Vec::new());
        }
        let end = (offset + len as u64).min(self.size);
        let cs = self.layout.chunk_size();
        let mut out = Vec::with_capacity((end - offset) as usize);
        let mut pos = offset;
        while pos < end {
            let idx = pos / cs;
            let within = (pos % cs) as usize;
            let take = ((cs - within as u64).min(end - pos)) as usize;
            let plain = self.chunk_plain(idx)?;
            let avail = plain.len().saturating_sub(within).min(take);
            if avail > 0 {
                out.extend_from_slice(&plain[within..within + avail]);
            }
            // Bytes past a chunk's stored length (only possible inside holes) are zeros.
            out.resize(out.len() + (take - avail), 0);
            pos += take as u64;
        }
        Ok(out)
    }

    /// Plaintext of chunk `idx` as the file stands now (dirty or committed).
    fn chunk_plain(&self, idx: u64) -> Result<Vec<u8>> {
        if let Some(d) = self.dirty.get(&idx) {
            return Ok(d.clone());
        }
        self.load_committed_chunk(idx)
    }

    fn load_committed_chunk(&self, idx: u64) -> Result<Vec<u8>> {
        let want = self
            .layout
            .chunk_plain_len(self.committed.manifest.size, idx);
        let Some(Some(r)) = self.chunks.get(idx as usize).copied() else {
            return Ok(vec![0u8; want]);
        };
        let stored_len = want + chunk::OVERHEAD;
        let mut buf = vec![0u8; stored_len];
        let got = read_full_at(&self.data, &mut buf, self.layout.slot_offset(idx))
            .map_err(|e| Error::io(&self.data_path, e))?;
        let mut stored: &[u8] = &buf[..got];
        if got != stored_len || *blake3::hash(stored).as_bytes() != r.hash {
            match self.journal_overlay.get(&idx) {
                Some(j) if *blake3::hash(j).as_bytes() == r.hash => stored = j,
                _ => {
                    return Err(Error::integrity(format!(
                        "{}: chunk {idx} does not match the signed manifest (modified, truncated or rolled back)",
                        self.display
                    )))
                }
            }
        }
        let key = self.keys.get(&r.epoch).ok_or_else(|| {
            Error::AccessDenied(format!("{}: no key for epoch {}", self.display, r.epoch))
        })?;
        chunk::open(key, &self.file_id, r.epoch, idx, stored).ok_or_else(|| {
            Error::integrity(format!(
                "{}: chunk {idx} fails authentication",
                self.display
            ))
        })
    }

    pub(super) fn require_update(&self, vault: &Vault) -> Result<()> {
        if !self.writable || vault.read_only {
            return Err(Error::AccessDenied(format!(
                "{}: opened read-only",
                self.display
            )));
        }
        if !self.can_update(vault) {
            return Err(Error::AccessDenied(format!(
                "{}: you do not hold the update right",
                self.display
            )));
        }
        Ok(())
    }

    /// Makes chunk `idx` dirty (loading it first) and returns its buffer.
    pub(super) fn dirty_chunk(&mut self, idx: u64, load: bool) -> Result<&mut Vec<u8>> {
        if !self.dirty.contains_key(&idx) {
            let plain = if load {
                self.load_committed_chunk(idx)?
            } else {
                Vec::new()
            };
            self.dirty_bytes += self.layout.chunk_size() as usize;
            self.dirty.insert(idx, plain);
        }
        Ok(self.dirty.get_mut(&idx).expect("inserted above"))
    }

    /// Changes the logical size, keeping the boundary chunk consistent.
    fn set_size(&mut self, new_size: u64) -> Result<()> {
        let old = self.size;
        if new_size == old {
            return Ok(());
        }
        let cs = self.layout.chunk_size();
        if old % cs != 0 && old > 0 {
            // The old last chunk changes length either way: rewrite it.
            let idx = old / cs;
            if idx < self.layout.chunk_count(new_size) {
                self.dirty_chunk(idx, true)?;
            }
        }
        let count = self.layout.chunk_count(new_size);
        self.chunks.resize(count as usize, None);
        self.dirty.retain(|i, _| *i < count);
        if new_size % cs != 0 {
            let idx = new_size / cs;
            if let Some(buf) = self.dirty.get_mut(&idx) {
                buf.resize((new_size % cs) as usize, 0);
            } else if new_size < old {
                let buf = self.dirty_chunk(idx, true)?;
                buf.resize((new_size % cs) as usize, 0);
            }
        }
        self.size = new_size;
        Ok(())
    }

    pub fn write(&mut self, vault: &Vault, offset: u64, data: &[u8]) -> Result<()> {
        self.require_update(vault)?;
        if data.is_empty() {
            return Ok(());
        }
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| Error::BadInput("write past the largest file size".into()))?;
        if end > self.size {
            self.set_size(end)?;
        }
        let cs = self.layout.chunk_size();
        let mut pos = offset;
        let mut src = data;
        while !src.is_empty() {
            let idx = pos / cs;
            let within = (pos % cs) as usize;
            let take = (cs as usize - within).min(src.len());
            let full_overwrite = within == 0 && take as u64 == cs.min(self.size - idx * cs);
            let buf = self.dirty_chunk(idx, !full_overwrite)?;
            if buf.len() < within + take {
                buf.resize(within + take, 0);
            }
            buf[within..within + take].copy_from_slice(&src[..take]);
            pos += take as u64;
            src = &src[take..];
        }
        if self.dirty_bytes >= DIRTY_LIMIT {
            self.commit(vault, Durability::Lazy)?;
        }
        Ok(())
    }

    pub fn truncate(&mut self, vault: &Vault, size: u64) -> Result<()> {
        self.require_update(vault)?;
        self.set_size(size)?;
        self.truncated_to = Some(size);
        Ok(())
    }

    /// Commits dirty chunks and size as a new signed content version.
    pub fn commit(&mut self, vault: &Vault, durability: Durability) -> Result<()> {
        if !self.is_dirty() {
            if durability == Durability::Sync {
                self.data
                    .sync_all()
                    .map_err(|e| Error::io(&self.data_path, e))?;
            }
            return Ok(());
        }
        self.require_update(vault)?;
        let _lock = FileLock::exclusive(&self.data).map_err(|e| Error::io(&self.data_path, e))?;
        if !self.detached {
            self.merge_concurrent_commit(vault)?;
        }
        let epoch = self.committed.access.epoch;
        let key = self.keys.get(&epoch).cloned().ok_or_else(|| {
            Error::AccessDenied(format!("{}: no key for the current epoch", self.display))
        })?;
        let size = self.size;
        let count = self.layout.chunk_count(size);
        let old_committed = &self.committed.sidecar.chunks;
        let mut journaled: Vec<(u64, Vec<u8>)> = Vec::new();
        // New chunks land where the committed version has nothing, so they are
        // written at once (before the commit point); runs of adjacent chunks go
        // out in one pwrite.
        let mut run: Vec<u8> = Vec::new();
        let mut run_start = 0u64;
        let mut run_next = u64::MAX;
        let data = &self.data;
        let data_path = &self.data_path;
        let flush_run = |run: &mut Vec<u8>, start: u64| -> Result<()> {
            if !run.is_empty() {
                data.write_all_at(run, start)
                    .map_err(|e| Error::io(data_path, e))?;
                run.clear();
            }
            Ok(())
        };
        let dirty = std::mem::take(&mut self.dirty);
        for (idx, mut plain) in dirty {
            if idx >= count {
                continue;
            }
            plain.resize(self.layout.chunk_plain_len(size, idx), 0);
            if plain.iter().all(|b| *b == 0) {
                // An all-zero chunk is stored as a hole: no crypto, no bytes.
                self.chunks[idx as usize] = None;
                continue;
            }
            let stored = chunk::seal(&key, &self.file_id, epoch, idx, &plain);
            self.chunks[idx as usize] = Some(ChunkRef {
                epoch,
                hash: *blake3::hash(&stored).as_bytes(),
            });
            let overwrites = matches!(old_committed.get(idx as usize), Some(Some(_)));
            if overwrites {
                journaled.push((idx, stored));
            } else {
                let at = self.layout.slot_offset(idx);
                if at != run_next || run.len() >= 1 << 20 {
                    flush_run(&mut run, run_start)?;
                    run_start = at;
                }
                run.extend_from_slice(&stored);
                run_next = at + stored.len() as u64;
            }
        }
        flush_run(&mut run, run_start)?;
        drop(run);
        self.dirty_bytes = 0;
        let mut key_commits = vec![(epoch, key.commitment(&self.file_id, epoch))];
        for c in self.chunks.iter().flatten() {
            if !key_commits.iter().any(|(e, _)| *e == c.epoch) {
                let k = self.keys.get(&c.epoch).ok_or_else(|| {
                    Error::AccessDenied(format!("{}: no key for epoch {}", self.display, c.epoch))
                })?;
                key_commits.push((c.epoch, k.commitment(&self.file_id, c.epoch)));
            }
        }
        let manifest = history::next_manifest(
            &vault.me,
            Some(&self.committed.sidecar.manifest),
            self.committed.manifest.version,
            self.file_id,
            self.layout.chunk_log2,
            size,
            &self.chunks,
            epoch,
            key_commits,
            self.committed.access.head,
        );
        let journal_path = vault.paths.journal(&self.file_id);
        let has_journal = !journaled.is_empty() && !self.detached;
        let journaled = if has_journal {
            let j = Journal {
                format_version: FORMAT_VERSION,
                file_id: self.file_id,
                manifest_hash: manifest.hash(),
                chunks: journaled,
            };
            atomic_write(
                &journal_path,
                &format::encode_file(format::JOURNAL, &j),
                durability,
            )?;
            j.chunks
        } else {
            journaled
        };
        let stored_len = self.layout.stored_len(size);
        let cur_len = self
            .data
            .metadata()
            .map_err(|e| Error::io(&self.data_path, e))?
            .len();
        if stored_len > cur_len {
            self.data
                .set_len(stored_len)
                .map_err(|e| Error::io(&self.data_path, e))?;
        }
        if durability == Durability::Sync {
            self.data
                .sync_data()
                .map_err(|e| Error::io(&self.data_path, e))?;
        }
        let mut sidecar = self.committed.sidecar.clone();
        sidecar.manifest = manifest;
        sidecar.chunks = self.chunks.clone();
        super::share::prune_epochs(&mut sidecar, epoch);
        // The commit point.
        if !self.detached {
            self.write_sidecar(vault, &sidecar, durability)?;
        }
        for (idx, stored) in &journaled {
            self.data
                .write_all_at(stored, self.layout.slot_offset(*idx))
                .map_err(|e| Error::io(&self.data_path, e))?;
        }
        if stored_len < cur_len {
            self.data
                .set_len(stored_len)
                .map_err(|e| Error::io(&self.data_path, e))?;
        }
        if durability == Durability::Sync {
            self.data
                .sync_data()
                .map_err(|e| Error::io(&self.data_path, e))?;
        }
        if has_journal {
            let _ = std::fs::remove_file(&journal_path);
        }
        let manifest = sidecar.manifest.decode_unverified()?;
        if !self.detached {
            vault.record(Event::ContentVersion {
                file_id: self.file_id,
                version: manifest.version,
                manifest_hash: sidecar.manifest.hash(),
                size: manifest.size,
            })?;
            vault.seen.observe(
                &self.file_id,
                super::seen::SeenFile {
                    version: manifest.version,
                    manifest_hash: sidecar.manifest.hash(),
                    access_len: sidecar.access.len() as u64,
                },
                &self.display,
            )?;
        }
        self.committed.manifest = manifest;
        self.committed.sidecar = sidecar;
        self.committed.stamp = stamp_of(&vault.paths.sidecar(&self.file_id));
        if !self.detached {
            // Taken under the data file's lock: the stamp is of our sidecar.
            vault.remember_verified(&self.file_id, &self.committed, &self.keys);
        }
        self.truncated_to = None;
        self.force_commit = false;
        self.journal_overlay.clear();
        Ok(())
    }

    pub(super) fn write_sidecar(
        &self,
        vault: &Vault,
        sidecar: &Sidecar,
        durability: Durability,
    ) -> Result<()> {
        let path = vault.paths.sidecar(&self.file_id);
        atomic_write(
            &path,
            &format::encode_file(format::SIDECAR, sidecar),
            durability,
        )
    }

    /// If another mount committed since we loaded, adopt its version as the base
    /// and re-apply our dirty chunks on top (one writer's version per chunk).
    pub(super) fn merge_concurrent_commit(&mut self, vault: &Vault) -> Result<()> {
        let path = vault.paths.sidecar(&self.file_id);
        let now = stamp_of(&path);
        if now == self.committed.stamp {
            return Ok(());
        }
        let fresh = load_committed(vault, &self.file_id, &self.display)?;
        if fresh.sidecar.manifest.hash() == self.committed.sidecar.manifest.hash() {
            self.committed.stamp = fresh.stamp;
            self.committed.access = fresh.access;
            self.committed.sidecar.access = fresh.sidecar.access;
            self.committed.sidecar.keys = fresh.sidecar.keys;
            return Ok(());
        }
        log::info!(
            "{}: merging a concurrent commit (version {})",
            self.display,
            fresh.manifest.version
        );
        let dirty = std::mem::take(&mut self.dirty);
        let max_written = dirty
            .iter()
            .map(|(i, b)| i * self.layout.chunk_size() + b.len() as u64)
            .max()
            .unwrap_or(0);
        let target = self
            .truncated_to
            .unwrap_or_else(|| fresh.manifest.size.max(max_written));
        self.size = fresh.manifest.size;
        self.chunks = fresh.sidecar.chunks.clone();
        self.committed = fresh;
        self.unlock_keys(vault)?;
        self.dirty_bytes = 0;
        self.set_size(target)?;
        for (idx, buf) in dirty {
            if idx < self.layout.chunk_count(self.size) {
                self.dirty_bytes += buf.len();
                self.dirty.insert(idx, buf);
            }
        }
        Ok(())
    }

    pub(super) fn unlock_keys(&mut self, vault: &Vault) -> Result<()> {
        self.keys = unwrap_keys(vault, &self.committed)?;
        Ok(())
    }

    /// Reloads the committed state if another mount changed it and nothing is dirty.
    pub fn refresh(&mut self, vault: &Vault) -> Result<bool> {
        if self.detached || self.is_dirty() {
            return Ok(false);
        }
        let now = stamp_of(&vault.paths.sidecar(&self.file_id));
        if now == self.committed.stamp {
            return Ok(false);
        }
        let fresh = load_committed(vault, &self.file_id, &self.display)?;
        self.size = fresh.manifest.size;
        self.chunks = fresh.sidecar.chunks.clone();
        self.committed = fresh;
        self.unlock_keys(vault)?;
        self.recover_journal(vault)?;
        Ok(true)
    }

    /// Rolls an interrupted commit forward from its journal.
    fn recover_journal(&mut self, vault: &Vault) -> Result<()> {
        let path = vault.paths.journal(&self.file_id);
        let bytes = match read_limited(&path, format::JOURNAL.max_len, "write journal") {
            Ok(b) => b,
            Err(Error::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let journal: Journal = match format::decode_file(format::JOURNAL, &bytes)
            .and_then(|j: Journal| format::check_version(j.format_version).map(|_| j))
        {
            Ok(j) => j,
            Err(e) => {
                log::warn!("{}: ignoring unreadable journal: {e}", self.display);
                return Ok(());
            }
        };
        if journal.file_id != self.file_id
            || journal.manifest_hash != self.committed.sidecar.manifest.hash()
        {
            // A journal of a commit that never reached its commit point.
            if self.writable && !vault.read_only {
                let _ = std::fs::remove_file(&path);
            }
            return Ok(());
        }
        for (idx, stored) in journal.chunks {
            let Some(Some(r)) = self.chunks.get(idx as usize) else {
                continue;
            };
            if *blake3::hash(&stored).as_bytes() != r.hash {
                continue;
            }
            if self.writable && !vault.read_only {
                self.data
                    .write_all_at(&stored, self.layout.slot_offset(idx))
                    .map_err(|e| Error::io(&self.data_path, e))?;
            } else {
                self.journal_overlay.insert(idx, stored);
            }
        }
        if self.writable && !vault.read_only {
            let want = self.layout.stored_len(self.size);
            let _ = self.data.set_len(want);
            let _ = self.data.sync_data();
            let _ = std::fs::remove_file(&path);
            log::info!(
                "{}: completed an interrupted commit from its journal",
                self.display
            );
        }
        Ok(())
    }
}

/// Creates `path` holding `header`, atomically and exclusively: the header is
/// written to a hidden temp file that is then hard-linked into place (fails with
/// EEXIST like O_EXCL), so a crash never leaves a content file without header.
fn create_with_header(path: &Path, mode: u32, header: &[u8]) -> std::io::Result<File> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".create.tmp.{}",
        crate::crypto::hex(&crate::crypto::random_bytes::<8>())
    ));
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(mode & 0o7777)
        .open(&tmp)?;
    // The daemon's umask must not change the mode the caller asked for.
    let linked = f
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777))
        .and_then(|_| f.write_all_at(header, 0))
        .and_then(|_| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    linked.map(|_| f)
}

fn read_full_at(f: &File, buf: &mut [u8], mut offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], offset) {
            Ok(0) => break,
            Ok(n) => {
                done += n;
                offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

pub(super) fn load_committed(
    vault: &Vault,
    file_id: &[u8; 16],
    display: &str,
) -> Result<Committed> {
    let path = vault.paths.sidecar(file_id);
    let stamp = stamp_of(&path);
    let bytes =
        read_limited(&path, format::SIDECAR.max_len + 4, "file sidecar").map_err(|e| match e {
            Error::NotFound(_) => {
                Error::integrity(format!("{display}: its sidecar metadata is missing"))
            }
            other => other,
        })?;
    let sidecar: Sidecar = format::decode_file(format::SIDECAR, &bytes)
        .map_err(|e| Error::integrity(format!("{display}: {e}")))?;
    format::check_version(sidecar.format_version)?;
    if &sidecar.file_id != file_id {
        return Err(Error::integrity(format!(
            "{display}: sidecar belongs to another file"
        )));
    }
    let access = access::replay(file_id, &sidecar.access, vault)
        .map_err(|e| Error::integrity(format!("{display}: {e}")))?;
    let manifest =
        history::verify_manifest(file_id, &sidecar.manifest, &sidecar.chunks, &access, vault)
            .map_err(|e| Error::integrity(format!("{display}: {e}")))?;
    vault.check_history_version(
        file_id,
        manifest.version,
        sidecar.access.len() as u64,
        display,
    )?;
    vault.seen.observe(
        file_id,
        super::seen::SeenFile {
            version: manifest.version,
            manifest_hash: sidecar.manifest.hash(),
            access_len: sidecar.access.len() as u64,
        },
        display,
    )?;
    Ok(Committed {
        sidecar,
        manifest,
        access,
        stamp,
    })
}

/// Unwraps every epoch key we can; checks each against the manifest's commitment.
pub(super) fn unwrap_keys(vault: &Vault, c: &Committed) -> Result<HashMap<u32, SecretKey>> {
    let mut keys = HashMap::new();
    if !c.access.can_read(&vault.me.member_id()) {
        return Ok(keys);
    }
    for ek in &c.sidecar.keys {
        if let Some(k) = ek
            .wraps
            .iter()
            .find(|w| w.recipient == vault.me.member_id())
            .and_then(|w| wrap::unwrap(w, &vault.me, &c.sidecar.file_id, ek.epoch))
        {
            history::check_key_commitment(&c.manifest, ek.epoch, &k)?;
            if let Some(sealed) = &ek.earlier {
                for (epoch, older) in
                    super::share::open_earlier(&k, &c.sidecar.file_id, ek.epoch, sealed)?
                {
                    history::check_key_commitment(&c.manifest, epoch, &older)?;
                    keys.entry(epoch).or_insert(older);
                }
            }
            keys.insert(ek.epoch, k);
        }
    }
    // The access list says we read this file: every epoch in use must open for
    // us. A damaged or stripped wrap is tampering, not a missing right.
    let needed =
        std::iter::once(c.access.epoch).chain(c.sidecar.chunks.iter().flatten().map(|r| r.epoch));
    for epoch in needed {
        if !keys.contains_key(&epoch) {
            return Err(Error::integrity(format!(
                "the key of epoch {epoch} is not readable by {}, a reader on the signed access list \
                 (wrap removed or damaged)",
                vault.me.member_id()
            )));
        }
    }
    Ok(keys)
}

/// Verified sidecars by file id, so reopening an unchanged file skips the
/// signature checks and key unwrapping (the expensive part of an open).
#[derive(Default)]
pub struct VerifiedCache {
    entries: HashMap<[u8; 16], (Stamp, Committed, HashMap<u32, SecretKey>)>,
}

const VERIFIED_CACHE_MAX: usize = 4096;

impl Vault {
    /// `load_committed` + `unwrap_keys`, served from the cache when the sidecar
    /// is unchanged on disk (same inode, mtime, ctime and length).
    fn load_verified(
        &self,
        file_id: &[u8; 16],
        display: &str,
    ) -> Result<(Committed, HashMap<u32, SecretKey>)> {
        let stamp = stamp_of(&self.paths.sidecar(file_id));
        if let Some(stamp) = stamp {
            if let Some((s, c, k)) = crate::lock(&self.verified).entries.get(file_id) {
                if *s == stamp {
                    return Ok((c.clone(), k.clone()));
                }
            }
        }
        let committed = load_committed(self, file_id, display)?;
        let keys = unwrap_keys(self, &committed)?;
        if let Some(stamp) = committed.stamp {
            let mut cache = crate::lock(&self.verified);
            if cache.entries.len() >= VERIFIED_CACHE_MAX {
                cache.entries.clear();
            }
            cache
                .entries
                .insert(*file_id, (stamp, committed.clone(), keys.clone()));
        }
        Ok((committed, keys))
    }

    /// Caches a state this process just committed (and so need not verify when
    /// the file is next opened, until its sidecar changes on disk).
    pub(super) fn remember_verified(
        &self,
        file_id: &[u8; 16],
        committed: &Committed,
        keys: &HashMap<u32, SecretKey>,
    ) {
        if let Some(stamp) = committed.stamp {
            let mut cache = crate::lock(&self.verified);
            if cache.entries.len() >= VERIFIED_CACHE_MAX {
                cache.entries.clear();
            }
            cache
                .entries
                .insert(*file_id, (stamp, committed.clone(), keys.clone()));
        }
    }

    /// Creates a new encrypted file at `backing` (which must not exist).
    pub fn create_file(&self, backing: &Path, mode: u32, display: String) -> Result<OpenFile> {
        if self.read_only {
            return Err(Error::AccessDenied("vault is mounted read-only".into()));
        }
        let file_id: [u8; 16] = crate::crypto::random_bytes();
        let me = self.me.member_id();
        // Files start with the grants their directory names (sharing a folder
        // shares what is put in it); members no longer in the vault are skipped.
        let defaults = backing.parent().and_then(|d| self.dir_defaults(d));
        let known = |ids: &[crate::crypto::MemberId]| -> Vec<crate::crypto::MemberId> {
            ids.iter()
                .filter(|m| **m != me && self.member(m).is_some())
                .copied()
                .collect()
        };
        let (readers, updaters) = match &defaults {
            Some(d) => (known(&d.readers), known(&d.updaters)),
            None => (vec![], vec![]),
        };
        let create = Signed::sign(
            &format::AccessEntry {
                file_id,
                seq: 0,
                prev: [0; 32],
                actor: me,
                time_unix: super::now_unix(),
                change: AccessChange::Create {
                    readers: readers.clone(),
                    updaters: updaters.clone(),
                },
            },
            &self.me,
        );
        let (readers_list, updaters_list) = (readers, updaters);
        let access_list = vec![create];
        // We just signed it: build the state without verifying our own signature.
        let access = access::state_after_create(
            &file_id,
            &access_list[0],
            &readers_list,
            &updaters_list,
            me,
        );
        let key = SecretKey::generate();
        let mut wraps = Vec::new();
        for reader in access.readers.keys() {
            let rec = self
                .member(reader)
                .ok_or_else(|| Error::BadInput(format!("reader {reader} is not a vault member")))?;
            wraps.push(wrap::wrap(&key, &rec.public, &file_id, 0)?);
        }
        let manifest = history::next_manifest(
            &self.me,
            None,
            0,
            file_id,
            self.chunk_log2(),
            0,
            &[],
            0,
            vec![(0, key.commitment(&file_id, 0))],
            access.head,
        );
        let sidecar = Sidecar {
            format_version: FORMAT_VERSION,
            file_id,
            access: access_list,
            keys: vec![EpochKeys {
                epoch: 0,
                wraps,
                earlier: None,
            }],
            manifest,
            chunks: vec![],
        };
        let sidecar_path = self.paths.sidecar(&file_id);
        if let Some(dir) = sidecar_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        // Sidecar first: a crash leaves at worst an orphan sidecar, never a file without one.
        atomic_write(
            &sidecar_path,
            &format::encode_file(format::SIDECAR, &sidecar),
            Durability::Lazy,
        )?;
        let header = DataHeader {
            format_version: FORMAT_VERSION,
            chunk_log2: self.chunk_log2(),
            file_id,
        };
        let data = create_with_header(backing, mode, &header.encode()).map_err(|e| {
            let _ = std::fs::remove_file(&sidecar_path);
            Error::io(backing, e)
        })?;
        // Created, and bound to its name, in one append to the history, once the
        // entry exists: a create that fails (EEXIST) or crashes before this point
        // leaves nothing in the history that verify would miss.
        let mut events = vec![Event::FileCreated { file_id }];
        if let (Some(parent), Some(name)) = (backing.parent(), backing.file_name()) {
            if let Ok(rec) = self.read_dir_record(parent) {
                let name = crate::history::log::name_tag(
                    &rec.dir_id,
                    std::os::unix::ffi::OsStrExt::as_bytes(name),
                );
                events.push(Event::Linked { id: file_id, name });
            }
        }
        self.record_all(events)?;
        let committed = Committed {
            manifest: sidecar.manifest.decode_unverified()?,
            sidecar,
            access,
            stamp: stamp_of(&sidecar_path),
        };
        let mut keys = HashMap::new();
        keys.insert(0, key);
        Ok(OpenFile {
            file_id,
            layout: self.layout(),
            data,
            data_path: backing.to_path_buf(),
            writable: true,
            committed,
            keys,
            chunks: vec![],
            size: 0,
            dirty: BTreeMap::new(),
            dirty_bytes: 0,
            truncated_to: None,
            journal_overlay: HashMap::new(),
            detached: false,
            force_commit: false,
            display,
        })
    }

    /// Reads the file id from a content file's header.
    pub fn read_file_id(&self, backing: &Path) -> Result<[u8; 16]> {
        let f = File::open(backing).map_err(|e| Error::io(backing, e))?;
        let mut h = [0u8; format::data::HEADER_LEN as usize];
        let n = read_full_at(&f, &mut h, 0).map_err(|e| Error::io(backing, e))?;
        Ok(DataHeader::decode(&h[..n])?.file_id)
    }

    /// Opens an existing encrypted file and verifies its metadata (Integrity
    /// error on any failure). Opening succeeds without the read right too (for
    /// `stat`-like uses and `verify`); check [`OpenFile::can_read`] before reading.
    pub fn open_file(&self, backing: &Path, display: String) -> Result<OpenFile> {
        self.open_file_mode(backing, display, !self.read_only)
    }

    /// Opens without writing anything back (no journal roll-forward, no trimming).
    pub fn open_file_readonly(&self, backing: &Path, display: String) -> Result<OpenFile> {
        self.open_file_mode(backing, display, false)
    }

    fn open_file_mode(&self, backing: &Path, display: String, writable: bool) -> Result<OpenFile> {
        let opened = OpenOptions::new().read(true).write(writable).open(backing);
        let (data, writable) = match opened {
            // A daemon that is not root cannot write a 0444 file: serve it read-only.
            Err(e) if writable && e.kind() == std::io::ErrorKind::PermissionDenied => (
                File::open(backing).map_err(|e| Error::io(backing, e))?,
                false,
            ),
            other => (other.map_err(|e| Error::io(backing, e))?, writable),
        };
        let mut h = [0u8; format::data::HEADER_LEN as usize];
        let n = read_full_at(&data, &mut h, 0).map_err(|e| Error::io(backing, e))?;
        let header = DataHeader::decode(&h[..n]).map_err(|e| match e {
            e @ Error::UnsupportedVersion { .. } => e,
            e => Error::integrity(format!("{display}: {e}")),
        })?;
        if header.chunk_log2 != self.chunk_log2() {
            return Err(Error::integrity(format!(
                "{display}: chunk size differs from the vault's"
            )));
        }
        // The entry must hold the file the signed history put under this name.
        self.check_binding(backing, &header.file_id, &display)?;
        let (committed, keys) = self.load_verified(&header.file_id, &display)?;
        let mut f = OpenFile {
            file_id: header.file_id,
            layout: self.layout(),
            data,
            data_path: backing.to_path_buf(),
            writable,
            size: committed.manifest.size,
            chunks: committed.sidecar.chunks.clone(),
            committed,
            keys,
            dirty: BTreeMap::new(),
            dirty_bytes: 0,
            truncated_to: None,
            journal_overlay: HashMap::new(),
            detached: false,
            force_commit: false,
            display,
        };
        f.recover_journal(self)?;
        if f.writable && !self.read_only && f.can_update(self) {
            // Trim chunks appended by a commit that never reached its commit point.
            let want = f.layout.stored_len(f.size);
            if f.data.metadata().map(|m| m.len() > want).unwrap_or(false) {
                let _ = f.data.set_len(want);
            }
        }
        Ok(f)
    }

    /// Records in the history that a file is being deleted (before its last
    /// name goes); drops all its name bindings.
    pub fn record_delete(&self, file_id: &[u8; 16]) -> Result<()> {
        self.record(Event::FileDeleted { file_id: *file_id })
    }

    /// Deletes the sidecar and journal of a file whose last link is gone.
    pub fn remove_file_meta(&self, file_id: &[u8; 16]) {
        self.seen.forget(file_id);
        let _ = std::fs::remove_file(self.paths.sidecar(file_id));
        let _ = std::fs::remove_file(self.paths.journal(file_id));
    }
}
