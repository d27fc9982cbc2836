//! The signed history: one append-only log per member (`log/<member id>.log`),
//! so members never write the same file and a sync folder merges logs without
//! conflicts. Each record is `u32 LE length || postcard(Signed<LogEntry>)`;
//! entries chain by hash; `log/<member id>.head` holds a signed checkpoint of
//! the newest entry. Entries are appended at once (one write), checkpoints are
//! batched. Names never appear in the log: files are named by id.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::crypto::{Identity, MemberId};
use crate::error::{Error, Result};
use crate::format::signed::SignedBody;
use crate::format::{self, AccessChange, Signed, FORMAT_VERSION};
use crate::store::lock::FileLock;
use crate::store::{atomic_write, read_limited, Durability};

/// Largest log this build reads (bounds memory on hostile input).
pub const MAX_LOG: usize = 512 << 20;
const MAX_ENTRY: usize = 8192;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    FileCreated {
        file_id: [u8; 16],
    },
    ContentVersion {
        file_id: [u8; 16],
        version: u64,
        manifest_hash: [u8; 32],
        size: u64,
    },
    AccessChanged {
        file_id: [u8; 16],
        entry_hash: [u8; 32],
        change: AccessChange,
    },
    FileDeleted {
        file_id: [u8; 16],
    },
    /// A directory entry now names this file or directory: `name` is BLAKE3 of
    /// the parent's dir id and the (encrypted) backing name, so the log holds no
    /// names yet binds each entry to its id (a swap of two entries is caught).
    Linked {
        id: [u8; 16],
        name: [u8; 16],
    },
    /// The entry no longer names it.
    Unlinked {
        id: [u8; 16],
        name: [u8; 16],
    },
    MemberAdded {
        member: MemberId,
        name: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub vault_id: [u8; 16],
    pub member: MemberId,
    pub seq: u64,
    pub prev: [u8; 32],
    pub time_unix: u64,
    pub event: Event,
}

impl SignedBody for LogEntry {
    const DOMAIN: &'static [u8] = b"coffer log entry v1\0";
    const KIND: &'static str = "log entry";
    const MAX_LEN: usize = MAX_ENTRY;
}

/// A signed statement "my log has `len` entries ending in `head`".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub format_version: u16,
    pub vault_id: [u8; 16],
    pub member: MemberId,
    pub len: u64,
    pub head: [u8; 32],
    pub time_unix: u64,
}

impl SignedBody for Checkpoint {
    const DOMAIN: &'static [u8] = b"coffer log checkpoint v1\0";
    const KIND: &'static str = "log checkpoint";
    const MAX_LEN: usize = 1024;
}

pub const CHECKPOINT: format::Kind = format::Kind {
    name: "log checkpoint",
    magic: *b"CFRH",
    max_len: 4096,
};

/// The name tag of an entry for `Linked`/`Unlinked`.
pub fn name_tag(parent_dir_id: &[u8; 16], backing_name: &[u8]) -> [u8; 16] {
    let mut h = blake3::Hasher::new_derive_key("coffer 2026 log name tag v1");
    h.update(parent_dir_id);
    h.update(backing_name);
    let mut t = [0u8; 16];
    t.copy_from_slice(&h.finalize().as_bytes()[..16]);
    t
}

pub fn log_path(dir: &Path, member: &MemberId) -> PathBuf {
    dir.join(format!("{}.log", member.to_hex()))
}

pub fn head_path(dir: &Path, member: &MemberId) -> PathBuf {
    dir.join(format!("{}.head", member.to_hex()))
}

/// A member's log read back and verified.
#[derive(Debug, Default)]
pub struct MemberLog {
    pub entries: Vec<LogEntry>,
    pub head: [u8; 32],
    /// Bytes of complete, valid records (a torn tail after a crash is ignored).
    pub valid_len: u64,
    pub torn_tail: bool,
    pub checkpoint: Option<Checkpoint>,
}

/// Reads and verifies one member's log against their Ed25519 key.
pub fn read_member_log(
    dir: &Path,
    vault_id: &[u8; 16],
    member: &MemberId,
    ed25519: &[u8; 32],
) -> Result<MemberLog> {
    let path = log_path(dir, member);
    let bytes = match read_limited(&path, MAX_LOG, "log") {
        Ok(b) => b,
        Err(Error::NotFound(_)) => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut out = MemberLog::default();
    let mut pos = 0usize;
    let mut prev = [0u8; 32];
    while pos < bytes.len() {
        if bytes.len() - pos < 4 {
            out.torn_tail = true;
            break;
        }
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        if len > MAX_ENTRY + 256 {
            return Err(Error::integrity(format!(
                "log of {member}: record at byte {pos} has an impossible length"
            )));
        }
        if bytes.len() - pos - 4 < len {
            out.torn_tail = true;
            break;
        }
        let rec = &bytes[pos + 4..pos + 4 + len];
        let signed: Signed<LogEntry> = format::from_bytes("log record", MAX_ENTRY + 256, rec)?;
        let seq = out.entries.len() as u64;
        if signed.signer != *member {
            return Err(Error::integrity(format!(
                "log of {member}: entry {seq} signed by someone else"
            )));
        }
        let entry = signed
            .verify(ed25519)
            .map_err(|e| Error::integrity(format!("log of {member}: entry {seq}: {e}")))?;
        if entry.seq != seq
            || entry.prev != prev
            || entry.member != *member
            || &entry.vault_id != vault_id
        {
            return Err(Error::integrity(format!(
                "log of {member}: entry {seq} is out of order, from another log or not chained"
            )));
        }
        prev = signed.hash();
        out.entries.push(entry);
        pos += 4 + len;
        out.valid_len = pos as u64;
    }
    out.head = prev;
    if let Ok(bytes) = read_limited(
        &head_path(dir, member),
        CHECKPOINT.max_len,
        "log checkpoint",
    ) {
        let signed: Signed<Checkpoint> = format::decode_file(CHECKPOINT, &bytes)?;
        let cp = signed
            .verify(ed25519)
            .map_err(|e| Error::integrity(format!("checkpoint of {member}: {e}")))?;
        if cp.member != *member || &cp.vault_id != vault_id {
            return Err(Error::integrity(format!(
                "checkpoint of {member} belongs elsewhere"
            )));
        }
        if cp.len > out.entries.len() as u64 {
            return Err(Error::integrity(format!(
                "log of {member} is shorter ({} entries) than its signed checkpoint ({}): truncated or rolled back",
                out.entries.len(),
                cp.len
            )));
        }
        let at = if cp.len == 0 {
            [0u8; 32]
        } else {
            entry_hash_at(&bytes_or_empty(dir, member), cp.len)?
        };
        if at != cp.head {
            return Err(Error::integrity(format!(
                "log of {member} does not match its signed checkpoint"
            )));
        }
        out.checkpoint = Some(cp);
    }
    Ok(out)
}

fn bytes_or_empty(dir: &Path, member: &MemberId) -> Vec<u8> {
    read_limited(&log_path(dir, member), MAX_LOG, "log").unwrap_or_default()
}

/// Hash of the `n`th entry (1-based) of a raw log.
fn entry_hash_at(bytes: &[u8], n: u64) -> Result<[u8; 32]> {
    let mut pos = 0usize;
    let mut hash = [0u8; 32];
    for _ in 0..n {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let signed: Signed<LogEntry> = format::from_bytes(
            "log record",
            MAX_ENTRY + 256,
            &bytes[pos + 4..pos + 4 + len],
        )?;
        hash = signed.hash();
        pos += 4 + len;
    }
    Ok(hash)
}

/// Appends entries to this member's log.
pub struct LogWriter {
    dir: PathBuf,
    vault_id: [u8; 16],
    member: MemberId,
    /// Entries written since the last checkpoint.
    unsigned_tail: u64,
    /// (file length, entries, head hash) after our last append: lets the next
    /// append skip re-reading the log unless another writer appended meanwhile.
    known: Option<(u64, u64, [u8; 32])>,
}

impl LogWriter {
    pub fn new(dir: PathBuf, vault_id: [u8; 16], member: MemberId) -> Self {
        LogWriter {
            dir,
            vault_id,
            member,
            unsigned_tail: 0,
            known: None,
        }
    }

    /// Appends one event (under an flock, re-reading the tail so two mounts of one
    /// identity keep one chain).
    pub fn append(&mut self, me: &Identity, event: Event) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let path = log_path(&self.dir, &self.member);
        let mut f = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o644)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let _lock = FileLock::exclusive(&f).map_err(|e| Error::io(&path, e))?;
        let len = f.metadata().map_err(|e| Error::io(&path, e))?.len();
        let (seq, prev) = match self.known {
            Some((known_len, seq, head)) if known_len == len => (seq, head),
            _ => {
                let log = read_member_log(
                    &self.dir,
                    &self.vault_id,
                    &self.member,
                    &me.public().ed25519,
                )?;
                if log.torn_tail {
                    // A crash cut the last record short: drop it before appending.
                    f.set_len(log.valid_len).map_err(|e| Error::io(&path, e))?;
                }
                (log.entries.len() as u64, log.head)
            }
        };
        let entry = LogEntry {
            vault_id: self.vault_id,
            member: self.member,
            seq,
            prev,
            time_unix: crate::vault::now_unix(),
            event,
        };
        let signed = Signed::sign(&entry, me);
        let body = format::to_bytes(&signed);
        let mut rec = (body.len() as u32).to_le_bytes().to_vec();
        rec.extend_from_slice(&body);
        f.write_all(&rec).map_err(|e| Error::io(&path, e))?;
        let new_len = f.metadata().map_err(|e| Error::io(&path, e))?.len();
        self.known = Some((new_len, seq + 1, signed.hash()));
        self.unsigned_tail += 1;
        Ok(())
    }

    /// Signs a checkpoint of the whole log if entries were added since the last.
    pub fn checkpoint(&mut self, me: &Identity) -> Result<()> {
        if self.unsigned_tail == 0 {
            return Ok(());
        }
        let path = log_path(&self.dir, &self.member);
        let f = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let _lock = FileLock::exclusive(&f).map_err(|e| Error::io(&path, e))?;
        let log = read_member_log(
            &self.dir,
            &self.vault_id,
            &self.member,
            &me.public().ed25519,
        )?;
        let cp = Checkpoint {
            format_version: FORMAT_VERSION,
            vault_id: self.vault_id,
            member: self.member,
            len: log.entries.len() as u64,
            head: log.head,
            time_unix: crate::vault::now_unix(),
        };
        let bytes = format::encode_file(CHECKPOINT, &Signed::sign(&cp, me));
        atomic_write(
            &head_path(&self.dir, &self.member),
            &bytes,
            Durability::Sync,
        )?;
        self.unsigned_tail = 0;
        Ok(())
    }
}
