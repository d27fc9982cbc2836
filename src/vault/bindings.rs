//! Which directory entry names which file, per the members' signed logs
//! (`Linked`/`Unlinked` events), kept up to date incrementally so the mount can
//! refuse an entry that was swapped or renamed behind coffer's back.

use std::collections::HashMap;
use std::path::Path;

use crate::crypto::MemberId;
use crate::error::{Error, Result};
use crate::format::MemberRecord;
use crate::history::log::{
    name_tag, read_member_log, read_member_log_windows, Event, LogPosition, MemberLog,
};

#[derive(Default)]
pub struct BindingIndex {
    /// Per member: how far their log has been applied.
    applied: HashMap<MemberId, LogPosition>,
    /// When every log was last looked at (see [`BindingIndex::refresh_recent`]).
    refreshed_at: Option<std::time::Instant>,
    /// The id each name tag is bound to now.
    bound_to: HashMap<[u8; 16], [u8; 16]>,
    /// What the history says of each id it mentions. One compact record per
    /// id, not one entry in each of six maps: a mount that sees tens of
    /// thousands of files keeps this for all of them.
    ids: HashMap<[u8; 16], IdFacts>,
    /// Creators, interned: a vault has few members and many files.
    creators: Vec<MemberId>,
}

/// The history's facts about one file or directory id.
#[derive(Default)]
struct IdFacts {
    /// Every name tag ever bound to the id; the first inline (most ids only
    /// ever have one), the rest boxed.
    first_name: [u8; 16],
    // A thin pointer: 8 bytes in every record, where a Vec would take 24.
    #[allow(clippy::box_collection)]
    more_names: Option<Box<Vec<[u8; 16]>>>,
    /// Newest content version and access-list length any log recorded.
    version: u64,
    access_len: u64,
    /// `creators` index + 1 of who created it; 0: no creation recorded.
    creator: u32,
    flags: u8,
}

impl IdFacts {
    const NAMED: u8 = 1;
    const DELETED: u8 = 2;
    const VERSIONED: u8 = 4;
    const ACCESS_CHANGED: u8 = 8;

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    fn set(&mut self, flag: u8, on: bool) {
        if on {
            self.flags |= flag;
        } else {
            self.flags &= !flag;
        }
    }

    fn names(&self) -> impl Iterator<Item = &[u8; 16]> {
        let first = self.has(Self::NAMED).then_some(&self.first_name);
        first
            .into_iter()
            .chain(self.more_names.iter().flat_map(|v| v.iter()))
    }

    fn add_name(&mut self, name: [u8; 16]) {
        if !self.has(Self::NAMED) {
            self.first_name = name;
            self.set(Self::NAMED, true);
        } else if self.names().all(|n| *n != name) {
            self.more_names.get_or_insert_default().push(name);
        }
    }
}

/// What the history says about one entry.
#[derive(Debug, PartialEq, Eq)]
pub enum Binding {
    /// The entry names this id, as recorded.
    Matches,
    /// Neither the entry nor the id was ever recorded (created outside a mount).
    Unknown,
    /// The entry names this id under a name it had before (an interrupted rename),
    /// or a file whose deletion was interrupted.
    Stale,
    /// The entry names an id the history never put there.
    Mismatch,
}

impl BindingIndex {
    /// Applies one event of `member`'s log.
    pub fn apply(&mut self, member: &MemberId, e: &Event) {
        match e {
            Event::Linked { id, name } => {
                self.bound_to.insert(*name, *id);
                let facts = self.ids.entry(*id).or_default();
                facts.add_name(*name);
                facts.set(IdFacts::DELETED, false);
            }
            Event::FileDeleted { file_id } => {
                let facts = self.ids.entry(*file_id).or_default();
                for name in facts.names() {
                    if self.bound_to.get(name) == Some(file_id) {
                        self.bound_to.remove(name);
                    }
                }
                facts.set(IdFacts::DELETED, true);
            }
            Event::FileCreated { file_id } => {
                let creator = match self.creators.iter().position(|m| m == member) {
                    Some(i) => i,
                    None => {
                        self.creators.push(*member);
                        self.creators.len() - 1
                    }
                };
                let facts = self.ids.entry(*file_id).or_default();
                facts.creator = creator as u32 + 1;
                facts.set(IdFacts::DELETED, false);
            }
            Event::Unlinked { id, name } if self.bound_to.get(name) == Some(id) => {
                self.bound_to.remove(name);
            }
            Event::ContentVersion {
                file_id, version, ..
            } => {
                let facts = self.ids.entry(*file_id).or_default();
                facts.version = facts.version.max(*version);
                facts.set(IdFacts::VERSIONED, true);
            }
            Event::AccessChanged { file_id, .. } => {
                let facts = self.ids.entry(*file_id).or_default();
                // The creator's first entry is not logged as a change.
                facts.access_len = facts.access_len.max(1) + 1;
                facts.set(IdFacts::ACCESS_CHANGED, true);
            }
            _ => {}
        }
    }

    /// Files the history has created and not deleted.
    pub fn live_files(&self) -> Vec<[u8; 16]> {
        self.ids
            .iter()
            .filter(|(_, f)| f.creator != 0 && !f.has(IdFacts::DELETED))
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn is_live(&self, file_id: &[u8; 16]) -> bool {
        self.creator(file_id).is_some()
    }

    /// Who created a live file, per the history.
    pub fn creator(&self, file_id: &[u8; 16]) -> Option<MemberId> {
        let facts = self.ids.get(file_id)?;
        match facts.has(IdFacts::DELETED) || facts.creator == 0 {
            true => None,
            false => self.creators.get(facts.creator as usize - 1).copied(),
        }
    }

    /// The newest content version and access-list length the history records.
    pub fn recorded(&self, file_id: &[u8; 16]) -> (Option<u64>, Option<u64>) {
        let Some(facts) = self.ids.get(file_id) else {
            return (None, None);
        };
        (
            facts.has(IdFacts::VERSIONED).then_some(facts.version),
            facts
                .has(IdFacts::ACCESS_CHANGED)
                .then_some(facts.access_len),
        )
    }

    /// Applies events this process appended to its own log between `before`
    /// and `after`, if the index had applied that log exactly up to `before`
    /// (otherwise the next refresh reads them). True if applied.
    pub fn apply_own(
        &mut self,
        me: MemberId,
        before: LogPosition,
        after: LogPosition,
        events: &[Event],
    ) -> bool {
        if self.applied.get(&me).copied().unwrap_or_default() != before {
            return false;
        }
        for e in events {
            self.apply(&me, e);
        }
        self.applied.insert(me, after);
        true
    }

    /// [`BindingIndex::refresh`], unless that ran less than `RECENT` ago (one
    /// open checks the binding and then the version: one look at the logs
    /// serves both). Returns whether it looked.
    pub fn refresh_recent(&mut self, vault: &super::Vault) -> Result<bool> {
        if self
            .refreshed_at
            .is_some_and(|at| at.elapsed() < Self::RECENT)
        {
            return Ok(false);
        }
        self.refresh(vault)?;
        Ok(true)
    }

    const RECENT: std::time::Duration = std::time::Duration::from_millis(1);

    /// Applies entries added to any member's log since the last refresh, a
    /// window at a time (a large grant's thousands of entries never sit in
    /// memory at once). Each window is checked against what this machine saw
    /// before it is applied; a log shorter than what was seen is reported by
    /// every refresh, not only the first.
    pub fn refresh(&mut self, vault: &super::Vault) -> Result<()> {
        // Only a refresh that found nothing wrong lets the next ones within
        // `RECENT` skip their look: a rolled-back log fails every open.
        self.refreshed_at = None;
        let started = std::time::Instant::now();
        let log_dir = vault.paths.log();
        for (id, ed25519) in vault.member_keys() {
            let path = crate::history::log::log_path(&log_dir, &id);
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let name = || vault.member(&id).map(|m| m.name).unwrap_or_default();
            let from = self.applied.get(&id).copied().unwrap_or_default();
            if len != from.offset {
                let mut first = from.entries;
                let mut seen_check = Ok(());
                let read = read_member_log_windows(
                    &log_dir,
                    &vault.config.vault_id,
                    &id,
                    &ed25519,
                    from,
                    &mut |entries, at| {
                        seen_check = check_log_against_seen(vault, &id, first, &entries, at, false);
                        if seen_check.is_err() {
                            return Err(Error::Other("stopped at the seen state".into()));
                        }
                        for e in &entries {
                            self.apply(&id, &e.event);
                        }
                        vault.seen.observe_log(id, at.entries, at.head);
                        self.applied.insert(id, at);
                        first = at.entries;
                        Ok(())
                    },
                );
                seen_check?;
                read.map_err(|e| Error::integrity(format!("history of {}: {e}", name())))?;
            }
            let at = self.applied.get(&id).copied().unwrap_or_default();
            check_log_against_seen(vault, &id, at.entries, &[], at, true)?;
        }
        self.refreshed_at = Some(started);
        Ok(())
    }

    pub fn check(&self, id: &[u8; 16], parent_dir_id: &[u8; 16], backing_name: &[u8]) -> Binding {
        let tag = name_tag(parent_dir_id, backing_name);
        let facts = self.ids.get(id);
        let named = facts.is_some_and(|f| f.has(IdFacts::NAMED));
        let ever_here = facts.is_some_and(|f| f.names().any(|n| *n == tag));
        let deleted = facts.is_some_and(|f| f.has(IdFacts::DELETED));
        match self.bound_to.get(&tag) {
            Some(b) if b == id => Binding::Matches,
            _ if !named && !self.bound_to.contains_key(&tag) => Binding::Unknown,
            _ if ever_here || deleted => Binding::Stale,
            _ => Binding::Mismatch,
        }
    }
}

/// Checks a member's log, read from entry `first` on up to `at`, against the
/// length and head this machine saw: a different entry where the seen head was
/// is a fork (the member wrote on two copies of the vault); if `at` is where
/// the log ends (`complete`), shorter than seen is a rollback.
pub(super) fn check_log_against_seen(
    vault: &super::Vault,
    id: &MemberId,
    first: u64,
    entries: &[crate::history::log::LogEntry],
    at: LogPosition,
    complete: bool,
) -> Result<()> {
    let Some((seen, head)) = vault.seen.log_seen(id) else {
        return Ok(());
    };
    if seen > at.entries && !complete {
        return Ok(());
    }
    // Looked up only for a message: this runs on every open.
    let name = || {
        vault
            .member(id)
            .map(|m| m.name)
            .unwrap_or_else(|| id.to_string())
    };
    if seen > at.entries {
        let name = name();
        return Err(Error::integrity(format!(
            "the history of {name} rolled back from {seen} entries (seen by this machine) to {} \
             (if {name} changed another copy of this vault, it is a fork: see `coffer fork status`)",
            at.entries
        )));
    }
    if seen > first && seen > 0 {
        let now = if seen == at.entries {
            at.head
        } else {
            entries[(seen - first) as usize].prev
        };
        if now != head {
            return Err(super::fork::history_fork(&name(), seen, at.entries));
        }
    }
    Ok(())
}

impl super::Vault {
    /// A member's whole log, verified: signatures, chain and checkpoint.
    pub fn member_log(&self, m: &MemberRecord) -> Result<MemberLog> {
        read_member_log(
            &self.paths.log(),
            &self.config.vault_id,
            &m.public.member_id(),
            &m.public.ed25519,
        )
    }

    /// A member's whole log, also checked against what this machine saw of it
    /// (shorter: a rollback; another entry where the seen head was: a fork),
    /// then recorded as seen.
    pub fn member_log_checked(&self, m: &MemberRecord) -> Result<MemberLog> {
        let log = self.member_log(m)?;
        let id = m.public.member_id();
        check_log_against_seen(self, &id, 0, &log.entries, log.position(), true)?;
        self.seen
            .observe_log(id, log.entries.len() as u64, log.head);
        Ok(log)
    }

    /// The verified binding index, refreshed from the members' logs.
    pub fn with_bindings<T>(&self, f: impl FnOnce(&BindingIndex) -> T) -> Result<T> {
        let mut idx = crate::lock(&self.bindings);
        idx.refresh(self)?;
        Ok(f(&idx))
    }

    /// Fails if the signed history records a newer state of the file than the
    /// one on disk (a rollback, caught even on a machine that never saw the file).
    pub fn check_history_version(
        &self,
        file_id: &[u8; 16],
        version: u64,
        access_len: u64,
        display: &str,
    ) -> Result<()> {
        let mut idx = crate::lock(&self.bindings);
        let looked = idx.refresh_recent(self)?;
        let check = |idx: &BindingIndex| {
            let (v, a) = idx.recorded(file_id);
            if let Some(v) = v.filter(|v| *v > version) {
                return Err(Error::integrity(format!(
                    "{display}: rolled back: the signed history records version {v}, the file is at {version}"
                )));
            }
            if let Some(a) = a.filter(|a| *a > access_len) {
                return Err(Error::integrity(format!(
                    "{display}: access list rolled back: the history records {a} entries, the file has {access_len}"
                )));
            }
            Ok(())
        };
        match check(&idx) {
            // A failure is reported only against the logs as they are now.
            Err(_) if !looked => {
                idx.refresh(self)?;
                check(&idx)
            }
            r => r,
        }
    }

    /// Checks that the entry at `backing` holds the file the history put there.
    pub fn check_binding(&self, backing: &Path, id: &[u8; 16], display: &str) -> Result<()> {
        let (Some(parent), Some(name)) = (backing.parent(), backing.file_name()) else {
            return Ok(());
        };
        if backing == self.paths.tree() {
            return Ok(());
        }
        let parent_id = self.read_dir_record(parent)?.dir_id;
        let name = std::os::unix::ffi::OsStrExt::as_bytes(name);
        let mut idx = crate::lock(&self.bindings);
        // The logs as of a moment ago (opens of many files in a row share one
        // look at them); a mismatch is reported only against the logs as they
        // are now.
        let looked = idx.refresh_recent(self)?;
        let mut binding = idx.check(id, &parent_id, name);
        if binding == Binding::Mismatch && !looked {
            idx.refresh(self)?;
            binding = idx.check(id, &parent_id, name);
        }
        match binding {
            Binding::Matches | Binding::Unknown | Binding::Stale => Ok(()),
            Binding::Mismatch => Err(Error::integrity(format!(
                "{display}: this entry holds a file the signed history never put here (swapped or renamed outside coffer)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_events_apply_only_on_top_of_what_was_applied() {
        let me = MemberId([7; 16]);
        let mut idx = BindingIndex::default();
        let at = |offset, entries| LogPosition {
            offset,
            entries,
            head: [entries as u8; 32],
        };
        let linked = [Event::Linked {
            id: [1; 16],
            name: [2; 16],
        }];
        // The index has not read the log up to where this append started.
        assert!(!idx.apply_own(me, at(100, 3), at(200, 4), &linked));
        assert_eq!(idx.check(&[1; 16], &[0; 16], b"x"), Binding::Unknown);
        // From the start of an empty log it matches, and the next append chains on.
        assert!(idx.apply_own(me, LogPosition::default(), at(50, 1), &linked));
        assert!(idx.bound_to.get(&[2; 16]) == Some(&[1; 16]));
        let deleted = [Event::FileDeleted { file_id: [1; 16] }];
        assert!(!idx.apply_own(me, at(60, 2), at(90, 3), &deleted));
        assert!(idx.apply_own(me, at(50, 1), at(90, 2), &deleted));
        assert!(idx.bound_to.is_empty());
    }

    #[test]
    fn index_answers_from_the_whole_history_of_an_id() {
        let (alice, bob) = (MemberId([7; 16]), MemberId([8; 16]));
        let dir = [9; 16];
        let tag = |n: &[u8]| name_tag(&dir, n);
        let mut idx = BindingIndex::default();
        let file = [1; 16];
        idx.apply(&alice, &Event::FileCreated { file_id: file });
        idx.apply(
            &alice,
            &Event::Linked {
                id: file,
                name: tag(b"a"),
            },
        );
        assert_eq!(idx.creator(&file), Some(alice));
        assert_eq!(idx.recorded(&file), (None, None));
        // A rename: the new name matches, the old one is stale (an interrupted
        // rename may leave it), another id under the new name is a swap.
        idx.apply(
            &alice,
            &Event::Linked {
                id: file,
                name: tag(b"b"),
            },
        );
        idx.apply(
            &alice,
            &Event::Unlinked {
                id: file,
                name: tag(b"a"),
            },
        );
        assert_eq!(idx.check(&file, &dir, b"b"), Binding::Matches);
        assert_eq!(idx.check(&file, &dir, b"a"), Binding::Stale);
        assert_eq!(idx.check(&[2; 16], &dir, b"b"), Binding::Mismatch);
        assert_eq!(idx.check(&file, &dir, b"c"), Binding::Mismatch);
        assert_eq!(idx.check(&[3; 16], &dir, b"never"), Binding::Unknown);
        // Versions keep the newest; access changes count on top of the first entry.
        for v in [3, 2] {
            let manifest_hash = [0; 32];
            let e = Event::ContentVersion {
                file_id: file,
                version: v,
                manifest_hash,
                size: 1,
            };
            idx.apply(&bob, &e);
        }
        let change = Event::AccessChanged {
            file_id: file,
            entry_hash: [0; 32],
            change: crate::format::AccessChange::Rotate { epoch: 2 },
        };
        idx.apply(&bob, &change);
        idx.apply(&bob, &change);
        assert_eq!(idx.recorded(&file), (Some(3), Some(3)));
        // A second file by bob: creators are told apart.
        idx.apply(&bob, &Event::FileCreated { file_id: [4; 16] });
        assert_eq!(idx.creator(&[4; 16]), Some(bob));
        let mut live = idx.live_files();
        live.sort();
        assert_eq!(live, vec![file, [4; 16]]);
        // Deletion unbinds every name and ends the file's life.
        idx.apply(&alice, &Event::FileDeleted { file_id: file });
        assert_eq!(idx.check(&file, &dir, b"b"), Binding::Stale);
        assert_eq!(idx.creator(&file), None);
        assert!(!idx.is_live(&file));
        assert!(idx.bound_to.is_empty());
        assert_eq!(idx.live_files(), vec![[4; 16]]);
    }
}
