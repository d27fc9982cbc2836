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

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
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

/// Whether a backing directory entry is coffer's own bookkeeping, never shown.
pub fn is_internal_name(name: &[u8]) -> bool {
    name.first() == Some(&b'.')
}

/// Opens `path` with `options` without ever blocking in `open(2)`: the vault
/// is untrusted storage, and a FIFO planted where coffer keeps a file would
/// otherwise hold the opening thread (a mount's worker, `verify`) until
/// someone opens its other end. `O_NONBLOCK` changes nothing for regular files
/// and directories. Replaces the options' custom flags.
pub fn open_nonblocking(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    options
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

/// [`open_nonblocking`], refusing anything but a regular file: a FIFO, socket,
/// device or directory where a record or content file belongs gives an error
/// that [`crate::Error::io`] reports as an integrity failure naming the path.
pub fn open_regular(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    open_regular_stat(path, options).map(|(file, _)| file)
}

/// [`open_regular`], also giving the metadata it checked (no second `fstat`).
pub fn open_regular_stat(
    path: &Path,
    options: &mut OpenOptions,
) -> io::Result<(File, std::fs::Metadata)> {
    let file = open_nonblocking(path, options)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, NotRegular));
    }
    Ok((file, meta))
}

/// [`open_regular`] for reading.
pub fn open_regular_read(path: &Path) -> io::Result<File> {
    open_regular(path, OpenOptions::new().read(true))
}

/// The error [`open_regular`] gives for what is not a regular file.
#[derive(Debug)]
struct NotRegular;

impl std::fmt::Display for NotRegular {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a regular file")
    }
}

impl std::error::Error for NotRegular {}

/// Whether `e` is [`open_regular`]'s refusal of something not a regular file.
pub fn is_not_regular(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<NotRegular>())
}
