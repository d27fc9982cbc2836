//! Wrapping a file key for one member (age-style X25519 recipient stanza): an
//! ephemeral key (one per stanza, or one per recipient in a [`WrapSession`]),
//! `shared = X25519(eph, recipient)`, rejected if non-contributory (all zero),
//! and a wrap key derived with BLAKE3 over the shared secret, both public keys,
//! the file id and the epoch. The file key is sealed with
//! XChaCha20-Poly1305 under that one-time wrap key.

use std::collections::HashMap;

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

/// Wraps `key` for the member with the given public keys, with an ephemeral
/// key of its own. `file_id` may be a vault id for vault-wide keys (the name
/// key); `epoch` separates key generations.
pub fn wrap(
    key: &SecretKey,
    recipient: &super::PublicIdentity,
    file_id: &[u8; 16],
    epoch: u32,
) -> Result<Wrap> {
    let eph = Ephemeral::new(recipient)?;
    Ok(eph.seal(key, recipient, file_id, epoch))
}

/// An ephemeral X25519 key and its shared secret with one recipient.
struct Ephemeral {
    public: [u8; 32],
    shared: Zeroizing<[u8; 32]>,
}

impl Ephemeral {
    fn new(recipient: &super::PublicIdentity) -> Result<Ephemeral> {
        let eph = x25519_dalek::StaticSecret::random_from_rng(rand_core::OsRng);
        let public = x25519_dalek::PublicKey::from(&eph).to_bytes();
        let shared = eph.diffie_hellman(&x25519_dalek::PublicKey::from(recipient.x25519));
        if !shared.was_contributory() {
            // Only possible for a low-order recipient key: the wrap would be predictable.
            return Err(Error::BadInput(format!(
                "member {} has a low-order X25519 key; refusing to wrap a key for it",
                recipient.member_id()
            )));
        }
        Ok(Ephemeral {
            public,
            shared: Zeroizing::new(*shared.as_bytes()),
        })
    }

    fn seal(
        &self,
        key: &SecretKey,
        recipient: &super::PublicIdentity,
        file_id: &[u8; 16],
        epoch: u32,
    ) -> Wrap {
        let wk = wrap_key(
            &self.shared,
            &self.public,
            &recipient.x25519,
            file_id,
            epoch,
        );
        let rid = recipient.member_id();
        let sealed = XChaCha20Poly1305::new(wk.as_ref().into())
            .encrypt(
                // One wrap key per (ephemeral, recipient, file id, epoch), and
                // `WrapSession` never seals two keys under one: a fixed nonce is safe.
                XNonce::from_slice(&[0u8; 24]),
                Payload {
                    msg: key.as_bytes(),
                    aad: &wrap_aad(&rid, file_id, epoch),
                },
            )
            .expect("in-memory encryption of 32 bytes cannot fail");
        Wrap {
            recipient: rid,
            ephemeral: self.public,
            sealed,
        }
    }
}

/// Wraps keys for many files from one process (`grant -r`, a mount creating
/// files) with one ephemeral key per recipient instead of one per stanza: the
/// wrap key also hashes the file id and epoch, so stanzas for different (file,
/// epoch) pairs never share a key, and a pair wrapped again in the session
/// with another key gets a fresh ephemeral. Ephemerals are replaced after
/// `SESSION_WRAPS` stanzas or `SESSION_AGE`, which bounds memory and how many
/// stanzas one ephemeral links.
pub struct WrapSession {
    inner: std::sync::Mutex<SessionInner>,
}

struct SessionInner {
    ephemerals: HashMap<[u8; 32], std::sync::Arc<Ephemeral>>,
    /// Digest of the key sealed per (recipient, file id, epoch) under the
    /// current ephemerals, both as 128-bit hashes (memory: 32 bytes a stanza).
    sealed: HashMap<[u8; 16], [u8; 16]>,
    started: std::time::Instant,
}

const SESSION_WRAPS: usize = 1 << 14;
const SESSION_AGE: std::time::Duration = std::time::Duration::from_secs(600);

impl Default for WrapSession {
    fn default() -> Self {
        WrapSession {
            inner: std::sync::Mutex::new(SessionInner {
                ephemerals: HashMap::new(),
                sealed: HashMap::new(),
                started: std::time::Instant::now(),
            }),
        }
    }
}

impl WrapSession {
    pub fn wrap(
        &self,
        key: &SecretKey,
        recipient: &super::PublicIdentity,
        file_id: &[u8; 16],
        epoch: u32,
    ) -> Result<Wrap> {
        let digest = truncated(blake3::hash(key.as_bytes()));
        let pair = {
            let mut h = blake3::Hasher::new();
            h.update(&recipient.x25519);
            h.update(file_id);
            h.update(&epoch.to_le_bytes());
            truncated(h.finalize())
        };
        let eph = {
            let mut s = crate::lock(&self.inner);
            if s.sealed.len() >= SESSION_WRAPS || s.started.elapsed() >= SESSION_AGE {
                s.ephemerals.clear();
                s.sealed.clear();
                s.started = std::time::Instant::now();
            }
            match s.sealed.get(&pair) {
                // Same wrap key, other plaintext: must not happen under one nonce.
                Some(d) if *d != digest => None,
                _ => {
                    let eph = match s.ephemerals.get(&recipient.x25519) {
                        Some(e) => e.clone(),
                        None => {
                            let e = std::sync::Arc::new(Ephemeral::new(recipient)?);
                            s.ephemerals.insert(recipient.x25519, e.clone());
                            e
                        }
                    };
                    s.sealed.insert(pair, digest);
                    Some(eph)
                }
            }
        };
        match eph {
            Some(e) => Ok(e.seal(key, recipient, file_id, epoch)),
            None => wrap(key, recipient, file_id, epoch),
        }
    }
}

fn truncated(h: blake3::Hash) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.as_bytes()[..16]);
    out
}

/// Shared secrets by ephemeral public key, so stanzas wrapped in one session
/// (see [`WrapSession`]) cost one X25519 for all of them. Bounded. The secret
/// depends on the unwrapping identity too: one cache per identity.
#[derive(Default)]
pub struct UnwrapCache {
    shared: std::sync::Mutex<HashMap<[u8; 32], Zeroizing<[u8; 32]>>>,
}

const UNWRAP_CACHE_MAX: usize = 1024;

/// Checks that a public key can receive wraps (not low order).
pub fn is_valid_recipient(x25519: &[u8; 32]) -> bool {
    let probe = x25519_dalek::StaticSecret::from([0x5a; 32]);
    probe
        .diffie_hellman(&x25519_dalek::PublicKey::from(*x25519))
        .was_contributory()
}

/// Unwraps a stanza addressed to `me`; `None` if it is not for us or fails.
pub fn unwrap(stanza: &Wrap, me: &Identity, file_id: &[u8; 16], epoch: u32) -> Option<SecretKey> {
    unwrap_with(stanza, me, file_id, epoch, None)
}

/// [`unwrap`], taking the shared secret from `cache` when the ephemeral key was seen.
pub fn unwrap_with(
    stanza: &Wrap,
    me: &Identity,
    file_id: &[u8; 16],
    epoch: u32,
    cache: Option<&UnwrapCache>,
) -> Option<SecretKey> {
    if stanza.recipient != me.member_id() || stanza.sealed.len() != WRAPPED_LEN {
        return None;
    }
    let cached = |c: &UnwrapCache| crate::lock(&c.shared).get(&stanza.ephemeral).cloned();
    let shared = match cache.and_then(cached) {
        Some(s) => s,
        None => {
            let shared = me
                .x25519_secret()
                .diffie_hellman(&x25519_dalek::PublicKey::from(stanza.ephemeral));
            if !shared.was_contributory() {
                return None;
            }
            let shared = Zeroizing::new(*shared.as_bytes());
            if let Some(c) = cache {
                let mut m = crate::lock(&c.shared);
                if m.len() >= UNWRAP_CACHE_MAX {
                    m.clear();
                }
                m.insert(stanza.ephemeral, shared.clone());
            }
            shared
        }
    };
    let wk = wrap_key(
        &shared,
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
    fn a_session_shares_one_ephemeral_per_recipient_and_never_a_wrap_key() {
        let alice = Identity::generate();
        let bob = Identity::generate();
        let session = WrapSession::default();
        let cache = UnwrapCache::default();
        let (k1, k2) = (SecretKey::generate(), SecretKey::generate());
        let a1 = session.wrap(&k1, alice.public(), &[1; 16], 0).unwrap();
        let a2 = session.wrap(&k2, alice.public(), &[2; 16], 0).unwrap();
        let a3 = session.wrap(&k2, alice.public(), &[1; 16], 1).unwrap();
        let b1 = session.wrap(&k1, bob.public(), &[1; 16], 0).unwrap();
        assert_eq!(a1.ephemeral, a2.ephemeral, "one ephemeral for alice");
        assert_eq!(a1.ephemeral, a3.ephemeral);
        assert_ne!(a1.ephemeral, b1.ephemeral, "another for bob");
        for (w, k, f, e) in [(&a1, &k1, 1, 0), (&a2, &k2, 2, 0), (&a3, &k2, 1, 1)] {
            assert_eq!(unwrap(w, &alice, &[f; 16], e).as_ref(), Some(k));
            assert_eq!(
                unwrap_with(w, &alice, &[f; 16], e, Some(&cache)).as_ref(),
                Some(k)
            );
        }
        assert_eq!(
            cache.shared.lock().unwrap().len(),
            1,
            "one X25519 for three stanzas"
        );
        assert_eq!(unwrap(&b1, &bob, &[1; 16], 0), Some(k1.clone()));
        // The same key for the same (file, epoch) again: the same stanza.
        assert_eq!(session.wrap(&k1, alice.public(), &[1; 16], 0).unwrap(), a1);
        // Another key for a (file, epoch) already sealed: never under the same
        // wrap key and nonce, so a fresh ephemeral.
        let other = session.wrap(&k2, alice.public(), &[1; 16], 0).unwrap();
        assert_ne!(other.ephemeral, a1.ephemeral);
        assert_eq!(unwrap(&other, &alice, &[1; 16], 0), Some(k2));
    }

    #[test]
    fn a_cached_secret_opens_only_its_own_stanzas() {
        let alice = Identity::generate();
        let key = SecretKey::generate();
        let cache = UnwrapCache::default();
        let mut w = WrapSession::default()
            .wrap(&key, alice.public(), &[1; 16], 0)
            .unwrap();
        assert!(unwrap_with(&w, &alice, &[1; 16], 0, Some(&cache)).is_some());
        assert!(unwrap_with(&w, &alice, &[2; 16], 0, Some(&cache)).is_none());
        w.sealed[0] ^= 1;
        assert!(unwrap_with(&w, &alice, &[1; 16], 0, Some(&cache)).is_none());
    }

    #[test]
    fn low_order_keys_are_not_recipients() {
        assert!(!is_valid_recipient(&[0; 32]));
        assert!(is_valid_recipient(&Identity::generate().public().x25519));
    }
}
