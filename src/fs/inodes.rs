//! The inode table: FUSE inode numbers are the backing files' inode numbers (so
//! hard links share one inode and `readdir` agrees with `stat`), with the root
//! swapped to 1. Each inode remembers the backing paths it is known under.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const ROOT: u64 = 1;

#[derive(Debug)]
struct Node {
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
                paths: vec![root],
                lookups: 1,
            },
        );
        InodeTable {
            root_backing_ino,
            nodes,
            by_path,
        }
    }

    /// FUSE inode for a backing inode number.
    pub fn ino_for(&self, backing_ino: u64) -> u64 {
        if backing_ino == self.root_backing_ino {
            ROOT
        } else if backing_ino == ROOT {
            self.root_backing_ino
        } else {
            backing_ino
        }
    }

    pub fn path(&self, ino: u64) -> Option<PathBuf> {
        self.nodes
            .get(&ino)
            .and_then(|n| n.paths.first().map(|p| p.to_path_buf()))
    }

    /// Records a lookup of `ino` at `path` (the kernel now holds one more reference).
    pub fn remember(&mut self, ino: u64, path: &Path) {
        let node = self.nodes.entry(ino).or_insert_with(|| Node {
            paths: Vec::new(),
            lookups: 0,
        });
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
        assert_eq!(t.ino_for(500), ROOT);
        assert_eq!(t.ino_for(1), 500);
        assert_eq!(t.ino_for(7), 7);
        t.remember(7, Path::new("/v/tree/a/b"));
        t.remember(8, Path::new("/v/tree/a"));
        t.rename(Path::new("/v/tree/a"), Path::new("/v/tree/z"), true);
        assert_eq!(t.path(7).unwrap(), Path::new("/v/tree/z/b"));
        assert_eq!(t.path(8).unwrap(), Path::new("/v/tree/z"));
        t.forget(7, 1);
        assert!(t.path(7).is_none());
    }

    #[test]
    fn a_path_moves_to_the_inode_that_now_has_it() {
        let mut t = InodeTable::new("/r".into(), 2);
        t.remember(5, Path::new("/r/a"));
        t.remember(5, Path::new("/r/a"));
        t.remember(6, Path::new("/r/a"));
        assert!(t.path(5).is_none());
        assert_eq!(t.path(6).unwrap(), Path::new("/r/a"));
        // 5 comes back under the name: 6 loses it, and one forget of 6 ends it.
        t.remember(5, Path::new("/r/a"));
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
        t.remember(9, Path::new("/r/x"));
        t.remember(9, Path::new("/r/y"));
        t.unlink_path(Path::new("/r/y"));
        assert_eq!(t.path(9).unwrap(), Path::new("/r/x"));
    }
}
