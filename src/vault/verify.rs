//! `coffer verify`: an offline check of everything in a vault. Nothing in the
//! vault is trusted: member records, directory records, names, every file's
//! access list, manifest and chunk hashes, the members' signed logs, and all of
//! it against what this machine saw before (its state is trusted). `--deep` also decrypts every chunk we hold a
//! key for and re-checks every signature, history, access entries and manifests
//! alike, that this machine checked before (see docs/SECURITY.md, "What
//! `coffer verify` checks").
//!
//! Content is the bulk of the work: each chunk's BLAKE3 hash is checked
//! against the signed chunk list. Small files are checked as they are opened;
//! files larger than one segment are split into segments of whole chunks that
//! all workers share, read with large sequential reads.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use zeroize::Zeroizing;

use super::bindings::{Binding, BindingIndex};
use super::file::OpenFile;
use super::Vault;
use crate::crypto::{chunk, MemberId, SecretKey};
use crate::error::Error;
use crate::format::data::Layout;
use crate::format::ChunkRef;
use crate::history::log::MemberLog;

/// Bytes of content one worker reads and checks at a time (whole chunks): large
/// enough for sequential reads to run at disk speed, small enough to share a
/// big file between cores.
const SEGMENT: u64 = 8 << 20;

/// Segments read ahead of the one being checked (cold caches).
const READ_AHEAD: u64 = 2;

/// What `verify` does beyond the default checks.
#[derive(Clone, Copy, Debug, Default)]
pub struct VerifyOptions {
    /// Also decrypt (authenticate) every chunk of every file we hold read on,
    /// and check every signature again instead of trusting the log prefixes
    /// and records this machine verified before (`vault::vouched`).
    pub deep: bool,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// Plaintext path where known, else the backing or record path.
    pub path: String,
    pub problem: String,
}

#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub files: u64,
    pub directories: u64,
    pub bytes: u64,
    /// Files whose contents were also decrypted (`deep`, and we hold read).
    pub decrypted_files: u64,
    pub log_entries: u64,
    /// Integrity failures (exit 4).
    pub failures: Vec<Finding>,
    /// Not tampering, but worth knowing (leftovers of a crash, ...).
    pub warnings: Vec<Finding>,
    /// Two signed branches from copies changed apart (exit 4 until resolved).
    pub forks: Vec<Finding>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && self.forks.is_empty()
    }
}

/// Progress callback: (bytes done, bytes total); called from several threads.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// The result of checking one file.
#[derive(Default)]
struct FileCheck {
    shown: String,
    plain: std::path::PathBuf,
    ino: u64,
    stored_len: u64,
    file_id: Option<[u8; 16]>,
    versions: Option<(u64, u64)>,
    manifest_hash: Option<[u8; 32]>,
    report: VerifyReport,
    /// Contents too large to check in one go: checked in segments afterwards.
    deferred: Option<Content>,
}

/// What checking a file's chunks needs, without its open descriptor.
struct Content {
    backing: PathBuf,
    dev: u64,
    ino: u64,
    file_id: [u8; 16],
    layout: Layout,
    size: u64,
    chunks: Vec<Option<ChunkRef>>,
    /// Chunks pending in the journal of an interrupted commit, or carried in
    /// the sidecar by a durable commit.
    journal: HashMap<u64, Vec<u8>>,
    /// Set when the chunks are to be decrypted too.
    keys: Option<HashMap<u32, SecretKey>>,
}

impl Content {
    fn from_open(
        f: OpenFile,
        backing: &std::path::Path,
        m: &std::fs::Metadata,
        deep: bool,
        can_read: bool,
    ) -> (std::sync::Arc<std::fs::File>, Content) {
        let size = f.manifest().size;
        let mut journal_overlay = f.overlay_chunks();
        let OpenFile {
            file_id,
            layout,
            data,
            keys,
            chunks,
            ..
        } = f;
        let journal_overlay = std::mem::take(&mut journal_overlay);
        let content = Content {
            backing: backing.to_path_buf(),
            dev: m.dev(),
            ino: m.ino(),
            file_id,
            layout,
            size,
            chunks,
            journal: journal_overlay,
            keys: (deep && can_read).then_some(keys),
        };
        (data, content)
    }

    /// Chunk slots per segment.
    fn per_segment(&self) -> u64 {
        (SEGMENT / self.layout.slot_size()).max(1)
    }

    /// Stored bytes of chunks `first..end` (holes included).
    fn span(&self, first: u64, end: u64) -> u64 {
        let want = self.layout.stored_len(self.size);
        self.layout.slot_offset(end).min(want) - self.layout.slot_offset(first).min(want)
    }
}

/// A chunk that is not simply as the manifest says.
#[derive(Debug)]
enum ChunkEvent {
    /// Matches through the write journal (warning).
    Pending(u64),
    /// Its stored bytes do not hash to the signed chunk list.
    Mismatch(u64),
    /// Its hash matches but it fails AEAD authentication (`deep`).
    AuthFail(u64),
    /// The content file could not be read again for this segment.
    Unreadable(u64, String),
}

impl ChunkEvent {
    fn index(&self) -> u64 {
        match self {
            ChunkEvent::Pending(i)
            | ChunkEvent::Mismatch(i)
            | ChunkEvent::AuthFail(i)
            | ChunkEvent::Unreadable(i, _) => *i,
        }
    }
}

/// Turns a file's chunk events into findings, in chunk order, up to the first
/// failure (as one pass over the chunks would). Returns whether all is well.
fn report_chunks(mut events: Vec<ChunkEvent>, shown: &str, r: &mut VerifyReport) -> bool {
    events.sort_by_key(ChunkEvent::index);
    for e in events {
        let problem = match e {
            ChunkEvent::Pending(idx) => {
                r.warnings.push(Finding {
                    path: shown.into(),
                    problem: format!("chunk {idx} is pending in the write journal or the sidecar (an interrupted commit); the next commit completes it"),
                });
                continue;
            }
            ChunkEvent::Mismatch(idx) => format!(
                "chunk {idx} does not match the signed manifest (modified, swapped or rolled back)"
            ),
            ChunkEvent::AuthFail(idx) => format!("chunk {idx} fails authentication"),
            ChunkEvent::Unreadable(idx, why) => {
                format!("content file unreadable from chunk {idx}: {why}")
            }
        };
        r.failures.push(Finding {
            path: shown.into(),
            problem,
        });
        return false;
    }
    true
}

/// Checks chunks `first..end` of a file against their hashes (and decrypts
/// them when asked), reading all their slots with one read into `buf`. Stops at
/// the first failure: nothing after it is reported.
fn check_chunks(
    data: &std::fs::File,
    c: &Content,
    first: u64,
    end: u64,
    buf: &mut Vec<u8>,
    events: &mut Vec<ChunkEvent>,
) {
    let layout = c.layout;
    let present = |i: &u64| c.chunks.get(*i as usize).is_some_and(Option::is_some);
    let Some(lo) = (first..end).find(present) else {
        return;
    };
    let hi = (lo..end).rev().find(present).unwrap_or(lo);
    let slot_len = |idx: u64| layout.chunk_plain_len(c.size, idx) + chunk::OVERHEAD;
    let start = layout.slot_offset(lo);
    let len = (layout.slot_offset(hi) - start) as usize + slot_len(hi);
    if buf.len() < len {
        buf.resize(len, 0);
    }
    let whole = data.read_exact_at(&mut buf[..len], start).is_ok();
    for idx in lo..=hi {
        let Some(Some(r)) = c.chunks.get(idx as usize) else {
            continue;
        };
        let off = (layout.slot_offset(idx) - start) as usize;
        let slot = &mut buf[off..off + slot_len(idx)];
        // After a failed (short) read of the whole span, each chunk is read on its own.
        let ok = whole || data.read_exact_at(slot, layout.slot_offset(idx)).is_ok();
        let mut journaled;
        let stored: &mut [u8] = if ok && *blake3::hash(slot).as_bytes() == r.hash {
            slot
        } else if let Some(j) = c
            .journal
            .get(&idx)
            .filter(|j| *blake3::hash(j).as_bytes() == r.hash)
        {
            events.push(ChunkEvent::Pending(idx));
            journaled = Zeroizing::new(j.clone());
            &mut journaled[..]
        } else {
            events.push(ChunkEvent::Mismatch(idx));
            return;
        };
        if let Some(keys) = &c.keys {
            let authentic = keys
                .get(&r.epoch)
                .is_some_and(|k| chunk::open_in_place(k, &c.file_id, r.epoch, idx, stored));
            if !authentic {
                events.push(ChunkEvent::AuthFail(idx));
                return;
            }
        }
    }
}

/// A large file's contents, checked segment by segment by all workers.
struct Deferred {
    /// Index into the merged file results.
    at: usize,
    content: Content,
    /// Opened by the first segment, closed by the last.
    file: Mutex<Option<Arc<std::fs::File>>>,
    remaining: AtomicUsize,
    events: Mutex<Vec<ChunkEvent>>,
}

impl Deferred {
    /// The content file, opened once and checked to be the one opened before.
    fn file(&self) -> Result<Arc<std::fs::File>, String> {
        let mut slot = crate::lock(&self.file);
        if let Some(f) = &*slot {
            return Ok(f.clone());
        }
        let c = &self.content;
        let f = crate::store::open_regular_read(&c.backing).map_err(|e| e.to_string())?;
        let m = f.metadata().map_err(|e| e.to_string())?;
        if (m.dev(), m.ino()) != (c.dev, c.ino) {
            return Err("the content file was replaced while being verified".into());
        }
        crate::store::advise::sequential(&f);
        let f = Arc::new(f);
        *slot = Some(f.clone());
        Ok(f)
    }

    fn segment(&self, first: u64, end: u64, buf: &mut Vec<u8>) {
        let mut events = Vec::new();
        match self.file() {
            Ok(f) => {
                // Start reading the segments after the next (the other workers
                // take the next ones) while this one is hashed: on a cold cache
                // the disk stays busy.
                let c = &self.content;
                let n = c.chunks.len() as u64;
                let ahead = (end + READ_AHEAD * c.per_segment()).min(n);
                let from = c.layout.slot_offset(end);
                crate::store::advise::will_need(&f, from, c.layout.slot_offset(ahead) - from);
                check_chunks(&f, c, first, end, buf, &mut events)
            }
            Err(why) => events.push(ChunkEvent::Unreadable(first, why)),
        }
        if !events.is_empty() {
            crate::lock(&self.events).extend(events);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last segment of this file: close it.
            crate::lock(&self.file).take();
        }
    }
}

/// Runs `job(i, &mut buf)` for `i` in `0..n` on up to four threads, each with
/// its own read buffer (wiped at the end: `deep` leaves plaintext in it).
fn on_workers(n: usize, job: impl Fn(usize, &mut Vec<u8>) + Sync) {
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4)
        .min(n.max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let mut buf = Zeroizing::new(Vec::new());
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    job(i, &mut buf);
                }
            });
        }
    });
}

impl Vault {
    /// The default check (see [`VerifyOptions`]).
    pub fn verify(&self, progress: Progress) -> VerifyReport {
        self.verify_with(VerifyOptions::default(), progress)
    }

    pub fn verify_with(&self, opts: VerifyOptions, progress: Progress) -> VerifyReport {
        let mut r = VerifyReport::default();
        if opts.deep {
            crate::history::log::forget_vouched(&self.config.vault_id);
        } else {
            // Log prefixes this machine verified before (trusted client state):
            // their signatures are not checked again, every byte is still
            // hashed and compared through the chain (crate::history::log).
            for member in self.members() {
                let id = member.public.member_id();
                if let Some((n, head)) = self.seen.log_seen(&id) {
                    crate::history::log::vouch_for_prefix(
                        &self.config.vault_id,
                        &id,
                        &member.public.ed25519,
                        n,
                        head,
                    );
                }
            }
        }
        let fail = |r: &mut VerifyReport, path: String, e: &dyn std::fmt::Display| {
            r.failures.push(Finding {
                path,
                problem: e.to_string(),
            })
        };

        // Members: every record must verify under the admin key.
        if let Ok(rd) = std::fs::read_dir(self.paths.members()) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let known = name
                    .strip_suffix(".member")
                    .and_then(crate::crypto::unhex::<16>)
                    .map(|id| self.member(&MemberId(id)).is_some())
                    .unwrap_or(false);
                if !known {
                    fail(
                        &mut r,
                        format!("members/{name}"),
                        &"member record fails verification (forged or corrupt)",
                    );
                }
            }
        }

        // Leftovers of a sync tool: the other side of a fork, not damage.
        let copies = self.conflict_copies();
        let copy_names: HashSet<String> = copies
            .iter()
            .filter_map(|c| c.path.file_name())
            .map(|n| format!("<{}>", n.to_string_lossy()))
            .collect();
        for c in &copies {
            r.forks.push(Finding {
                path: self.paths.root.join(&c.path).strip_prefix(&self.paths.root).map_or_else(|_| c.path.display().to_string(), |p| p.display().to_string()),
                problem: format!(
                    "conflict copy of a {} left by a sync tool (the other side of a fork); keep one side or both with `coffer fork resolve`",
                    c.kind
                ),
            });
        }

        // The tree.
        let (entries, bad) = self.walk_tree();
        for (p, e) in bad {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if copy_names.contains(&name) {
                continue;
            }
            fail(&mut r, p.display().to_string(), &e);
        }
        let total: u64 = entries
            .iter()
            .filter(|e| e.is_file)
            .filter_map(|e| std::fs::metadata(&e.backing).ok())
            .map(|m| m.len())
            .sum();
        // The members' logs are read (the bulk: parsing, and signatures this
        // machine has not checked before) while the files are checked. With
        // --deep they are read first, so the signatures are checked once.
        let members = self.members();
        let read_logs = || -> Vec<Result<MemberLog, Error>> {
            members.iter().map(|m| self.member_log_checked(m)).collect()
        };
        let files: Vec<&super::resolve::WalkEntry> = entries.iter().filter(|e| e.is_file).collect();
        let (results, logs) = if opts.deep {
            let logs = read_logs();
            (self.check_files(&files, opts, total, progress), logs)
        } else {
            std::thread::scope(|scope| {
                let logs = scope.spawn(read_logs);
                let results = self.check_files(&files, opts, total, progress);
                let logs = logs.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
                (results, logs)
            })
        };
        let mut by_id: HashMap<[u8; 16], (u64, PathBuf)> = HashMap::new();
        let mut versions: HashMap<[u8; 16], (u64, u64)> = HashMap::new();
        let mut current_hash: HashMap<[u8; 16], [u8; 32]> = HashMap::new();
        for c in results {
            r.files += 1;
            r.failures.extend(c.report.failures);
            r.warnings.extend(c.report.warnings);
            r.forks.extend(c.report.forks);
            r.bytes += c.report.bytes;
            r.decrypted_files += c.report.decrypted_files;
            let Some(id) = c.file_id else { continue };
            if let Some((ino, other)) = by_id.get(&id) {
                if *ino != c.ino {
                    let what = format!(
                        "has the same file id as {} (a copied or swapped content file)",
                        other.display()
                    );
                    fail(&mut r, c.shown.clone(), &what);
                }
            }
            by_id.insert(id, (c.ino, c.plain.clone()));
            if let Some(v) = c.versions {
                versions.insert(id, v);
            }
            if let Some(h) = c.manifest_hash {
                current_hash.insert(id, h);
            }
        }
        for e in &entries {
            let shown = e.plain.display().to_string();
            if e.is_dir {
                r.directories += 1;
                if let Ok(rec) = self.read_dir_record(&e.backing) {
                    if rec.defaults.is_some() && self.dir_defaults(&e.backing).is_none() {
                        fail(
                            &mut r,
                            shown.clone(),
                            &"directory default grants fail verification",
                        );
                    }
                }
                continue;
            }
            let Ok(m) = std::fs::symlink_metadata(&e.backing) else {
                continue;
            };
            if m.file_type().is_symlink() {
                match std::fs::read_link(&e.backing) {
                    Ok(t) => {
                        if let Err(err) = self.decrypt_symlink(t.as_os_str()) {
                            fail(&mut r, shown, &err);
                        }
                    }
                    Err(err) => fail(&mut r, shown, &err),
                }
            }
        }

        // Logs: every member's chain, checkpoint, and against what this machine saw.
        let mut history = BindingIndex::default();
        let mut content_history = HashMap::new();
        for (member, log) in members.iter().zip(logs) {
            let id = member.public.member_id();
            let shown = format!("log/{}.log", id.to_hex());
            let log = match log {
                Ok(log) => log,
                Err(err @ Error::Fork { .. }) => {
                    r.forks.push(Finding {
                        path: shown,
                        problem: err.to_string(),
                    });
                    continue;
                }
                Err(err) => {
                    fail(&mut r, shown, &err);
                    continue;
                }
            };
            let n_now = log.entries.len() as u64;
            r.log_entries += n_now;
            for entry in &log.entries {
                history.apply(&id, &entry.event);
            }
            super::fork::add_entries(&mut content_history, &member.name, &log.entries);
            if log.torn_tail {
                r.warnings.push(Finding {
                    path: shown,
                    problem: "ends in a partly written record, or in entries the signed entry \
                         vouching for them never followed (an interrupted append, or bytes \
                         added by someone without the key); they are ignored"
                        .into(),
                });
            }
        }
        // Each file against the newest version any member's log recorded.
        let already_forked: HashSet<String> = r.forks.iter().map(|f| f.path.clone()).collect();
        for (file_id, (version, access_len)) in &versions {
            let shown = by_id
                .get(file_id)
                .map(|(_, p)| p.display().to_string())
                .unwrap_or_default();
            // Two signed branches of one version: a fork, even when the file on
            // disk is the newest (the other branch was dropped by the merge).
            if let (Some(h), Some(vh)) = (current_hash.get(file_id), content_history.get(file_id)) {
                if let super::fork::Divergence::Fork {
                    version: at,
                    branches,
                } = vh.classify(*version, h)
                {
                    if !already_forked.contains(&shown) {
                        r.forks.push(Finding {
                            path: shown.clone(),
                            problem: super::fork::describe(&shown, at, &branches),
                        });
                    }
                    continue;
                }
            }
            let (v, a) = history.recorded(file_id);
            if let Some(v) = v.filter(|v| v > version) {
                let what = format!(
                    "rolled back: the history records version {v}, the file is at {version}"
                );
                fail(&mut r, shown.clone(), &what);
            }
            if let Some(a) = a.filter(|a| a > access_len) {
                let what = format!("access list rolled back: the history records {a} entries, the file has {access_len}");
                fail(&mut r, shown, &what);
            }
        }
        // Every entry must stand where the history put it: a swap or a rename
        // outside coffer puts an id under a name the log never bound it to.
        for e in &entries {
            let (Some(parent), Some(bname)) = (e.backing.parent(), e.backing.file_name()) else {
                continue;
            };
            if e.backing == self.paths.tree() {
                continue;
            }
            let (Some(id), Ok(pid)) = (self.entry_id(&e.backing), self.read_dir_record(parent))
            else {
                continue;
            };
            let shown = e.plain.display().to_string();
            match history.check(&id, &pid.dir_id, std::os::unix::ffi::OsStrExt::as_bytes(bname)) {
                Binding::Matches | Binding::Unknown => {}
                Binding::Stale => r.warnings.push(Finding {
                    path: shown,
                    problem: "stands under a name or in a state its history moved on from (an interrupted rename or delete)".into(),
                }),
                Binding::Mismatch => fail(
                    &mut r,
                    shown,
                    &"holds a file the history never put under this name (swapped, moved or renamed outside coffer)",
                ),
            }
        }
        // Files the history says exist but the tree lacks: deleted behind coffer's back.
        let present: HashSet<[u8; 16]> = by_id.keys().copied().collect();
        for file_id in history.live_files() {
            if !present.contains(&file_id) {
                let sidecar = self.paths.sidecar(&file_id);
                if history.recorded(&file_id) == (None, None)
                    && self.seen.get(&file_id).is_none()
                    && !sidecar.exists()
                {
                    // Created and never written (no version, no access change,
                    // never seen here): a create interrupted between its history
                    // record and its name. Nothing was in it to lose.
                    r.warnings.push(Finding {
                        path: format!("file {}", crate::crypto::hex(&file_id)),
                        problem: "created but never written, and no entry holds it (an interrupted create)".into(),
                    });
                    continue;
                }
                fail(
                    &mut r,
                    format!("file {}", crate::crypto::hex(&file_id)),
                    &format!(
                        "deleted outside coffer: the history has it live, but no entry in the tree holds it (sidecar {})",
                        if sidecar.exists() { "still present" } else { "gone too" }
                    ),
                );
            }
        }
        // Sidecars nobody references.
        if let Ok(rd) = std::fs::read_dir(self.paths.meta()) {
            for fan in rd.flatten() {
                let Ok(files) = std::fs::read_dir(fan.path()) else {
                    continue;
                };
                for f in files.flatten() {
                    let name = f.file_name().to_string_lossy().into_owned();
                    let Some(id) = name
                        .strip_suffix(".meta")
                        .and_then(crate::crypto::unhex::<16>)
                    else {
                        continue;
                    };
                    if !present.contains(&id) && !history.is_live(&id) {
                        r.warnings.push(Finding {
                            path: format!("meta/{}/{name}", fan.file_name().to_string_lossy()),
                            problem: "sidecar of no file (left by an interrupted create or delete)"
                                .into(),
                        });
                    }
                }
            }
        }
        self.seen_save_quietly();
        r
    }

    /// Checks every regular file on all cores; results in `files` order.
    fn check_files(
        &self,
        files: &[&super::resolve::WalkEntry],
        opts: VerifyOptions,
        total: u64,
        progress: Progress,
    ) -> Vec<FileCheck> {
        // Files are checked on all cores (public-key checks dominate for small
        // files, chunk hashing for large ones); the results are merged in tree
        // order below.
        let done = AtomicU64::new(0);
        let advance = |n: u64| progress(done.fetch_add(n, Ordering::Relaxed) + n, total);
        let results: Mutex<Vec<(usize, FileCheck)>> = Mutex::new(Vec::new());
        on_workers(files.len(), |i, buf| {
            let check = self.check_file(files[i], opts, buf);
            let later = check
                .deferred
                .as_ref()
                .map_or(0, |c| c.span(0, c.chunks.len() as u64));
            advance(check.stored_len.saturating_sub(later));
            crate::lock(&results).push((i, check));
        });
        let mut results: Vec<FileCheck> = {
            let mut r = results
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            r.sort_by_key(|(i, _)| *i);
            r.into_iter().map(|(_, c)| c).collect()
        };
        // Large files: every segment of every such file, shared by all workers.
        let deferred: Vec<Deferred> = results
            .iter_mut()
            .enumerate()
            .filter_map(|(at, c)| c.deferred.take().map(|content| (at, content)))
            .map(|(at, content)| {
                let n = content.chunks.len() as u64;
                Deferred {
                    at,
                    remaining: AtomicUsize::new(n.div_ceil(content.per_segment()) as usize),
                    content,
                    file: Mutex::new(None),
                    events: Mutex::new(Vec::new()),
                }
            })
            .collect();
        let segments: Vec<(usize, u64, u64)> = deferred
            .iter()
            .enumerate()
            .flat_map(|(d, def)| {
                let (n, per) = (def.content.chunks.len() as u64, def.content.per_segment());
                (0..n.div_ceil(per)).map(move |s| (d, s * per, ((s + 1) * per).min(n)))
            })
            .collect();
        on_workers(segments.len(), |i, buf| {
            let (d, first, end) = segments[i];
            let def = &deferred[d];
            // Skip what follows a failure already found: only the first is reported.
            let failed = crate::lock(&def.events)
                .iter()
                .any(|e| !matches!(e, ChunkEvent::Pending(_)) && e.index() < first);
            if failed {
                def.remaining.fetch_sub(1, Ordering::AcqRel);
            } else {
                def.segment(first, end, buf);
            }
            advance(def.content.span(first, end));
        });
        for def in deferred {
            let c = &mut results[def.at];
            let decrypting = def.content.keys.is_some();
            let events = def
                .events
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if report_chunks(events, &c.shown, &mut c.report) && decrypting {
                c.report.decrypted_files += 1;
            }
        }
        results
    }

    fn seen_save_quietly(&self) {
        if let Err(e) = self.seen.save() {
            log::warn!("could not save this machine's vault state: {e}");
        }
    }

    /// Everything `verify` checks about one regular file. Contents of up to
    /// one segment are checked here; larger ones are left in `deferred`.
    fn check_file(
        &self,
        e: &super::resolve::WalkEntry,
        opts: VerifyOptions,
        buf: &mut Vec<u8>,
    ) -> FileCheck {
        let shown = e.plain.display().to_string();
        let mut c = FileCheck {
            shown: shown.clone(),
            plain: e.plain.clone(),
            ..FileCheck::default()
        };
        let Ok(m) = std::fs::symlink_metadata(&e.backing) else {
            return c;
        };
        c.ino = m.ino();
        c.stored_len = m.len();
        // Verification must not repair: open as a reader would on a read-only mount.
        match self.open_file_readonly(&e.backing, shown.clone()) {
            Ok(f) => {
                c.file_id = Some(f.file_id);
                c.versions = Some((f.manifest().version, f.sidecar().access.len() as u64));
                c.manifest_hash = Some(f.sidecar().manifest.hash());
                c.report.bytes += f.size();
                check_sidecar_copies(&f, &shown, &mut c.report);
                if !self.check_length(&f, &shown, &mut c.report) {
                    return c;
                }
                let can_read = f.can_read(self);
                let (data, content) = Content::from_open(f, &e.backing, &m, opts.deep, can_read);
                let n = content.chunks.len() as u64;
                if n > content.per_segment() {
                    c.deferred = Some(content);
                    return c;
                }
                crate::store::advise::sequential(&data);
                let mut events = Vec::new();
                check_chunks(&data, &content, 0, n, buf, &mut events);
                if report_chunks(events, &shown, &mut c.report) && content.keys.is_some() {
                    c.report.decrypted_files += 1;
                }
            }
            Err(err) => {
                // Present, though broken: do not report it as deleted too.
                c.file_id = self.read_file_id(&e.backing).ok();
                let finding = Finding {
                    path: shown,
                    problem: err.to_string(),
                };
                match err {
                    Error::Fork { .. } => c.report.forks.push(finding),
                    // A creation in progress, or one a crash interrupted (its
                    // creator's next open recovers it): nothing was tampered with.
                    Error::BeingCreated(_) => c.report.warnings.push(finding),
                    _ => c.report.failures.push(finding),
                }
            }
        }
        c
    }

    /// The content file must hold at least what the signed manifest describes.
    fn check_length(&self, f: &OpenFile, shown: &str, r: &mut VerifyReport) -> bool {
        let want = f.layout.stored_len(f.manifest().size);
        match f.data.metadata() {
            Ok(m) if m.len() < want => {
                r.failures.push(Finding {
                    path: shown.into(),
                    problem: format!(
                        "content file truncated: {} bytes, the signed manifest needs {want}",
                        m.len()
                    ),
                });
                false
            }
            Ok(m) if m.len() > want => {
                r.warnings.push(Finding {
                    path: shown.into(),
                    problem: "content file has bytes past its committed end (an interrupted write); the next write trims them".into(),
                });
                true
            }
            _ => true,
        }
    }
}

/// The sidecar's copy not in force (layout 3) must be an intact earlier
/// version, never written, or a write cut short; anything else was altered.
fn check_sidecar_copies(f: &OpenFile, shown: &str, r: &mut VerifyReport) {
    use crate::format::copies::OtherCopy;
    let Some(copies) = f.sidecar_copies() else {
        return;
    };
    match copies.other {
        OtherCopy::Empty | OtherCopy::Older => {}
        OtherCopy::Interrupted => r.warnings.push(Finding {
            path: shown.into(),
            problem: "its sidecar's other copy is torn by an interrupted write (a crash, or a \
                      write in progress); the copy in force is intact"
                .into(),
        }),
        OtherCopy::Damaged => r.failures.push(Finding {
            path: shown.into(),
            problem: "its sidecar's older copy is damaged: altered outside coffer (or torn by a \
                      power cut during a write); the copy in force is intact"
                .into(),
        }),
    }
}
