//! Finding things by plaintext path: which vault a path inside a live mount
//! belongs to, the backing path of a plaintext path, and walking a tree.

use std::ffi::OsString;
use std::fs;
use std::path::{Component, Path, PathBuf};

use super::Vault;
use crate::error::{Error, Result};
use crate::store::is_internal_name;

/// A live coffer mount found in /proc/self/mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveMount {
    pub mountpoint: PathBuf,
    pub vault_root: PathBuf,
}

fn unescape_mountinfo(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every coffer mount of this machine (as this process sees them).
pub fn live_mounts() -> Vec<LiveMount> {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split(' ');
        let (Some(fstype), Some(source)) = (r.next(), r.next()) else {
            continue;
        };
        // Mounted by root without fusermount the subtype is dropped ("fuse"),
        // so the source name `coffer:<vault>` is what identifies a coffer mount.
        if !fstype.starts_with("fuse") {
            continue;
        }
        let Some(root) = unescape_mountinfo(source)
            .strip_prefix("coffer:")
            .map(PathBuf::from)
        else {
            continue;
        };
        let Some(mp) = left.split(' ').nth(4) else {
            continue;
        };
        out.push(LiveMount {
            mountpoint: PathBuf::from(unescape_mountinfo(mp)),
            vault_root: root,
        });
    }
    out
}

/// The mount holding `path`, and `path` relative to its root.
pub fn locate_in_mount(path: &Path) -> Result<(LiveMount, PathBuf)> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io(".", e))?
            .join(path)
    };
    let abs = normalize(&abs);
    let best = live_mounts()
        .into_iter()
        .filter(|m| abs.starts_with(&m.mountpoint))
        .max_by_key(|m| m.mountpoint.as_os_str().len())
        .ok_or_else(|| {
            Error::BadInput(format!(
                "{} is not inside a mounted coffer vault; pass --vault VAULT and a path relative to the vault root",
                path.display()
            ))
        })?;
    let rel = abs
        .strip_prefix(&best.mountpoint)
        .unwrap_or(Path::new(""))
        .to_path_buf();
    Ok((best, rel))
}

/// Lexical normalization (no symlink resolution: the mount's own paths are what
/// the user typed).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// One entry found by [`Vault::walk`].
#[derive(Clone, Debug)]
pub struct WalkEntry {
    pub backing: PathBuf,
    /// Plaintext path relative to the vault root.
    pub plain: PathBuf,
    pub is_dir: bool,
    pub is_file: bool,
}

impl Vault {
    /// Backing path of a plaintext path relative to the vault root.
    pub fn backing_path(&self, rel: &Path) -> Result<PathBuf> {
        let mut cur = self.paths.tree();
        for c in normalize(rel).components() {
            let Component::Normal(name) = c else { continue };
            let id = self.read_dir_record(&cur)?.dir_id;
            let bn = self.encrypt_name(&id, name)?;
            cur.push(&bn.name);
        }
        if fs::symlink_metadata(&cur).is_err() {
            return Err(Error::NotFound(format!(
                "no such file in the vault: {}",
                rel.display()
            )));
        }
        Ok(cur)
    }

    /// Every entry of the vault's tree, and the entries whose names failed.
    pub fn walk_tree(&self) -> (Vec<WalkEntry>, Vec<(PathBuf, Error)>) {
        let (mut entries, mut bad) = (Vec::new(), Vec::new());
        self.walk(&self.paths.tree(), Path::new("/"), &mut entries, &mut bad);
        (entries, bad)
    }

    /// Every entry at and below `backing` (depth first, directories before
    /// their contents). Entries whose names fail to decrypt are reported in
    /// `bad` rather than stopping the walk.
    pub fn walk(
        &self,
        backing: &Path,
        plain: &Path,
        out: &mut Vec<WalkEntry>,
        bad: &mut Vec<(PathBuf, Error)>,
    ) {
        let Ok(m) = fs::symlink_metadata(backing) else {
            return;
        };
        out.push(WalkEntry {
            backing: backing.to_path_buf(),
            plain: plain.to_path_buf(),
            is_dir: m.is_dir(),
            is_file: m.is_file(),
        });
        if !m.is_dir() {
            return;
        }
        let id = match self.read_dir_record(backing) {
            Ok(r) => r.dir_id,
            Err(e) => {
                bad.push((plain.to_path_buf(), e));
                return;
            }
        };
        let Ok(rd) = fs::read_dir(backing) else {
            return;
        };
        let mut children: Vec<(OsString, OsString)> = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name();
            if is_internal_name(std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str())) {
                continue;
            }
            match self.decrypt_name(backing, &id, &name) {
                Ok(p) => children.push((name, p)),
                Err(e) => bad.push((plain.join(format!("<{}>", name.to_string_lossy())), e)),
            }
        }
        children.sort_by(|a, b| a.1.cmp(&b.1));
        for (b, p) in children {
            self.walk(&backing.join(b), &plain.join(p), out, bad);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }

    #[test]
    fn normalizes_lexically() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
    }
}
