//! Access changes on one file: grant, revoke (eager or lazy), rotate and
//! migrate. Every change is a signed entry appended to the file's access list,
//! justified by the actor's rights in the state before it (see `access`).
//!
//! Key epochs: revoking read (and `rotate`) starts a new epoch with a fresh key
//! wrapped for exactly the remaining readers; the keys of earlier epochs that
//! chunks still use are sealed under the new key (`EpochKeys::earlier`), so the
//! remaining readers can read content that is not re-encrypted yet. Eager mode
//! re-encrypts at once (`migrate`); lazy mode leaves it to the next write or to
//! `coffer migrate`.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::file::{load_committed, stamp_of, unwrap_keys, OpenFile, Redo};
use super::Vault;
use crate::access::{self, AccessState};
use crate::crypto::{MemberId, SecretKey};
use crate::error::{Error, Result};
use crate::format::{AccessChange, EpochKeys, MemberRecord, ResealedChunk, Right, Sidecar};
use crate::store::lock::FileLock;
use crate::store::Durability;

#[derive(Serialize, Deserialize)]
struct EarlierKeys(Vec<(u32, [u8; 32])>);

fn earlier_aad(file_id: &[u8; 16], epoch: u32) -> Vec<u8> {
    let mut aad = b"coffer earlier keys v1".to_vec();
    aad.extend_from_slice(file_id);
    aad.extend_from_slice(&epoch.to_le_bytes());
    aad
}

/// Seals the keys of earlier epochs under the key of `epoch`.
pub(super) fn seal_earlier(
    key: &SecretKey,
    file_id: &[u8; 16],
    epoch: u32,
    older: &[(u32, SecretKey)],
) -> Vec<u8> {
    let plain = Zeroizing::new(crate::format::to_bytes(&EarlierKeys(
        older.iter().map(|(e, k)| (*e, *k.as_bytes())).collect(),
    )));
    let nonce: [u8; 24] = crate::crypto::random_bytes();
    let mut out = nonce.to_vec();
    out.extend(
        XChaCha20Poly1305::new(key.as_bytes().into())
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &earlier_aad(file_id, epoch),
                },
            )
            .expect("in-memory encryption cannot fail"),
    );
    out
}

pub(super) fn open_earlier(
    key: &SecretKey,
    file_id: &[u8; 16],
    epoch: u32,
    sealed: &[u8],
) -> Result<Vec<(u32, SecretKey)>> {
    let bad = || Error::integrity(format!("earlier keys of epoch {epoch} fail authentication"));
    if sealed.len() < 24 {
        return Err(bad());
    }
    let plain = Zeroizing::new(
        XChaCha20Poly1305::new(key.as_bytes().into())
            .decrypt(
                XNonce::from_slice(&sealed[..24]),
                Payload {
                    msg: &sealed[24..],
                    aad: &earlier_aad(file_id, epoch),
                },
            )
            .map_err(|_| bad())?,
    );
    let keys: EarlierKeys = crate::format::from_bytes("earlier keys", 64 * 1024, &plain)?;
    Ok(keys
        .0
        .into_iter()
        .filter(|(e, _)| *e < epoch)
        .map(|(e, k)| (e, SecretKey::from_bytes(k)))
        .collect())
}

/// Drops key epochs no chunk uses any more (after a migration).
pub(super) fn prune_epochs(sidecar: &mut Sidecar, current: u32) {
    let used: std::collections::BTreeSet<u32> =
        sidecar.chunks.iter().flatten().map(|c| c.epoch).collect();
    sidecar
        .keys
        .retain(|k| k.epoch == current || used.contains(&k.epoch));
    if !used.iter().any(|e| *e < current) {
        for k in sidecar.keys.iter_mut() {
            k.earlier = None;
        }
    }
}

/// How a revocation of read treats existing content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokeMode {
    /// Rotate and re-encrypt everything now (default).
    Eager,
    /// Record the revocation and a new epoch now; re-encrypt on the next write or `migrate`.
    Lazy,
}

impl OpenFile {
    /// Commits pending writes, then reloads the committed state from disk so an
    /// access change builds on the newest chain.
    fn refresh_for_change(&mut self, vault: &Vault) -> Result<()> {
        if self.is_dirty() {
            self.commit(vault, Durability::Lazy)?;
        }
        // Unchanged on disk since we verified it: nothing to reload.
        let now = stamp_of(&vault.paths.sidecar(&self.file_id));
        if now.is_some() && now == self.committed.stamp {
            return Ok(());
        }
        let fresh = load_committed(vault, &self.file_id, &self.display)?;
        if fresh.sidecar.manifest.hash() != self.committed.sidecar.manifest.hash() {
            self.size = fresh.manifest.size;
            self.chunks = fresh.sidecar.chunks.clone();
        }
        self.committed = fresh;
        self.pending_written = false;
        self.unlock_keys(vault)?;
        Ok(())
    }

    /// Appends entries (and key epochs) to the access list and writes the sidecar.
    fn append_access(
        &mut self,
        vault: &Vault,
        changes: Vec<AccessChange>,
        new_keys: Option<EpochKeys>,
    ) -> Result<AccessState> {
        let mut sidecar = self.committed.sidecar.clone();
        let mut state = self.committed.access.clone();
        let mut events = Vec::new();
        for change in changes {
            // The chain before it was verified when loaded; our own new entry
            // needs the rules applied, not its fresh signature checked again.
            let (entry, next) = access::sign_next(&state, &vault.me, change.clone(), vault)?;
            events.push(crate::history::log::Event::AccessChanged {
                file_id: self.file_id,
                entry_hash: entry.hash(),
                change,
            });
            sidecar.access.push(entry);
            state = next;
        }
        if let Some(k) = new_keys {
            sidecar.keys.push(k);
        }
        // A detached branch keeps naming the file's own sidecar.
        let written = if self.detached {
            (None, stamp_of(&vault.paths.sidecar(&self.file_id)))
        } else {
            // The new sidecar drops the pending chunks: slots first.
            self.sync_pending_slots()?;
            let written = self.write_sidecar(vault, &sidecar, vault.change_durability(), &[])?;
            self.committed.pending.clear();
            vault.record_all(events)?;
            written
        };
        if !self.detached {
            vault.seen.observe(
                &self.file_id,
                super::seen::SeenFile::of(&sidecar, self.committed.manifest.version),
                &self.display,
            )?;
        }
        self.committed.sidecar = sidecar;
        self.committed.access = state.clone();
        (self.committed.copies, self.committed.stamp) = written;
        Ok(state)
    }

    fn lock(&self) -> Result<FileLock> {
        FileLock::exclusive(&self.data).map_err(|e| Error::io(&self.data_path, e))
    }

    /// Grants `right` to `member`. Read needs read; update needs update.
    /// Returns false if the member already held it.
    pub fn grant(&mut self, vault: &Vault, member: &MemberRecord, right: Right) -> Result<bool> {
        if vault.read_only {
            return Err(Error::AccessDenied("vault is opened read-only".into()));
        }
        let _lock = self.lock()?;
        self.refresh_for_change(vault)?;
        let me = vault.me.member_id();
        let st = &self.committed.access;
        let allowed = match right {
            Right::Read => st.can_read(&me),
            Right::Update => st.can_update(&me),
        };
        if !allowed {
            let what = if right == Right::Read {
                "read"
            } else {
                "update"
            };
            return Err(Error::AccessDenied(format!(
                "{}: you do not hold the {what} right, so you cannot grant it",
                self.display
            )));
        }
        let id = member.public.member_id();
        let has = match right {
            Right::Read => st.can_read(&id),
            Right::Update => st.can_update(&id),
        };
        if has {
            return Ok(false);
        }
        if !st.can_read(&id) {
            // A new reader gets the current key; earlier ones come through `earlier`.
            let (_, key) = self.current_key()?;
            let epoch = st.epoch;
            let w = vault
                .wraps
                .wrap(&key, &member.public, &self.file_id, epoch)?;
            let mut sidecar_keys = self.committed.sidecar.keys.clone();
            match sidecar_keys.iter_mut().find(|k| k.epoch == epoch) {
                Some(k) => {
                    k.wraps.retain(|x| x.recipient != id);
                    k.wraps.push(w);
                }
                None => sidecar_keys.push(EpochKeys {
                    epoch,
                    wraps: vec![w],
                    earlier: None,
                }),
            }
            // Chunks on older epochs not reachable from the current key: wrap those too.
            let current_has_earlier = sidecar_keys
                .iter()
                .any(|k| k.epoch == epoch && k.earlier.is_some());
            if !current_has_earlier {
                for k in sidecar_keys.iter_mut().filter(|k| k.epoch != epoch) {
                    if let Some(old) = self.keys.get(&k.epoch) {
                        k.wraps.retain(|x| x.recipient != id);
                        k.wraps.push(vault.wraps.wrap(
                            old,
                            &member.public,
                            &self.file_id,
                            k.epoch,
                        )?);
                    }
                }
            }
            self.committed.sidecar.keys = sidecar_keys;
        }
        self.append_access(vault, vec![AccessChange::Grant { member: id, right }], None)?;
        Ok(true)
    }

    /// Revokes `right` from `member` (Read takes update too). Needs update, or
    /// `member` is yourself. Revoking read starts a new key epoch.
    pub fn revoke(
        &mut self,
        vault: &Vault,
        member: MemberId,
        right: Right,
        mode: RevokeMode,
    ) -> Result<bool> {
        if vault.read_only {
            return Err(Error::AccessDenied("vault is opened read-only".into()));
        }
        let lock = self.lock()?;
        self.refresh_for_change(vault)?;
        let me = vault.me.member_id();
        let st = self.committed.access.clone();
        if !(st.can_update(&me) || member == me) {
            return Err(Error::AccessDenied(format!(
                "{}: revoking another member needs the update right",
                self.display
            )));
        }
        let holds = match right {
            Right::Read => st.can_read(&member),
            Right::Update => st.can_update(&member),
        };
        if !holds {
            return Ok(false);
        }
        let pin = self.committed.sidecar.manifest.hash();
        let mut changes = vec![AccessChange::Revoke {
            member,
            right,
            content_pin: pin,
        }];
        // A new epoch needs the update right after the revocation too, so someone
        // dropping their own read leaves the key as it is (they held it anyway).
        let rotate = right == Right::Read && member != me && st.can_update(&me);
        if !rotate {
            self.append_access(vault, changes, None)?;
            return Ok(true);
        }
        changes.push(AccessChange::Rotate {
            epoch: st.epoch + 1,
        });
        self.start_epoch(vault, changes)?;
        drop(lock);
        if mode == RevokeMode::Eager {
            self.migrate(vault)?;
        }
        Ok(true)
    }

    /// Appends `changes` (ending in a Rotate) with a fresh key for the new epoch,
    /// wrapped for every remaining reader, and the older keys sealed under it.
    fn start_epoch(&mut self, vault: &Vault, changes: Vec<AccessChange>) -> Result<()> {
        let mut state = self.committed.access.clone();
        for c in &changes {
            state = access::sign_next(&state, &vault.me, c.clone(), vault)?.1;
        }
        let epoch = state.epoch;
        let key = SecretKey::generate();
        let mut wraps = Vec::new();
        for reader in state.readers.keys() {
            let rec = vault.member(reader).ok_or_else(|| {
                Error::integrity(format!("reader {reader} is not a vault member"))
            })?;
            wraps.push(vault.wraps.wrap(&key, &rec.public, &self.file_id, epoch)?);
        }
        let used: std::collections::BTreeSet<u32> =
            self.chunks.iter().flatten().map(|c| c.epoch).collect();
        let mut older = Vec::new();
        for e in used {
            let k = self.keys.get(&e).ok_or_else(|| {
                Error::AccessDenied(format!("{}: no key for epoch {e}", self.display))
            })?;
            older.push((e, k.clone()));
        }
        let earlier = if older.is_empty() {
            None
        } else {
            Some(seal_earlier(&key, &self.file_id, epoch, &older))
        };
        self.append_access(
            vault,
            changes,
            Some(EpochKeys {
                epoch,
                wraps,
                earlier,
            }),
        )?;
        self.keys.insert(epoch, key);
        Ok(())
    }

    /// A new key epoch, and every chunk re-encrypted under it.
    pub fn rotate(&mut self, vault: &Vault) -> Result<()> {
        self.require_update(vault)?;
        {
            let _lock = self.lock()?;
            self.refresh_for_change(vault)?;
            self.require_update(vault)?;
            let epoch = self.committed.access.epoch + 1;
            self.start_epoch(vault, vec![AccessChange::Rotate { epoch }])?;
        }
        self.migrate(vault)?;
        Ok(())
    }

    /// Chunks still encrypted under an epoch older than the current one.
    pub fn chunks_on_old_epochs(&self) -> u64 {
        let cur = self.committed.access.epoch;
        self.chunks
            .iter()
            .flatten()
            .filter(|c| c.epoch < cur)
            .count() as u64
    }

    /// Bytes of plaintext still on old epochs (for progress).
    pub fn stale_bytes(&self) -> u64 {
        self.chunks_on_old_epochs() * self.layout.chunk_size()
    }

    /// Re-encrypts every chunk on an old epoch under the current key.
    /// Returns the number of chunks re-encrypted.
    ///
    /// In batches of [`MIGRATE_BATCH`] bytes, each committed as a content
    /// version of its own (a mix of epochs is a valid state, every epoch in use
    /// being committed to in the manifest), with a re-encryption journal (how
    /// to redo each chunk from its slot), so a crash leaves the old or the new
    /// version of each batch. Each chunk of a batch is read, re-encrypted in
    /// place by one of the workers on every core, and written back from the
    /// same buffer (one pwrite per run of adjacent chunks); the next
    /// batch is re-encrypted while this one is written (and used only if the
    /// file did not change in between).
    pub fn migrate(&mut self, vault: &Vault) -> Result<u64> {
        self.require_update(vault)?;
        let per_batch = (MIGRATE_BATCH / self.layout.chunk_size()).max(1) as usize;
        let data = self
            .data
            .try_clone()
            .map_err(|e| Error::io(&self.data_path, e))?;
        let mut done = 0u64;
        let mut from = 0usize;
        let mut pool: Vec<Vec<u8>> = Vec::new();
        // The next batch, sealed ahead against the version named by the hash.
        let mut ahead: Option<(Resealed, [u8; 32], u32)> = None;
        loop {
            let _lock = self.lock()?;
            // Builds on the newest committed state (another mount may have
            // written, or pending writes of our own are committed first).
            self.refresh_for_change(vault)?;
            self.require_update(vault)?;
            let cur = self.committed.access.epoch;
            let (_, key) = self.current_key()?;
            let version = self.committed.sidecar.manifest.hash();
            let sealed = match ahead.take() {
                Some((r, v, e)) if v == version && e == cur => r,
                stale => {
                    if let Some((r, ..)) = stale {
                        // The file changed meanwhile: redo that batch from disk.
                        from = r.batch[0] as usize;
                        pool.extend(r.runs.into_iter().map(|(_, b)| b));
                    }
                    let batch = self.stale_batch(from, cur, per_batch);
                    if batch.is_empty() {
                        break;
                    }
                    self.resealer(&data).run(batch, cur, &key, &mut pool)?
                }
            };
            let (first, last) = (sealed.batch[0], *sealed.batch.last().expect("not empty"));
            from = last as usize + 1;
            for (idx, hash) in &sealed.hashes {
                self.chunks[*idx as usize] = Some(crate::format::ChunkRef {
                    epoch: cur,
                    hash: *hash,
                });
            }
            let next = self.stale_batch(from, cur, per_batch);
            let resealer = (!next.is_empty()).then(|| self.resealer(&data));
            let mut spare = std::mem::take(&mut pool);
            let writes: Vec<(u64, &[u8])> = sealed
                .runs
                .iter()
                .map(|(start, buf)| (self.layout.slot_offset(*start), &buf[..]))
                .collect();
            // Not the new chunks (a second copy of the batch) but what redoes
            // them from their slots, with the keys they came from.
            let mut old_epochs: Vec<u32> = sealed.redo.iter().map(|r| r.old_epoch).collect();
            old_epochs.sort_unstable();
            old_epochs.dedup();
            let mut old_keys = Vec::with_capacity(old_epochs.len());
            for e in old_epochs {
                let k = self.keys.get(&e).ok_or_else(|| {
                    Error::AccessDenied(format!("{}: no key for epoch {e}", self.display))
                })?;
                old_keys.push((e, k.clone()));
            }
            let redo = Redo {
                chunks: &sealed.redo,
                old_keys: seal_earlier(&key, &self.file_id, cur, &old_keys),
            };
            let (committed, next_sealed) = std::thread::scope(|scope| {
                let key2 = key.clone();
                let spare = &mut spare;
                let worker = resealer.map(|r| scope.spawn(move || r.run(next, cur, &key2, spare)));
                let committed =
                    // Every chunk of a batch overwrites a committed one: nothing
                    // goes into free slots before the commit point.
                    self.finish_commit(vault, cur, &key, &[], Some(&redo), &writes, Durability::Lazy, false);
                let next_sealed = worker
                    .map(|w| w.join().expect("a re-encryption worker panicked"))
                    .transpose();
                (committed, next_sealed)
            });
            committed?;
            drop(writes);
            pool.append(&mut spare);
            pool.extend(sealed.runs.into_iter().map(|(_, b)| b));
            if let Some(r) = next_sealed? {
                ahead = Some((r, self.committed.sidecar.manifest.hash(), cur));
            }
            {
                // Let the disk work while the next batch is re-encrypted (the
                // data has to get there anyway: fdatasync or syncfs at the end).
                let at = self.layout.slot_offset(first);
                let end = self.layout.slot_offset(last + 1);
                crate::store::sync::start_writeback(&self.data, at, end - at);
            }
            done += sealed.batch.len() as u64;
        }
        let cur = self.committed.access.epoch;
        let needs_prune = self
            .committed
            .sidecar
            .keys
            .iter()
            .any(|k| k.epoch != cur || k.earlier.is_some());
        if done == 0 && !needs_prune {
            return Ok(0);
        }
        // The last commit prunes the old epochs; it is made durable as asked.
        self.force_commit = true;
        self.commit(vault, vault.change_durability())?;
        Ok(done)
    }

    /// Up to `max` indices from `from` on of chunks stored on an epoch before `cur`.
    fn stale_batch(&self, from: usize, cur: u32, max: usize) -> Vec<u64> {
        self.chunks
            .iter()
            .enumerate()
            .skip(from)
            .filter(|(_, c)| matches!(c, Some(c) if c.epoch < cur))
            .map(|(i, _)| i as u64)
            .take(max)
            .collect()
    }

    /// What re-encrypting chunks needs, taken from the committed state so it
    /// can run while `self` commits the batch before.
    fn resealer<'a>(&self, data: &'a std::fs::File) -> Resealer<'a> {
        Resealer {
            data,
            data_path: self.data_path.clone(),
            file_id: self.file_id,
            layout: self.layout,
            size: self.committed.manifest.size,
            chunks: self.chunks.clone(),
            keys: self.keys.clone(),
            overlay: self.overlay_chunks(),
            display: self.display.clone(),
        }
    }
}

/// A batch re-encrypted in memory: the runs of adjacent chunks (first index,
/// stored bytes as laid out in the content file) and each chunk's new hash.
struct Resealed {
    batch: Vec<u64>,
    runs: Vec<(u64, Vec<u8>)>,
    hashes: Vec<(u64, [u8; 32])>,
    /// What a crash part-way through writing the batch back is redone from.
    redo: Vec<ResealedChunk>,
}

struct Resealer<'a> {
    data: &'a std::fs::File,
    data_path: std::path::PathBuf,
    file_id: [u8; 16],
    layout: crate::format::data::Layout,
    size: u64,
    chunks: Vec<Option<crate::format::ChunkRef>>,
    keys: std::collections::HashMap<u32, SecretKey>,
    overlay: std::collections::HashMap<u64, Vec<u8>>,
    display: String,
}

impl Resealer<'_> {
    /// Reads the committed chunks `batch` (ascending, each stored on an old
    /// epoch; each worker reads its own), checks each against the manifest and re-encrypts it in place
    /// under `key` (epoch `epoch`) with a fresh nonce. Buffers come from `pool`.
    fn run(
        &self,
        batch: Vec<u64>,
        epoch: u32,
        key: &SecretKey,
        pool: &mut Vec<Vec<u8>>,
    ) -> Result<Resealed> {
        let stored_len =
            |idx: u64| self.layout.chunk_plain_len(self.size, idx) + crate::crypto::chunk::OVERHEAD;
        let slot = self.layout.slot_size() as usize;
        let mut runs: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut i = 0;
        while i < batch.len() {
            let mut j = i + 1;
            while j < batch.len() && batch[j] == batch[j - 1] + 1 {
                j += 1;
            }
            let len = (j - i - 1) * slot + stored_len(batch[j - 1]);
            let mut buf = pool.pop().unwrap_or_default();
            // Every byte is read over: zero only what a reused buffer lacks.
            buf.resize(len, 0);
            runs.push((batch[i], buf));
            i = j;
        }
        let mut work: Vec<(u64, &mut [u8])> = Vec::with_capacity(batch.len());
        for (start, buf) in runs.iter_mut() {
            for (k, stored) in buf.chunks_mut(slot).enumerate() {
                work.push((*start + k as u64, stored));
            }
        }
        let one = |(idx, stored): &mut (u64, &mut [u8])| -> Result<(u64, [u8; 32], ResealedChunk)> {
            let idx = *idx;
            // Read here, on the worker that re-encrypts it: the reads of a
            // batch are spread over the cores too.
            let got = super::file::read_full_at(self.data, stored, self.layout.slot_offset(idx))
                .map_err(|e| Error::io(&self.data_path, e))?;
            if got != stored.len() {
                return Err(Error::integrity(format!(
                    "{}: content file is shorter than the signed manifest says (truncated)",
                    self.display
                )));
            }
            let r = self.chunks[idx as usize].expect("only stored chunks are stale");
            if *blake3::hash(stored).as_bytes() != r.hash {
                match self.overlay.get(&idx) {
                    Some(j) if *blake3::hash(j).as_bytes() == r.hash && j.len() == stored.len() => {
                        stored.copy_from_slice(j)
                    }
                    _ => {
                        return Err(Error::integrity(format!(
                            "{}: chunk {idx} does not match the signed manifest (modified, truncated or rolled back)",
                            self.display
                        )))
                    }
                }
            }
            let old = self.keys.get(&r.epoch).ok_or_else(|| {
                Error::AccessDenied(format!("{}: no key for epoch {}", self.display, r.epoch))
            })?;
            let nonce = |s: &[u8]| -> [u8; 24] { s[..24].try_into().expect("a stored chunk") };
            let old_nonce = nonce(stored);
            if !crate::crypto::chunk::reseal_in_place(
                old,
                r.epoch,
                key,
                epoch,
                &self.file_id,
                idx,
                stored,
            ) {
                return Err(Error::integrity(format!(
                    "{}: chunk {idx} fails authentication",
                    self.display
                )));
            }
            let redo = ResealedChunk {
                index: idx,
                old_epoch: r.epoch,
                old_nonce,
                new_nonce: nonce(stored),
            };
            Ok((idx, *blake3::hash(stored).as_bytes(), redo))
        };
        // The chunks are independent: split them over the cores.
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 4)
            .min(work.len().div_ceil(4).max(1));
        let hashes = if workers == 1 {
            work.iter_mut().map(one).collect::<Result<Vec<_>>>()?
        } else {
            let per = work.len().div_ceil(workers);
            std::thread::scope(|scope| {
                let handles: Vec<_> = work
                    .chunks_mut(per)
                    .map(|part| {
                        scope.spawn(|| part.iter_mut().map(one).collect::<Result<Vec<_>>>())
                    })
                    .collect();
                let mut out = Vec::with_capacity(batch.len());
                for h in handles {
                    out.extend(h.join().expect("a re-encryption worker panicked")?);
                }
                Ok::<_, Error>(out)
            })?
        };
        drop(work);
        let (hashes, redo) = hashes
            .into_iter()
            .map(|(idx, hash, redo)| ((idx, hash), redo))
            .unzip();
        Ok(Resealed {
            batch,
            runs,
            hashes,
            redo,
        })
    }
}

/// Plaintext bytes re-encrypted per commit by `migrate` (bounds memory: the
/// batch is held about three times, read, sealed and journaled).
pub const MIGRATE_BATCH: u64 = 32 << 20;

impl Vault {
    /// Re-reads a file's access state without needing a key (for `coffer access`).
    pub fn file_access(
        &self,
        backing: &std::path::Path,
        display: &str,
    ) -> Result<(AccessState, crate::format::Manifest)> {
        let id = self.read_file_id(backing)?;
        let c = load_committed(self, &id, display)?;
        let _ = unwrap_keys;
        Ok((c.access, c.manifest))
    }
}
