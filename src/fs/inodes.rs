//! The inode table: FUSE inode numbers are the backing files' inode numbers (so
//! hard links share one inode and `readdir` agrees with `stat`), with the root
//! swapped to 1. Each inode remembers the backing paths it is known under.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const ROOT: u64 = 1;

#[derive(Debug)]
struct Node {
    /// Backing paths this inode is reachable by (more than one for hard links).
    paths: Vec<PathBuf>,
    lookups: u64,
}

pub struct InodeTable {
    root_backing_ino: u64,
    nodes: HashMap<u64, Node>,
    /// Which inode each known path belongs to, so unlink and the rename of a
    /// file touch one node instead of scanning the table.
    by_path: HashMap<PathBuf, u64>,
}

impl InodeTable {
    pub fn new(root_path: PathBuf, root_backing_ino: u64) -> Self {
        let mut nodes = HashMap::new();
        let mut by_path = HashMap::new();
        by_path.insert(root_path.clone(), ROOT);
        nodes.insert(
            ROOT,
            Node {
                paths: vec![root_path],
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
        self.nodes.get(&ino).and_then(|n| n.paths.first().cloned())
    }

    /// Records a lookup of `ino` at `path` (the kernel now holds one more reference).
    pub fn remember(&mut self, ino: u64, path: &Path) {
        let node = self.nodes.entry(ino).or_insert_with(|| Node {
            paths: Vec::new(),
            lookups: 0,
        });
        node.lookups += 1;
        if let Some(pos) = node.paths.iter().position(|p| p == path) {
            // Most recently confirmed path first.
            node.paths.swap(0, pos);
        } else {
            node.paths.insert(0, path.to_path_buf());
        }
        // A path now names this inode; an older inode under it lost the name.
        if let Some(old) = self.by_path.insert(path.to_path_buf(), ino) {
            if old != ino {
                if let Some(n) = self.nodes.get_mut(&old) {
                    n.paths.retain(|p| p != path);
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
                        if self.by_path.get(&p) == Some(&ino) {
                            self.by_path.remove(&p);
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
                node.paths.retain(|p| p != path);
            }
        }
    }

    /// A rename: the entry at `from` is now at `to`; for a directory every path
    /// below it moves too (the only case that scans the table).
    pub fn rename(&mut self, from: &Path, to: &Path, is_dir: bool) {
        self.unlink_path(to);
        if !is_dir {
            if let Some(ino) = self.by_path.remove(from) {
                if let Some(node) = self.nodes.get_mut(&ino) {
                    for p in node.paths.iter_mut().filter(|p| p.as_path() == from) {
                        *p = to.to_path_buf();
                    }
                }
                self.by_path.insert(to.to_path_buf(), ino);
            }
            return;
        }
        let moved: Vec<(PathBuf, u64)> = self
            .by_path
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        for (old, ino) in moved {
            let rest = old.strip_prefix(from).expect("filtered by prefix");
            let new = if rest.as_os_str().is_empty() {
                to.to_path_buf()
            } else {
                to.join(rest)
            };
            self.by_path.remove(&old);
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
    fn hard_links_keep_other_paths() {
        let mut t = InodeTable::new("/r".into(), 2);
        t.remember(9, Path::new("/r/x"));
        t.remember(9, Path::new("/r/y"));
        t.unlink_path(Path::new("/r/y"));
        assert_eq!(t.path(9).unwrap(), Path::new("/r/x"));
    }
}
