//! Ed25519 verification over exact bytes (signing lives on [`super::Identity`]).

use ed25519_dalek::{Signature, VerifyingKey};

/// Strict verification (rejects non-canonical and small-order keys/signatures).
pub fn verify(public: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    Verifier::new(public).is_some_and(|v| v.verify(message, signature))
}

/// One public key decoded once, for checking many signatures by the same
/// signer (a history log): decoding the key is about a fifth of a check.
#[derive(Clone, Copy, Debug)]
pub struct Verifier(VerifyingKey);

impl Verifier {
    /// `None` when the bytes are not a valid public key (nothing verifies).
    pub fn new(public: &[u8; 32]) -> Option<Verifier> {
        VerifyingKey::from_bytes(public).ok().map(Verifier)
    }

    /// Same rules as [`verify`].
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        self.0
            .verify_strict(message, &Signature::from_bytes(signature))
            .is_ok()
    }
}
