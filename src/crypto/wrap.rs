//! Wrapping a file key for one member (age-style X25519 recipient stanza):
//! a fresh ephemeral key per wrap, `shared = X25519(eph, recipient)`, rejected if
//! non-contributory (all zero), and a wrap key derived with BLAKE3 over the shared
//! secret, both public keys, the file id and the epoch. The file key is sealed with
//! XChaCha20-Poly1305 under that one-time wrap key.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{Identity, MemberId, SecretKey};
use crate::error::{Error, Result};

const WRAP_CONTEXT: &str = "coffer 2026 key wrap v1";
/// Length of a wrapped 32-byte key: ciphertext + tag.
pub const WRAPPED_LEN: usize = 32 + 16;

/// One recipient stanza.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wrap {
    pub recipient: MemberId,
    pub ephemeral: [u8; 32],
    pub sealed: Vec<u8>,
}

fn wrap_key(
    shared: &[u8; 32],
    eph: &[u8; 32],
    recipient: &[u8; 32],
    file_id: &[u8; 16],
    epoch: u32,
) -> Zeroizing<[u8; 32]> {
    let mut h = blake3::Hasher::new_derive_key(WRAP_CONTEXT);
    h.update(shared);
    h.update(eph);
    h.update(recipient);
    h.update(file_id);
    h.update(&epoch.to_le_bytes());
    Zeroizing::new(*h.finalize().as_bytes())
}

/// The aad names the recipient so a stanza cannot be relabelled for another member.
fn wrap_aad(recipient: &MemberId, file_id: &[u8; 16], epoch: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(16 + 16 + 4);
    aad.extend_from_slice(&recipient.0);
    aad.extend_from_slice(file_id);
    aad.extend_from_slice(&epoch.to_le_bytes());
    aad
}

/// Wraps `key` for the member with the given public keys. `file_id` may be a vault
/// id for vault-wide keys (the name key); `epoch` separates key generations.
pub fn wrap(
    key: &SecretKey,
    recipient: &super::PublicIdentity,
    file_id: &[u8; 16],
    epoch: u32,
) -> Result<Wrap> {
    loop {
        let eph = x25519_dalek::StaticSecret::random_from_rng(rand_core::OsRng);
        let eph_pub = x25519_dalek::PublicKey::from(&eph).to_bytes();
        let shared = eph.diffie_hellman(&x25519_dalek::PublicKey::from(recipient.x25519));
        if !shared.was_contributory() {
            // Only possible for a low-order recipient key: the wrap would be predictable.
            return Err(Error::BadInput(format!(
                "member {} has a low-order X25519 key; refusing to wrap a key for it",
                recipient.member_id()
            )));
        }
        let wk = wrap_key(
            shared.as_bytes(),
            &eph_pub,
            &recipient.x25519,
            file_id,
            epoch,
        );
        let rid = recipient.member_id();
        let Ok(sealed) = XChaCha20Poly1305::new(wk.as_ref().into()).encrypt(
            // The wrap key is used exactly once, so a fixed nonce is safe here.
            XNonce::from_slice(&[0u8; 24]),
            Payload {
                msg: key.as_bytes(),
                aad: &wrap_aad(&rid, file_id, epoch),
            },
        ) else {
            continue;
        };
        return Ok(Wrap {
            recipient: rid,
            ephemeral: eph_pub,
            sealed,
        });
    }
}

/// Checks that a public key can receive wraps (not low order).
pub fn is_valid_recipient(x25519: &[u8; 32]) -> bool {
    let probe = x25519_dalek::StaticSecret::from([0x5a; 32]);
    probe
        .diffie_hellman(&x25519_dalek::PublicKey::from(*x25519))
        .was_contributory()
}

/// Unwraps a stanza addressed to `me`; `None` if it is not for us or fails.
pub fn unwrap(stanza: &Wrap, me: &Identity, file_id: &[u8; 16], epoch: u32) -> Option<SecretKey> {
    if stanza.recipient != me.member_id() || stanza.sealed.len() != WRAPPED_LEN {
        return None;
    }
    let shared = me
        .x25519_secret()
        .diffie_hellman(&x25519_dalek::PublicKey::from(stanza.ephemeral));
    if !shared.was_contributory() {
        return None;
    }
    let wk = wrap_key(
        shared.as_bytes(),
        &stanza.ephemeral,
        &me.public().x25519,
        file_id,
        epoch,
    );
    let plain = Zeroizing::new(
        XChaCha20Poly1305::new(wk.as_ref().into())
            .decrypt(
                XNonce::from_slice(&[0u8; 24]),
                Payload {
                    msg: &stanza.sealed,
                    aad: &wrap_aad(&stanza.recipient, file_id, epoch),
                },
            )
            .ok()?,
    );
    let mut k = [0u8; 32];
    k.copy_from_slice(&plain);
    Some(SecretKey::from_bytes(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_round_trip_only_for_recipient() {
        let alice = Identity::generate();
        let bob = Identity::generate();
        let key = SecretKey::generate();
        let w = wrap(&key, alice.public(), &[3; 16], 2).unwrap();
        assert_eq!(w.sealed.len(), WRAPPED_LEN);
        assert_eq!(unwrap(&w, &alice, &[3; 16], 2).unwrap(), key);
        assert!(unwrap(&w, &bob, &[3; 16], 2).is_none());
        assert!(
            unwrap(&w, &alice, &[4; 16], 2).is_none(),
            "bound to the file id"
        );
        assert!(
            unwrap(&w, &alice, &[3; 16], 1).is_none(),
            "bound to the epoch"
        );
    }

    #[test]
    fn relabelled_or_mangled_stanza_is_rejected() {
        let alice = Identity::generate();
        let key = SecretKey::generate();
        let mut w = wrap(&key, alice.public(), &[3; 16], 0).unwrap();
        w.sealed.pop();
        assert!(
            unwrap(&w, &alice, &[3; 16], 0).is_none(),
            "wrong body length"
        );
        let mut w = wrap(&key, alice.public(), &[3; 16], 0).unwrap();
        w.ephemeral = [0; 32];
        assert!(
            unwrap(&w, &alice, &[3; 16], 0).is_none(),
            "non-contributory ephemeral"
        );
    }

    #[test]
    fn low_order_keys_are_not_recipients() {
        assert!(!is_valid_recipient(&[0; 32]));
        assert!(is_valid_recipient(&Identity::generate().public().x25519));
    }
}
