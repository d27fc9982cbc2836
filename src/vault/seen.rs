//! What this machine has seen of each file (client state, trusted): the newest
//! content version and access-list length per file. It only moves forward; a
//! file that comes back older is a rollback, and the same version with other
//! contents is a fork. Kept at `$XDG_STATE_HOME/coffer/vaults/<vault id>.seen`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::{atomic_write, Durability};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenFile {
    pub version: u64,
    pub manifest_hash: [u8; 32],
    pub access_len: u64,
}

impl SeenFile {
    /// The state a sidecar holding content version `version` stands for.
    pub fn of(sidecar: &crate::format::Sidecar, version: u64) -> SeenFile {
        SeenFile {
            version,
            manifest_hash: sidecar.manifest.hash(),
            access_len: sidecar.access.len() as u64,
        }
    }
}

#[derive(Default, Serialize, Deserialize)]
struct SeenOnDisk {
    format_version: u16,
    files: Vec<([u8; 16], SeenFile)>,
    /// Per member log: entries seen and the hash of the last one.
    logs: Vec<(crate::crypto::MemberId, u64, [u8; 32])>,
}

/// [`SeenOnDisk`] as written: the same fields in the same order (the same
/// bytes), with the files taken from our map and their newer entries.
#[derive(Serialize)]
struct SeenOnDiskOut<'a> {
    format_version: u16,
    files: MergedFiles<'a>,
    logs: Vec<(crate::crypto::MemberId, u64, [u8; 32])>,
}

struct MergedFiles<'a> {
    ours: &'a HashMap<[u8; 16], SeenFile>,
    /// Entries another process saved that are newer than ours or unknown to us.
    theirs_newer: &'a HashMap<[u8; 16], SeenFile>,
}

impl Serialize for MergedFiles<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let only_theirs = || {
            self.theirs_newer
                .iter()
                .filter(|(id, _)| !self.ours.contains_key(*id))
        };
        let mut seq = s.serialize_seq(Some(self.ours.len() + only_theirs().count()))?;
        for (id, ours) in self.ours {
            seq.serialize_element(&(id, self.theirs_newer.get(id).unwrap_or(ours)))?;
        }
        for entry in only_theirs() {
            seq.serialize_element(&entry)?;
        }
        seq.end()
    }
}

pub struct SeenState {
    path: PathBuf,
    files: Mutex<HashMap<[u8; 16], SeenFile>>,
    logs: Mutex<HashMap<crate::crypto::MemberId, (u64, [u8; 32])>>,
    dirty: std::sync::atomic::AtomicBool,
    /// Files and logs whose state the user chose to reset (`coffer fork`):
    /// the next save takes ours for them, not the newer of both views.
    reset_files: Mutex<std::collections::HashSet<[u8; 16]>>,
    reset_logs: Mutex<std::collections::HashSet<crate::crypto::MemberId>>,
}

const MAX_STATE: usize = 256 << 20;

impl SeenState {
    pub fn load(vault_id: &[u8; 16]) -> Result<SeenState> {
        let path = super::pin::state_dir()
            .join("vaults")
            .join(format!("{}.seen", crate::crypto::hex(vault_id)));
        let d = match std::fs::read(&path) {
            Ok(bytes) => crate::format::from_bytes::<SeenOnDisk>("client state", MAX_STATE, &bytes)
                .map_err(|e| {
                    Error::Other(format!(
                        "this machine's state file {} is unreadable: {e}",
                        path.display()
                    ))
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => SeenOnDisk::default(),
            Err(e) => return Err(Error::io(&path, e)),
        };
        Ok(SeenState {
            path,
            files: Mutex::new(d.files.into_iter().collect()),
            logs: Mutex::new(d.logs.into_iter().map(|(m, n, h)| (m, (n, h))).collect()),
            dirty: false.into(),
            reset_files: Default::default(),
            reset_logs: Default::default(),
        })
    }

    /// Checks a verified file state against what was seen, then records it.
    pub fn observe(&self, file_id: &[u8; 16], now: SeenFile, display: &str) -> Result<()> {
        let mut files = crate::lock(&self.files);
        if let Some(seen) = files.get(file_id) {
            if now.version < seen.version {
                return Err(Error::integrity(format!(
                    "{display}: rolled back from content version {} (seen by this machine) to {}",
                    seen.version, now.version
                )));
            }
            if now.version == seen.version && now.manifest_hash != seen.manifest_hash {
                return Err(Error::integrity(format!(
                    "{display}: forked: two different signed versions {} exist (another copy of the vault \
                     was changed apart from this one)",
                    now.version
                )));
            }
            if now.access_len < seen.access_len {
                return Err(Error::integrity(format!(
                    "{display}: access list rolled back from {} entries (seen) to {}",
                    seen.access_len, now.access_len
                )));
            }
            if *seen == now {
                return Ok(());
            }
        }
        files.insert(*file_id, now);
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// The log length and head this machine last saw for a member.
    pub fn log_seen(&self, member: &crate::crypto::MemberId) -> Option<(u64, [u8; 32])> {
        crate::lock(&self.logs).get(member).copied()
    }

    /// Records a member's verified log length and head (only ever forward).
    pub fn observe_log(&self, member: crate::crypto::MemberId, len: u64, head: [u8; 32]) {
        let mut logs = crate::lock(&self.logs);
        if logs.get(&member).is_none_or(|(n, _)| *n < len) {
            logs.insert(member, (len, head));
            self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Forgets a file this machine deleted.
    pub fn forget(&self, file_id: &[u8; 16]) {
        if crate::lock(&self.files).remove(file_id).is_some() {
            self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Forgets what was seen of a file, on the user's word (a settled fork):
    /// its next observation becomes the new baseline.
    pub fn reset(&self, file_id: &[u8; 16]) {
        crate::lock(&self.files).remove(file_id);
        crate::lock(&self.reset_files).insert(*file_id);
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Takes a member's log at `len` entries with `head` as seen, even if
    /// shorter or different from before (the user accepted a history fork).
    pub fn reset_log(&self, member: crate::crypto::MemberId, len: u64, head: [u8; 32]) {
        crate::lock(&self.logs).insert(member, (len, head));
        crate::lock(&self.reset_logs).insert(member);
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn get(&self, file_id: &[u8; 16]) -> Option<SeenFile> {
        crate::lock(&self.files).get(file_id).copied()
    }

    /// Writes the state if it changed.
    pub fn save(&self) -> Result<()> {
        if !self.dirty.swap(false, std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        // Another process (a mount, a CLI command) may have saved meanwhile: keep
        // the newer of both views per file, so the state never moves backwards.
        // Only their newer entries are held apart; ours are written straight
        // from the map (a mount's map can hold tens of thousands of files).
        let mut theirs_newer: HashMap<[u8; 16], SeenFile> = HashMap::new();
        let mut logs = crate::lock(&self.logs).clone();
        if let Ok(bytes) = std::fs::read(&self.path) {
            if let Ok(d) =
                crate::format::from_bytes::<SeenOnDisk>("client state", MAX_STATE, &bytes)
            {
                drop(bytes);
                let reset_files = crate::lock(&self.reset_files).clone();
                let reset_logs = crate::lock(&self.reset_logs).clone();
                let files = crate::lock(&self.files);
                theirs_newer.extend(d.files.into_iter().filter(|(id, theirs)| {
                    !reset_files.contains(id)
                        && files.get(id).is_none_or(|ours| {
                            (theirs.version, theirs.access_len) > (ours.version, ours.access_len)
                        })
                }));
                for (m, n, h) in d.logs {
                    if reset_logs.contains(&m) {
                        continue;
                    }
                    let e = logs.entry(m).or_insert((n, h));
                    if n > e.0 {
                        *e = (n, h);
                    }
                }
            }
        }
        let logs: Vec<_> = logs.into_iter().map(|(m, (n, h))| (m, n, h)).collect();
        let bytes = {
            let files = crate::lock(&self.files);
            crate::format::to_bytes(&SeenOnDiskOut {
                format_version: crate::format::FORMAT_VERSION,
                files: MergedFiles {
                    ours: &files,
                    theirs_newer: &theirs_newer,
                },
                logs,
            })
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        atomic_write(&self.path, &bytes, Durability::Sync)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_at(path: &std::path::Path) -> SeenState {
        SeenState {
            path: path.to_path_buf(),
            files: Default::default(),
            logs: Default::default(),
            dirty: false.into(),
            reset_files: Default::default(),
            reset_logs: Default::default(),
        }
    }

    fn seen(version: u64) -> SeenFile {
        SeenFile {
            version,
            manifest_hash: [version as u8; 32],
            access_len: 1,
        }
    }

    fn on_disk(path: &std::path::Path) -> HashMap<[u8; 16], u64> {
        let bytes = std::fs::read(path).unwrap();
        let d: SeenOnDisk = crate::format::from_bytes("client state", MAX_STATE, &bytes).unwrap();
        assert_eq!(d.format_version, crate::format::FORMAT_VERSION);
        d.files.into_iter().map(|(id, f)| (id, f.version)).collect()
    }

    #[test]
    fn saves_keep_the_newer_view_of_every_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("v.seen");
        let a = state_at(&path);
        a.observe(&[1; 16], seen(1), "one").unwrap();
        a.observe(&[2; 16], seen(5), "two").unwrap();
        a.observe_log(crate::crypto::MemberId([9; 16]), 4, [4; 32]);
        a.save().unwrap();
        // Another process that saw an older version of one file and a file
        // the first never saw: the saved state has the newest of each.
        let b = state_at(&path);
        b.observe(&[2; 16], seen(3), "two").unwrap();
        b.observe(&[3; 16], seen(2), "three").unwrap();
        b.save().unwrap();
        let want: HashMap<_, _> = [([1; 16], 1), ([2; 16], 5), ([3; 16], 2)].into();
        assert_eq!(on_disk(&path), want);
        let bytes = std::fs::read(&path).unwrap();
        let d: SeenOnDisk = crate::format::from_bytes("client state", MAX_STATE, &bytes).unwrap();
        assert_eq!(d.logs, vec![(crate::crypto::MemberId([9; 16]), 4, [4; 32])]);
        // A file whose state the user reset (a settled fork) takes ours.
        b.reset(&[2; 16]);
        b.observe(&[2; 16], seen(2), "two").unwrap();
        b.save().unwrap();
        assert_eq!(on_disk(&path)[&[2; 16]], 2);
        // Nothing changed since: nothing is written.
        std::fs::remove_file(&path).unwrap();
        b.save().unwrap();
        assert!(!path.exists());
    }
}
