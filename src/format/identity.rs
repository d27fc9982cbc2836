//! The identity file: `CFRI || postcard(IdentityFile)`, mode 0600.

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::crypto::identity::PassphraseSeal;

#[derive(Serialize, Deserialize)]
pub struct IdentityFile {
    pub format_version: u16,
    pub name: String,
    pub secret: IdentitySecret,
}

#[derive(Serialize, Deserialize)]
pub enum IdentitySecret {
    /// Written only with `--no-passphrase`, for scripts and tests.
    Unprotected([u8; 32]),
    Passphrase(PassphraseSeal),
}

impl Drop for IdentitySecret {
    fn drop(&mut self) {
        if let IdentitySecret::Unprotected(seed) = self {
            seed.zeroize();
        }
    }
}
