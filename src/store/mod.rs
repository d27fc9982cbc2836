//! The vault directory on disk: where each record lives, atomic replacement of
//! files, and size-limited reads. No cryptography and no policy here.
//!
//! ```text
//! VAULT/coffer.vault               signed vault config
//! VAULT/members/<id>.member        signed member records
//! VAULT/meta/<aa>/<file id>.meta   per-file sidecar (keys, access list, manifest)
//! VAULT/meta/<aa>/<file id>.journal  redo journal of an interrupted commit
//!                                  (or of a re-encryption: how to redo it)
//! VAULT/tree/...                   the encrypted tree: one backing entry per file
//! VAULT/log/                       reserved for the signed history
//! ```

pub mod advise;
pub mod atomic;
pub mod crash_point;
pub mod inplace;
pub mod lock;
pub mod reaper;
pub mod sync;

pub use atomic::{atomic_write, read_limited, Durability};

use std::path::{Path, PathBuf};

use crate::crypto::hex;

pub const CONFIG_FILE: &str = "coffer.vault";
pub const MEMBERS_DIR: &str = "members";
pub const META_DIR: &str = "meta";
pub const TREE_DIR: &str = "tree";
pub const LOG_DIR: &str = "log";
/// Per-directory record; names starting with '.' never collide with encrypted
/// names (base64url has no '.').
pub const DIR_RECORD: &str = ".coffer-dir";
/// Prefix of a hashed long-name entry; '~' is not in the base64url alphabet.
pub const LONG_NAME_PREFIX: &str = "~";
pub const LONG_NAME_SUFFIX: &str = ".name";

#[derive(Clone, Debug)]
pub struct VaultPaths {
    pub root: PathBuf,
}

impl VaultPaths {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        VaultPaths { root: root.into() }
    }

    pub fn config(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }

    pub fn members(&self) -> PathBuf {
        self.root.join(MEMBERS_DIR)
    }

    pub fn member(&self, id_hex: &str) -> PathBuf {
        self.members().join(format!("{id_hex}.member"))
    }

    pub fn meta(&self) -> PathBuf {
        self.root.join(META_DIR)
    }

    fn meta_fanout(&self, file_id: &[u8; 16]) -> PathBuf {
        self.meta().join(hex(&file_id[..1]))
    }

    pub fn sidecar(&self, file_id: &[u8; 16]) -> PathBuf {
        self.meta_fanout(file_id)
            .join(format!("{}.meta", hex(file_id)))
    }

    pub fn journal(&self, file_id: &[u8; 16]) -> PathBuf {
        self.meta_fanout(file_id)
            .join(format!("{}.journal", hex(file_id)))
    }

    pub fn tree(&self) -> PathBuf {
        self.root.join(TREE_DIR)
    }

    pub fn log(&self) -> PathBuf {
        self.root.join(LOG_DIR)
    }

    /// True if `path` looks like a vault root.
    pub fn is_vault(path: &Path) -> bool {
        path.join(CONFIG_FILE).is_file()
    }
}

/// Whether a backing directory entry is coffer's own bookkeeping, never shown.
/// Reads from `offset` until `buf` is full or the file ends; returns how many
/// bytes it read (fewer only at the end of the file).
pub fn read_full_at(f: &std::fs::File, buf: &mut [u8], mut offset: u64) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], offset) {
            Ok(0) => break,
            Ok(n) => {
                done += n;
                offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

pub fn is_internal_name(name: &[u8]) -> bool {
    name.first() == Some(&b'.')
}
