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
use crate::store::lock::{BorrowedLock, FileLock};
use crate::store::{atomic_write, read_limited, Durability};

/// Largest log this build reads (bounds memory on hostile input).
pub const MAX_LOG: usize = 512 << 20;
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A log file starts with `CFRL` and the log's version (u16 LE).
pub const LOG_MAGIC: [u8; 4] = *b"CFRL";
pub const LOG_HEADER_LEN: usize = 6;

/// Log version from which an entry may be *covered*: stored with an empty
/// signature and vouched for by the next signed entry of the same log, whose
/// signature covers it through the hash chain (`prev`). A batch of entries then
/// costs one signature to write and one to check. Version 1 logs sign every
/// entry; they are still read, and appended to as version 1.
pub const LOG_VERSION_COVERED: u16 = 2;

/// The newest log version this build writes (new logs) and reads.
pub const LOG_VERSION: u16 = LOG_VERSION_COVERED;

/// Most log bytes from the first covered entry of a run through the signed
/// entry that ends it (length prefixes included). A run fits in half a read
/// window, so a window that starts where a run starts always holds its end.
pub const MAX_COVERED_RUN: usize = 128 << 10;

/// Checks a log header's version: 1 ..= [`LOG_VERSION`].
pub fn check_log_version(found: u16) -> Result<()> {
    format::check_version_up_to(found, LOG_VERSION)
}

/// The version in a log's header (1 when the header cannot be read: the
/// parse of the first window reports what is wrong with it).
fn header_version(f: &File) -> u16 {
    let mut header = [0u8; LOG_HEADER_LEN];
    match crate::store::read_full_at(f, &mut header, 0) {
        Ok(LOG_HEADER_LEN) if header[..4] == LOG_MAGIC => {
            u16::from_le_bytes([header[4], header[5]])
        }
        _ => 1,
    }
}

/// Largest signed log entry this build reads.
pub const MAX_ENTRY: usize = 8192;

/// Largest log record, length prefix included (a body of at most
/// `MAX_ENTRY` plus the signer and signature).
const MAX_RECORD: usize = 4 + MAX_ENTRY + 256;

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

/// Like [`read_member_log_from`], in windows of at most [`READ_WINDOW`] bytes so
/// memory stays bounded however much was appended: `each` gets every window's
/// entries and where they end, in log order, and may stop the read with an
/// error. Returns where the log ends and whether a torn tail follows it. A bad
/// record is an error after `each` got the windows before the one holding it.
pub fn read_member_log_windows(
    dir: &Path,
    vault_id: &[u8; 16],
    member: &MemberId,
    ed25519: &[u8; 32],
    from: LogPosition,
    each: &mut dyn FnMut(Vec<LogEntry>, LogPosition) -> Result<()>,
) -> Result<(LogPosition, bool)> {
    read_windows(dir, vault_id, member, ed25519, from, &mut |p| {
        each(p.entries, p.at)
    })
}

/// Bytes of a log parsed at once. A record is at most `MAX_ENTRY + 260`
/// bytes, so every window holds at least one.
pub const READ_WINDOW: usize = 256 << 10;

/// Log prefixes whose signatures are known good: `(entries, head)` per
/// (vault, member, key). Filled by every complete verified read in this
/// process, and by `coffer verify` from this machine's trusted state (what it
/// verified before). A later read re-checks everything else (framing, order,
/// chaining, the hash chain over every byte) but skips the signature checks of
/// a prefix whose chained hash matches: equal head, equal bytes.
type Prefixes = std::collections::HashMap<([u8; 16], MemberId, [u8; 32]), (u64, [u8; 32])>;
static VERIFIED_PREFIXES: std::sync::LazyLock<std::sync::Mutex<Prefixes>> =
    std::sync::LazyLock::new(Default::default);

/// Records that the first `entries` entries of this log, ending in `head`,
/// carry good signatures (only ever moves forward).
pub fn vouch_for_prefix(
    vault_id: &[u8; 16],
    member: &MemberId,
    ed25519: &[u8; 32],
    entries: u64,
    head: [u8; 32],
) {
    let mut m = crate::lock(&VERIFIED_PREFIXES);
    if m.len() >= 4096 {
        m.clear();
    }
    let e = m.entry((*vault_id, *member, *ed25519)).or_default();
    if entries > e.0 {
        *e = (entries, head);
    }
}

/// Vaults whose logs this process checks signature by signature, taking no
/// prefix on its hash chain (`coffer verify --deep`).
static CHECK_EVERY_SIGNATURE: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashSet<[u8; 16]>>,
> = std::sync::LazyLock::new(Default::default);

/// Forgets every vouched prefix of a vault's logs, and stops taking prefixes
/// on a signed checkpoint: from now on reads in this process check every
/// signature again (`coffer verify --deep`).
pub fn forget_vouched(vault_id: &[u8; 16]) {
    crate::lock(&VERIFIED_PREFIXES).retain(|(v, _, _), _| v != vault_id);
    crate::lock(&CHECK_EVERY_SIGNATURE).insert(*vault_id);
}

/// Whether this process was told to check every signature of a vault again.
pub fn checks_every_signature(vault_id: &[u8; 16]) -> bool {
    crate::lock(&CHECK_EVERY_SIGNATURE).contains(vault_id)
}

fn vouched_prefix(
    vault_id: &[u8; 16],
    member: &MemberId,
    ed25519: &[u8; 32],
) -> Option<(u64, [u8; 32])> {
    crate::lock(&VERIFIED_PREFIXES)
        .get(&(*vault_id, *member, *ed25519))
        .copied()
}

/// One pass over the bytes of a log from `from` on.
struct Parsed {
    entries: Vec<LogEntry>,
    at: LogPosition,
    torn: bool,
    hashes: Vec<[u8; 32]>,
    /// A vouched prefix was given and the log reproduces it.
    confirmed: bool,
}

impl Parsed {
    /// Drops the covered entries after the last vouched one (`n` entries,
    /// ending at `at`): they count once a read sees the signature after them.
    fn cut_to(mut self, (n, at): (usize, LogPosition)) -> Parsed {
        self.entries.truncate(n);
        self.hashes.truncate(n);
        self.at = at;
        self
    }
}

fn read_log_inner(
    dir: &Path,
    vault_id: &[u8; 16],
    member: &MemberId,
    ed25519: &[u8; 32],
    from: LogPosition,
    mut hashes: Option<&mut Vec<[u8; 32]>>,
) -> Result<(Vec<LogEntry>, LogPosition, bool)> {
    let mut entries = Vec::new();
    let (at, torn) = read_windows(dir, vault_id, member, ed25519, from, &mut |p| {
        entries.extend(p.entries);
        if let Some(h) = hashes.as_deref_mut() {
            h.extend_from_slice(&p.hashes);
        }
        Ok(())
    })?;
    if from.entries == 0 {
        vouch_for_prefix(vault_id, member, ed25519, at.entries, at.head);
    }
    Ok((entries, at, torn))
}

/// The windowed read behind every log reader: opens the log, picks a prefix
/// to take on its hash chain (see [`Prefixes`]), confirms it, then parses and
/// hands over one window after the other.
fn read_windows(
    dir: &Path,
    vault_id: &[u8; 16],
    member: &MemberId,
    ed25519: &[u8; 32],
    from: LogPosition,
    each: &mut dyn FnMut(Parsed) -> Result<()>,
) -> Result<(LogPosition, bool)> {
    let path = log_path(dir, member);
    let f = match crate::store::open_regular_read(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && from.offset == 0 => {
            return Ok((from, false))
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
    let key = crate::crypto::sign::Verifier::new(ed25519);
    let ctx = LogCtx {
        path: &path,
        file: &f,
        len,
        vault_id,
        member,
        key: key.as_ref(),
        covers: header_version(&f) >= LOG_VERSION_COVERED,
    };
    // A prefix to take on its hash chain rather than one signature per entry:
    // what this machine already checked, or what the member's signed checkpoint
    // covers (the chain must end in its signed head, else all is checked).
    let checkpoint = (len - from.offset > ANCHOR_MIN_BYTES as u64)
        .then(|| {
            read_checkpoint(dir, vault_id, member, ed25519)
                .ok()
                .flatten()
        })
        .flatten()
        .map(|cp| (cp.len, cp.head));
    let trust = [vouched_prefix(vault_id, member, ed25519), checkpoint]
        .into_iter()
        .flatten()
        .filter(|t| t.0 > from.entries)
        .max_by_key(|t| t.0)
        .filter(|_| !checks_every_signature(vault_id));
    // Nothing is handed over on trust before the whole prefix is seen to
    // reproduce it: a first pass walks the chain to the trusted head and notes
    // where each window ends; the second pass must end its windows at the very
    // same positions (equal heads, equal bytes), so a log changed in between
    // is caught before its entries are used. Anything short of reproducing the
    // prefix means every signature is checked, so results never differ.
    let (trust, mut trusted_windows) = match trust.map(|t| (t, ctx.trusted_windows(from, t))) {
        Some((t, Some(windows))) => (Some(t), windows.into_iter()),
        _ => (None, Vec::new().into_iter()),
    };
    let mut at = from;
    let mut buf = Vec::new();
    loop {
        let on_trust = trust.filter(|t| at.entries < t.0);
        let limit = on_trust.map_or(u64::MAX, |t| t.0);
        let (window_end, ended) = ctx.read_window(at, &mut buf)?;
        let p = ctx.parse(&buf, at, on_trust, limit)?;
        if on_trust.is_some() && Some(p.at) != trusted_windows.next() {
            return Err(Error::integrity(format!(
                "log of {member} changed while it was being read"
            )));
        }
        let progressed = p.at.offset > at.offset;
        let last = ended || window_end == len;
        at = p.at;
        if progressed {
            each(p)?;
        }
        if !progressed || last && at.offset >= window_end || at.offset >= len {
            // Nothing complete in a window is a torn tail: a window holds any record.
            return Ok((at, at.offset < window_end));
        }
    }
}

struct LogCtx<'a> {
    path: &'a Path,
    file: &'a File,
    /// The log's length when the read began (appends after it are left to the next read).
    len: u64,
    vault_id: &'a [u8; 16],
    member: &'a MemberId,
    key: Option<&'a crate::crypto::sign::Verifier>,
    /// The log's version allows covered entries.
    covers: bool,
}

impl LogCtx<'_> {
    /// Reads the log's bytes from `at` on, at most [`READ_WINDOW`] of them, into
    /// `buf`; returns the offset where they end, and whether the file ended
    /// before `len` (another writer of this member cut a torn tail meanwhile:
    /// what was read is all there is, as for a read of the whole file).
    fn read_window(&self, at: LogPosition, buf: &mut Vec<u8>) -> Result<(u64, bool)> {
        let want = (self.len - at.offset).min(READ_WINDOW as u64) as usize;
        buf.resize(want, 0);
        let got = crate::store::read_full_at(self.file, buf, at.offset)
            .map_err(|e| Error::io(self.path, e))?;
        buf.truncate(got);
        Ok((at.offset + got as u64, got < want))
    }

    /// Walks the chain from `from` to the `trust.0`-th entry without checking
    /// signatures, window by window. The positions where the windows end if it
    /// arrives at the trusted head there; None otherwise.
    fn trusted_windows(
        &self,
        from: LogPosition,
        trust: (u64, [u8; 32]),
    ) -> Option<Vec<LogPosition>> {
        let mut ends = Vec::new();
        let mut at = from;
        let mut buf = Vec::new();
        while at.entries < trust.0 && at.offset < self.len {
            self.read_window(at, &mut buf).ok()?;
            if buf.is_empty() {
                return None;
            }
            let p = self.parse(&buf, at, Some(trust), trust.0).ok()?;
            if p.at.offset == at.offset {
                return None;
            }
            at = p.at;
            ends.push(at);
            if at.entries == trust.0 {
                return p.confirmed.then_some(ends);
            }
        }
        None
    }

    /// Frames, decodes and checks the records in `bytes` (the log from
    /// `from.offset` on), stopping after entry `limit - 1`. Signatures of
    /// entries before `trust.0` are not checked; the others are checked on
    /// all cores.
    fn parse(
        &self,
        bytes: &[u8],
        from: LogPosition,
        trust: Option<(u64, [u8; 32])>,
        limit: u64,
    ) -> Result<Parsed> {
        let member = self.member;
        let mut out = Parsed {
            entries: Vec::new(),
            at: from,
            torn: false,
            hashes: Vec::new(),
            confirmed: false,
        };
        let mut pos = 0usize;
        if from.offset == 0 && !bytes.is_empty() {
            // The file header: magic and format version.
            if bytes.len() < LOG_HEADER_LEN {
                out.torn = true;
                return Ok(out);
            }
            if bytes[..4] != LOG_MAGIC {
                return Err(Error::corrupt(
                    "log",
                    format!("{}: not a coffer history log", self.path.display()),
                ));
            }
            check_log_version(u16::from_le_bytes([bytes[4], bytes[5]]))?;
            pos = LOG_HEADER_LEN;
            out.at.offset = LOG_HEADER_LEN as u64;
        }
        // Framing and decoding first; an error here is returned after the
        // records before it are checked, as a record-by-record pass would.
        let mut records: Vec<(usize, Signed<LogEntry>)> = Vec::new();
        let mut stop = None;
        let wanted = limit.saturating_sub(from.entries);
        while pos < bytes.len() && (records.len() as u64) < wanted {
            if bytes.len() - pos < 4 {
                out.torn = true;
                break;
            }
            let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
            if len > MAX_ENTRY + 256 {
                stop = Some(Error::integrity(format!(
                    "log of {member}: record at byte {} has an impossible length",
                    from.offset as usize + pos
                )));
                break;
            }
            if bytes.len() - pos - 4 < len {
                out.torn = true;
                break;
            }
            let rec = &bytes[pos + 4..pos + 4 + len];
            match format::from_bytes::<Signed<LogEntry>>("log record", MAX_ENTRY + 256, rec) {
                Ok(signed) => records.push((pos + 4 + len, signed)),
                Err(e) => {
                    stop = Some(e);
                    break;
                }
            }
            pos += 4 + len;
        }
        let trusted = trust.map_or(0, |(n, _)| n.saturating_sub(from.entries) as usize);
        let decoded = self.open_all(&records, trusted.min(records.len()));
        // Where the entries vouched for so far end (by a signature, their own
        // or a later one's, or by the trusted prefix). Covered entries after
        // it are held back: the window's end or a torn tail may cut the run
        // before the signature that ends it.
        let mut vouched = (0usize, out.at);
        let mut run_start: Option<u64> = None;
        for ((end, signed), entry) in records.iter().zip(decoded) {
            let seq = out.at.entries;
            if signed.signer != *member {
                return Err(Error::integrity(format!(
                    "log of {member}: entry {seq} signed by someone else"
                )));
            }
            let (entry, signed_itself) = entry
                .map_err(|e| Error::integrity(format!("log of {member}: entry {seq}: {e}")))?;
            if entry.seq != seq
                || entry.prev != out.at.head
                || entry.member != *member
                || &entry.vault_id != self.vault_id
            {
                return Err(Error::integrity(format!(
                    "log of {member}: entry {seq} is out of order, from another log or not chained"
                )));
            }
            let start = out.at.offset;
            out.at = LogPosition {
                offset: from.offset + *end as u64,
                entries: seq + 1,
                head: signed.hash(),
            };
            out.hashes.push(out.at.head);
            out.entries.push(entry);
            if !signed_itself && run_start.is_none() {
                run_start = Some(start);
            }
            if let Some(run) = run_start {
                if out.at.offset - run > MAX_COVERED_RUN as u64 {
                    return Err(Error::integrity(format!(
                        "log of {member}: entries {}..={seq} carry no signature",
                        vouched.1.entries
                    )));
                }
            }
            if signed_itself {
                vouched = (out.entries.len(), out.at);
                run_start = None;
            }
            if let Some((n, head)) = trust {
                if seq + 1 == n {
                    out.confirmed = out.at.head == head;
                    if !out.confirmed {
                        return Ok(out.cut_to(vouched));
                    }
                }
            }
        }
        match stop {
            Some(e) => Err(e),
            None => Ok(out.cut_to(vouched)),
        }
    }

    /// Decodes every record: the first `trusted` without their signatures
    /// (a vouched prefix), the rest verified, on all cores when there are many.
    /// Each decoded entry comes with whether it is vouched for by itself (its
    /// own good signature, or the trusted prefix) rather than covered, i.e.
    /// waiting for the next signed entry.
    fn open_all(
        &self,
        records: &[(usize, Signed<LogEntry>)],
        trusted: usize,
    ) -> Vec<Result<(LogEntry, bool)>> {
        let (head, rest) = records.split_at(trusted);
        let mut out: Vec<Result<(LogEntry, bool)>> = head
            .iter()
            .map(|(_, s)| s.decode_unverified().map(|e| (e, true)))
            .collect();
        let check = |recs: &[(usize, Signed<LogEntry>)]| -> Vec<Result<(LogEntry, bool)>> {
            recs.iter()
                .map(|(_, s)| {
                    if s.signer != *self.member {
                        // Reported as signed by someone else before this is looked at.
                        return Err(Error::integrity("wrong signer"));
                    }
                    if self.covers && s.signature.is_empty() {
                        return s.decode_unverified().map(|e| (e, false));
                    }
                    s.verify_with(self.key).map(|e| (e, true))
                })
                .collect()
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        if threads < 2 || rest.len() < 512 {
            out.extend(check(rest));
            return out;
        }
        let per = rest.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let parts: Vec<_> = rest
                .chunks(per)
                .map(|part| scope.spawn(move || check(part)))
                .collect();
            for p in parts {
                out.extend(p.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
            }
        });
        out
    }
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
    // Only a missing checkpoint is "none": one that is there but cannot be
    // read (too large, not a regular file) is damage, not absence.
    let bytes = match read_limited(
        &head_path(dir, member),
        CHECKPOINT_FILE_MAX,
        "log checkpoint",
    ) {
        Ok(bytes) => bytes,
        Err(Error::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let signed: Signed<Checkpoint> = format::decode_file(CHECKPOINT, checkpoint_in_force(&bytes)?)?;
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
    /// Device and inode of `file`, to tell whether the log at the path is
    /// still the one held without a `stat` of the held descriptor per append.
    held_id: Option<(u64, u64)>,
    /// Whether the held log's version allows covered entries (None: not yet
    /// looked at since the file was opened).
    covers: Option<bool>,
    /// Where the blocks allocated ahead of the held log's end stop.
    reserved_to: u64,
}

/// Bytes of disk kept allocated past the end of a member's log, so the
/// entries of the operations that free space (unlink, rmdir, truncate) can be
/// appended on a full disk.
const LOG_RESERVE: u64 = 64 << 10;

impl LogWriter {
    pub fn new(dir: PathBuf, vault_id: [u8; 16], member: MemberId) -> Self {
        LogWriter {
            dir,
            vault_id,
            member,
            unsigned_tail: 0,
            known: LogPosition::default(),
            file: None,
            held_id: None,
            covers: None,
            reserved_to: 0,
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
        if current.is_none() || current != self.held_id || self.file.is_none() {
            std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
            let f = crate::store::open_regular(
                &path,
                OpenOptions::new()
                    .read(true)
                    .append(true)
                    .create(true)
                    .mode(0o644),
            )
            .map_err(|e| Error::io(&path, e))?;
            let m = f.metadata().map_err(|e| Error::io(&path, e))?;
            self.held_id = Some((m.dev(), m.ino()));
            self.file = Some(f);
            // Another file than the one we appended to: read it afresh.
            self.known = LogPosition::default();
            self.covers = None;
            self.reserved_to = 0;
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
        let _lock = BorrowedLock::exclusive(f).map_err(|e| Error::io(&path, e))?;
        let len = f.metadata().map_err(|e| Error::io(&path, e))?.len();
        self.catch_up(me, f, len, true)?;
        let mut rec = Vec::new();
        let covers = if self.known.offset == 0 {
            rec.extend_from_slice(&LOG_MAGIC);
            rec.extend_from_slice(&LOG_VERSION.to_le_bytes());
            self.covers = Some(LOG_VERSION >= LOG_VERSION_COVERED);
            LOG_VERSION >= LOG_VERSION_COVERED
        } else {
            *self
                .covers
                .get_or_insert_with(|| header_version(f) >= LOG_VERSION_COVERED)
        };
        let mut at = self.known;
        let count = events.len();
        // Bytes of the covered entries since the last signed one: the run
        // must end, signature included, within MAX_COVERED_RUN.
        let mut run = 0usize;
        for (i, event) in events.into_iter().enumerate() {
            let entry = LogEntry {
                vault_id: self.vault_id,
                member: self.member,
                seq: at.entries,
                prev: at.head,
                time_ms: now_ms(),
                event,
            };
            // Covered if a signed record of any size still fits in the run after it.
            let covered = (covers && i + 1 < count)
                .then(|| {
                    let c = Signed::unsigned(&entry, self.member);
                    let body = format::to_bytes(&c);
                    (c, body)
                })
                .filter(|(_, body)| run + 4 + body.len() + MAX_RECORD <= MAX_COVERED_RUN);
            let (signed, body) = match covered {
                Some((c, body)) => {
                    run += 4 + body.len();
                    (c, body)
                }
                None => {
                    run = 0;
                    let s = Signed::sign(&entry, me);
                    let body = format::to_bytes(&s);
                    (s, body)
                }
            };
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
        let end = self.known.offset + rec.len() as u64;
        if end + LOG_RESERVE / 2 > self.reserved_to {
            crate::store::advise::reserve(f, end, LOG_RESERVE);
            self.reserved_to = end + LOG_RESERVE;
        }
        self.unsigned_tail += at.entries - self.known.entries;
        let before = self.known;
        self.known = LogPosition {
            offset: self.known.offset + rec.len() as u64,
            ..at
        };
        Ok((before, self.known))
    }

    /// Where the log ends as far as this writer knows: entries it appended or
    /// read back verified.
    pub fn position(&self) -> LogPosition {
        self.known
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
        let (at, torn) = read_member_log_windows(
            &self.dir,
            &self.vault_id,
            &self.member,
            &me.public().ed25519,
            start,
            &mut |_, _| Ok(()),
        )?;
        if torn && repair {
            f.set_len(at.offset)
                .map_err(|e| Error::io(log_path(&self.dir, &self.member), e))?;
        }
        self.known = at;
        Ok(())
    }

    /// Entries this writer appended since its last checkpoint.
    pub fn unsigned_tail(&self) -> u64 {
        self.unsigned_tail
    }

    /// Signs a checkpoint of the whole log if entries were added since the last.
    /// The log is synced first either way; `durability` is the checkpoint's
    /// own (a lost lazy one leaves the one before it, still true).
    pub fn checkpoint(&mut self, me: &Identity, durability: Durability) -> Result<()> {
        if self.unsigned_tail == 0 {
            return Ok(());
        }
        let path = log_path(&self.dir, &self.member);
        let f = crate::store::open_regular_read(&path).map_err(|e| Error::io(&path, e))?;
        let _lock = FileLock::exclusive(&f).map_err(|e| Error::io(&path, e))?;
        let len = f.metadata().map_err(|e| Error::io(&path, e))?.len();
        self.catch_up(me, &f, len, false)?;
        // Appends are not synced one by one; the log must be durable before a
        // checkpoint naming its head is, or a power cut leaves a log shorter
        // than its checkpoint, which reads as a rollback.
        f.sync_data().map_err(|e| Error::io(&path, e))?;
        let cp = Checkpoint {
            format_version: FORMAT_VERSION,
            vault_id: self.vault_id,
            member: self.member,
            len: self.known.entries,
            head: self.known.head,
            time_unix: crate::vault::now_unix(),
        };
        let bytes = format::encode_file(CHECKPOINT, &Signed::sign(&cp, me));
        write_checkpoint(&head_path(&self.dir, &self.member), &bytes, durability)?;
        self.unsigned_tail = 0;
        Ok(())
    }
}

/// A checkpoint file is in layout 3 (two copies, `format::copies`), so the
/// mount's checkpoints during a burst (one per 0.4 s) overwrite the older copy
/// in place: no new inode each time, and it works on a full disk.
const CHECKPOINT_FILE_MAX: usize = 16 << 10;

/// The checkpoint record of a checkpoint file: its copy in force, or the
/// whole file when written whole (layout 1, before copies).
pub fn checkpoint_in_force(bytes: &[u8]) -> Result<&[u8]> {
    let in_force = format::copies::in_force(CHECKPOINT.magic, bytes)
        .map_err(|e| Error::corrupt(CHECKPOINT.name, e))?;
    Ok(in_force.map_or(bytes, |(payload, _)| payload))
}

/// Writes checkpoint `record` (the caller holds the log's lock, which every
/// checkpoint writer takes): into the older copy of the file there if it is
/// intact and in layout 3, else as a new layout-3 file.
fn write_checkpoint(path: &Path, record: &[u8], durability: Durability) -> Result<()> {
    use crate::store::inplace::{overwrite_at, Stamp};
    let opened = crate::store::open_regular_stat(path, OpenOptions::new().read(true));
    let existing = opened.ok().and_then(|(f, m)| {
        let mut bytes = Vec::new();
        (&f).take(CHECKPOINT_FILE_MAX as u64 + 1)
            .read_to_end(&mut bytes)
            .ok()?;
        Some((m, bytes))
    });
    if let Some((m, bytes)) = existing {
        // A damaged file is replaced whole, like one in another layout.
        let state = format::copies::in_force(CHECKPOINT.magic, &bytes)
            .ok()
            .flatten();
        if let Some((at, copy, _)) = state.and_then(|(_, s)| s.next(record)) {
            let loaded = Stamp::of(&m);
            let written = overwrite_at(path, at, &copy, durability, |now| Stamp::of(now) == loaded)
                .map_err(|e| Error::io(path, e))?;
            if written.is_some() {
                return Ok(());
            }
        }
    }
    let (file, _) = format::copies::new_file(CHECKPOINT.magic, record)
        .expect("a checkpoint is far smaller than a copy's limit");
    atomic_write(path, &file, durability)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `FileCreated` events for the files numbered `ids` (ids repeat every 251).
    fn created(ids: std::ops::Range<usize>) -> Vec<Event> {
        ids.map(|i| Event::FileCreated {
            file_id: [(i % 251) as u8; 16],
        })
        .collect()
    }

    /// Starts a version-1 log (every entry signed) for the writer to append to.
    fn start_v1_log(dir: &Path, me: &Identity) {
        std::fs::create_dir_all(dir).unwrap();
        let mut header = LOG_MAGIC.to_vec();
        header.extend_from_slice(&1u16.to_le_bytes());
        std::fs::write(log_path(dir, &me.member_id()), header).unwrap();
    }

    /// A log of `n` entries with a checkpoint of the first `cp` of them,
    /// appended in two batches: of the current version (covered runs, one
    /// signature per run) or of version 1 (one signature per entry).
    fn log_with_checkpoint(
        dir: &Path,
        me: &Identity,
        n: usize,
        cp: usize,
        version: u16,
    ) -> LogWriter {
        if version == 1 {
            start_v1_log(dir, me);
        }
        let mut w = LogWriter::new(dir.to_path_buf(), [7; 16], me.member_id());
        w.append_all(me, created(0..cp)).unwrap();
        w.checkpoint(me, Durability::Sync).unwrap();
        w.append_all(me, created(cp..n)).unwrap();
        w
    }

    /// Where each record of a log file ends.
    fn record_ends(log: &[u8]) -> Vec<usize> {
        let mut ends = Vec::new();
        let mut pos = LOG_HEADER_LEN;
        while pos < log.len() {
            let len = u32::from_le_bytes(log[pos..pos + 4].try_into().unwrap()) as usize;
            pos += 4 + len;
            ends.push(pos);
        }
        ends
    }

    fn read(dir: &Path, me: &Identity) -> Result<MemberLog> {
        read_member_log(dir, &[7; 16], &me.member_id(), &me.public().ed25519)
    }

    /// A byte inside the body of record `i` (in its vault id): flipping it
    /// breaks the record's signature if it has one, and the chain either way.
    fn body_byte(ends: &[usize], i: usize) -> usize {
        let start = if i == 0 { LOG_HEADER_LEN } else { ends[i - 1] };
        start + 4 + 1 + 5
    }

    /// The decoded records of a log file.
    fn records(log: &[u8]) -> Vec<Signed<LogEntry>> {
        let mut pos = LOG_HEADER_LEN;
        let mut out = Vec::new();
        while pos < log.len() {
            let len = u32::from_le_bytes(log[pos..pos + 4].try_into().unwrap()) as usize;
            out.push(
                format::from_bytes("log record", MAX_RECORD, &log[pos + 4..pos + 4 + len]).unwrap(),
            );
            pos += 4 + len;
        }
        out
    }

    #[test]
    fn windowed_reads_hand_over_only_checked_entries() {
        for version in [1, LOG_VERSION] {
            windowed_reads_of_a_log_of_version(version);
        }
    }

    fn windowed_reads_of_a_log_of_version(version: u16) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let me = Identity::from_seed([4; 32]);
        let _w = log_with_checkpoint(dir, &me, 6000, 3000, version);
        let path = log_path(dir, &me.member_id());
        let good = std::fs::read(&path).unwrap();
        assert!(good.len() > 2 * READ_WINDOW, "the log must span windows");
        let key = me.public().ed25519;
        let windows = |from: LogPosition| {
            let mut got: Vec<(Vec<u64>, LogPosition)> = Vec::new();
            let r = read_member_log_windows(
                dir,
                &[7; 16],
                &me.member_id(),
                &key,
                from,
                &mut |e, at| {
                    got.push((e.iter().map(|e| e.seq).collect(), at));
                    Ok(())
                },
            );
            (r, got)
        };
        let mut hashes = Vec::new();
        let (all, end, _) = read_log_inner(
            dir,
            &[7; 16],
            &me.member_id(),
            &key,
            LogPosition::default(),
            Some(&mut hashes),
        )
        .unwrap();
        // From the start and from the middle: every entry once, in order, in
        // more than one window, each window's end where its entries end.
        let ends = record_ends(&good);
        let middle = LogPosition {
            offset: ends[999] as u64,
            entries: 1000,
            head: hashes[999],
        };
        for from in [LogPosition::default(), middle] {
            let (r, got) = windows(from);
            assert_eq!(r.unwrap(), (end, false));
            assert!(got.len() > 1);
            let seqs: Vec<u64> = got.iter().flat_map(|(s, _)| s.clone()).collect();
            assert_eq!(seqs, (from.entries..6000).collect::<Vec<_>>());
            for (s, at) in &got {
                let last = *s.last().unwrap() as usize;
                assert_eq!(at.entries as usize, last + 1);
                assert_eq!(at.offset as usize, ends[last]);
                assert_eq!(at.head, hashes[last]);
            }
        }
        assert_eq!(all.len(), 6000);
        // A bad signature (or, for a covered entry, a broken chain) under the
        // checkpoint or past it: the read fails and nothing at or after the
        // bad entry was handed over.
        for victim in [100usize, 3500] {
            let mut bad = good.clone();
            bad[body_byte(&ends, victim)] ^= 1;
            std::fs::write(&path, &bad).unwrap();
            let (r, got) = windows(LogPosition::default());
            assert!(matches!(r, Err(Error::Integrity { .. })), "{r:?}");
            assert!(got
                .iter()
                .flat_map(|(s, _)| s)
                .all(|&seq| seq < victim as u64));
        }
        // A log cut shorter while being read (another writer of the member
        // cutting a torn tail): what could be read is all there is.
        std::fs::write(&path, &good).unwrap();
        let f = File::open(&path).unwrap();
        let ctx = LogCtx {
            path: &path,
            file: &f,
            len: good.len() as u64 + 100,
            vault_id: &[7; 16],
            member: &me.member_id(),
            key: None,
            covers: true,
        };
        let mut buf = Vec::new();
        let near_end = LogPosition {
            offset: ends[5990] as u64,
            entries: 5991,
            head: hashes[5990],
        };
        let (end, ended) = ctx.read_window(near_end, &mut buf).unwrap();
        assert!(ended);
        assert_eq!(end, good.len() as u64);
        assert_eq!(buf, good[ends[5990]..]);
        // A torn tail (a crash mid-append) ends the read where the last whole
        // record ends (version 1), or the last whole run of covered entries
        // and its signature (the current version), and says so.
        std::fs::write(&path, &good[..good.len() - 3]).unwrap();
        let (r, got) = windows(LogPosition::default());
        let (at, torn) = r.unwrap();
        assert!(torn);
        let recs = records(&good);
        let last_signed_before = (0..5999)
            .rev()
            .find(|&i| !recs[i].signature.is_empty())
            .unwrap();
        let expect = if version == 1 {
            5999
        } else {
            last_signed_before + 1
        };
        assert_eq!(at.entries as usize, expect);
        assert_eq!(at.offset as usize, ends[expect - 1]);
        assert_eq!(got.iter().map(|(s, _)| s.len()).sum::<usize>(), expect);
        if version != 1 {
            assert!(
                expect < 5999,
                "the last run holds more than its signed entry"
            );
        }
    }

    /// Appends record `signed` (framed) to `log`; returns its hash.
    fn push_record(log: &mut Vec<u8>, signed: &Signed<LogEntry>) -> [u8; 32] {
        let body = format::to_bytes(signed);
        log.extend_from_slice(&(body.len() as u32).to_le_bytes());
        log.extend_from_slice(&body);
        signed.hash()
    }

    fn entry(me: &Identity, seq: u64, prev: [u8; 32]) -> LogEntry {
        LogEntry {
            vault_id: [7; 16],
            member: me.member_id(),
            seq,
            prev,
            time_ms: 1,
            event: Event::FileCreated {
                file_id: [0xEE; 16],
            },
        }
    }

    #[test]
    fn covered_entries_count_only_once_a_signature_after_them_is_read() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let me = Identity::from_seed([5; 32]);
        let mut w = LogWriter::new(dir.to_path_buf(), [7; 16], me.member_id());
        for batch in 0..3 {
            w.append_all(&me, created(batch * 50..batch * 50 + 50))
                .unwrap();
        }
        let path = log_path(dir, &me.member_id());
        let good = std::fs::read(&path).unwrap();
        assert_eq!(good[4..6], LOG_VERSION.to_le_bytes());
        // One signature per append: the last entry of each batch.
        let recs = records(&good);
        let signed: Vec<usize> = (0..recs.len())
            .filter(|&i| !recs[i].signature.is_empty())
            .collect();
        assert_eq!(signed, [49, 99, 149]);
        let log = read(dir, &me).unwrap();
        assert_eq!(log.entries.len(), 150);
        assert!(!log.torn_tail);

        // Anyone can chain an unsigned entry onto the log: it is a torn tail
        // (never an entry), and the member's next append cuts it.
        let mut forged = good.clone();
        push_record(
            &mut forged,
            &Signed::unsigned(&entry(&me, 150, log.head), me.member_id()),
        );
        std::fs::write(&path, &forged).unwrap();
        let log = read(dir, &me).unwrap();
        assert_eq!(log.entries.len(), 150);
        assert!(log.torn_tail);
        let mut w = LogWriter::new(dir.to_path_buf(), [7; 16], me.member_id());
        w.append_all(&me, created(150..160)).unwrap();
        let log = read(dir, &me).unwrap();
        assert_eq!(log.entries.len(), 160);
        assert!(log.entries.iter().all(|e| e.event
            != Event::FileCreated {
                file_id: [0xEE; 16]
            }));

        // A covered entry whose signature is missing from a cut log: the run
        // is held back whole, up to the last signed entry.
        let ends = record_ends(&good);
        std::fs::write(&path, &good[..ends[120]]).unwrap();
        let log = read(dir, &me).unwrap();
        assert_eq!(log.entries.len(), 100);
        assert_eq!(log.valid_len as usize, ends[99]);

        // A run longer than MAX_COVERED_RUN is refused even with a good
        // signature at its end.
        let mut long = good[..LOG_HEADER_LEN].to_vec();
        let mut head = [0u8; 32];
        let mut seq = 0;
        while long.len() < MAX_COVERED_RUN + 1024 {
            head = push_record(
                &mut long,
                &Signed::unsigned(&entry(&me, seq, head), me.member_id()),
            );
            seq += 1;
        }
        push_record(&mut long, &Signed::sign(&entry(&me, seq, head), &me));
        std::fs::write(&path, &long).unwrap();
        let err = read(dir, &me).expect_err("an overlong run accepted");
        assert!(matches!(err, Error::Integrity { .. }), "{err:?}");
        assert!(err.to_string().contains("carry no signature"), "{err}");

        // Version 1 logs have no covered entries: an empty signature is bad.
        let mut v1 = good[..ends[1]].to_vec();
        v1[4..6].copy_from_slice(&1u16.to_le_bytes());
        std::fs::write(&path, &v1).unwrap();
        let err = read(dir, &me).expect_err("a covered entry in a version 1 log");
        assert!(matches!(err, Error::Integrity { .. }), "{err:?}");

        // A log of a newer version than this build reads asks for an upgrade.
        let mut newer = good.clone();
        newer[4..6].copy_from_slice(&(LOG_VERSION + 1).to_le_bytes());
        std::fs::write(&path, &newer).unwrap();
        let err = read(dir, &me).expect_err("a newer log read");
        assert!(matches!(err, Error::UnsupportedVersion { .. }), "{err:?}");
    }

    #[test]
    fn a_covered_log_cut_or_flipped_anywhere_yields_a_prefix_or_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let me = Identity::from_seed([8; 32]);
        let mut w = LogWriter::new(dir.to_path_buf(), [7; 16], me.member_id());
        for batch in 0..3 {
            w.append_all(&me, created(batch * 30..batch * 30 + 30))
                .unwrap();
        }
        let path = log_path(dir, &me.member_id());
        let good = std::fs::read(&path).unwrap();
        let all = read(dir, &me).unwrap().entries;
        assert_eq!(all.len(), 90);
        let ends = record_ends(&good);
        let recs = records(&good);
        // Cut anywhere: what is read is exactly the entries up to the last
        // signed one that ends at or before the cut.
        for cut in (LOG_HEADER_LEN..good.len())
            .step_by(7)
            .chain([good.len() - 1])
        {
            std::fs::write(&path, &good[..cut]).unwrap();
            let log = read(dir, &me).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            let expect = (0..90)
                .filter(|&i| ends[i] <= cut && !recs[i].signature.is_empty())
                .map(|i| i + 1)
                .max()
                .unwrap_or(0);
            assert_eq!(log.entries.len(), expect, "cut at {cut}");
            assert_eq!(log.entries[..], all[..expect], "cut at {cut}");
        }
        // Flip one bit anywhere: an error, or entries that are a prefix of the
        // true ones (a flip in a torn-off part), never a changed entry.
        for at in (LOG_HEADER_LEN..good.len()).step_by(5) {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            std::fs::write(&path, &bad).unwrap();
            if let Ok(log) = read(dir, &me) {
                let n = log.entries.len();
                assert!(n < 90, "a flip at {at} went unnoticed");
                assert_eq!(log.entries[..], all[..n], "flip at {at}");
            }
        }
    }

    #[test]
    fn a_version_1_log_is_appended_to_with_every_entry_signed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let me = Identity::from_seed([6; 32]);
        start_v1_log(dir, &me);
        let mut w = LogWriter::new(dir.to_path_buf(), [7; 16], me.member_id());
        w.append_all(&me, created(0..20)).unwrap();
        let good = std::fs::read(log_path(dir, &me.member_id())).unwrap();
        assert_eq!(good[4..6], 1u16.to_le_bytes());
        assert!(records(&good).iter().all(|r| r.signature.len() == 64));
        assert_eq!(read(dir, &me).unwrap().entries.len(), 20);
    }

    #[test]
    fn checkpoint_anchored_read_matches_and_catches_tampering() {
        for version in [1, LOG_VERSION] {
            checkpoint_anchored_read_of_a_log_of_version(version);
        }
    }

    fn checkpoint_anchored_read_of_a_log_of_version(version: u16) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let me = Identity::from_seed([3; 32]);
        // Well over ANCHOR_MIN_BYTES, most of it under the checkpoint.
        let _w = log_with_checkpoint(dir, &me, 1500, 1200, version);
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
        // Flip one byte of an entry under the checkpoint, of an entry past it,
        // and of the very last one: each read fails.
        let ends = record_ends(&good);
        for victim in [10usize, 1199, 1300, 1499] {
            let mut bad = good.clone();
            bad[body_byte(&ends, victim)] ^= 1;
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
        // A log cut below its checkpoint, after a signed entry: still read,
        // signature by signature (the checkpoint check of read_member_log
        // reports the rollback).
        let recs = records(&good);
        let cut = (999..1199)
            .find(|&i| !recs[i].signature.is_empty())
            .expect("a signed entry under the checkpoint");
        std::fs::write(&path, &good[..ends[cut]]).unwrap();
        let (entries, _, _) = read_member_log_from(
            dir,
            &[7; 16],
            &me.member_id(),
            &me.public().ed25519,
            LogPosition::default(),
        )
        .unwrap();
        assert_eq!(entries.len(), cut + 1);
        assert!(read(dir, &me).is_err());
        std::fs::write(&path, &good).unwrap();
        assert_eq!(read(dir, &me).unwrap().entries.len(), 1500);
    }
}
