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

use super::file::{load_committed, stamp_of, unwrap_keys, OpenFile};
use super::Vault;
use crate::access::{self, AccessState};
use crate::crypto::{wrap, MemberId, SecretKey};
use crate::error::{Error, Result};
use crate::format::{AccessChange, EpochKeys, MemberRecord, Right, Sidecar};
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
            let entry = access::next_entry(&state, &vault.me, change.clone());
            events.push(crate::history::log::Event::AccessChanged {
                file_id: self.file_id,
                entry_hash: entry.hash(),
                change,
            });
            sidecar.access.push(entry);
            state = access::replay(&self.file_id, &sidecar.access, vault)?;
        }
        if let Some(k) = new_keys {
            sidecar.keys.push(k);
        }
        if !self.detached {
            self.write_sidecar(vault, &sidecar, vault.change_durability())?;
            for e in events {
                vault.record(e)?;
            }
        }
        if !self.detached {
            vault.seen.observe(
                &self.file_id,
                super::seen::SeenFile {
                    version: self.committed.manifest.version,
                    manifest_hash: sidecar.manifest.hash(),
                    access_len: sidecar.access.len() as u64,
                },
                &self.display,
            )?;
        }
        self.committed.sidecar = sidecar;
        self.committed.access = state.clone();
        self.committed.stamp = stamp_of(&vault.paths.sidecar(&self.file_id));
        Ok(state)
    }

    fn lock(&self) -> Result<FileLock> {
        FileLock::exclusive(&self.data).map_err(|e| Error::io(&self.data_path, e))
    }

    fn current_key(&self) -> Result<SecretKey> {
        let epoch = self.committed.access.epoch;
        self.keys.get(&epoch).cloned().ok_or_else(|| {
            Error::AccessDenied(format!(
                "{}: you hold no key for the current epoch",
                self.display
            ))
        })
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
            let key = self.current_key()?;
            let epoch = st.epoch;
            let w = wrap::wrap(&key, &member.public, &self.file_id, epoch)?;
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
                        k.wraps
                            .push(wrap::wrap(old, &member.public, &self.file_id, k.epoch)?);
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
        let mut preview = self.committed.sidecar.access.clone();
        let mut state = self.committed.access.clone();
        for c in &changes {
            preview.push(access::next_entry(&state, &vault.me, c.clone()));
            state = access::replay(&self.file_id, &preview, vault)?;
        }
        let epoch = state.epoch;
        let key = SecretKey::generate();
        let mut wraps = Vec::new();
        for reader in state.readers.keys() {
            let rec = vault.member(reader).ok_or_else(|| {
                Error::integrity(format!("reader {reader} is not a vault member"))
            })?;
            wraps.push(wrap::wrap(&key, &rec.public, &self.file_id, epoch)?);
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
    pub fn migrate(&mut self, vault: &Vault) -> Result<u64> {
        self.require_update(vault)?;
        let cur = self.committed.access.epoch;
        let stale: Vec<u64> = self
            .chunks
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(c, Some(c) if c.epoch < cur))
            .map(|(i, _)| i as u64)
            .collect();
        let needs_prune = self
            .committed
            .sidecar
            .keys
            .iter()
            .any(|k| k.epoch != cur || k.earlier.is_some());
        if stale.is_empty() && !needs_prune {
            return Ok(0);
        }
        // In batches that bound memory: each batch is committed as a content
        // version of its own (a mix of epochs is a valid state, every epoch in use
        // being committed to in the manifest).
        let per_batch =
            (super::file::DIRTY_LIMIT as u64 / self.layout.chunk_size()).max(1) as usize;
        for batch in stale.chunks(per_batch) {
            for idx in batch {
                self.dirty_chunk(*idx, true)?;
            }
            self.commit(vault, Durability::Lazy)?;
        }
        // The last commit prunes the old epochs; it is made durable as asked.
        self.force_commit = true;
        self.commit(vault, vault.change_durability())?;
        Ok(stale.len() as u64)
    }
}

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
