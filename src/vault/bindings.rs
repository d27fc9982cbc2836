//! Which directory entry names which file, per the members' signed logs
//! (`Linked`/`Unlinked` events), kept up to date incrementally so the mount can
//! refuse an entry that was swapped or renamed behind coffer's back.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::crypto::MemberId;
use crate::error::{Error, Result};
use crate::format::MemberRecord;
use crate::history::log::{
    name_tag, read_member_log, read_member_log_from, Event, LogPosition, MemberLog,
};

#[derive(Default)]
pub struct BindingIndex {
    /// Per member: how far their log has been applied.
    applied: HashMap<MemberId, LogPosition>,
    /// When every log was last looked at (see [`BindingIndex::refresh_recent`]).
    refreshed_at: Option<std::time::Instant>,
    bound_to: HashMap<[u8; 16], [u8; 16]>,
    ever_bound: HashSet<([u8; 16], [u8; 16])>,
    has_binding: HashSet<[u8; 16]>,
    /// Names bound to each id, so a deletion can drop them all.
    names_of: HashMap<[u8; 16], HashSet<[u8; 16]>>,
    /// Ids the history records as deleted, and as created (by whom).
    deleted: HashSet<[u8; 16]>,
    created: HashMap<[u8; 16], MemberId>,
    /// Newest content version and access-list length any log recorded per file.
    versions: HashMap<[u8; 16], u64>,
    access_lens: HashMap<[u8; 16], u64>,
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
                self.ever_bound.insert((*id, *name));
                self.has_binding.insert(*id);
                self.names_of.entry(*id).or_default().insert(*name);
                self.deleted.remove(id);
            }
            Event::FileDeleted { file_id } => {
                for name in self.names_of.remove(file_id).unwrap_or_default() {
                    if self.bound_to.get(&name) == Some(file_id) {
                        self.bound_to.remove(&name);
                    }
                }
                self.deleted.insert(*file_id);
            }
            Event::FileCreated { file_id } => {
                self.created.insert(*file_id, *member);
                self.deleted.remove(file_id);
            }
            Event::Unlinked { id, name } if self.bound_to.get(name) == Some(id) => {
                self.bound_to.remove(name);
            }
            Event::ContentVersion {
                file_id, version, ..
            } => {
                let v = self.versions.entry(*file_id).or_insert(0);
                *v = (*v).max(*version);
            }
            Event::AccessChanged { file_id, .. } => {
                *self.access_lens.entry(*file_id).or_insert(1) += 1;
            }
            _ => {}
        }
    }

    /// Files the history has created and not deleted.
    pub fn live_files(&self) -> Vec<[u8; 16]> {
        self.created
            .keys()
            .filter(|f| !self.deleted.contains(*f))
            .copied()
            .collect()
    }

    pub fn is_live(&self, file_id: &[u8; 16]) -> bool {
        self.creator(file_id).is_some()
    }

    /// Who created a live file, per the history.
    pub fn creator(&self, file_id: &[u8; 16]) -> Option<MemberId> {
        match self.deleted.contains(file_id) {
            true => None,
            false => self.created.get(file_id).copied(),
        }
    }

    /// The newest content version and access-list length the history records.
    pub fn recorded(&self, file_id: &[u8; 16]) -> (Option<u64>, Option<u64>) {
        (
            self.versions.get(file_id).copied(),
            self.access_lens.get(file_id).copied(),
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

    /// Applies entries added to any member's log since the last refresh.
    pub fn refresh(&mut self, vault: &super::Vault) -> Result<()> {
        self.refreshed_at = Some(std::time::Instant::now());
        let log_dir = vault.paths.log();
        for (id, ed25519) in vault.member_keys() {
            let path = crate::history::log::log_path(&log_dir, &id);
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let from = self.applied.get(&id).copied().unwrap_or_default();
            if len == from.offset {
                continue;
            }
            let name = || vault.member(&id).map(|m| m.name).unwrap_or_default();
            let (entries, at, _torn) =
                read_member_log_from(&log_dir, &vault.config.vault_id, &id, &ed25519, from)
                    .map_err(|e| Error::integrity(format!("history of {}: {e}", name())))?;
            check_log_against_seen(vault, &name(), &id, from.entries, &entries, at)?;
            for e in &entries {
                self.apply(&id, &e.event);
            }
            vault.seen.observe_log(id, at.entries, at.head);
            self.applied.insert(id, at);
        }
        Ok(())
    }

    pub fn check(&self, id: &[u8; 16], parent_dir_id: &[u8; 16], backing_name: &[u8]) -> Binding {
        let tag = name_tag(parent_dir_id, backing_name);
        match self.bound_to.get(&tag) {
            Some(b) if b == id => Binding::Matches,
            _ if !self.has_binding.contains(id) && !self.bound_to.contains_key(&tag) => {
                Binding::Unknown
            }
            _ if self.ever_bound.contains(&(*id, tag)) || self.deleted.contains(id) => {
                Binding::Stale
            }
            _ => Binding::Mismatch,
        }
    }
}

/// Checks a member's log, read from entry `first` on, against the length and
/// head this machine saw: shorter is a rollback; a different entry where the
/// seen head was is a fork (the member wrote on two copies of the vault).
pub(super) fn check_log_against_seen(
    vault: &super::Vault,
    name: &str,
    id: &MemberId,
    first: u64,
    entries: &[crate::history::log::LogEntry],
    at: LogPosition,
) -> Result<()> {
    let Some((seen, head)) = vault.seen.log_seen(id) else {
        return Ok(());
    };
    if seen > at.entries {
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
            return Err(super::fork::history_fork(name, seen, at.entries));
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
        check_log_against_seen(self, &m.name, &id, 0, &log.entries, log.position())?;
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
        let mut idx = crate::lock(&self.bindings);
        idx.refresh(self)?;
        match idx.check(id, &parent_id, std::os::unix::ffi::OsStrExt::as_bytes(name)) {
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
}
