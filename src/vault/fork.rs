//! Forks: two copies of one vault changed apart (a sync folder while offline, a
//! copy on a laptop) and merged again by a file-level sync tool.
//!
//! Every piece stays validly signed, so this is not tampering, but the merged
//! vault holds two branches of some history:
//!
//! - **a file fork**: two signed content versions with the same version number
//!   (each copy wrote version N+1 of the file on top of version N). The sync tool
//!   keeps one as the file and either drops the other or leaves it beside the
//!   file as a *conflict copy* (`<name>.sync-conflict-…`, `<name> (conflicted
//!   copy …)`); the members' logs still record both.
//! - **a history fork**: one member wrote on both copies, so their log has two
//!   continuations and the sync kept one. A machine that saw the other one
//!   notices its log head is gone.
//!
//! Forks are reported as forks (`Error::Fork`, exit 4, `EIO` in the mount with a
//! log line), never as corruption, and settled with `coffer fork resolve` (keep
//! the vault's version, the conflict copy's, or both) and `coffer fork accept`
//! (this machine takes the vault's history as its new baseline).

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::file::OpenFile;
use super::seen::SeenFile;
use super::Vault;
use crate::crypto::MemberId;
use crate::error::{Error, Result};
use crate::history::log::Event;

/// One content version of a file as someone recorded it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Branch {
    /// The member whose log records it, or "this machine" for its own state.
    pub recorded_by: String,
    pub version: u64,
    #[serde(serialize_with = "hex32")]
    pub manifest_hash: [u8; 32],
    /// Milliseconds since the Unix epoch (0 when unknown).
    pub time_ms: u64,
}

fn hex32<S: serde::Serializer>(h: &[u8; 32], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&crate::crypto::hex(h))
}

/// Everything the signed history records about one file's content versions.
#[derive(Clone, Debug, Default)]
pub struct VersionHistory {
    pub recorded: Vec<Branch>,
    /// Branches at versions up to this one were settled by `coffer fork resolve`.
    pub resolved_upto: u64,
}

/// How a file on disk stands against its recorded history.
#[derive(Debug, PartialEq, Eq)]
pub enum Divergence {
    None,
    /// The history (or this machine) knows a newer version on the same branch.
    Rollback {
        newest: u64,
    },
    /// Two different signed versions carry the same number: a fork at `version`.
    Fork {
        version: u64,
        branches: Vec<Branch>,
    },
}

impl VersionHistory {
    /// Classifies the file on disk (`version`, `hash`) against the history.
    pub fn classify(&self, version: u64, hash: &[u8; 32]) -> Divergence {
        let open: Vec<&Branch> = self
            .recorded
            .iter()
            .filter(|b| b.version > self.resolved_upto)
            .collect();
        let mut by_version: BTreeMap<u64, Vec<&Branch>> = BTreeMap::new();
        for b in &open {
            by_version.entry(b.version).or_default().push(b);
        }
        // The current version counts as a branch too: the history may have lost
        // its own record of it (a history fork) yet recorded another one.
        for (v, bs) in &by_version {
            let mut hashes: Vec<&[u8; 32]> = bs.iter().map(|b| &b.manifest_hash).collect();
            if *v == version {
                hashes.push(hash);
            }
            hashes.sort();
            hashes.dedup();
            if hashes.len() > 1 {
                let mut branches: Vec<Branch> = bs.iter().map(|b| (*b).clone()).collect();
                if *v == version && !branches.iter().any(|b| &b.manifest_hash == hash) {
                    branches.push(Branch {
                        recorded_by: "the vault (current file)".into(),
                        version,
                        manifest_hash: *hash,
                        time_ms: 0,
                    });
                }
                branches.dedup_by(|a, b| {
                    a.manifest_hash == b.manifest_hash && a.recorded_by == b.recorded_by
                });
                return Divergence::Fork {
                    version: *v,
                    branches,
                };
            }
        }
        match open.iter().map(|b| b.version).max() {
            Some(newest) if newest > version => Divergence::Rollback { newest },
            _ => Divergence::None,
        }
    }
}

/// Reads every member's whole log: per file, the content versions recorded and
/// the forks settled. Slow (every signature); used on error paths and by the
/// `fork` commands, never per open.
pub fn content_history(vault: &Vault) -> Result<HashMap<[u8; 16], VersionHistory>> {
    let mut out: HashMap<[u8; 16], VersionHistory> = HashMap::new();
    for m in vault.members() {
        let log = vault
            .member_log(&m)
            .map_err(|e| Error::integrity(format!("history of {}: {e}", m.name)))?;
        add_entries(&mut out, &m.name, &log.entries);
    }
    Ok(out)
}

/// Adds one member's log entries to a content history.
pub fn add_entries(
    out: &mut HashMap<[u8; 16], VersionHistory>,
    member_name: &str,
    entries: &[crate::history::log::LogEntry],
) {
    for e in entries {
        match &e.event {
            Event::ContentVersion {
                file_id,
                version,
                manifest_hash,
                ..
            } => out.entry(*file_id).or_default().recorded.push(Branch {
                recorded_by: member_name.to_string(),
                version: *version,
                manifest_hash: *manifest_hash,
                time_ms: e.time_ms,
            }),
            Event::ForkResolved { file_id, version } => {
                let h = out.entry(*file_id).or_default();
                h.resolved_upto = h.resolved_upto.max(*version);
            }
            _ => {}
        }
    }
}

pub(super) fn with_seen(mut h: VersionHistory, seen: Option<SeenFile>) -> VersionHistory {
    if let Some(s) = seen {
        h.recorded.push(Branch {
            recorded_by: "this machine (last seen)".into(),
            version: s.version,
            manifest_hash: s.manifest_hash,
            time_ms: 0,
        });
    }
    h
}

pub(super) fn describe(display: &str, version: u64, branches: &[Branch]) -> String {
    let list: Vec<String> = branches
        .iter()
        .map(|b| format!("{} ({})", short(&b.manifest_hash), b.recorded_by))
        .collect();
    format!(
        "{display}: forked at content version {version}: {} — two copies of the vault were \
         changed apart and merged; not tampering. See `coffer fork status`, then keep one \
         side or both with `coffer fork resolve`",
        list.join(" vs ")
    )
}

fn short(h: &[u8; 32]) -> String {
    crate::crypto::hex(&h[..4])
}

/// A history fork: `member`'s log no longer holds the entry this machine saw.
pub fn history_fork(member_name: &str, seen_entries: u64, now_entries: u64) -> Error {
    Error::fork(format!(
        "the history of {member_name} forked: entry {} that this machine saw is not in the \
         vault's log ({now_entries} entries); {member_name} changed two copies of the vault \
         apart and a sync kept one. Run `coffer fork status`, then `coffer fork accept` to \
         continue from the vault's history",
        seen_entries.saturating_sub(1)
    ))
}

impl Vault {
    /// The history and rollback checks of an open: the quick checks against the
    /// history index and this machine's state, then, only if one fails, a full
    /// read of the logs to tell a fork (two signed branches) from a rollback.
    pub(super) fn check_file_history(
        &self,
        file_id: &[u8; 16],
        now: SeenFile,
        display: &str,
    ) -> Result<()> {
        let quick = self
            .check_history_version(file_id, now.version, now.access_len, display)
            .and_then(|()| self.seen.observe(file_id, now, display));
        let err = match quick {
            Ok(()) => return Ok(()),
            Err(e @ Error::Integrity { .. }) | Err(e @ Error::Fork { .. }) => e,
            Err(e) => return Err(e),
        };
        let history = content_history(self)?.remove(file_id).unwrap_or_default();
        let history = with_seen(history, self.seen.get(file_id));
        match history.classify(now.version, &now.manifest_hash) {
            Divergence::Fork { version, branches } => {
                Err(Error::fork(describe(display, version, &branches)))
            }
            _ => Err(err),
        }
    }
}

/// A leftover of a sync tool beside a vault file: the other side of a conflict.
#[derive(Clone, Debug, Serialize)]
pub struct ConflictCopy {
    /// What it is a copy of: "sidecar", "content" or "log".
    pub kind: &'static str,
    pub path: PathBuf,
    /// The file (for sidecars and content) or member (for logs) it belongs to.
    pub of: String,
}

/// Whether `name` is `base` with a sync tool's conflict marker added (Syncthing
/// `base.sync-conflict-…` / `stem.sync-conflict-….ext`, Dropbox/Nextcloud
/// `stem (… conflicted copy …).ext`, and similar): it starts with the stem of
/// `base` and keeps its extension, and is not `base` itself.
pub fn is_conflict_copy_of(name: &str, base: &str) -> bool {
    if name == base {
        return false;
    }
    let (stem, ext) = match base.rfind('.') {
        Some(i) if i > 0 => (&base[..i], &base[i..]),
        _ => (base, ""),
    };
    let lower = name.to_ascii_lowercase();
    name.starts_with(stem)
        && (ext.is_empty() || name.ends_with(ext))
        && (lower.contains("conflict") || lower.contains("conflicted copy"))
}

/// The id in a sidecar conflict copy's name: `<32 hex>` then a conflict marker.
fn sidecar_copy_id(name: &str) -> Option<[u8; 16]> {
    let id = crate::crypto::unhex::<16>(name.get(..32)?)?;
    let base = format!("{}.meta", crate::crypto::hex(&id));
    is_conflict_copy_of(name, &base).then_some(id)
}

impl Vault {
    /// Every sync-tool conflict copy in the vault's metadata, tree and logs.
    pub fn conflict_copies(&self) -> Vec<ConflictCopy> {
        let mut out = Vec::new();
        if let Ok(fans) = std::fs::read_dir(self.paths.meta()) {
            for fan in fans.flatten() {
                let Ok(files) = std::fs::read_dir(fan.path()) else {
                    continue;
                };
                for f in files.flatten() {
                    let name = f.file_name().to_string_lossy().into_owned();
                    if let Some(id) = sidecar_copy_id(&name) {
                        out.push(ConflictCopy {
                            kind: "sidecar",
                            path: f.path(),
                            of: crate::crypto::hex(&id),
                        });
                    }
                }
            }
        }
        if let Ok(logs) = std::fs::read_dir(self.paths.log()) {
            let members: Vec<MemberId> = self
                .members()
                .iter()
                .map(|m| m.public.member_id())
                .collect();
            for f in logs.flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                for m in &members {
                    let base = format!("{}.log", m.to_hex());
                    if is_conflict_copy_of(&name, &base) {
                        out.push(ConflictCopy {
                            kind: "log",
                            path: f.path(),
                            of: m.to_hex(),
                        });
                    }
                }
            }
        }
        let mut stack = vec![self.paths.tree()];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            let names: Vec<OsString> = rd.flatten().map(|e| e.file_name()).collect();
            for name in &names {
                let path = dir.join(name);
                let Ok(m) = std::fs::symlink_metadata(&path) else {
                    continue;
                };
                if m.is_dir() {
                    stack.push(path);
                    continue;
                }
                let s = name.to_string_lossy();
                let copy_of = names.iter().find(|base| {
                    base.as_bytes() != name.as_bytes()
                        && is_conflict_copy_of(&s, &base.to_string_lossy())
                });
                if let (Some(_), true) = (copy_of, m.is_file()) {
                    if let Ok(id) = self.read_file_id(&path) {
                        out.push(ConflictCopy {
                            kind: "content",
                            path: path.clone(),
                            of: crate::crypto::hex(&id),
                        });
                    }
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    /// Opens the other side of a file from its conflict copies: the first pair
    /// (sidecar copy or the sidecar, content copy or the content) whose signed
    /// manifest verifies and whose chunks match it, other than the current pair.
    pub fn open_conflict_branch(
        &self,
        file_id: &[u8; 16],
        current_content: &Path,
        display: &str,
    ) -> Result<Option<(OpenFile, Vec<PathBuf>)>> {
        let hex = crate::crypto::hex(file_id);
        let copies = self.conflict_copies();
        let sidecars: Vec<PathBuf> = copies
            .iter()
            .filter(|c| c.kind == "sidecar" && c.of == hex)
            .map(|c| c.path.clone())
            .chain(std::iter::once(self.paths.sidecar(file_id)))
            .collect();
        let contents: Vec<PathBuf> = copies
            .iter()
            .filter(|c| c.kind == "content" && c.of == hex)
            .map(|c| c.path.clone())
            .chain(std::iter::once(current_content.to_path_buf()))
            .collect();
        let main_sidecar = self.paths.sidecar(file_id);
        for s in &sidecars {
            for c in &contents {
                if *s == main_sidecar && c == current_content {
                    continue;
                }
                let shown = format!("{display} (conflict copy)");
                if let Ok(f) = super::file::open_branch(self, file_id, s, c, shown, false) {
                    let used: Vec<PathBuf> = [s, c]
                        .into_iter()
                        .filter(|p| **p != main_sidecar && *p != current_content)
                        .cloned()
                        .collect();
                    return Ok(Some((f, used)));
                }
            }
        }
        Ok(None)
    }
}

/// Reads a whole file's plaintext (verified chunk by chunk).
pub fn read_all(f: &mut OpenFile) -> Result<Vec<u8>> {
    let size = f.size();
    let mut out = Vec::with_capacity(size as usize);
    while (out.len() as u64) < size {
        let part = f.read(
            out.len() as u64,
            (size - out.len() as u64).min(1 << 20) as usize,
        )?;
        if part.is_empty() {
            return Err(Error::integrity(format!(
                "{}: shorter than its manifest",
                f.display
            )));
        }
        out.extend_from_slice(&part);
    }
    Ok(out)
}

/// Which side of a fork `coffer fork resolve` keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// The version the vault holds now; conflict copies are removed.
    Current,
    /// The conflict copy's version becomes the file's content.
    Copy,
    /// The vault's version stays, the conflict copy's is saved as a new file beside it.
    Both,
}

/// What `resolve_fork` did.
#[derive(Debug, Serialize)]
pub struct Resolved {
    /// The new content version that settles the fork.
    pub version: u64,
    /// For `Keep::Both`: the plaintext name the other side was saved under.
    pub saved_as: Option<String>,
    /// Conflict copies removed from the vault.
    pub removed: Vec<PathBuf>,
}

impl Vault {
    /// Settles a fork of the file at `backing` (plaintext path `plain`): writes a
    /// new signed version above every branch (the current content, or the
    /// conflict copy's), records `ForkResolved` in the history, optionally saves
    /// the other side as a new file, and removes the file's conflict copies.
    /// Needs the update right.
    pub fn resolve_fork(&self, backing: &Path, plain: &Path, keep: Keep) -> Result<Resolved> {
        let display = plain.display().to_string();
        let file_id = self.read_file_id(backing)?;
        let sidecar = self.paths.sidecar(&file_id);
        let mut current =
            super::file::open_branch(self, &file_id, &sidecar, backing, display.clone(), true)?;
        if !current.can_update(self) {
            return Err(Error::AccessDenied(format!(
                "{display}: settling a fork writes a new version, which needs the update right"
            )));
        }
        let other = match keep {
            Keep::Current => None,
            Keep::Copy | Keep::Both => {
                let Some((mut f, _)) = self.open_conflict_branch(&file_id, backing, &display)?
                else {
                    return Err(Error::BadInput(format!(
                        "{display}: no conflict copy holds another verified version (the sync tool \
                         kept only one); use --keep current"
                    )));
                };
                Some(read_all(&mut f)?)
            }
        };
        let history = content_history(self)?.remove(&file_id).unwrap_or_default();
        let newest = history
            .recorded
            .iter()
            .map(|b| b.version)
            .chain(self.seen.get(&file_id).map(|s| s.version))
            .chain([current.manifest().version])
            .max()
            .unwrap_or(0);
        let _lock = crate::store::lock::FileLock::exclusive(current.data_file())
            .map_err(|e| Error::io(backing, e))?;
        if let (Keep::Copy, Some(plain_other)) = (keep, &other) {
            current.truncate(self, 0)?;
            current.write(self, 0, plain_other)?;
        }
        current.supersede(newest);
        drop(_lock);
        // This machine takes the settled version as what it has seen.
        self.seen.reset(&file_id);
        current.commit(self, crate::store::Durability::Sync)?;
        let version = current.manifest().version;
        self.record(Event::ForkResolved { file_id, version })?;
        let saved_as = match (keep, other) {
            (Keep::Both, Some(content)) => Some(self.save_beside(backing, plain, &content)?),
            _ => None,
        };
        let hex = crate::crypto::hex(&file_id);
        let mut removed = Vec::new();
        for c in self.conflict_copies() {
            if c.of == hex && c.kind != "log" && std::fs::remove_file(&c.path).is_ok() {
                removed.push(c.path);
            }
        }
        self.save_state();
        Ok(Resolved {
            version,
            saved_as,
            removed,
        })
    }

    /// Writes `content` as a new file beside `backing`, named after `plain` with
    /// " (fork N)" before its extension; returns the new plaintext name.
    fn save_beside(&self, backing: &Path, plain: &Path, content: &[u8]) -> Result<String> {
        let parent = backing.parent().unwrap_or(backing);
        let dir_id = self.read_dir_record(parent)?.dir_id;
        let name = plain
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (stem, ext) = match name.rfind('.') {
            Some(i) if i > 0 => (&name[..i], &name[i..]),
            _ => (name.as_str(), ""),
        };
        for n in 1..1000 {
            let candidate = format!("{stem} (fork {n}){ext}");
            let bn = self.encrypt_name(&dir_id, std::ffi::OsStr::new(&candidate))?;
            let path = parent.join(&bn.name);
            if path.exists() {
                continue;
            }
            self.write_long_name(parent, &bn)?;
            let shown = plain.with_file_name(&candidate).display().to_string();
            let mut f = self.create_file(&path, 0o600, shown)?;
            f.write(self, 0, content)?;
            f.commit(self, crate::store::Durability::Sync)?;
            return Ok(candidate);
        }
        Err(Error::Other(format!(
            "{}: no free name for the other side of the fork",
            plain.display()
        )))
    }

    /// This machine takes the vault's current history as its new baseline for
    /// every member whose log forked or went back, and for every file whose
    /// state it saw is no longer in the vault. Returns what it accepted.
    pub fn accept_history(&self) -> Result<Vec<String>> {
        let mut accepted = Vec::new();
        for m in self.members() {
            let id = m.public.member_id();
            let log = self.member_log(&m)?;
            let at = log.position();
            if super::bindings::check_log_against_seen(self, &id, 0, &log.entries, at, true)
                .is_err()
            {
                self.seen.reset_log(id, at.entries, at.head);
                accepted.push(format!(
                    "history of {}: now at {} entries",
                    m.name, at.entries
                ));
            }
        }
        let (entries, _) = self.walk_tree();
        for e in entries.iter().filter(|e| e.is_file) {
            let shown = e.plain.display().to_string();
            let Ok(file_id) = self.read_file_id(&e.backing) else {
                continue;
            };
            let sidecar = self.paths.sidecar(&file_id);
            let Ok(f) = super::file::open_branch(
                self,
                &file_id,
                &sidecar,
                &e.backing,
                shown.clone(),
                false,
            ) else {
                continue;
            };
            let now = SeenFile::of(f.sidecar(), f.manifest().version);
            if let Some(seen) = self
                .seen
                .get(&file_id)
                .filter(|s| *s != now && s.version >= now.version)
            {
                self.seen.reset(&file_id);
                accepted.push(format!(
                    "{shown}: version {} seen here is not in the vault; now at version {}",
                    seen.version, now.version
                ));
            }
        }
        // The other branch of a forked log: accepted away.
        for c in self.conflict_copies() {
            if c.kind == "log" && std::fs::remove_file(&c.path).is_ok() {
                accepted.push(format!("removed the conflict copy {}", c.path.display()));
            }
        }
        self.seen.save()?;
        Ok(accepted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(who: &str, version: u64, h: u8) -> Branch {
        Branch {
            recorded_by: who.into(),
            version,
            manifest_hash: [h; 32],
            time_ms: 0,
        }
    }

    #[test]
    fn two_hashes_for_one_version_are_a_fork_one_branch_behind_is_a_rollback() {
        let one_branch = VersionHistory {
            recorded: vec![b("alice", 2, 1), b("alice", 3, 2)],
            resolved_upto: 0,
        };
        assert_eq!(one_branch.classify(3, &[2; 32]), Divergence::None);
        assert_eq!(
            one_branch.classify(2, &[1; 32]),
            Divergence::Rollback { newest: 3 }
        );
        // The current file is another version 3 than the one recorded.
        assert!(matches!(
            one_branch.classify(3, &[9; 32]),
            Divergence::Fork { version: 3, .. }
        ));
        // Both branches recorded, the newer one continued: still a fork, whichever is on disk.
        let forked = VersionHistory {
            recorded: vec![b("alice", 3, 2), b("bob", 3, 7), b("bob", 4, 8)],
            resolved_upto: 0,
        };
        for (v, h) in [(3, 2), (4, 8)] {
            match forked.classify(v, &[h; 32]) {
                Divergence::Fork { version, branches } => {
                    assert_eq!(version, 3);
                    let who: Vec<&str> = branches.iter().map(|b| b.recorded_by.as_str()).collect();
                    assert!(who.contains(&"alice") && who.contains(&"bob"), "{who:?}");
                }
                other => panic!("{other:?}"),
            }
        }
        // Settled at version 5: the old branches no longer count.
        let settled = VersionHistory {
            recorded: vec![b("alice", 3, 2), b("bob", 3, 7), b("bob", 5, 9)],
            resolved_upto: 5,
        };
        assert_eq!(settled.classify(5, &[9; 32]), Divergence::None);
    }

    #[test]
    fn conflict_copy_names_of_common_sync_tools() {
        let base = "0123456789abcdef0123456789abcdef.meta";
        assert!(is_conflict_copy_of(
            "0123456789abcdef0123456789abcdef.sync-conflict-20261128-101500-ABCDEFG.meta",
            base
        ));
        assert!(is_conflict_copy_of(
            "0123456789abcdef0123456789abcdef (alice's conflicted copy 2026-11-28).meta",
            base
        ));
        assert!(!is_conflict_copy_of(base, base));
        assert!(!is_conflict_copy_of(
            "0123456789abcdef0123456789abcdef.journal",
            base
        ));
        assert!(!is_conflict_copy_of("fedcba.sync-conflict-1.meta", base));
        assert!(is_conflict_copy_of(
            "QmFzZTY0bmFtZQ.sync-conflict-20261128-101500-X",
            "QmFzZTY0bmFtZQ"
        ));
        assert_eq!(
            sidecar_copy_id("0123456789abcdef0123456789abcdef.sync-conflict-1-2-X.meta"),
            crate::crypto::unhex::<16>("0123456789abcdef0123456789abcdef")
        );
    }
}
