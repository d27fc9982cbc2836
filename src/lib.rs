//! coffer: an encrypted filesystem with per-user cryptographic access control.
//!
//! Layers (data flows one way, top to bottom):
//! - [`fs`]: the FUSE adapter (inode table, handles) over [`vault`]
//! - [`cli`]: clap commands, exit codes, human and `--json` output
//! - [`vault`]: opens a vault as a member; encrypted files, names, members
//! - [`access`]: rights, access lists and key epochs
//! - [`history`]: signed manifests and version chains
//! - [`format`]: on-disk records and their size-limited encodings
//! - [`crypto`]: keys, identities, chunk AEAD, key wrapping, signatures (no I/O)
//! - [`store`]: the vault directory on disk: atomic writes, layout (no crypto)

pub mod access;
pub mod cli;
pub mod crypto;
pub mod error;
pub mod format;
pub mod fs;
pub mod history;
pub mod store;
pub mod vault;

pub use error::{Error, Result};

/// Locks a mutex even if a thread panicked while holding it: the daemon keeps
/// serving other requests instead of cascading the panic.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
