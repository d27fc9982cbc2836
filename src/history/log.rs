//! The signed history: one append-only log per member (`log/<member id>.log`),
//! so members never write the same file and a sync folder merges logs without
//! conflicts. Each record is `u32 LE length || postcard(Signed<LogEntry>)`;
//! entries chain by hash; `log/<member id>.head` holds a signed checkpoint of
//! the newest entry. Entries are appended at once (one write), checkpoints are
//! batched. Names never appear in the log: files are named by id.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
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
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A log file starts with `CFRL` and the format version (u16 LE).
pub const LOG_MAGIC: [u8; 4] = *b"CFRL";
pub const LOG_HEADER_LEN: usize = 6;

/// Largest signed log entry this build reads.
pub const MAX_ENTRY: usize = 8192;

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
    /// The signer settled a fork of the file (two branches of its history from
    /// copies of the vault changed apart): branches up to `version` are closed,
    /// and `version` (a new content version) is what they chose to keep.
    ForkResolved {
        file_id: [u8; 16],
        version: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub vault_id: [u8; 16],
    pub member: MemberId,
    pub seq: u64,
    pub prev: [u8; 32],
    /// Milliseconds since the Unix epoch (orders members' entries finely).
    pub time_ms: u64,
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

impl MemberLog {
    /// Where the log ends: its valid length, entry count and head.
    pub fn position(&self) -> LogPosition {
        LogPosition {
            offset: self.valid_len,
            entries: self.entries.len() as u64,
            head: self.head,
        }
    }
}

/// Where an incremental read of a log starts: after `entries` entries ending
/// at byte `offset` with hash `head`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogPosition {
    pub offset: u64,
    pub entries: u64,
    pub head: [u8; 32],
}

/// Entries appended to a member's log after `from`, verified and chained onto it.
/// A log shorter than `from` (truncated, rolled back or rewritten) is an error.
pub fn read_member_log_from(
    dir: &Path,
    vault_id: &[u8; 16],
    member: &MemberId,
    ed25519: &[u8; 32],
    from: LogPosition,
) -> Result<(Vec<LogEntry>, LogPosition, bool)> {
    read_log_inner(dir, vault_id, member, ed25519, from, None)
}

fn read_log_inner(
    dir: &Path,
    vault_id: &[u8; 16],
    member: &MemberId,
    ed25519: &[u8; 32],
    from: LogPosition,
    mut hashes: Option<&mut Vec<[u8; 32]>>,
) -> Result<(Vec<LogEntry>, LogPosition, bool)> {
    use std::io::{Seek, SeekFrom};
    let path = log_path(dir, member);
    let mut f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && from.offset == 0 => {
            return Ok((Vec::new(), from, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::integrity(format!(
                "the history log of {member} is gone"
            )))
        }
        Err(e) => return Err(Error::io(&path, e)),
    };
    let len = f.metadata().map_err(|e| Error::io(&path, e))?.len();
    if len < from.offset {
        return Err(Error::integrity(format!(
            "the history log of {member} shrank from {} to {len} bytes (truncated or rolled back)",
            from.offset
        )));
    }
    if len - from.offset > MAX_LOG as u64 {
        return Err(Error::corrupt("log", "log grew past the size limit"));
    }
    f.seek(SeekFrom::Start(from.offset))
        .map_err(|e| Error::io(&path, e))?;
    let mut bytes = Vec::with_capacity((len - from.offset) as usize);
    std::io::Read::read_to_end(&mut (&mut f).take(len - from.offset), &mut bytes)
        .map_err(|e| Error::io(&path, e))?;
    // A long stretch to read: entries covered by this member's signed
    // checkpoint need no signature check each, the hash chain ending in the
    // signed head authenticates them (checked below, before anything is returned).
    let anchor = if bytes.len() > ANCHOR_MIN_BYTES {
        read_checkpoint(dir, vault_id, member, ed25519)
            .ok()
            .flatten()
            .filter(|cp| cp.len > from.entries)
    } else {
        None
    };
    let mut unverified: Vec<std::ops::Range<usize>> = Vec::new();
    let mut anchor_reached = false;
    let mut entries = Vec::new();
    let mut pos = 0usize;
    let mut at = from;
    let mut torn = false;
    if from.offset == 0 && !bytes.is_empty() {
        // The file header: magic and format version.
        if bytes.len() < LOG_HEADER_LEN {
            return Ok((entries, at, true));
        }
        if bytes[..4] != LOG_MAGIC {
            return Err(Error::corrupt(
                "log",
                format!("{}: not a coffer history log", path.display()),
            ));
        }
        format::check_version(u16::from_le_bytes([bytes[4], bytes[5]]))?;
        pos = LOG_HEADER_LEN;
        at.offset = LOG_HEADER_LEN as u64;
    }
    while pos < bytes.len() {
        if bytes.len() - pos < 4 {
            torn = true;
            break;
        }
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        if len > MAX_ENTRY + 256 {
            return Err(Error::integrity(format!(
                "log of {member}: record at byte {} has an impossible length",
                from.offset as usize + pos
            )));
        }
        if bytes.len() - pos - 4 < len {
            torn = true;
            break;
        }
        let rec = &bytes[pos + 4..pos + 4 + len];
        let signed: Signed<LogEntry> = format::from_bytes("log record", MAX_ENTRY + 256, rec)?;
        let seq = at.entries;
        if signed.signer != *member {
            return Err(Error::integrity(format!(
                "log of {member}: entry {seq} signed by someone else"
            )));
        }
        let entry = if anchor.as_ref().is_some_and(|cp| seq < cp.len) {
            unverified.push(pos + 4..pos + 4 + len);
            signed.decode_unverified()
        } else {
            signed.verify(ed25519)
        }
        .map_err(|e| Error::integrity(format!("log of {member}: entry {seq}: {e}")))?;
        if entry.seq != seq
            || entry.prev != at.head
            || entry.member != *member
            || &entry.vault_id != vault_id
        {
            return Err(Error::integrity(format!(
                "log of {member}: entry {seq} is out of order, from another log or not chained"
            )));
        }
        pos += 4 + len;
        at = LogPosition {
            offset: from.offset + pos as u64,
            entries: seq + 1,
            head: signed.hash(),
        };
        if let Some(h) = hashes.as_deref_mut() {
            h.push(at.head);
        }
        if let Some(cp) = &anchor {
            if at.entries == cp.len && at.head == cp.head {
                anchor_reached = true;
            }
        }
        entries.push(entry);
    }
    if !anchor_reached {
        // The chain does not end in the signed head (shorter log, or altered):
        // check every signature, which names the first bad entry.
        for (i, range) in unverified.into_iter().enumerate() {
            let signed: Signed<LogEntry> =
                format::from_bytes("log record", MAX_ENTRY + 256, &bytes[range])?;
            signed.verify(ed25519).map_err(|e| {
                Error::integrity(format!(
                    "log of {member}: entry {}: {e}",
                    from.entries + i as u64
                ))
            })?;
        }
    }
    Ok((entries, at, torn))
}

/// Unread log bytes above which a read first looks for the signed checkpoint.
const ANCHOR_MIN_BYTES: usize = 64 << 10;

/// A member's signed checkpoint, verified (None if there is none).
fn read_checkpoint(
    dir: &Path,
    vault_id: &[u8; 16],
    member: &MemberId,
    ed25519: &[u8; 32],
) -> Result<Option<Checkpoint>> {
    let Ok(bytes) = read_limited(
        &head_path(dir, member),
        CHECKPOINT.max_len,
        "log checkpoint",
    ) else {
        return Ok(None);
    };
    let signed: Signed<Checkpoint> = format::decode_file(CHECKPOINT, &bytes)?;
    let cp: Checkpoint = signed
        .verify(ed25519)
        .map_err(|e| Error::integrity(format!("checkpoint of {member}: {e}")))?;
    format::check_version(cp.format_version)?;
    if cp.member != *member || &cp.vault_id != vault_id {
        return Err(Error::integrity(format!(
            "checkpoint of {member} belongs elsewhere"
        )));
    }
    Ok(Some(cp))
}

/// Reads and verifies one member's whole log, and its checkpoint.
pub fn read_member_log(
    dir: &Path,
    vault_id: &[u8; 16],
    member: &MemberId,
    ed25519: &[u8; 32],
) -> Result<MemberLog> {
    let mut hashes = Vec::new();
    let (entries, at, torn) = read_log_inner(
        dir,
        vault_id,
        member,
        ed25519,
        LogPosition::default(),
        Some(&mut hashes),
    )?;
    let mut out = MemberLog {
        entries,
        head: at.head,
        valid_len: at.offset,
        torn_tail: torn,
        checkpoint: None,
    };
    let prev = at.head;
    out.head = prev;
    if let Some(cp) = read_checkpoint(dir, vault_id, member, ed25519)? {
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
            hashes[cp.len as usize - 1]
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

/// Appends entries to this member's log.
pub struct LogWriter {
    dir: PathBuf,
    vault_id: [u8; 16],
    member: MemberId,
    /// Entries written since the last checkpoint.
    unsigned_tail: u64,
    /// Where the log ended after our last append or read: the next append only
    /// reads what another writer (a second mount of this identity) added since.
    known: LogPosition,
    file: Option<File>,
}

impl LogWriter {
    pub fn new(dir: PathBuf, vault_id: [u8; 16], member: MemberId) -> Self {
        LogWriter {
            dir,
            vault_id,
            member,
            unsigned_tail: 0,
            known: LogPosition::default(),
            file: None,
        }
    }

    /// Appends one event (under an flock, re-reading the tail so two mounts of one
    /// identity keep one chain).
    pub fn append(&mut self, me: &Identity, event: Event) -> Result<()> {
        self.append_all(me, vec![event]).map(|_| ())
    }

    /// The log file, kept open between appends; reopened if the path no longer
    /// names the file we hold (replaced or deleted behind our back).
    fn file(&mut self) -> Result<&File> {
        use std::os::unix::fs::MetadataExt;
        let path = log_path(&self.dir, &self.member);
        let current = std::fs::metadata(&path).ok().map(|m| (m.dev(), m.ino()));
        let held = self
            .file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| (m.dev(), m.ino()));
        if current.is_none() || current != held {
            std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
            let f = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .mode(0o644)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            self.file = Some(f);
            // Another file than the one we appended to: read it afresh.
            self.known = LogPosition::default();
        }
        Ok(self.file.as_ref().expect("opened above"))
    }

    /// Appends events in one write (under an flock, reading first what another
    /// writer of this identity appended, so two mounts keep one chain). Returns
    /// where the log ended just before and just after these events, so a reader
    /// that had applied the log up to the first can apply them without reading
    /// them back.
    pub fn append_all(
        &mut self,
        me: &Identity,
        events: Vec<Event>,
    ) -> Result<(LogPosition, LogPosition)> {
        if events.is_empty() {
            return Ok((self.known, self.known));
        }
        // Borrow the held descriptor out of `self` for the append (no dup per append).
        self.file()?;
        let f = self.file.take().expect("opened by file()");
        let result = self.append_locked(me, &f, events);
        self.file = Some(f);
        result
    }

    fn append_locked(
        &mut self,
        me: &Identity,
        f: &File,
        events: Vec<Event>,
    ) -> Result<(LogPosition, LogPosition)> {
        let path = log_path(&self.dir, &self.member);
        let _lock = FileLock::exclusive(f).map_err(|e| Error::io(&path, e))?;
        let len = f.metadata().map_err(|e| Error::io(&path, e))?.len();
        self.catch_up(me, f, len, true)?;
        let mut rec = Vec::new();
        if self.known.offset == 0 {
            rec.extend_from_slice(&LOG_MAGIC);
            rec.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        }
        let mut at = self.known;
        for event in events {
            let entry = LogEntry {
                vault_id: self.vault_id,
                member: self.member,
                seq: at.entries,
                prev: at.head,
                time_ms: now_ms(),
                event,
            };
            let signed = Signed::sign(&entry, me);
            let body = format::to_bytes(&signed);
            rec.extend_from_slice(&(body.len() as u32).to_le_bytes());
            rec.extend_from_slice(&body);
            at = LogPosition {
                offset: 0,
                entries: at.entries + 1,
                head: signed.hash(),
            };
        }
        let mut w = f;
        w.write_all(&rec).map_err(|e| Error::io(&path, e))?;
        self.unsigned_tail += at.entries - self.known.entries;
        let before = self.known;
        self.known = LogPosition {
            offset: self.known.offset + rec.len() as u64,
            ..at
        };
        Ok((before, self.known))
    }

    /// Reads what was appended since `known` (all of it if the log shrank),
    /// optionally cutting a torn tail left by a crash.
    fn catch_up(&mut self, me: &Identity, f: &File, len: u64, repair: bool) -> Result<()> {
        if len == self.known.offset {
            return Ok(());
        }
        let start = if len > self.known.offset {
            self.known
        } else {
            LogPosition::default()
        };
        let (_, at, torn) = read_member_log_from(
            &self.dir,
            &self.vault_id,
            &self.member,
            &me.public().ed25519,
            start,
        )?;
        if torn && repair {
            f.set_len(at.offset)
                .map_err(|e| Error::io(log_path(&self.dir, &self.member), e))?;
        }
        self.known = at;
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
        let len = f.metadata().map_err(|e| Error::io(&path, e))?.len();
        self.catch_up(me, &f, len, false)?;
        let cp = Checkpoint {
            format_version: FORMAT_VERSION,
            vault_id: self.vault_id,
            member: self.member,
            len: self.known.entries,
            head: self.known.head,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A log of `n` entries with a checkpoint of the first `cp` of them.
    fn log_with_checkpoint(dir: &Path, me: &Identity, n: usize, cp: usize) -> LogWriter {
        let mut w = LogWriter::new(dir.to_path_buf(), [7; 16], me.member_id());
        let ev = |i: usize| Event::FileCreated {
            file_id: [(i % 251) as u8; 16],
        };
        w.append_all(me, (0..cp).map(ev).collect()).unwrap();
        w.checkpoint(me).unwrap();
        w.append_all(me, (cp..n).map(ev).collect()).unwrap();
        w
    }

    fn read(dir: &Path, me: &Identity) -> Result<MemberLog> {
        read_member_log(dir, &[7; 16], &me.member_id(), &me.public().ed25519)
    }

    #[test]
    fn checkpoint_anchored_read_matches_and_catches_tampering() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let me = Identity::from_seed([3; 32]);
        // Well over ANCHOR_MIN_BYTES, most of it under the checkpoint.
        let _w = log_with_checkpoint(dir, &me, 1500, 1200);
        let log = read(dir, &me).unwrap();
        assert_eq!(log.entries.len(), 1500);
        assert!(log
            .entries
            .iter()
            .enumerate()
            .all(|(i, e)| e.seq == i as u64));
        assert_eq!(log.checkpoint.as_ref().unwrap().len, 1200);
        let path = log_path(dir, &me.member_id());
        let good = std::fs::read(&path).unwrap();
        // Flip one byte of an entry's signature under the checkpoint (the last
        // byte of its record), of an entry past it, and of the very last one:
        // each read fails.
        let ends: Vec<usize> = {
            let mut v = Vec::new();
            let mut pos = LOG_HEADER_LEN;
            while pos < good.len() {
                let len = u32::from_le_bytes(good[pos..pos + 4].try_into().unwrap()) as usize;
                pos += 4 + len;
                v.push(pos);
            }
            v
        };
        for victim in [10usize, 1199, 1300, 1499] {
            let mut bad = good.clone();
            bad[ends[victim] - 1] ^= 1;
            std::fs::write(&path, &bad).unwrap();
            let err = read(dir, &me).expect_err("tampered log accepted");
            assert!(matches!(err, Error::Integrity { .. }), "{err:?}");
            let from = read_member_log_from(
                dir,
                &[7; 16],
                &me.member_id(),
                &me.public().ed25519,
                LogPosition::default(),
            );
            assert!(
                from.is_err(),
                "entry {victim}: incremental read accepted it"
            );
        }
        // A log cut below its checkpoint: still read, signature by signature
        // (the checkpoint check of read_member_log reports the rollback).
        std::fs::write(&path, &good[..ends[999]]).unwrap();
        let (entries, _, _) = read_member_log_from(
            dir,
            &[7; 16],
            &me.member_id(),
            &me.public().ed25519,
            LogPosition::default(),
        )
        .unwrap();
        assert_eq!(entries.len(), 1000);
        assert!(read(dir, &me).is_err());
        std::fs::write(&path, &good).unwrap();
        assert_eq!(read(dir, &me).unwrap().entries.len(), 1500);
    }
}
