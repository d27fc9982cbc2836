//! A 32-byte symmetric secret that wipes itself on drop and never prints.

use zeroize::{Zeroize, ZeroizeOnDrop};

#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SecretKey(bytes)
    }

    pub fn generate() -> Self {
        SecretKey(super::random_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Derives an independent subkey for one purpose (BLAKE3 derive_key).
    pub fn derive(&self, context: &str) -> SecretKey {
        SecretKey(blake3::derive_key(context, &self.0))
    }

    /// A public commitment to this key for one file and epoch: readers compare it
    /// with the signed manifest so a writer cannot hand different readers different
    /// keys (ChaCha20-Poly1305 alone is not key-committing).
    pub fn commitment(&self, file_id: &[u8; 16], epoch: u32) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(b"coffer key commitment v1");
        h.update(file_id);
        h.update(&epoch.to_le_bytes());
        *h.finalize().as_bytes()
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_key_bytes() {
        let k = SecretKey::from_bytes([0x41; 32]);
        assert_eq!(format!("{k:?}"), "SecretKey(<redacted>)");
    }

    #[test]
    fn commitment_binds_file_and_epoch() {
        let k = SecretKey::from_bytes([7; 32]);
        let c = k.commitment(&[1; 16], 0);
        assert_ne!(c, k.commitment(&[2; 16], 0));
        assert_ne!(c, k.commitment(&[1; 16], 1));
        assert_ne!(c, SecretKey::from_bytes([8; 32]).commitment(&[1; 16], 0));
    }
}
