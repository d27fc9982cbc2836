//! The encrypted content of one file, open for reading and writing.
//!
//! Writes go to an in-memory map of dirty chunks (plaintext) and are committed
//! together: new chunks are sealed with fresh random nonces, a new manifest is
//! signed, and the sidecar is replaced atomically. Chunks that overwrite
//! committed ones go through a redo journal first, so after a crash the file
//! reads as its old or its new version, never a mix (docs/FORMAT.md, "Commit").

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::Vault;
use crate::access::{self, AccessState};
use crate::crypto::{chunk, wrap, SecretKey};
use crate::error::{Error, Result};
use crate::format::data::{DataHeader, Layout};
use crate::format::{
    self, AccessChange, ChunkRef, EpochKeys, Journal, Manifest, PendingChunks, ResealJournal,
    Sidecar, Signed, FORMAT_VERSION,
};
use crate::history;
use crate::history::log::Event;
use crate::store::lock::FileLock;
use crate::store::{atomic_write, read_limited, Durability};

/// How long an open waits for a file another process is creating to get its
/// first sidecar (closed files get it at release, open ones from the mount's
/// flusher every 0.4 s).
const CREATION_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Commit automatically once this much plaintext is dirty (bounds memory).
/// Each commit rewrites the sidecar with the whole chunk list (34 bytes per
/// chunk), so files of more than [`LARGE_FILE_CHUNKS`] chunks allow twice as
/// much. The price of the smaller limit: 4 KiB random writes into a 256 MiB
/// file ~12% slower than at 4 MiB, for ~2.5 MiB less peak memory (the daemon
/// target is 32 MiB). Sequential writes of new data do not wait for it (see
/// [`STREAM_AFTER`]).
pub const DIRTY_LIMIT: usize = 2 << 20;
const LARGE_FILE_CHUNKS: usize = 4096;

/// Whole new chunks (where the committed version has none: appended, or in a
/// hole) are sealed and written to their slots once this many bytes of them
/// are dirty, without a commit: a sequential write then holds half a MiB of
/// plaintext instead of four, and commits (each rewriting the sidecar with
/// the whole chunk list) follow time, not bytes.
const STREAM_AFTER: usize = 512 << 10;

/// Plaintext committed by this process since [`take_committed_bytes`] last ran.
static COMMITTED_BYTES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How much plaintext was committed since the last call (the mount gives
/// freed commit buffers back to the system after a burst).
pub fn take_committed_bytes() -> usize {
    COMMITTED_BYTES.swap(0, std::sync::atomic::Ordering::Relaxed)
}

/// What identifies a sidecar version on disk, to notice another mount's commit.
pub(super) use crate::store::inplace::Stamp;

pub(super) fn stamp_of(path: &Path) -> Option<Stamp> {
    Stamp::of_path(path)
}

/// Committed state: what the sidecar on disk says, verified.
#[derive(Clone)]
pub(super) struct Committed {
    pub(super) sidecar: Sidecar,
    pub(super) manifest: Manifest,
    pub(super) access: AccessState,
    pub(super) stamp: Option<Stamp>,
    /// Where the copy in force is, when the sidecar on disk (the one `stamp`
    /// names) is in layout 3: the next write overwrites the other copy.
    pub(super) copies: Option<format::copies::Copies>,
    /// Chunks the sidecar on disk carries for a durable commit whose slot
    /// writes may not be on disk yet (FORMAT.md, "Pending chunks"), as read:
    /// each counts only where its hash is the chunk list's.
    pub(super) pending: PendingChunks,
}

impl Committed {
    /// Signs the manifest of a new file's first version, made unsigned by
    /// `first_version`, before that version is written (a file closed or
    /// recovered empty); a no-op for any signed manifest.
    fn sign_first_manifest(&mut self, me: &crate::crypto::Identity) {
        if self.sidecar.manifest.signature.is_empty() {
            self.sidecar.manifest = Signed::sign(&self.manifest, me);
        }
    }

    /// The pending copy of chunk `idx`, if the sidecar carries a valid one.
    fn pending_chunk(&self, idx: u64) -> Option<&[u8]> {
        let Some(Some(r)) = self.sidecar.chunks.get(idx as usize) else {
            return None;
        };
        self.pending
            .iter()
            .find(|(i, c)| *i == idx && *blake3::hash(c).as_bytes() == r.hash)
            .map(|(_, c)| &c[..])
    }

    /// Every valid pending chunk (see [`Committed::pending_chunk`]).
    pub(super) fn valid_pending(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.pending.iter().filter_map(move |(i, c)| {
            let Some(Some(r)) = self.sidecar.chunks.get(*i as usize) else {
                return None;
            };
            (*blake3::hash(c).as_bytes() == r.hash).then_some((*i, &c[..]))
        })
    }
}

/// Most bytes of overwritten chunks a durable commit carries in its sidecar
/// instead of a separate journal (one file and two syncs fewer per `fsync`:
/// what databases pay per transaction). Larger commits use the journal.
pub(super) const PENDING_MAX: usize = 1 << 20;

/// The most room a first sidecar is given for its file's chunks as pending
/// chunks (see [`OpenFile::write_sidecar`]): small journals. It keeps the
/// capacity under 16 KiB, where a later small payload is still written in
/// place (`copies::Copies::next`), and a file that never gets a second
/// version holds copy 0 only (the rest of the file is not written).
const ROOM_FOR_OVERWRITES_MAX: usize = 12 << 10;

pub struct OpenFile {
    pub file_id: [u8; 16],
    pub(super) layout: Layout,
    pub(super) data: std::sync::Arc<File>,
    pub(super) data_path: PathBuf,
    pub(super) writable: bool,
    pub(super) committed: Committed,
    pub(super) keys: HashMap<u32, SecretKey>,
    /// Working chunk list (committed entries plus placeholders for dirty ones).
    pub(super) chunks: Vec<Option<ChunkRef>>,
    pub(super) size: u64,
    pub(super) dirty: BTreeMap<u64, Vec<u8>>,
    /// Dirty chunks whose committed bytes are not loaded yet: only these byte
    /// ranges of their `dirty` buffer were written. Loading is put off to the
    /// commit, which loads many chunks on several threads (a random small
    /// write then costs no read and decrypt of its chunk on the write path).
    pub(super) partial: HashMap<u64, Vec<(usize, usize)>>,
    pub(super) dirty_bytes: usize,
    /// Size set by truncate since the last commit (wins over a merge).
    pub(super) truncated_to: Option<u64>,
    /// When content or size last changed with no commit since: the file's
    /// mtime and ctime until a commit moves the content file's.
    pub(super) modified_at: Option<std::time::SystemTime>,
    /// Chunks from a journal of an interrupted commit (read-only mounts).
    pub(super) journal_overlay: HashMap<u64, Vec<u8>>,
    /// The content file's slots hold `committed.pending` (this process wrote
    /// them), though perhaps not on disk yet.
    pub(super) pending_written: bool,
    /// When this process last committed the file (the flusher settles
    /// pending chunks a while after).
    pub(super) last_commit: Option<std::time::Instant>,
    /// New chunks sealed and written to free slots since the last commit
    /// (their references are in `chunks`; every one is a whole chunk). The
    /// next commit's manifest names them.
    pub(super) streamed: std::collections::BTreeSet<u64>,
    /// The content file's lock, held from the first streamed chunk to the
    /// commit that names them: no other commit may come between (it would
    /// not know those slots are taken).
    pub(super) stream_lock: Option<FileLock>,
    /// Unlinked while open: keep working in memory, write no sidecar.
    pub detached: bool,
    /// The next commit must sign a new manifest even without content changes.
    pub(super) force_commit: bool,
    /// The committed sidecar is known to be on disk (fsync'ed by its commit).
    pub(super) synced: bool,
    /// Created by this process and not committed yet: the sidecar exists only
    /// here until the first commit writes it (so a new file costs one sidecar
    /// inode, not a create-time one replaced at once). Holds the content
    /// file's flock meanwhile, which tells other processes the creation is
    /// live (FORMAT.md, "Created, not yet written").
    pub(super) pending_create: Option<FileLock>,
    /// Name for log lines (backing path relative to the tree).
    pub display: String,
}

impl std::fmt::Debug for OpenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpenFile({})", crate::crypto::hex(&self.file_id))
    }
}

impl OpenFile {
    /// A file state with nothing written yet on top of its committed version.
    #[allow(clippy::too_many_arguments)]
    fn new(
        vault: &Vault,
        file_id: [u8; 16],
        data: File,
        data_path: &Path,
        writable: bool,
        committed: Committed,
        keys: HashMap<u32, SecretKey>,
        display: String,
    ) -> OpenFile {
        OpenFile {
            file_id,
            layout: vault.layout(),
            data: std::sync::Arc::new(data),
            data_path: data_path.to_path_buf(),
            writable,
            size: committed.manifest.size,
            chunks: committed.sidecar.chunks.clone(),
            committed,
            keys,
            dirty: BTreeMap::new(),
            partial: HashMap::new(),
            dirty_bytes: 0,
            truncated_to: None,
            modified_at: None,
            journal_overlay: HashMap::new(),
            pending_written: false,
            last_commit: None,
            streamed: std::collections::BTreeSet::new(),
            stream_lock: None,
            detached: false,
            force_commit: false,
            synced: false,
            pending_create: None,
            display,
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// When the file last changed in this process with no commit since
    /// (`stat` reports it as mtime and ctime meanwhile, as a local file system would).
    pub fn modified_at(&self) -> Option<std::time::SystemTime> {
        self.modified_at
    }

    pub fn is_dirty(&self) -> bool {
        self.pending_create.is_some() || self.content_dirty()
    }

    /// Whether content or size changed since the last commit (a new file
    /// with nothing written is dirty, but not in this sense).
    pub fn content_dirty(&self) -> bool {
        self.force_commit
            || !self.dirty.is_empty()
            || !self.streamed.is_empty()
            || self.size != self.committed.manifest.size
    }

    /// Plaintext length of the stored chunk `idx` names in `chunks`: a
    /// streamed chunk is whole; a committed one as the committed size says.
    fn stored_plain_len(&self, idx: u64) -> usize {
        if self.streamed.contains(&idx) {
            self.layout.chunk_size() as usize
        } else {
            self.layout
                .chunk_plain_len(self.committed.manifest.size, idx)
        }
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

    /// Where the copy in force of the sidecar is and what the other holds
    /// (layout 3 only), as loaded.
    pub fn sidecar_copies(&self) -> Option<format::copies::Copies> {
        self.committed.copies
    }

    pub fn sidecar(&self) -> &Sidecar {
        &self.committed.sidecar
    }

    pub fn data_file(&self) -> &File {
        &self.data
    }

    /// Reads up to `len` bytes at `offset` (short at end of file).
    pub fn read(&mut self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let done = self.plan_read(offset, len)?.run();
        self.finish_read(done)
    }

    /// The first half of a read, under the file's lock: dirty bytes are
    /// copied, partly written chunks loaded, and the committed chunks to
    /// fetch listed with what checks them. [`ReadPlan::run`] then reads and
    /// decrypts them without the lock, and [`OpenFile::finish_read`] redoes
    /// under the lock whatever did not verify there.
    pub fn plan_read(&mut self, offset: u64, len: usize) -> Result<ReadPlan> {
        let mut plan = ReadPlan {
            out: Vec::new(),
            fetch: Vec::new(),
            data: self.data.clone(),
            keys: HashMap::new(),
            file_id: self.file_id,
            layout: self.layout,
        };
        if offset >= self.size || len == 0 {
            return Ok(plan);
        }
        let end = (offset + len as u64).min(self.size);
        let cs = self.layout.chunk_size();
        if !self.partial.is_empty() {
            for idx in offset / cs..=(end - 1) / cs {
                self.materialize(idx)?;
            }
        }
        // Zero-filled: holes and bytes past a chunk's stored length read as zeros.
        plan.out = vec![0u8; (end - offset) as usize];
        for idx in offset / cs..=(end - 1) / cs {
            let start = idx * cs;
            let lo = offset.max(start) - start;
            let hi = end.min(start + cs) - start;
            let at = (start + lo - offset) as usize;
            if let Some(d) = self.dirty.get(&idx) {
                let have = (d.len() as u64).min(hi);
                if have > lo {
                    plan.out[at..at + (have - lo) as usize]
                        .copy_from_slice(&d[lo as usize..have as usize]);
                }
                continue;
            }
            if let Some(Some(r)) = self.chunks.get(idx as usize).copied() {
                if let Some(key) = self.keys.get(&r.epoch) {
                    plan.keys.entry(r.epoch).or_insert_with(|| key.clone());
                }
                plan.fetch.push(Fetch {
                    idx,
                    r,
                    plain_len: self.stored_plain_len(idx),
                    lo: lo as usize,
                    hi: hi as usize,
                    at,
                });
            }
        }
        Ok(plan)
    }

    /// The second half of a read: the chunks [`ReadPlan::run`] could not
    /// verify (still in a write journal or carried in the sidecar, a slot a
    /// commit rewrote meanwhile, or damage) are read by the one-chunk path,
    /// which finds them or names the exact error.
    pub fn finish_read(&self, done: ReadDone) -> Result<Vec<u8>> {
        let ReadDone { mut out, failed } = done;
        for f in failed {
            let plain = self.load_committed_chunk(f.idx)?;
            let mine = &mut out[f.at..f.at + f.wanted()];
            mine.fill(0);
            let have = plain.len().min(f.lo + mine.len());
            if have > f.lo {
                mine[..have - f.lo].copy_from_slice(&plain[f.lo..have]);
            }
        }
        Ok(out)
    }

    fn load_committed_chunk(&self, idx: u64) -> Result<Vec<u8>> {
        let want = self.stored_plain_len(idx);
        let Some(Some(r)) = self.chunks.get(idx as usize).copied() else {
            // Room to grow to a whole chunk and be sealed in place.
            let mut zeros = Vec::with_capacity(self.layout.chunk_size() as usize + chunk::OVERHEAD);
            zeros.resize(want, 0);
            return Ok(zeros);
        };
        let stored_len = want + chunk::OVERHEAD;
        let mut buf = vec![0u8; stored_len];
        let got = read_full_at(&self.data, &mut buf, self.layout.slot_offset(idx))
            .map_err(|e| Error::io(&self.data_path, e))?;
        buf.truncate(got);
        if got != stored_len || *blake3::hash(&buf).as_bytes() != r.hash {
            let carried = self.journal_overlay.get(&idx).map(|j| &j[..]);
            match carried.or_else(|| self.committed.pending_chunk(idx)) {
                Some(j) if *blake3::hash(j).as_bytes() == r.hash => buf = j.to_vec(),
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
        if !chunk::open_in_place(key, &self.file_id, r.epoch, idx, &mut buf) {
            return Err(Error::integrity(format!(
                "{}: chunk {idx} fails authentication",
                self.display
            )));
        }
        let plain_len = buf.len() - chunk::OVERHEAD;
        buf.copy_within(chunk::NONCE_LEN..chunk::NONCE_LEN + plain_len, 0);
        buf.truncate(plain_len);
        Ok(buf)
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
    /// With `load` false the caller overwrites the whole chunk.
    pub(super) fn dirty_chunk(&mut self, idx: u64, load: bool) -> Result<&mut Vec<u8>> {
        if load {
            self.materialize(idx)?;
        } else {
            self.partial.remove(&idx);
        }
        if !self.dirty.contains_key(&idx) {
            let plain = if load {
                self.load_committed_chunk(idx)?
            } else {
                // Room to be sealed where it is (see `chunk::seal_owned`).
                Vec::with_capacity(self.layout.chunk_size() as usize + chunk::OVERHEAD)
            };
            self.dirty_bytes += self.layout.chunk_size() as usize;
            self.dirty.insert(idx, plain);
        }
        Ok(self.dirty.get_mut(&idx).expect("inserted above"))
    }

    /// Merges the committed bytes under a partly written dirty chunk.
    fn materialize(&mut self, idx: u64) -> Result<()> {
        let Some(ranges) = self.partial.get(&idx) else {
            return Ok(());
        };
        let base = self.load_committed_chunk(idx)?;
        let buf = self.dirty.get_mut(&idx).expect("partial chunks are dirty");
        *buf = overlay(base, buf, ranges);
        self.partial.remove(&idx);
        Ok(())
    }

    /// Loads every partly written chunk (on several threads), a few at a
    /// time: each load frees its partial buffer, so memory grows by a few
    /// chunks, not by all of them at once (a random-write commit loads up to
    /// 32, or 64 in a large file).
    fn materialize_all(&mut self) -> Result<()> {
        let idxs: Vec<u64> = self.partial.keys().copied().collect();
        for group in idxs.chunks(4 * workers()) {
            let this = &*self;
            let loaded = par_map(group.to_vec(), |idx| (idx, this.load_committed_chunk(idx)));
            for (idx, base) in loaded {
                let base = base?;
                let ranges = self.partial.remove(&idx).expect("listed above");
                let buf = self.dirty.get_mut(&idx).expect("partial chunks are dirty");
                *buf = overlay(base, buf, &ranges);
            }
        }
        Ok(())
    }

    /// Where the first data (`want_data`) or hole at or after `offset` begins,
    /// for `lseek`'s SEEK_DATA and SEEK_HOLE. Chunk-sized: a chunk stored as a
    /// hole (never written, or all zeros at its commit) is a hole, any other
    /// (committed or dirty) is data, and the end of the file is a hole. `None`
    /// at or past the end, or when no data follows (`ENXIO`).
    pub fn next_data_or_hole(&self, offset: u64, want_data: bool) -> Option<u64> {
        if offset >= self.size {
            return None;
        }
        let cs = self.layout.chunk_size();
        let is_data = |idx: u64| {
            self.dirty.contains_key(&idx) || matches!(self.chunks.get(idx as usize), Some(Some(_)))
        };
        let found = (offset / cs..self.layout.chunk_count(self.size))
            .find(|idx| is_data(*idx) == want_data)
            .map(|idx| (idx * cs).max(offset));
        match found {
            None if !want_data => Some(self.size),
            found => found,
        }
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
        self.partial.retain(|i, _| *i < count);
        self.streamed.retain(|i| *i < count);
        if new_size % cs != 0 {
            let idx = new_size / cs;
            self.materialize(idx)?;
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
        // Before the work: a commit the write makes below clears it.
        self.modified_at = Some(std::time::SystemTime::now());
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
            let defer = !full_overwrite
                && !self.dirty.contains_key(&idx)
                && matches!(self.chunks.get(idx as usize), Some(Some(_)));
            let buf = if defer {
                self.dirty_bytes += cs as usize;
                self.partial.insert(idx, vec![(within, within + take)]);
                self.dirty.entry(idx).or_default()
            } else if let Some(ranges) = self.partial.get_mut(&idx) {
                if full_overwrite {
                    self.partial.remove(&idx);
                } else if ranges.len() >= 64 {
                    // Many small pieces: load now rather than keep a long list.
                    self.materialize(idx)?;
                } else {
                    ranges.push((within, within + take));
                }
                self.dirty.get_mut(&idx).expect("partial chunks are dirty")
            } else {
                self.dirty_chunk(idx, !full_overwrite)?
            };
            if buf.len() < within + take {
                buf.resize(within + take, 0);
            }
            buf[within..within + take].copy_from_slice(&src[..take]);
            pos += take as u64;
            src = &src[take..];
        }
        if self.dirty_bytes >= STREAM_AFTER && !self.detached {
            self.stream_new_chunks(vault)?;
        }
        let limit = if self.chunks.len() > LARGE_FILE_CHUNKS {
            2 * DIRTY_LIMIT
        } else {
            DIRTY_LIMIT
        };
        if self.dirty_bytes >= limit {
            self.commit(vault, Durability::Lazy)?;
        }
        Ok(())
    }

    /// Seals the whole dirty chunks the committed version has no chunk for
    /// and writes them to their slots, if there are [`STREAM_AFTER`] bytes of
    /// them. Before the commit point that is safe (the committed version names
    /// nothing there; a crash leaves bytes past its end, trimmed at the next
    /// writable open, or in a hole's slot, never read). Takes the file's lock
    /// until the next commit; if another commit came first, commits instead
    /// (which merges it).
    fn stream_new_chunks(&mut self, vault: &Vault) -> Result<()> {
        let cs = self.layout.chunk_size() as usize;
        let committed = &self.committed.sidecar.chunks;
        let ready: Vec<u64> = self
            .dirty
            .iter()
            .filter(|(i, b)| {
                b.len() == cs
                    && !self.partial.contains_key(i)
                    && !matches!(committed.get(**i as usize), Some(Some(_)))
            })
            .map(|(i, _)| *i)
            .collect();
        if ready.len() * cs < STREAM_AFTER {
            return Ok(());
        }
        if self.stream_lock.is_none() && self.pending_create.is_none() {
            let lock =
                FileLock::exclusive(&self.data).map_err(|e| Error::io(&self.data_path, e))?;
            if stamp_of(&vault.paths.sidecar(&self.file_id)) != self.committed.stamp {
                drop(lock);
                return self.commit(vault, Durability::Lazy);
            }
            self.stream_lock = Some(lock);
        }
        let (epoch, key) = self.current_key()?;
        let mut to_seal = Vec::with_capacity(ready.len());
        for idx in ready {
            let plain = self.dirty.remove(&idx).expect("listed above");
            self.dirty_bytes -= cs;
            if plain.iter().all(|b| *b == 0) {
                self.chunks[idx as usize] = None;
                continue;
            }
            to_seal.push((idx, plain));
        }
        let sealed = seal_all(&key, &self.file_id, epoch, to_seal);
        let mut runs = SlotRuns::new(&self.data, &self.data_path);
        for (idx, stored, hash) in sealed {
            runs.push(self.layout.slot_offset(idx), &stored)?;
            self.chunks[idx as usize] = Some(ChunkRef { epoch, hash });
            self.streamed.insert(idx);
            COMMITTED_BYTES.fetch_add(cs, std::sync::atomic::Ordering::Relaxed);
        }
        runs.finish()?;
        Ok(())
    }

    /// The current epoch and its key (new chunks are sealed under it).
    pub(super) fn current_key(&self) -> Result<(u32, SecretKey)> {
        let epoch = self.committed.access.epoch;
        let key = self.keys.get(&epoch).cloned().ok_or_else(|| {
            Error::AccessDenied(format!(
                "{}: you hold no key for the current epoch",
                self.display
            ))
        })?;
        Ok((epoch, key))
    }

    pub fn truncate(&mut self, vault: &Vault, size: u64) -> Result<()> {
        self.require_update(vault)?;
        if size != self.size {
            self.modified_at = Some(std::time::SystemTime::now());
        }
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
                if !self.synced && !self.detached {
                    // The last commit was lazy (the flusher's): its sidecar
                    // rename must reach the disk too.
                    let path = vault.paths.sidecar(&self.file_id);
                    match sync_file_and_dir(&path) {
                        // Deleted meanwhile: nothing left to make durable.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        r => r.map_err(|e| Error::io(&path, e))?,
                    }
                }
                self.synced = true;
            }
            return Ok(());
        }
        self.require_update(vault)?;
        if !self.content_dirty() {
            // Created and left empty (`touch`): its first sidecar is all there is.
            return self.write_first_sidecar(vault, durability);
        }
        // A file being created already holds its lock (same open file
        // description), as does one with streamed chunks (until now).
        let lock = match (self.stream_lock.take(), &self.pending_create) {
            (Some(held), _) => Some(held),
            (None, Some(_)) => None,
            (None, None) => {
                Some(FileLock::exclusive(&self.data).map_err(|e| Error::io(&self.data_path, e))?)
            }
        };
        let done = self.commit_locked(vault, durability);
        if done.is_err() && !self.streamed.is_empty() {
            // The streamed chunks are still not committed: their slots stay
            // locked until a commit names them.
            self.stream_lock = lock;
        }
        done
    }

    /// [`OpenFile::commit`] once the file's lock is held.
    fn commit_locked(&mut self, vault: &Vault, durability: Durability) -> Result<()> {
        // Partly written chunks take their other bytes from the version they
        // were written over (before a concurrent commit is merged in).
        self.materialize_all()?;
        if !self.detached {
            self.merge_concurrent_commit(vault)?;
        }
        let (epoch, key) = self.current_key()?;
        let size = self.size;
        let count = self.layout.chunk_count(size);
        let old_committed = &self.committed.sidecar.chunks;
        let mut journaled: Vec<(u64, Vec<u8>)> = Vec::new();
        // New chunks land where the committed version has nothing, so they are
        // written at once (before the commit point); runs of adjacent chunks go
        // out in one pwrite.
        let mut runs = SlotRuns::new(&self.data, &self.data_path);
        let dirty = std::mem::take(&mut self.dirty);
        let mut to_seal = Vec::with_capacity(dirty.len());
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
            to_seal.push((idx, plain));
        }
        let sealed = seal_all(&key, &self.file_id, epoch, to_seal);
        for (idx, stored, hash) in sealed {
            self.chunks[idx as usize] = Some(ChunkRef { epoch, hash });
            let overwrites = matches!(old_committed.get(idx as usize), Some(Some(_)));
            if overwrites {
                journaled.push((idx, stored));
            } else {
                runs.push(self.layout.slot_offset(idx), &stored)?;
            }
        }
        // Whether anything reached the content file before the commit point
        // (then it must be on disk before the sidecar that refers to it).
        let wrote_before = runs.finish()? || !self.streamed.is_empty();
        COMMITTED_BYTES.fetch_add(self.dirty_bytes, std::sync::atomic::Ordering::Relaxed);
        self.dirty_bytes = 0;
        let (runs, places) = coalesce(&self.layout, journaled);
        let refs: Vec<(u64, &[u8])> = places
            .iter()
            .map(|&(idx, run, lo, hi)| (idx, &runs[run].1[lo..hi]))
            .collect();
        let writes: Vec<(u64, &[u8])> = runs.iter().map(|(at, b)| (*at, &b[..])).collect();
        self.finish_commit(
            vault,
            epoch,
            &key,
            &refs,
            None,
            &writes,
            durability,
            wrote_before,
        )
    }

    /// The rest of a commit once every changed chunk is sealed and `self.chunks`
    /// names it: chunks that overwrite committed ones (`journaled`, ascending)
    /// go through the journal, the signed manifest and sidecar are the commit
    /// point. `wrote_before`: chunks went into free slots before this call (they
    /// must be on disk before a durable sidecar names them). The caller holds
    /// the file lock.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn finish_commit(
        &mut self,
        vault: &Vault,
        epoch: u32,
        key: &SecretKey,
        journaled: &[(u64, &[u8])],
        redo: Option<&Redo<'_>>,
        writes: &[(u64, &[u8])],
        durability: Durability,
        wrote_before: bool,
    ) -> Result<()> {
        let size = self.size;
        let mut key_commits = vec![(epoch, key.commitment(&self.file_id, epoch))];
        for c in self.chunks.iter().flatten() {
            if !key_commits.iter().any(|(e, _)| *e == c.epoch) {
                let k = self.keys.get(&c.epoch).ok_or_else(|| {
                    Error::AccessDenied(format!("{}: no key for epoch {}", self.display, c.epoch))
                })?;
                key_commits.push((c.epoch, k.commitment(&self.file_id, c.epoch)));
            }
        }
        // A file made here has no version on disk yet: this commit writes its
        // first (version 1, after none; the one held since the create was
        // never signed, see `first_version`).
        let prev = match self.pending_create {
            Some(_) => None,
            None => Some((
                &self.committed.sidecar.manifest,
                self.committed.manifest.version,
            )),
        };
        let manifest = history::manifest_after(
            &vault.me,
            prev.map(|(m, _)| m),
            prev.map_or(0, |(_, v)| v),
            self.file_id,
            self.layout.chunk_log2,
            size,
            &self.chunks,
            epoch,
            key_commits,
            self.committed.access.head,
        );
        let manifest = Signed::sign(&manifest, &vault.me);
        // A durable commit with few overwrites carries them in its sidecar: the
        // sidecar is then the only file to sync (FORMAT.md, "Pending chunks").
        let journaled_bytes: usize = journaled.iter().map(|(_, c)| c.len()).sum();
        let in_sidecar = durability == Durability::Sync
            && vault
                .carry_pending
                .load(std::sync::atomic::Ordering::Relaxed)
            && !self.detached
            && !journaled.is_empty()
            && journaled_bytes <= PENDING_MAX;
        // The committed version's own pending chunks: into their slots first
        // (a no-op when this process wrote them), then either carried on, if
        // this version still names them and they fit, or synced before the
        // sidecar that drops them.
        if !self.committed.pending.is_empty() && !self.detached {
            self.write_pending_slots()?;
        }
        let mut new_pending: PendingChunks = Vec::new();
        let mut carried_all = self.committed.pending.is_empty();
        if in_sidecar {
            let carried: Vec<(u64, &[u8])> = self
                .committed
                .valid_pending()
                // Valid for the committed version; still named by the new one
                // if its reference there is unchanged (no second hash).
                .filter(|(idx, _)| {
                    let i = *idx as usize;
                    !journaled.iter().any(|(j, _)| j == idx)
                        && self.chunks.get(i) == self.committed.sidecar.chunks.get(i)
                })
                .collect();
            let carried_bytes: usize = carried.iter().map(|(_, c)| c.len()).sum();
            if carried_bytes + journaled_bytes <= PENDING_MAX {
                new_pending.extend(carried.into_iter().map(|(i, c)| (i, c.to_vec())));
                carried_all = true;
            }
            new_pending.extend(journaled.iter().map(|(i, c)| (*i, c.to_vec())));
            new_pending.sort_by_key(|(i, _)| *i);
        }
        let journal_path = vault.paths.journal(&self.file_id);
        let has_journal =
            (!journaled.is_empty() || redo.is_some()) && !self.detached && !in_sidecar;
        if let Some(redo) = redo.filter(|_| has_journal) {
            let j = format::ResealJournal {
                format_version: FORMAT_VERSION,
                file_id: self.file_id,
                manifest_hash: manifest.hash(),
                epoch,
                old_keys: redo.old_keys.clone(),
                chunks: redo.chunks.to_vec(),
            };
            crate::store::atomic::atomic_write_parts(
                &journal_path,
                &[&format::encode_file(format::RESEAL_JOURNAL, &j)],
                durability,
            )?;
        } else if has_journal {
            let j = format::JournalRef {
                format_version: FORMAT_VERSION,
                file_id: self.file_id,
                manifest_hash: manifest.hash(),
                chunks: journaled,
            };
            let mut framing = Vec::new();
            crate::store::atomic::atomic_write_parts(
                &journal_path,
                &j.encode_parts(&mut framing),
                durability,
            )?;
        }
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
        // Lazy commits since the last sync may have left chunks this
        // manifest refers to in the page cache only; pending chunks this
        // sidecar drops must be in their slots on disk.
        if (durability == Durability::Sync
            && (wrote_before || stored_len > cur_len || !self.synced))
            || !carried_all
        {
            self.data
                .sync_data()
                .map_err(|e| Error::io(&self.data_path, e))?;
        }
        // Not a clone of the committed sidecar: its chunk list (650 KB for a
        // 1 GiB file) would be copied only to be replaced.
        let old = &self.committed.sidecar;
        let mut sidecar = Sidecar {
            format_version: old.format_version,
            file_id: old.file_id,
            access: old.access.clone(),
            keys: old.keys.clone(),
            manifest,
            chunks: self.chunks.clone(),
        };
        super::share::prune_epochs(&mut sidecar, epoch);
        // The commit point. (A detached branch keeps naming the file's own sidecar.)
        let written = if self.detached {
            (None, stamp_of(&vault.paths.sidecar(&self.file_id)))
        } else {
            if self.pending_create.is_some() {
                create_meta_dir(vault, &self.file_id)?;
            }
            let refs: Vec<(u64, &[u8])> = new_pending.iter().map(|(i, c)| (*i, &c[..])).collect();
            self.write_sidecar(vault, &sidecar, durability, &refs)?
        };
        crate::store::crash_point::write_slot_runs(&self.data, writes)
            .map_err(|e| Error::io(&self.data_path, e))?;
        if stored_len < cur_len {
            self.data
                .set_len(stored_len)
                .map_err(|e| Error::io(&self.data_path, e))?;
        }
        // In-place overwrites must be on disk before their journal goes. (A
        // shrink needs no sync: open trims a stale tail.) Pending chunks in
        // the sidecar wait for the next commit or the flusher's settle.
        if durability == Durability::Sync && has_journal {
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
                super::seen::SeenFile::of(&sidecar, manifest.version),
                &self.display,
            )?;
        }
        self.committed.manifest = manifest;
        self.committed.sidecar = sidecar;
        self.committed.pending = new_pending;
        self.pending_written = true;
        self.last_commit = Some(std::time::Instant::now());
        (self.committed.copies, self.committed.stamp) = written;
        if !self.detached {
            // Taken under the data file's lock: the stamp is of our sidecar.
            vault.remember_verified(&self.file_id, &self.committed, &self.keys);
        }
        self.truncated_to = None;
        self.modified_at = None;
        self.force_commit = false;
        self.streamed.clear();
        self.synced = durability == Durability::Sync;
        self.journal_overlay.clear();
        self.pending_create = None;
        Ok(())
    }

    /// Writes the create-time sidecar of a file created by this process
    /// (version 1: empty, the `Create` access entry) when the file is
    /// committed with no content.
    fn write_first_sidecar(&mut self, vault: &Vault, durability: Durability) -> Result<()> {
        if !self.detached {
            create_meta_dir(vault, &self.file_id)?;
            if durability == Durability::Sync {
                // The header must be on disk before a sidecar that names the file.
                self.data
                    .sync_data()
                    .map_err(|e| Error::io(&self.data_path, e))?;
            }
            self.committed.sign_first_manifest(&vault.me);
            let sidecar = self.committed.sidecar.clone();
            let written = self.write_sidecar(vault, &sidecar, durability, &[])?;
            vault.seen.observe(
                &self.file_id,
                super::seen::SeenFile::of(&sidecar, self.committed.manifest.version),
                &self.display,
            )?;
            (self.committed.copies, self.committed.stamp) = written;
            vault.remember_verified(&self.file_id, &self.committed, &self.keys);
        }
        self.synced = durability == Durability::Sync;
        self.pending_create = None;
        Ok(())
    }

    /// Writes `sidecar` (atomically) with `pending` chunks. The caller has made
    /// sure the chunks it drops of the version on disk are in their slots
    /// on disk ([`OpenFile::write_pending_slots`], then a sync). Returns where
    /// the new sidecar's copy in force is and the file's stamp, for the caller
    /// to keep with the committed state it now holds.
    ///
    /// A sidecar in layout 3 that is still the one this file loaded (same
    /// stamp) is changed by overwriting its older copy in place; any other is
    /// replaced whole by rename (a new layout-3 file, or layout 1/2 when too
    /// large for copies). Either way a reader sees the old or the new version.
    pub(super) fn write_sidecar(
        &self,
        vault: &Vault,
        sidecar: &Sidecar,
        durability: Durability,
        pending: &[(u64, &[u8])],
    ) -> Result<(Option<format::copies::Copies>, Option<Stamp>)> {
        let path = vault.paths.sidecar(&self.file_id);
        let payload = format::encode_sidecar(sidecar, pending);
        if let (Some(copies), Some(stamp), true) = (
            self.committed.copies,
            self.committed.stamp,
            self.pending_create.is_none(),
        ) {
            if let Some((offset, bytes, next)) = copies.next(&payload) {
                let written =
                    crate::store::inplace::overwrite_at(&path, offset, &bytes, durability, |m| {
                        Stamp::of(m) == stamp
                    })
                    .map_err(|e| Error::io(&path, e))?;
                if let Some(m) = written {
                    vouch_own_signatures(vault, sidecar);
                    return Ok((Some(next), Some(Stamp::of(&m))));
                }
            }
        }
        // A new file made durable at its first commit (a database's journal,
        // an editor's save) is often overwritten and synced again at once, and
        // a durable overwrite carries its chunks in the sidecar: room for them
        // lets that commit be made in place, not by a second file and rename.
        let room = match self.pending_create {
            Some(_) if durability == Durability::Sync => {
                let stored = self.layout.stored_len(self.size) - format::data::HEADER_LEN;
                let chunks = self.layout.chunk_count(self.size) as usize;
                let room = payload.len() + stored as usize + 64 * chunks;
                if room <= ROOM_FOR_OVERWRITES_MAX {
                    room
                } else {
                    0
                }
            }
            _ => 0,
        };
        let (bytes, copies) = sidecar_file(payload, room);
        let created = match self.pending_create {
            // The first sidecar of a file made here: nothing to replace.
            Some(_) => {
                let create =
                    || crate::store::atomic::create_new_with(&path, 0o644, &[&bytes], durability);
                let made = match create() {
                    // Its fan-out directory was removed since this process saw it.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        vault.forget_meta_dir(&self.file_id);
                        create_meta_dir(vault, &self.file_id)?;
                        create()
                    }
                    made => made,
                };
                match made {
                    // Stamped through the descriptor: no second walk of the path.
                    Ok(f) => Some(f.metadata().map_err(|e| Error::io(&path, e))?),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => None,
                    Err(e) => return Err(Error::io(&path, e)),
                }
            }
            None => None,
        };
        let stamp = match created {
            Some(m) => Some(Stamp::of(&m)),
            None => {
                atomic_write(&path, &bytes, durability)?;
                stamp_of(&path)
            }
        };
        vouch_own_signatures(vault, sidecar);
        Ok((copies, stamp))
    }

    /// Puts the committed version's pending chunks into their slots (not
    /// synced), unless this process did so when it committed them: after a
    /// crash between a sidecar and its slot writes, they are only there.
    pub(super) fn write_pending_slots(&mut self) -> Result<()> {
        if self.pending_written || self.committed.pending.is_empty() {
            return Ok(());
        }
        for (idx, stored) in self.committed.valid_pending() {
            self.data
                .write_all_at(stored, self.layout.slot_offset(idx))
                .map_err(|e| Error::io(&self.data_path, e))?;
        }
        self.pending_written = true;
        Ok(())
    }

    /// Puts the pending chunks into their slots and syncs them, so that a
    /// sidecar without them may follow (no-op without pending chunks).
    pub(super) fn sync_pending_slots(&mut self) -> Result<()> {
        if self.committed.pending.is_empty() {
            return Ok(());
        }
        self.write_pending_slots()?;
        self.data
            .sync_data()
            .map_err(|e| Error::io(&self.data_path, e))
    }

    /// Stored chunks to use where a slot does not hold what the chunk list
    /// says: a journal's of an interrupted commit, and the sidecar's pending.
    pub(super) fn overlay_chunks(&self) -> HashMap<u64, Vec<u8>> {
        let mut all = self.journal_overlay.clone();
        for (idx, c) in self.committed.valid_pending() {
            all.entry(idx).or_insert_with(|| c.to_vec());
        }
        all
    }

    /// Whether the sidecar on disk carries pending chunks that
    /// [`OpenFile::settle_pending`] would fold into the content file.
    pub fn has_pending(&self) -> bool {
        !self.committed.pending.is_empty() && !self.detached
    }

    /// Since when nothing was committed here (None: never).
    pub fn idle_for(&self) -> Option<std::time::Duration> {
        self.last_commit.map(|t| t.elapsed())
    }

    /// Folds the sidecar's pending chunks into the content file: the slots are
    /// synced, then the sidecar is rewritten without them (same version). Done
    /// by the mount's flusher a while after a durable commit, so that readers
    /// do not keep reading them and the sidecar shrinks back.
    pub fn settle_pending(&mut self, vault: &Vault) -> Result<()> {
        if !self.has_pending() || self.is_dirty() || !self.writable || vault.read_only {
            return Ok(());
        }
        let _lock = FileLock::exclusive(&self.data).map_err(|e| Error::io(&self.data_path, e))?;
        let path = vault.paths.sidecar(&self.file_id);
        if stamp_of(&path) != self.committed.stamp {
            // Another commit replaced it (and took its pending chunks along
            // or settled them); the next refresh or commit reads what is there.
            self.committed.pending.clear();
            return Ok(());
        }
        self.sync_pending_slots()?;
        let sidecar = self.committed.sidecar.clone();
        let written = self.write_sidecar(vault, &sidecar, Durability::Lazy, &[])?;
        self.committed.pending.clear();
        (self.committed.copies, self.committed.stamp) = written;
        vault.remember_verified(&self.file_id, &self.committed, &self.keys);
        Ok(())
    }

    /// If another mount committed since we loaded, adopt its version as the base
    /// and re-apply our dirty chunks on top (one writer's version per chunk).
    pub(super) fn merge_concurrent_commit(&mut self, vault: &Vault) -> Result<()> {
        // A file made here has no sidecar yet, and no one else can have
        // committed one: its lock is held since before it had a name.
        if self.pending_create.is_some() {
            return Ok(());
        }
        let path = vault.paths.sidecar(&self.file_id);
        let now = stamp_of(&path);
        if now == self.committed.stamp {
            return Ok(());
        }
        let fresh = load_committed(vault, &self.file_id, &self.display)?;
        if fresh.sidecar.manifest.hash() == self.committed.sidecar.manifest.hash() {
            self.committed.stamp = fresh.stamp;
            self.committed.copies = fresh.copies;
            self.committed.access = fresh.access;
            self.committed.sidecar.access = fresh.sidecar.access;
            self.committed.sidecar.keys = fresh.sidecar.keys;
            if fresh.pending != self.committed.pending {
                self.committed.pending = fresh.pending;
                self.pending_written = false;
            }
            return Ok(());
        }
        log::info!(
            "{}: merging a concurrent commit (version {})",
            self.display,
            fresh.manifest.version
        );
        let dirty = std::mem::take(&mut self.dirty);
        // Streamed chunks too (only a writer that ignores the lock can have
        // committed meanwhile; ours win where both wrote).
        let streamed: Vec<(u64, Option<ChunkRef>)> = self
            .streamed
            .iter()
            .map(|i| (*i, self.chunks[*i as usize]))
            .collect();
        let cs = self.layout.chunk_size();
        let max_written = dirty
            .iter()
            .map(|(i, b)| i * cs + b.len() as u64)
            .chain(streamed.iter().map(|(i, _)| (i + 1) * cs))
            .max()
            .unwrap_or(0);
        let target = self
            .truncated_to
            .unwrap_or_else(|| fresh.manifest.size.max(max_written));
        self.size = fresh.manifest.size;
        self.chunks = fresh.sidecar.chunks.clone();
        self.committed = fresh;
        self.pending_written = false;
        self.unlock_keys(vault)?;
        self.dirty_bytes = 0;
        self.set_size(target)?;
        for (idx, buf) in dirty {
            if idx < self.layout.chunk_count(self.size) {
                self.dirty_bytes += buf.len();
                self.dirty.insert(idx, buf);
            }
        }
        self.streamed.clear();
        for (idx, r) in streamed {
            if idx < self.layout.chunk_count(self.size) && !self.dirty.contains_key(&idx) {
                self.chunks[idx as usize] = r;
                self.streamed.insert(idx);
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
        self.pending_written = false;
        self.synced = false;
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
        // The chunks themselves, or (a re-encryption's) how to redo them.
        enum JournalBody {
            Chunks(Vec<(u64, Vec<u8>)>),
            Reseal(ResealJournal),
        }
        let decoded = if bytes.starts_with(&format::RESEAL_JOURNAL.magic) {
            format::decode_file(format::RESEAL_JOURNAL, &bytes)
                .and_then(|j: ResealJournal| format::check_version(j.format_version).map(|_| j))
                .map(|j| (j.file_id, j.manifest_hash, JournalBody::Reseal(j)))
        } else {
            format::decode_file(format::JOURNAL, &bytes)
                .and_then(|j: Journal| format::check_version(j.format_version).map(|_| j))
                .map(|j| (j.file_id, j.manifest_hash, JournalBody::Chunks(j.chunks)))
        };
        let (file_id, manifest_hash, body) = match decoded {
            Ok(j) => j,
            Err(e) => {
                log::warn!("{}: ignoring unreadable journal: {e}", self.display);
                return Ok(());
            }
        };
        if file_id != self.file_id || manifest_hash != self.committed.sidecar.manifest.hash() {
            // A journal of a commit that never reached its commit point.
            if self.writable && !vault.read_only {
                let _ = std::fs::remove_file(&path);
            }
            return Ok(());
        }
        let chunks = match body {
            JournalBody::Chunks(chunks) => chunks,
            JournalBody::Reseal(reseal) => match self.redo_reseal(&reseal) {
                Some(chunks) => chunks,
                None => {
                    log::warn!(
                        "{}: an interrupted re-encryption needs the file's key to be completed: open it as one of its readers",
                        self.display
                    );
                    return Ok(());
                }
            },
        };
        for (idx, stored) in chunks {
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

impl OpenFile {
    /// The new stored chunks of an interrupted re-encryption that its slots do
    /// not hold yet, redone from what they hold ([`chunk::recover_resealed`]);
    /// `None` without the key of its epoch (not a reader). A chunk that cannot
    /// be redone is left out: reading it is then an integrity failure.
    fn redo_reseal(&self, j: &ResealJournal) -> Option<Vec<(u64, Vec<u8>)>> {
        let new = self.keys.get(&j.epoch)?;
        let mut keys: HashMap<u32, SecretKey> =
            super::share::open_earlier(new, &self.file_id, j.epoch, &j.old_keys)
                .map(|k| k.into_iter().collect())
                .unwrap_or_else(|e| {
                    log::warn!("{}: re-encryption journal: {e}", self.display);
                    HashMap::new()
                });
        for (e, k) in &self.keys {
            keys.entry(*e).or_insert_with(|| k.clone());
        }
        let mut out = Vec::new();
        // Each index once: a planted journal naming one chunk many times must
        // not multiply the work of every open.
        let mut done = std::collections::HashSet::new();
        for c in &j.chunks {
            if !done.insert(c.index) {
                continue;
            }
            let Some(Some(r)) = self.chunks.get(c.index as usize) else {
                continue;
            };
            if r.epoch != j.epoch {
                continue;
            }
            let Some(old) = keys.get(&c.old_epoch) else {
                continue;
            };
            let plain_len = self.stored_plain_len(c.index);
            let at = self.layout.slot_offset(c.index);
            let mut slot = vec![0u8; plain_len + chunk::OVERHEAD];
            let got = read_full_at(&self.data, &mut slot, at).unwrap_or(0);
            slot.truncate(got);
            if *blake3::hash(&slot).as_bytes() == r.hash {
                continue;
            }
            let redo = chunk::Reseal {
                file_id: &self.file_id,
                index: c.index,
                old,
                old_nonce: c.old_nonce,
                new,
                new_epoch: j.epoch,
                new_nonce: c.new_nonce,
            };
            match chunk::recover_resealed(&redo, &slot, at, plain_len, &r.hash) {
                Some(stored) => out.push((c.index, stored)),
                None => log::warn!(
                    "{}: chunk {} of an interrupted re-encryption cannot be redone from its slot",
                    self.display,
                    c.index
                ),
            }
        }
        Some(out)
    }
}

/// A re-encryption's journal (FORMAT.md, "Re-encryption journal"): how to redo
/// each chunk from its slot, and the keys of the epochs they came from sealed
/// under the new one.
pub(super) struct Redo<'a> {
    pub chunks: &'a [format::ResealedChunk],
    pub old_keys: Vec<u8>,
}

/// Seals plaintext chunks (on several threads): `(index, stored, BLAKE3 of stored)`.
fn seal_all(
    key: &SecretKey,
    file_id: &[u8; 16],
    epoch: u32,
    chunks: Vec<(u64, Vec<u8>)>,
) -> Vec<(u64, Vec<u8>, [u8; 32])> {
    par_map(chunks, |(idx, plain)| {
        let stored = chunk::seal_owned(key, file_id, epoch, idx, plain);
        let hash = *blake3::hash(&stored).as_bytes();
        (idx, stored, hash)
    })
}

/// Stored chunks on their way to their slots: adjacent ones go out in one
/// pwrite of up to 256 KiB.
struct SlotRuns<'a> {
    data: &'a File,
    path: &'a Path,
    run: Vec<u8>,
    start: u64,
    next: u64,
    wrote: bool,
}

impl<'a> SlotRuns<'a> {
    fn new(data: &'a File, path: &'a Path) -> Self {
        SlotRuns {
            data,
            path,
            run: Vec::new(),
            start: 0,
            next: u64::MAX,
            wrote: false,
        }
    }

    fn push(&mut self, at: u64, stored: &[u8]) -> Result<()> {
        if at != self.next || self.run.len() >= 256 << 10 {
            self.flush()?;
            self.start = at;
        }
        self.run.extend_from_slice(stored);
        self.next = at + stored.len() as u64;
        self.wrote = true;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if !self.run.is_empty() {
            self.data
                .write_all_at(&self.run, self.start)
                .map_err(|e| Error::io(self.path, e))?;
            self.run.clear();
        }
        Ok(())
    }

    /// Writes what is left; whether anything was written at all.
    fn finish(mut self) -> Result<bool> {
        self.flush()?;
        Ok(self.wrote)
    }
}

/// Chunks (ascending) as pwrites: adjacent ones joined up to 4 MiB. Each
/// chunk's buffer is freed once copied into its run (a commit holds the
/// sealed chunks once, not twice); `places` says where each chunk is:
/// `(index, run, start, end)`.
#[allow(clippy::type_complexity)]
fn coalesce(
    layout: &Layout,
    chunks: Vec<(u64, Vec<u8>)>,
) -> (Vec<(u64, Vec<u8>)>, Vec<(u64, usize, usize, usize)>) {
    const RUN_MAX: usize = 4 << 20;
    // Which run each chunk joins, and run lengths, first: each run is
    // then allocated once at its size.
    let mut lens: Vec<usize> = Vec::new();
    let mut run_of = Vec::with_capacity(chunks.len());
    let mut next = None;
    for (idx, stored) in &chunks {
        match lens.last_mut() {
            Some(len) if next == Some(*idx) && *len + stored.len() <= RUN_MAX => {
                *len += stored.len()
            }
            _ => lens.push(stored.len()),
        }
        run_of.push(lens.len() - 1);
        next = Some(idx + 1);
    }
    let mut runs: Vec<(u64, Vec<u8>)> = Vec::with_capacity(lens.len());
    let mut places = Vec::with_capacity(chunks.len());
    for ((idx, stored), run_no) in chunks.into_iter().zip(run_of) {
        if run_no == runs.len() {
            runs.push((layout.slot_offset(idx), Vec::with_capacity(lens[run_no])));
        }
        let run = &mut runs[run_no].1;
        let lo = run.len();
        run.extend_from_slice(&stored);
        places.push((idx, run_no, lo, run.len()));
    }
    (runs, places)
}

/// `base` with the `ranges` of `written` laid over it.
fn overlay(mut base: Vec<u8>, written: &[u8], ranges: &[(usize, usize)]) -> Vec<u8> {
    for &(lo, hi) in ranges {
        if base.len() < hi {
            base.resize(hi, 0);
        }
        base[lo..hi].copy_from_slice(&written[lo..hi]);
    }
    base
}

/// One committed chunk a read needs: bytes `lo..hi` of its plaintext go to
/// `out[at..]`.
#[derive(Clone)]
struct Fetch {
    idx: u64,
    r: ChunkRef,
    plain_len: usize,
    lo: usize,
    hi: usize,
    at: usize,
}

impl Fetch {
    /// How many bytes of the output this chunk fills (past its stored
    /// plaintext they stay zero).
    fn wanted(&self) -> usize {
        self.hi.min(self.plain_len).saturating_sub(self.lo)
    }
}

/// A read prepared by [`OpenFile::plan_read`], to be run without the file's
/// lock: the kernel's read-ahead sends several requests for a file at once,
/// and with the lock held through the `pread` and the decryption they ran
/// one after the other on one core. Every byte it yields is checked against
/// the chunk hash the plan took from the committed version, so a commit
/// running meanwhile can make a chunk fail here (and be redone under the
/// lock), never yield other bytes.
pub struct ReadPlan {
    out: Vec<u8>,
    fetch: Vec<Fetch>,
    data: std::sync::Arc<File>,
    keys: HashMap<u32, SecretKey>,
    file_id: [u8; 16],
    layout: Layout,
}

/// What [`ReadPlan::run`] produced: the bytes, and the chunks still to fetch
/// under the lock ([`OpenFile::finish_read`]).
pub struct ReadDone {
    out: Vec<u8>,
    failed: Vec<Fetch>,
}

impl ReadDone {
    /// Every byte is in: no need for the lock again.
    pub fn into_complete(self) -> std::result::Result<Vec<u8>, ReadDone> {
        if self.failed.is_empty() {
            Ok(self.out)
        } else {
            Err(self)
        }
    }
}

impl ReadPlan {
    pub fn run(mut self) -> ReadDone {
        let mut failed = Vec::new();
        let fetch = std::mem::take(&mut self.fetch);
        // Adjacent committed chunks come in with one pread; only the last
        // chunk of a run may be shorter than a slot.
        let slot = self.layout.slot_size() as usize;
        let mut rest = &fetch[..];
        while !rest.is_empty() {
            let mut j = 1;
            while j < rest.len()
                && rest[j].idx == rest[j - 1].idx + 1
                && rest[j - 1].plain_len + chunk::OVERHEAD == slot
            {
                j += 1;
            }
            let (run, tail) = rest.split_at(j);
            failed.extend(self.read_run(run));
            rest = tail;
        }
        ReadDone {
            out: self.out,
            failed,
        }
    }

    /// Reads and verifies a run of adjacent committed chunks and decrypts the
    /// bytes wanted straight into the output; runs of several chunks are
    /// opened on several threads. Returns the chunks that did not verify.
    fn read_run(&mut self, run: &[Fetch]) -> Vec<Fetch> {
        let slot = self.layout.slot_size() as usize;
        let last = run.last().expect("runs are not empty");
        let total = (run.len() - 1) * slot + last.plain_len + chunk::OVERHEAD;
        let mut buf = vec![0u8; total];
        // A short read leaves zeros, which fail the hash check below; an
        // error leaves the whole run to the one-chunk path, which reports it.
        if read_full_at(&self.data, &mut buf, self.layout.slot_offset(run[0].idx)).is_err() {
            return run.to_vec();
        }
        let mut jobs: Vec<(&Fetch, &[u8], &mut [u8])> = Vec::with_capacity(run.len());
        let mut stored = &buf[..];
        let mut dst = &mut self.out[..];
        let mut consumed = 0;
        for f in run {
            let (piece, tail) = stored.split_at(f.plain_len + chunk::OVERHEAD);
            stored = tail;
            let (_, rest) = std::mem::take(&mut dst).split_at_mut(f.at - consumed);
            let (mine, rest) = rest.split_at_mut(f.wanted());
            dst = rest;
            consumed = f.at + f.wanted();
            jobs.push((f, piece, mine));
        }
        let keys = &self.keys;
        let file_id = &self.file_id;
        let opened = par_map(jobs, |(f, piece, mine)| {
            let ok = *blake3::hash(piece).as_bytes() == f.r.hash
                && keys.get(&f.r.epoch).is_some_and(|k| {
                    chunk::open_range(
                        k,
                        file_id,
                        f.r.epoch,
                        f.idx,
                        piece,
                        f.lo.min(f.plain_len),
                        mine,
                    )
                });
            (f, ok)
        });
        opened
            .into_iter()
            .filter(|(_, ok)| !ok)
            .map(|(f, _)| f.clone())
            .collect()
    }
}

/// Threads for chunk crypto (this machine's cores, at most 4).
fn workers() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get().min(4))
            .unwrap_or(1)
    })
}

/// Fewer items than this are mapped on the calling thread. A scoped thread
/// costs about as much as opening a 64 KiB chunk (~40 µs with its wake-ups),
/// and the mount's kernel read-ahead already keeps four FUSE threads busy with
/// 128 KiB (two-chunk) reads: spawning a helper per read cost 1.2 s of CPU per
/// GiB of cold sequential read (docs/BENCHMARKS.md).
const PAR_MIN_ITEMS: usize = 4;

/// Maps `f` over `items` on up to `workers()` threads (the calling thread is
/// one of them), keeping the order; short lists run on the calling thread.
fn par_map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let threads = workers().min(items.len());
    if threads < 2 || items.len() < PAR_MIN_ITEMS {
        return items.into_iter().map(f).collect();
    }
    let per = items.len().div_ceil(threads);
    let mut groups: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut items = items.into_iter();
    loop {
        let g: Vec<T> = items.by_ref().take(per).collect();
        if g.is_empty() {
            break;
        }
        groups.push(g);
    }
    let f = &f;
    std::thread::scope(|s| {
        let mut groups = groups.into_iter();
        let mine = groups.next().unwrap_or_default();
        let handles: Vec<_> = groups
            .map(|g| s.spawn(move || g.into_iter().map(f).collect::<Vec<R>>()))
            .collect();
        let mut out: Vec<R> = mine.into_iter().map(f).collect();
        for h in handles {
            out.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        out
    })
}

/// Makes the fan-out directory of a file's sidecar, unless this process made
/// or found it before (a sidecar write that then finds it gone calls
/// [`Vault::forget_meta_dir`] and this again).
fn create_meta_dir(vault: &Vault, file_id: &[u8; 16]) -> Result<()> {
    use std::sync::atomic::Ordering::Relaxed;
    let (word, bit) = (file_id[0] as usize / 64, 1u64 << (file_id[0] % 64));
    if vault.meta_dirs_made[word].load(Relaxed) & bit != 0 {
        return Ok(());
    }
    let path = vault.paths.sidecar(file_id);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    vault.meta_dirs_made[word].fetch_or(bit, Relaxed);
    Ok(())
}

impl Vault {
    /// Forgets that a sidecar fan-out directory exists (someone removed it).
    fn forget_meta_dir(&self, file_id: &[u8; 16]) {
        let (word, bit) = (file_id[0] as usize / 64, 1u64 << (file_id[0] % 64));
        self.meta_dirs_made[word].fetch_and(!bit, std::sync::atomic::Ordering::Relaxed);
    }
}

/// fsync of a file and of the directory that names it.
fn sync_file_and_dir(path: &Path) -> std::io::Result<()> {
    crate::store::open_regular_read(path)?.sync_all()?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

pub(super) use crate::store::read_full_at;

pub(super) fn load_committed(
    vault: &Vault,
    file_id: &[u8; 16],
    display: &str,
) -> Result<Committed> {
    let path = vault.paths.sidecar(file_id);
    load_committed_from(vault, file_id, display, stamp_of(&path))
}

/// [`load_committed`] with the sidecar's stamp just taken by the caller.
fn load_committed_from(
    vault: &Vault,
    file_id: &[u8; 16],
    display: &str,
    first_stamp: Option<Stamp>,
) -> Result<Committed> {
    let path = vault.paths.sidecar(file_id);
    let mut attempts = 0;
    let mut next_stamp = Some(first_stamp);
    loop {
        let stamp = next_stamp.take().unwrap_or_else(|| stamp_of(&path));
        let (sidecar, access, manifest, pending, copies) =
            read_sidecar(vault, file_id, &path, display)?;
        let checked = vault.check_file_history(
            file_id,
            super::seen::SeenFile::of(&sidecar, manifest.version),
            display,
        );
        match checked {
            Ok(()) => {
                return Ok(Committed {
                    sidecar,
                    manifest,
                    access,
                    stamp,
                    copies,
                    pending,
                })
            }
            // A writer replaces the sidecar first and logs the new version
            // after, so history read after our sidecar may be one commit
            // ahead of it: when the sidecar changed meanwhile, read it again.
            Err(Error::Integrity { .. }) | Err(Error::Fork { .. })
                if attempts < 3 && stamp_of(&path) != stamp =>
            {
                attempts += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A new sidecar file holding `payload`: in layout 3 (two copies, so later
/// changes overwrite in place), or as it is when too large for copies.
/// A new sidecar file for `payload`: layout 3 with room for `room` bytes or
/// more in each copy, or the payload alone when it is too large for copies.
fn sidecar_file(payload: Vec<u8>, room: usize) -> (Vec<u8>, Option<format::copies::Copies>) {
    match format::copies::new_file_with_room(format::SIDECAR.magic, &payload, room) {
        Some((bytes, copies)) => (bytes, Some(copies)),
        None => (payload, None),
    }
}

/// Reads a sidecar and verifies what it holds on its own: the file id, the
/// signed access list, the signed manifest and chunk list.
fn read_sidecar(
    vault: &Vault,
    file_id: &[u8; 16],
    path: &Path,
    display: &str,
) -> Result<(
    Sidecar,
    AccessState,
    Manifest,
    PendingChunks,
    Option<format::copies::Copies>,
)> {
    let bytes =
        read_limited(path, format::SIDECAR.max_len + 4, "file sidecar").map_err(|e| match e {
            Error::NotFound(_) => {
                Error::integrity(format!("{display}: its sidecar metadata is missing"))
            }
            other => other,
        })?;
    let (sidecar, pending, copies) = format::decode_sidecar_file(&bytes).map_err(|e| match e {
        e @ Error::UnsupportedVersion { .. } => e,
        e => Error::integrity(format!("{display}: {e}")),
    })?;
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
    Ok((sidecar, access, manifest, pending, copies))
}

/// Records this member's signatures in a sidecar just written as checked, so
/// the next open (in any process on this machine) skips them. Everything held
/// in memory was verified when loaded or signed here.
fn vouch_own_signatures(vault: &Vault, sidecar: &Sidecar) {
    use crate::access::KeyLookup;
    use crate::format::signed::SignedBody;
    let me = vault.me.member_id();
    let key = vault.me.public().ed25519;
    for entry in sidecar.access.iter().filter(|e| e.signer == me) {
        vault.vouch(&key, format::AccessEntry::DOMAIN, &entry.hash());
    }
    // Never an unsigned record (a new file's held first manifest): vouching
    // would let this machine accept it unchecked.
    if sidecar.manifest.signer == me && !sidecar.manifest.signature.is_empty() {
        vault.vouch(&key, Manifest::DOMAIN, &sidecar.manifest.hash());
    }
}

/// Unwraps every epoch key we can; checks each against the manifest's commitment.
pub(super) fn unwrap_keys(vault: &Vault, c: &Committed) -> Result<HashMap<u32, SecretKey>> {
    let mut keys = HashMap::new();
    if !c.access.can_read(&vault.me.member_id()) {
        return Ok(keys);
    }
    // Newest epoch first: its key opens the earlier ones (`earlier`), which
    // then need no X25519 unwrap of their own.
    let mut epochs: Vec<&crate::format::EpochKeys> = c.sidecar.keys.iter().collect();
    epochs.sort_by_key(|ek| std::cmp::Reverse(ek.epoch));
    for ek in epochs {
        let known = keys.get(&ek.epoch).cloned();
        if let Some(k) = known.or_else(|| {
            ek.wraps
                .iter()
                .find(|w| w.recipient == vault.me.member_id())
                .and_then(|w| {
                    wrap::unwrap_with(
                        w,
                        &vault.me,
                        &c.sidecar.file_id,
                        ek.epoch,
                        Some(&vault.unwraps),
                    )
                })
        }) {
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
pub(super) type VerifiedCache = BoundedCache<(Stamp, Committed, HashMap<u32, SecretKey>)>;

/// Entries by file id, bounded by count and by estimated bytes; when full it
/// starts over (cheap, and a working set that fits comes back at once).
pub(super) struct BoundedCache<V> {
    entries: HashMap<[u8; 16], (V, usize)>,
    /// Sum of the entries' estimated sizes.
    bytes: usize,
}

impl<V> Default for BoundedCache<V> {
    fn default() -> Self {
        BoundedCache {
            entries: HashMap::new(),
            bytes: 0,
        }
    }
}

/// Entries kept (~3 KiB for a small file: sidecar, access state, keys). Since
/// checked signatures are remembered (`vouched.rs`), an open that misses costs
/// a sidecar read and the rule checks, not Ed25519: 512 entries keep the
/// common working set while 4096 cost ~11 MiB of the daemon's RSS (a tree
/// walk over more files than the cache holds misses either way).
const VERIFIED_CACHE_MAX: usize = 512;

/// Bytes the cache may hold. A sidecar carries one chunk reference per 64 KiB
/// of content (640 KiB of them for a 1 GiB file), so a count alone would let a
/// few hundred large files pin gigabytes. An entry over a sixteenth of this
/// (a file over ~200 MiB) is not cached: such a file is opened rarely for the
/// I/O it then does, and reading its sidecar again is cheap next to that.
const VERIFIED_CACHE_BYTES: usize = 2 << 20;

impl<V> BoundedCache<V> {
    fn get(&self, id: &[u8; 16]) -> Option<&V> {
        self.entries.get(id).map(|(v, _)| v)
    }

    /// Keeps `value` for `id` (replacing what it had) if it fits at all.
    fn insert(&mut self, id: [u8; 16], value: V, cost: usize) {
        if let Some((_, old)) = self.entries.remove(&id) {
            self.bytes -= old;
        }
        if cost > VERIFIED_CACHE_BYTES / 16 {
            return;
        }
        if self.entries.len() >= VERIFIED_CACHE_MAX || self.bytes + cost > VERIFIED_CACHE_BYTES {
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += cost;
        self.entries.insert(id, (value, cost));
    }
}

/// What caching a verified state costs, roughly: its chunk references, its
/// access entries, a few KiB for the rest.
fn cache_cost(committed: &Committed) -> usize {
    (3 << 10)
        + committed.sidecar.chunks.len() * std::mem::size_of::<Option<ChunkRef>>()
        + committed.sidecar.access.len() * 256
        + committed
            .pending
            .iter()
            .map(|(_, c)| c.len() + 32)
            .sum::<usize>()
}

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
            if let Some((s, c, k)) = crate::lock(&self.verified).get(file_id) {
                if *s == stamp {
                    return Ok((c.clone(), k.clone()));
                }
            }
        }
        let committed = load_committed_from(self, file_id, display, stamp)?;
        let keys = unwrap_keys(self, &committed)?;
        self.remember_verified(file_id, &committed, &keys);
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
            let cost = cache_cost(committed);
            crate::lock(&self.verified).insert(
                *file_id,
                (stamp, committed.clone(), keys.clone()),
                cost,
            );
        }
    }

    /// Creates a new encrypted file at `backing` (which must not exist).
    ///
    /// Only the content file (with its header) is written now; the sidecar is
    /// written by the first commit, which `OpenFile` makes on close at the
    /// latest; library callers must commit (`OpenFile::commit`) before they
    /// drop it. Until then the file is "created, not yet written" for every
    /// other process (FORMAT.md).
    pub fn create_file(&self, backing: &Path, mode: u32, display: String) -> Result<OpenFile> {
        if self.read_only {
            return Err(Error::AccessDenied("vault is mounted read-only".into()));
        }
        let file_id: [u8; 16] = crate::crypto::random_bytes();
        // One look at the directory's record: its defaults and its id.
        let dir = backing.parent().and_then(|d| self.dir_entry(d).ok());
        let defaults = dir.as_ref().and_then(|(_, d)| d.clone());
        let (committed, key) = self.first_version(file_id, defaults)?;
        let header = DataHeader {
            format_version: FORMAT_VERSION,
            chunk_log2: self.chunk_log2(),
            file_id,
        };
        // Created, and bound to its name, in one append to the history, before
        // the file gets its name (it is unnamed until then, and locked): a
        // crash leaves either nothing or a creation the history records, with
        // or without its entry ("Created, not yet written" in FORMAT.md). A
        // name taken meanwhile is recorded as deleted again.
        let mut events = vec![Event::FileCreated { file_id }];
        if let (Some((rec, _)), Some(name)) = (&dir, backing.file_name()) {
            let name = crate::history::log::name_tag(
                &rec.dir_id,
                std::os::unix::ffi::OsStrExt::as_bytes(name),
            );
            events.push(Event::Linked { id: file_id, name });
        }
        // A name already taken fails here, before anything is logged (the
        // link below still refuses one taken in the meantime).
        if std::fs::symlink_metadata(backing).is_ok() {
            return Err(Error::io(
                backing,
                std::io::Error::from_raw_os_error(libc::EEXIST),
            ));
        }
        let mut held = None;
        let mut logged = false;
        let mut failed = None;
        // Never without its header, even after a crash.
        let created = crate::store::atomic::create_new_then(
            backing,
            mode,
            &[&header.encode()],
            Durability::Lazy,
            |data| {
                // Held until the first sidecar is written: another process that
                // finds the file without one can tell a live creation from a
                // crashed one.
                held = FileLock::try_exclusive(data)?;
                if held.is_none() {
                    return Err(std::io::Error::other("locked by another process"));
                }
                if let Err(e) = self.record_all(events) {
                    failed = Some(e);
                    return Err(std::io::Error::other("history append failed"));
                }
                logged = true;
                Ok(())
            },
        );
        let data = match created {
            Ok(data) => data,
            Err(e) => {
                if logged {
                    let _ = self.record_all(vec![Event::FileDeleted { file_id }]);
                }
                return Err(failed.unwrap_or_else(|| Error::io(backing, e)));
            }
        };
        let held = held.expect("locked before the file was named");
        let mut keys = HashMap::new();
        keys.insert(0, key);
        let mut f = OpenFile::new(self, file_id, data, backing, true, committed, keys, display);
        f.pending_create = Some(held);
        Ok(f)
    }

    /// The version-1 state of a new file made by this member in a directory
    /// with `defaults` (its default grants apply): the signed `Create` entry, a fresh
    /// content key wrapped for every reader, an empty signed manifest.
    fn first_version(
        &self,
        file_id: [u8; 16],
        defaults: Option<format::DirDefaults>,
    ) -> Result<(Committed, SecretKey)> {
        let me = self.me.member_id();
        // Files start with the grants their directory names (sharing a folder
        // shares what is put in it); members no longer in the vault are skipped.
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
        // We just signed it: build the state without verifying our own signature.
        let access = access::state_after_create(&file_id, &create, &readers, &updaters, me);
        let key = SecretKey::generate();
        let mut wraps = Vec::new();
        for reader in access.readers.keys() {
            let rec = self
                .member(reader)
                .ok_or_else(|| Error::BadInput(format!("reader {reader} is not a vault member")))?;
            wraps.push(self.wraps.wrap(&key, &rec.public, &file_id, 0)?);
        }
        // Signed only if it is ever written (`Committed::sign_first_manifest`):
        // most new files get content before their first commit, which then
        // writes version 1 in its place.
        let manifest = Signed::unsigned(
            &history::manifest_after(
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
            ),
            me,
        );
        let sidecar = Sidecar {
            format_version: FORMAT_VERSION,
            file_id,
            access: vec![create],
            keys: vec![EpochKeys {
                epoch: 0,
                wraps,
                earlier: None,
            }],
            manifest,
            chunks: vec![],
        };
        let committed = Committed {
            manifest: sidecar.manifest.decode_unverified()?,
            sidecar,
            access,
            stamp: None,
            copies: None,
            pending: Vec::new(),
        };
        Ok((committed, key))
    }

    /// A content file whose sidecar is missing. Allowed only as a file
    /// "created, not yet written": the history records its creation and
    /// nothing since (no content version, no access change) and this machine
    /// never saw a version of it. Then: while a process holds its lock (a
    /// live creation), wait up to `CREATION_WAIT` for the first sidecar; if
    /// none holds it (the creating one crashed) and the creator is this
    /// member, a writable open writes a fresh first version (empty, as the
    /// file was when created); otherwise `BeingCreated`. Anything else is a
    /// missing sidecar: integrity failure.
    fn open_unwritten(
        &self,
        file_id: &[u8; 16],
        backing: &Path,
        data: &File,
        writable: bool,
        missing: Error,
    ) -> Result<Committed> {
        if self.seen.get(file_id).is_some() {
            return Err(missing);
        }
        let mut creator = None;
        // The creating process logs the creation just after making the content
        // file: give a creation in flight a moment to appear in the history.
        for attempt in 0..6 {
            if attempt > 0 {
                std::thread::sleep(std::time::Duration::from_millis(1 << attempt));
            }
            let (known, recorded) =
                self.with_bindings(|idx| (idx.creator(file_id), idx.recorded(file_id)))?;
            if recorded != (None, None) {
                return Err(missing);
            }
            if known.is_some() {
                creator = known;
                break;
            }
        }
        let Some(creator) = creator else {
            return Err(missing);
        };
        let name = |m: &crate::crypto::MemberId| {
            self.member(m)
                .map(|r| r.name)
                .unwrap_or_else(|| m.to_string())
        };
        let sidecar = self.paths.sidecar(file_id);
        let shown = backing.display().to_string();
        let Some(lock) = FileLock::try_exclusive(data).map_err(|e| Error::io(backing, e))? else {
            // A live creation: its first sidecar comes when the file is
            // closed (the kernel's release runs after `close` returns) or with
            // the mount's flusher, within 0.4 s. Wait for it rather than fail
            // `touch f && coffer grant f ...` or another mount's open.
            let deadline = std::time::Instant::now() + CREATION_WAIT;
            while std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
                if sidecar.exists() {
                    return load_committed(self, file_id, &shown);
                }
            }
            return Err(Error::BeingCreated(format!(
                "{shown}: being created by {}: its first version is not written yet, so \
                 nobody holds a right on it; try again once it is closed",
                name(&creator)
            )));
        };
        if sidecar.exists() {
            // Finished between our first look and the lock.
            drop(lock);
            return load_committed(self, file_id, &shown);
        }
        if creator != self.me.member_id() {
            return Err(Error::BeingCreated(format!(
                "{shown}: its creation by {} was interrupted before its first version was \
                 written, so nobody holds a right on it ({} can open it to recover it)",
                name(&creator),
                name(&creator)
            )));
        }
        if !writable || self.read_only {
            return Err(Error::BeingCreated(format!(
                "{shown}: its creation by you was interrupted before its first version was \
                 written; open it for writing (in a writable mount) to recover it"
            )));
        }
        let defaults = backing.parent().and_then(|d| self.dir_defaults(d));
        let (mut committed, _key) = self.first_version(*file_id, defaults)?;
        create_meta_dir(self, file_id)?;
        // Whatever an interrupted first commit left past the header is
        // unreadable (its key died with the process): the file is empty again.
        data.set_len(format::data::HEADER_LEN)
            .map_err(|e| Error::io(backing, e))?;
        let path = self.paths.sidecar(file_id);
        committed.sign_first_manifest(&self.me);
        let (bytes, copies) = sidecar_file(format::encode_sidecar(&committed.sidecar, &[]), 0);
        atomic_write(&path, &bytes, Durability::Sync)?;
        committed.copies = copies;
        vouch_own_signatures(self, &committed.sidecar);
        log::warn!(
            "{}: its creation was interrupted before the first version was written; \
             recovered as an empty file",
            backing.display()
        );
        committed.stamp = stamp_of(&path);
        self.seen.observe(
            file_id,
            super::seen::SeenFile::of(&committed.sidecar, committed.manifest.version),
            &backing.display().to_string(),
        )?;
        Ok(committed)
    }

    /// Reads the file id from a content file's header.
    pub fn read_file_id(&self, backing: &Path) -> Result<[u8; 16]> {
        let f = crate::store::open_regular_read(backing).map_err(|e| Error::io(backing, e))?;
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
        let opened =
            crate::store::open_regular(backing, OpenOptions::new().read(true).write(writable));
        let (data, writable) = match opened {
            // A daemon that is not root cannot write a 0444 file: serve it read-only.
            Err(e) if writable && e.kind() == std::io::ErrorKind::PermissionDenied => (
                crate::store::open_regular_read(backing).map_err(|e| Error::io(backing, e))?,
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
        let (committed, keys) = match self.load_verified(&header.file_id, &display) {
            Err(missing @ Error::Integrity { .. })
                if !self.paths.sidecar(&header.file_id).exists() =>
            {
                let c = self.open_unwritten(&header.file_id, backing, &data, writable, missing)?;
                let keys = unwrap_keys(self, &c)?;
                (c, keys)
            }
            other => other?,
        };
        let mut f = OpenFile::new(
            self,
            header.file_id,
            data,
            backing,
            writable,
            committed,
            keys,
            display,
        );
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

/// A read-only view of another branch of a file: a sync tool's conflict copy of
/// its sidecar and/or content file. Verified like any open (signed access list,
/// signed manifest, key commitments; chunks against the manifest on read), but
/// not against the history or this machine's state: it is the other side of a
/// fork, older or newer than what was seen.
pub(super) fn open_branch(
    vault: &Vault,
    file_id: &[u8; 16],
    sidecar_path: &Path,
    data_path: &Path,
    display: String,
    writable: bool,
) -> Result<OpenFile> {
    let (sidecar, access, manifest, pending, _) =
        read_sidecar(vault, file_id, sidecar_path, &display)?;
    let data = crate::store::open_regular(data_path, OpenOptions::new().read(true).write(writable))
        .map_err(|e| Error::io(data_path, e))?;
    let committed = Committed {
        sidecar,
        manifest,
        access,
        // Writable only for the file's own sidecar (`coffer fork resolve`).
        stamp: if writable {
            stamp_of(sidecar_path)
        } else {
            None
        },
        // A branch's sidecar is replaced whole if it is ever written.
        copies: None,
        pending,
    };
    let keys = unwrap_keys(vault, &committed)?;
    let mut f = OpenFile::new(
        vault, *file_id, data, data_path, false, committed, keys, display,
    );
    f.detached = !writable;
    // Every chunk must match the signed manifest before this counts as a branch.
    for idx in 0..f.layout.chunk_count(f.size) {
        f.load_committed_chunk(idx)?;
    }
    f.writable = writable;
    Ok(f)
}

impl OpenFile {
    /// Makes the next commit a version above `newest` (every branch of a fork),
    /// so it supersedes them all on every machine.
    pub(super) fn supersede(&mut self, newest: u64) {
        self.committed.manifest.version = self.committed.manifest.version.max(newest);
        self.force_commit = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verified_cache_is_bounded_by_bytes_as_well_as_entries() {
        let mut cache = BoundedCache::<u32>::default();
        // Too large to keep at all, and it drops what the id had.
        cache.insert([1; 16], 1, 3 << 10);
        cache.insert([1; 16], 2, VERIFIED_CACHE_BYTES / 16 + 1);
        assert_eq!(cache.get(&[1; 16]), None);
        assert_eq!(cache.bytes, 0);
        // Replacing an entry counts it once.
        cache.insert([2; 16], 1, 100 << 10);
        cache.insert([2; 16], 2, 100 << 10);
        assert_eq!(cache.get(&[2; 16]), Some(&2));
        assert_eq!(cache.bytes, 100 << 10);
        // Twenty large entries fill the byte budget: the one that does not
        // fit starts the cache over.
        for i in 0..20u8 {
            cache.insert([i + 10; 16], i as u32, 100 << 10);
            assert!(cache.bytes <= VERIFIED_CACHE_BYTES);
        }
        assert!(cache.entries.len() < 20);
        assert_eq!(cache.get(&[29; 16]), Some(&19));
        // Small entries: bounded by count.
        let mut small = BoundedCache::<u32>::default();
        for i in 0..(VERIFIED_CACHE_MAX as u32 + 1) {
            small.insert(
                [
                    (i % 251) as u8,
                    (i / 251) as u8,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                ],
                i,
                3 << 10,
            );
        }
        assert_eq!(small.entries.len(), 1);
    }

    #[test]
    fn coalesce_joins_adjacent_chunks_up_to_4_mib_and_places_each() {
        let layout = Layout { chunk_log2: 16 };
        let slot = layout.slot_size() as usize;
        // 70 adjacent chunks (more than one 4 MiB run), a gap, then two more.
        let idxs: Vec<u64> = (0..70).chain([80, 81]).collect();
        let chunks: Vec<(u64, Vec<u8>)> = idxs.iter().map(|&i| (i, vec![i as u8; slot])).collect();
        let (runs, places) = coalesce(&layout, chunks);
        assert_eq!(runs.len(), 3);
        assert!(runs.iter().all(|(_, r)| r.len() <= 4 << 20));
        assert_eq!(runs[0].0, layout.slot_offset(0));
        assert_eq!(runs[2].0, layout.slot_offset(80));
        // Each run starts where its first chunk's slot is and holds the chunks
        // in order; each place points at its chunk's bytes.
        let mut at = 0;
        for (run_no, (start, run)) in runs.iter().enumerate() {
            let first = places.iter().find(|p| p.1 == run_no).unwrap().0;
            assert_eq!(*start, layout.slot_offset(first));
            at += run.len();
        }
        assert_eq!(at, idxs.len() * slot);
        assert_eq!(places.len(), idxs.len());
        for (&(idx, run, lo, hi), want) in places.iter().zip(&idxs) {
            assert_eq!(idx, *want);
            assert_eq!(hi - lo, slot);
            assert!(runs[run].1[lo..hi].iter().all(|b| *b == idx as u8));
            assert_eq!(runs[run].0 + lo as u64, layout.slot_offset(idx));
        }
    }
}
