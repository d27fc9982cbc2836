//! Trust on first use: the first time this machine opens a vault it records the
//! vault id and admin key under `$XDG_STATE_HOME/coffer/`; later opens must match,
//! so a swapped-in vault config (another admin, another vault at the same path)
//! is caught.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::VaultConfig;
use crate::store::{atomic_write, Durability};

/// `$XDG_STATE_HOME/coffer` or `~/.local/state/coffer`.
pub fn state_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("coffer");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".local/state/coffer")
}

fn pin_path(vault_id: &[u8; 16]) -> PathBuf {
    state_dir()
        .join("vaults")
        .join(format!("{}.pin", crate::crypto::hex(vault_id)))
}

/// Checks the config against this machine's pin, writing the pin on first contact.
/// Returns true on first contact.
pub fn check_and_update(config: &VaultConfig, _me: &crate::crypto::MemberId) -> Result<bool> {
    let path = pin_path(&config.vault_id);
    match std::fs::read(&path) {
        Ok(pinned) => {
            if pinned != config.admin.ed25519 {
                return Err(Error::integrity(format!(
                    "the admin key of vault {} differs from the one this machine pinned on first use ({}); \
                     the vault config was replaced",
                    crate::crypto::hex(&config.vault_id),
                    path.display()
                )));
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            atomic_write(&path, &config.admin.ed25519, Durability::Sync)?;
            log::info!(
                "first contact with vault {}: trusting admin key on first use",
                crate::crypto::hex(&config.vault_id)
            );
            Ok(true)
        }
        Err(e) => Err(Error::io(&path, e)),
    }
}
