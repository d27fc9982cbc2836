//! Signatures this machine has checked (or made) before, so an unchanged
//! access entry or manifest read again — by the mount, a command, after a
//! restart — skips its Ed25519 check, the bulk of the cost of opening a file.
//!
//! Client state, trusted like `.seen`: `$XDG_STATE_HOME/coffer/vaults/<vault
//! id>.<member id>.vouched`, a fixed-size hash table of 16-byte tags on disk
//! (a 4 KiB header, then 2^18 slots in windows of 8; 4 MiB, sparse until
//! used). Lookups and inserts read the tag's window (128 bytes) with one
//! `pread` and an insert writes its slot, so a mount and a command share tags
//! as they go; the table is hinted to the kernel once per process
//! (`POSIX_FADV_WILLNEED`: one sequential read into the page cache, not into
//! the process's memory), and a full window overwrites one of its slots (a
//! lost tag only costs a signature check). A tag is BLAKE3 keyed with a key
//! derived from the member's private key over the signer's public key, the
//! record kind's signature domain and the record's hash (body, signer and
//! signature): bytes put in that file by anyone who does not hold the private
//! key vouch for nothing. Only the signature check is skipped; every rule
//! (chaining, rights, file ids, rollback) still runs. `coffer verify --deep`
//! ignores the table.

use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::crypto::Identity;

const HEADER: &[u8; 16] = b"coffer vouch v1\n";
const HEADER_LEN: u64 = 4096;
const TAG_LEN: usize = 16;
const WINDOW: usize = 8;
const WINDOWS: u64 = 1 << 15;

pub struct VouchedSignatures {
    path: PathBuf,
    vault_id: [u8; 16],
    key: Zeroizing<[u8; 32]>,
    /// `None` when the table cannot be opened: nothing is vouched for.
    file: Option<File>,
    /// Whether the table was hinted into the page cache yet. (No copy is kept
    /// in this process: it would add 4 MiB to every daemon's resident memory.)
    hinted: std::sync::Once,
    /// Serializes this process's read-modify-write of a window.
    writing: std::sync::Mutex<()>,
}

impl VouchedSignatures {
    /// Opens this member's table for a vault, creating it; a table that cannot
    /// be opened or is not one vouches for nothing (it only saves work).
    pub fn load(vault_id: &[u8; 16], me: &Identity) -> VouchedSignatures {
        Self::load_from(super::pin::state_dir().join("vaults"), vault_id, me)
    }

    fn load_from(dir: PathBuf, vault_id: &[u8; 16], me: &Identity) -> VouchedSignatures {
        let path = dir.join(format!(
            "{}.{}.vouched",
            crate::crypto::hex(vault_id),
            me.member_id().to_hex()
        ));
        let mut key = Zeroizing::new([0u8; 32]);
        let mut h = blake3::Hasher::new_derive_key("coffer 2026 vouched signatures v1");
        h.update(me.seed());
        h.update(vault_id);
        h.finalize_xof().fill(key.as_mut());
        let file = match open_table(&path) {
            Ok(f) => Some(f),
            Err(e) => {
                log::debug!("signature record {} unusable: {e}", path.display());
                None
            }
        };
        VouchedSignatures {
            path,
            vault_id: *vault_id,
            key,
            file,
            hinted: std::sync::Once::new(),
            writing: std::sync::Mutex::new(()),
        }
    }

    fn tag(&self, signer_ed25519: &[u8; 32], domain: &[u8], record: &[u8; 32]) -> [u8; TAG_LEN] {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(signer_ed25519);
        h.update(&(domain.len() as u64).to_le_bytes());
        h.update(domain);
        h.update(record);
        let mut t = [0u8; TAG_LEN];
        h.finalize_xof().fill(&mut t);
        t
    }

    /// The window a tag lives in (tags are uniform: keyed hashes).
    fn window_of(tag: &[u8; TAG_LEN]) -> u64 {
        let n = u64::from_le_bytes(tag[..8].try_into().expect("8 bytes"));
        HEADER_LEN + (n % WINDOWS) * (WINDOW * TAG_LEN) as u64
    }

    fn read_window(file: &File, at: u64) -> [u8; WINDOW * TAG_LEN] {
        let mut w = [0u8; WINDOW * TAG_LEN];
        // A short read (sparse tail, racing truncation) leaves zeros: empty slots.
        let _ = file.read_at(&mut w, at);
        w
    }

    /// The window at `at`, read from the table (the first read of a process
    /// also asks the kernel to read the whole table ahead, sequentially).
    fn window(&self, file: &File, at: u64) -> [u8; WINDOW * TAG_LEN] {
        self.hinted
            .call_once(|| crate::store::advise::will_need(file, 0, table_size()));
        Self::read_window(file, at)
    }

    /// Whether this machine checked the signature on `record` by that key before.
    pub fn contains(&self, signer_ed25519: &[u8; 32], domain: &[u8], record: &[u8; 32]) -> bool {
        let Some(file) = &self.file else {
            return false;
        };
        if crate::history::log::checks_every_signature(&self.vault_id) {
            return false;
        }
        let t = self.tag(signer_ed25519, domain, record);
        holds(&self.window(file, Self::window_of(&t)), &t)
    }

    /// Records a signature this process verified or made.
    pub fn insert(&self, signer_ed25519: &[u8; 32], domain: &[u8], record: &[u8; 32]) {
        let Some(file) = &self.file else {
            return;
        };
        let t = self.tag(signer_ed25519, domain, record);
        let at = Self::window_of(&t);
        // Most inserts re-vouch a tag already there (a commit re-vouches the
        // file's older entries): look without the lock first, so the workers of
        // a batch command do not queue behind each other for a read.
        if holds(&self.window(file, at), &t) {
            return;
        }
        let _writing = crate::lock(&self.writing);
        let w = self.window(file, at);
        let mut free = None;
        for (i, slot) in w.chunks_exact(TAG_LEN).enumerate() {
            // Recorded already (the common case: a commit re-vouches the
            // file's older entries): nothing to write.
            if slot == t {
                return;
            }
            if free.is_none() && slot.iter().all(|b| *b == 0) {
                free = Some(i);
            }
        }
        // A full window gives up a slot picked by the new tag's own bits.
        let slot = free.unwrap_or(t[8] as usize % WINDOW);
        if let Err(e) = file.write_at(&t, at + (slot * TAG_LEN) as u64) {
            log::debug!(
                "could not record a checked signature in {}: {e}",
                self.path.display()
            );
        }
    }
}

/// Whether a window holds the tag.
fn holds(window: &[u8], tag: &[u8; TAG_LEN]) -> bool {
    window.chunks_exact(TAG_LEN).any(|slot| slot == tag)
}

fn table_size() -> u64 {
    HEADER_LEN + WINDOWS * (WINDOW * TAG_LEN) as u64
}

/// Opens (or creates, 0600) the table; one with another header starts over.
fn open_table(path: &std::path::Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    let size = table_size();
    let mut header = [0u8; 16];
    let ok = file.read_at(&mut header, 0).ok() == Some(16) && &header == HEADER;
    if !ok || file.metadata()?.len() != size {
        if file.metadata()?.len() != 0 {
            log::warn!(
                "{} is not a coffer signature record; starting it over",
                path.display()
            );
        }
        file.set_len(0)?;
        file.write_all_at(HEADER, 0)?;
        // Sparse: blocks are allocated as windows fill.
        file.set_len(size)?;
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_state<T>(f: impl FnOnce(&dyn Fn(&[u8; 16], &Identity) -> VouchedSignatures) -> T) -> T {
        let dir = tempfile::tempdir().unwrap();
        let load = |vault: &[u8; 16], me: &Identity| {
            VouchedSignatures::load_from(dir.path().to_path_buf(), vault, me)
        };
        f(&load)
    }

    #[test]
    fn a_record_is_shared_between_processes_of_one_member_only() {
        with_state(|load| {
            let alice = Identity::from_seed([1; 32]);
            let bob = Identity::from_seed([2; 32]);
            let vault = [7u8; 16];
            let (key, record) = ([3u8; 32], [4u8; 32]);
            let writer = load(&vault, &alice);
            assert!(!writer.contains(&key, b"d1", &record));
            writer.insert(&key, b"d1", &record);
            assert!(writer.contains(&key, b"d1", &record));
            // Another process of the same member sees it at once; only for
            // that exact key, domain and record.
            let reader = load(&vault, &alice);
            assert!(reader.contains(&key, b"d1", &record));
            assert!(!reader.contains(&key, b"d2", &record), "other record kind");
            assert!(!reader.contains(&[9; 32], b"d1", &record), "other signer");
            assert!(!reader.contains(&key, b"d1", &[5; 32]), "other record");
            writer.insert(&key, b"d1", &[6; 32]);
            assert!(reader.contains(&key, b"d1", &[6; 32]));
            // Another member (or vault) does not share the record.
            assert!(!load(&vault, &bob).contains(&key, b"d1", &record));
            assert!(!load(&[8; 16], &alice).contains(&key, b"d1", &record));
            let meta = std::fs::metadata(&writer.path).unwrap();
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        });
    }

    #[test]
    fn tags_written_without_the_private_key_vouch_for_nothing() {
        with_state(|load| {
            let alice = Identity::from_seed([1; 32]);
            let vault = [7u8; 16];
            let v = load(&vault, &alice);
            // Someone who can write the file but lacks alice's key computes
            // tags with another key, or none: neither is accepted.
            let mallory = Identity::from_seed([66; 32]);
            let forged = load(&vault, &mallory).tag(&[3; 32], b"d", &[5; 32]);
            let unkeyed: [u8; 16] = blake3::hash(&[5; 32]).as_bytes()[..16].try_into().unwrap();
            let mine = v.tag(&[3; 32], b"d", &[5; 32]);
            let f = v.file.as_ref().unwrap();
            for t in [forged, unkeyed] {
                // In the window alice would look in, and in the one it names.
                for at in [
                    VouchedSignatures::window_of(&mine),
                    VouchedSignatures::window_of(&t),
                ] {
                    f.write_all_at(&t, at).unwrap();
                }
            }
            assert!(!v.contains(&[3; 32], b"d", &[5; 32]));
        });
    }

    #[test]
    fn a_full_window_keeps_the_newest_and_stays_bounded() {
        with_state(|load| {
            let alice = Identity::from_seed([1; 32]);
            let v = load(&[7; 16], &alice);
            let size = std::fs::metadata(&v.path).unwrap().len();
            // Far more records than slots in one window: each lands somewhere.
            for i in 0..5000u32 {
                let mut r = [0u8; 32];
                r[..4].copy_from_slice(&i.to_le_bytes());
                v.insert(&[3; 32], b"d", &r);
                assert!(v.contains(&[3; 32], b"d", &r), "just inserted {i}");
            }
            assert_eq!(std::fs::metadata(&v.path).unwrap().len(), size);
        });
    }

    #[test]
    fn a_damaged_record_is_started_over_not_an_error() {
        with_state(|load| {
            let alice = Identity::from_seed([1; 32]);
            let path = load(&[7; 16], &alice).path;
            std::fs::write(&path, b"garbage that is not a header at all").unwrap();
            let v = load(&[7; 16], &alice);
            assert!(!v.contains(&[3; 32], b"d", &[4; 32]));
            v.insert(&[3; 32], b"d", &[4; 32]);
            assert!(load(&[7; 16], &alice).contains(&[3; 32], b"d", &[4; 32]));
        });
    }
}
