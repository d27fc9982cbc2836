//! The inode table: FUSE inode numbers are the backing files' inode numbers (so
//! hard links share one inode and `readdir` agrees with `stat`), with the root
//! swapped to 1. Each inode remembers the backing paths it is known under.
//!
//! A backing file system reuses the number of a freed inode for the next file
//! it creates, often at once. The kernel keys its inode cache (attributes and
//! page cache) on the FUSE inode number alone, so handing it the same number
//! for the new file while it still holds the old one would serve the old
//! file's cached pages as the new file's (a torn read). An inode is therefore
//! identified by its number *and* its birth time (statx btime); a new file
//! whose number the kernel still knows for another file gets a fresh number
//! until the kernel forgets the old one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const ROOT: u64 = 1;

/// A backing inode: its number and birth time (nanoseconds; 0 where the
/// backing file system has none).
pub type BackingKey = (u64, i128);

/// The identity of the backing inode `m` describes.
pub fn key_of(m: &std::fs::Metadata) -> BackingKey {
    let born = m
        .created()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i128);
    (std::os::unix::fs::MetadataExt::ino(m), born)
}

/// Numbers handed out for reused backing inodes start here, far above any
/// backing inode number.
const FRESH_BASE: u64 = 1 << 60;

#[derive(Debug)]
struct Node {
    /// The backing inode this number stands for (None until first looked up).
    key: Option<BackingKey>,
    /// Backing paths this inode is reachable by (more than one for hard links),
    /// shared with `by_path` so each path is stored once.
    paths: Vec<Arc<Path>>,
    lookups: u64,
}

pub struct InodeTable {
    root_backing_ino: u64,
    nodes: HashMap<u64, Node>,
    /// Which inode each known path belongs to, so unlink and the rename of a
    /// file touch one node instead of scanning the table.
    by_path: HashMap<Arc<Path>, u64>,
    /// Backing inodes given a fresh number (their own was taken), while known.
    fresh: HashMap<BackingKey, u64>,
    next_fresh: u64,
}

impl InodeTable {
    pub fn new(root_path: PathBuf, root_backing_ino: u64) -> Self {
        let mut nodes = HashMap::new();
        let mut by_path = HashMap::new();
        let root: Arc<Path> = root_path.into();
        by_path.insert(root.clone(), ROOT);
        nodes.insert(
            ROOT,
            Node {
                key: None,
                paths: vec![root],
                lookups: 1,
            },
        );
        InodeTable {
            root_backing_ino,
            nodes,
            by_path,
            fresh: HashMap::new(),
            next_fresh: FRESH_BASE,
        }
    }

    /// FUSE inode for a backing inode: its own number, unless the kernel still
    /// knows that number for another (freed) inode; then a fresh one.
    pub fn ino_for(&mut self, key: BackingKey) -> u64 {
        let natural = if key.0 == self.root_backing_ino {
            return ROOT;
        } else if key.0 == ROOT {
            self.root_backing_ino
        } else {
            key.0
        };
        if let Some(ino) = self.fresh.get(&key) {
            return *ino;
        }
        match self.nodes.get(&natural).and_then(|n| n.key) {
            Some(k) if k != key => {
                let ino = self.next_fresh;
                self.next_fresh += 1;
                self.fresh.insert(key, ino);
                ino
            }
            _ => natural,
        }
    }

    pub fn path(&self, ino: u64) -> Option<PathBuf> {
        self.nodes
            .get(&ino)
            .and_then(|n| n.paths.first().map(|p| p.to_path_buf()))
    }

    /// Records a lookup of `ino` (backing inode `key`) at `path`: the kernel
    /// now holds one more reference.
    pub fn remember(&mut self, ino: u64, key: BackingKey, path: &Path) {
        let node = self.nodes.entry(ino).or_insert_with(|| Node {
            key: None,
            paths: Vec::new(),
            lookups: 0,
        });
        if ino != ROOT {
            node.key = Some(key);
        }
        node.lookups += 1;
        if let Some(pos) = node.paths.iter().position(|p| &**p == path) {
            // Most recently confirmed path first; the map already has this path.
            node.paths.swap(0, pos);
            if self.by_path.get(path) == Some(&ino) {
                return;
            }
        }
        let shared: Arc<Path> = match node.paths.iter().find(|p| &***p == path) {
            Some(p) => p.clone(),
            None => {
                let p: Arc<Path> = path.into();
                node.paths.insert(0, p.clone());
                p
            }
        };
        // A path now names this inode; an older inode under it lost the name.
        if let Some(old) = self.by_path.insert(shared, ino) {
            if old != ino {
                if let Some(n) = self.nodes.get_mut(&old) {
                    n.paths.retain(|p| &**p != path);
                }
            }
        }
    }

    pub fn forget(&mut self, ino: u64, n: u64) {
        if ino == ROOT {
            return;
        }
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
            if node.lookups == 0 {
                if let Some(node) = self.nodes.remove(&ino) {
                    if let Some(key) = node.key {
                        if self.fresh.get(&key) == Some(&ino) {
                            self.fresh.remove(&key);
                        }
                    }
                    for p in node.paths {
                        if self.by_path.get(&*p) == Some(&ino) {
                            self.by_path.remove(&*p);
                        }
                    }
                }
            }
        }
    }

    /// A name went away (unlink, or the source of a rename).
    pub fn unlink_path(&mut self, path: &Path) {
        if let Some(ino) = self.by_path.remove(path) {
            if let Some(node) = self.nodes.get_mut(&ino) {
                node.paths.retain(|p| &**p != path);
            }
        }
    }

    /// A rename: the entry at `from` is now at `to`; for a directory every path
    /// below it moves too (the only case that scans the table).
    pub fn rename(&mut self, from: &Path, to: &Path, is_dir: bool) {
        self.unlink_path(to);
        if !is_dir {
            if let Some(ino) = self.by_path.remove(from) {
                let to: Arc<Path> = to.into();
                if let Some(node) = self.nodes.get_mut(&ino) {
                    for p in node.paths.iter_mut().filter(|p| &***p == from) {
                        *p = to.clone();
                    }
                }
                self.by_path.insert(to, ino);
            }
            return;
        }
        let moved: Vec<(Arc<Path>, u64)> = self
            .by_path
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        for (old, ino) in moved {
            let rest = old.strip_prefix(from).expect("filtered by prefix");
            let new: Arc<Path> = if rest.as_os_str().is_empty() {
                to.into()
            } else {
                to.join(rest).into()
            };
            self.by_path.remove(&*old);
            if let Some(node) = self.nodes.get_mut(&ino) {
                for p in node.paths.iter_mut().filter(|p| **p == old) {
                    *p = new.clone();
                }
            }
            self.by_path.insert(new, ino);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_swap_and_renames() {
        let mut t = InodeTable::new("/v/tree".into(), 500);
        assert_eq!(t.ino_for((500, 0)), ROOT);
        assert_eq!(t.ino_for((1, 0)), 500);
        assert_eq!(t.ino_for((7, 0)), 7);
        t.remember(7, (7, 0), Path::new("/v/tree/a/b"));
        t.remember(8, (8, 0), Path::new("/v/tree/a"));
        t.rename(Path::new("/v/tree/a"), Path::new("/v/tree/z"), true);
        assert_eq!(t.path(7).unwrap(), Path::new("/v/tree/z/b"));
        assert_eq!(t.path(8).unwrap(), Path::new("/v/tree/z"));
        t.forget(7, 1);
        assert!(t.path(7).is_none());
    }

    #[test]
    fn a_reused_backing_inode_number_gets_a_fresh_number_while_the_old_is_known() {
        let mut t = InodeTable::new("/r".into(), 2);
        let old = (40, 1_000);
        let new = (40, 2_000);
        assert_eq!(t.ino_for(old), 40);
        t.remember(40, old, Path::new("/r/a"));
        // The backing fs freed inode 40 and gave its number to a new file.
        let fresh = t.ino_for(new);
        assert_ne!(fresh, 40, "the kernel still holds 40 for the old file");
        assert_eq!(t.ino_for(new), fresh, "stable while known");
        t.remember(fresh, new, Path::new("/r/b"));
        assert_eq!(t.ino_for(old), 40);
        // Once the kernel forgets both, the number is the backing one again.
        t.forget(40, 1);
        t.forget(fresh, 1);
        assert_eq!(t.ino_for(new), 40);
        assert!(t.fresh.is_empty());
    }

    #[test]
    fn a_path_moves_to_the_inode_that_now_has_it() {
        let mut t = InodeTable::new("/r".into(), 2);
        t.remember(5, (5, 0), Path::new("/r/a"));
        t.remember(5, (5, 0), Path::new("/r/a"));
        t.remember(6, (6, 0), Path::new("/r/a"));
        assert!(t.path(5).is_none());
        assert_eq!(t.path(6).unwrap(), Path::new("/r/a"));
        // 5 comes back under the name: 6 loses it, and one forget of 6 ends it.
        t.remember(5, (5, 0), Path::new("/r/a"));
        assert!(t.path(6).is_none());
        t.forget(6, 1);
        assert_eq!(t.path(5).unwrap(), Path::new("/r/a"));
        t.rename(Path::new("/r/a"), Path::new("/r/b"), false);
        assert_eq!(t.path(5).unwrap(), Path::new("/r/b"));
        t.forget(5, 3);
        assert!(t.path(5).is_none());
        assert_eq!(t.by_path.len(), 1, "only the root is left");
    }

    #[test]
    fn hard_links_keep_other_paths() {
        let mut t = InodeTable::new("/r".into(), 2);
        t.remember(9, (9, 0), Path::new("/r/x"));
        t.remember(9, (9, 0), Path::new("/r/y"));
        t.unlink_path(Path::new("/r/y"));
        assert_eq!(t.path(9).unwrap(), Path::new("/r/x"));
    }
}
