//! `coffer verify`: an offline check of everything in a vault. Nothing is
//! trusted: member records, directory records, names, every file's access list,
//! manifest, chunk hashes (and, where we hold a key, every chunk's AEAD), the
//! members' signed logs, and all of it against what this machine saw before.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use serde::Serialize;

use super::bindings::{Binding, BindingIndex};
use super::file::OpenFile;
use super::Vault;
use crate::crypto::{chunk, MemberId};
use crate::error::Error;

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
    /// Files whose contents we could also decrypt (we hold read).
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
}

impl Vault {
    pub fn verify(&self, progress: Progress) -> VerifyReport {
        let mut r = VerifyReport::default();
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
        let mut by_id: HashMap<[u8; 16], (u64, PathBuf)> = HashMap::new();
        let mut versions: HashMap<[u8; 16], (u64, u64)> = HashMap::new();
        let mut current_hash: HashMap<[u8; 16], [u8; 32]> = HashMap::new();
        // Files are checked on all cores (public-key checks and chunk hashing
        // dominate); the results are merged in tree order below.
        let files: Vec<&super::resolve::WalkEntry> = entries.iter().filter(|e| e.is_file).collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let done = std::sync::atomic::AtomicU64::new(0);
        let results: std::sync::Mutex<Vec<(usize, FileCheck)>> = std::sync::Mutex::new(Vec::new());
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 4);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(e) = files.get(i) else { break };
                    let check = self.check_file(e);
                    let d = done.fetch_add(check.stored_len, std::sync::atomic::Ordering::Relaxed)
                        + check.stored_len;
                    progress(d, total);
                    crate::lock(&results).push((i, check));
                });
            }
        });
        let mut results = results
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        results.sort_by_key(|(i, _)| *i);
        for (_, c) in results {
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
        for member in self.members() {
            let id = member.public.member_id();
            let shown = format!("log/{}.log", id.to_hex());
            let log = match self.member_log_checked(&member) {
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
                history.apply(&entry.event);
            }
            super::fork::add_entries(&mut content_history, &member.name, &log.entries);
            if log.torn_tail {
                r.warnings.push(Finding {
                    path: shown,
                    problem:
                        "ends in a partly written record (an interrupted append); it is ignored"
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

    fn seen_save_quietly(&self) {
        if let Err(e) = self.seen.save() {
            log::warn!("could not save this machine's vault state: {e}");
        }
    }

    /// Everything `verify` checks about one regular file.
    fn check_file(&self, e: &super::resolve::WalkEntry) -> FileCheck {
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
        match self.open_file_for_verify(&e.backing, &shown) {
            Ok(f) => {
                c.file_id = Some(f.file_id);
                c.versions = Some((f.manifest().version, f.sidecar().access.len() as u64));
                c.manifest_hash = Some(f.sidecar().manifest.hash());
                if self.check_chunks(&f, &shown, &mut c.report) {
                    c.report.decrypted_files += 1;
                }
                c.report.bytes += f.size();
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
                    _ => c.report.failures.push(finding),
                }
            }
        }
        c
    }

    fn open_file_for_verify(
        &self,
        backing: &std::path::Path,
        shown: &str,
    ) -> Result<OpenFile, Error> {
        // Verification must not repair: open as a reader would on a read-only mount.
        let f = self.open_file_readonly(backing, shown.to_string())?;
        Ok(f)
    }

    /// Checks every chunk's stored hash, and decrypts it when we hold the key.
    /// Returns whether the contents were decrypted too.
    fn check_chunks(&self, f: &OpenFile, shown: &str, r: &mut VerifyReport) -> bool {
        let layout = f.layout;
        let size = f.manifest().size;
        let want = layout.stored_len(size);
        match f.data.metadata() {
            Ok(m) if m.len() < want => {
                r.failures.push(Finding {
                    path: shown.into(),
                    problem: format!("content file truncated: {} bytes, the signed manifest needs {want}", m.len()),
                });
                return false;
            }
            Ok(m) if m.len() > want => r.warnings.push(Finding {
                path: shown.into(),
                problem: "content file has bytes past its committed end (an interrupted write); the next write trims them".into(),
            }),
            _ => {}
        }
        let can_decrypt = f.can_read(self);
        for (idx, c) in f.chunks.iter().enumerate() {
            let Some(c) = c else { continue };
            let idx = idx as u64;
            let plain_len = layout.chunk_plain_len(size, idx);
            let mut buf = vec![0u8; plain_len + chunk::OVERHEAD];
            let ok = std::os::unix::fs::FileExt::read_exact_at(
                &f.data,
                &mut buf,
                layout.slot_offset(idx),
            )
            .is_ok();
            let stored: &[u8] = if ok && *blake3::hash(&buf).as_bytes() == c.hash {
                &buf
            } else if let Some(j) = f
                .journal_overlay
                .get(&idx)
                .filter(|j| *blake3::hash(j).as_bytes() == c.hash)
            {
                r.warnings.push(Finding {
                    path: shown.into(),
                    problem: format!("chunk {idx} is pending in the write journal (an interrupted commit); the next open completes it"),
                });
                j
            } else {
                r.failures.push(Finding {
                    path: shown.into(),
                    problem: format!("chunk {idx} does not match the signed manifest (modified, swapped or rolled back)"),
                });
                return false;
            };
            if can_decrypt {
                match f.keys.get(&c.epoch) {
                    Some(k) if chunk::open(k, &f.file_id, c.epoch, idx, stored).is_some() => {}
                    _ => {
                        r.failures.push(Finding {
                            path: shown.into(),
                            problem: format!("chunk {idx} fails authentication"),
                        });
                        return false;
                    }
                }
            }
        }
        can_decrypt
    }
}
