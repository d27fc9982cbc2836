//! Ed25519 verification over exact bytes (signing lives on [`super::Identity`]).

use ed25519_dalek::{Signature, VerifyingKey};

/// Strict verification (rejects non-canonical and small-order keys/signatures).
pub fn verify(public: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(public) else {
        return false;
    };
    key.verify_strict(message, &Signature::from_bytes(signature))
        .is_ok()
}
