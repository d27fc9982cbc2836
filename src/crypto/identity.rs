//! A member's identity: one 32-byte seed from which an X25519 key (for receiving
//! wrapped file keys) and an Ed25519 key (for signing) are derived with distinct
//! BLAKE3 contexts. One key type is never converted into the other.
//!
//! The seed is stored sealed under a passphrase (argon2id + XChaCha20-Poly1305),
//! or in an explicitly unprotected form for scripts (see `format::identity`).

use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};

const X25519_CONTEXT: &str = "coffer 2026 identity x25519 v1";
const ED25519_CONTEXT: &str = "coffer 2026 identity ed25519 v1";
const MEMBER_ID_CONTEXT: &str = "coffer 2026 member id v1";
const PUBKEY_PREFIX: &str = "coffer1";

/// Short stable id of a member: derived from both public keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MemberId(pub [u8; 16]);

impl MemberId {
    pub fn to_hex(&self) -> String {
        super::hex(&self.0)
    }
}

impl std::fmt::Debug for MemberId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemberId({})", self.to_hex())
    }
}

impl std::fmt::Display for MemberId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The public half of an identity, as shared with other members.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicIdentity {
    pub x25519: [u8; 32],
    pub ed25519: [u8; 32],
}

impl std::fmt::Debug for PublicIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicIdentity({})", self.encode())
    }
}

impl PublicIdentity {
    pub fn member_id(&self) -> MemberId {
        let mut h = blake3::Hasher::new_derive_key(MEMBER_ID_CONTEXT);
        h.update(&self.x25519);
        h.update(&self.ed25519);
        let mut id = [0u8; 16];
        id.copy_from_slice(&h.finalize().as_bytes()[..16]);
        MemberId(id)
    }

    /// `coffer1` + base64url(x25519 || ed25519 || 4-byte checksum): the checksum
    /// catches a key mangled in copy and paste.
    pub fn encode(&self) -> String {
        let mut raw = Vec::with_capacity(68);
        raw.extend_from_slice(&self.x25519);
        raw.extend_from_slice(&self.ed25519);
        let check = blake3::hash(&raw);
        raw.extend_from_slice(&check.as_bytes()[..4]);
        format!(
            "{PUBKEY_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
        )
    }

    pub fn decode(text: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::BadInput(format!(
                "not a coffer public key ({why}); it looks like `coffer1...` as printed by `coffer pubkey`"
            ))
        };
        let body = text
            .trim()
            .strip_prefix(PUBKEY_PREFIX)
            .ok_or_else(|| bad("wrong prefix"))?;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| bad("not base64url"))?;
        if raw.len() != 68 {
            return Err(bad("wrong length"));
        }
        if blake3::hash(&raw[..64]).as_bytes()[..4] != raw[64..] {
            return Err(bad("checksum mismatch"));
        }
        let mut x25519 = [0u8; 32];
        let mut ed25519 = [0u8; 32];
        x25519.copy_from_slice(&raw[..32]);
        ed25519.copy_from_slice(&raw[32..64]);
        if VerifyingKey::from_bytes(&ed25519).is_err() {
            return Err(bad("invalid signing key"));
        }
        Ok(PublicIdentity { x25519, ed25519 })
    }
}

/// A member's private identity. Secrets are wiped when it is dropped.
pub struct Identity {
    seed: Zeroizing<[u8; 32]>,
    x25519: x25519_dalek::StaticSecret,
    signing: SigningKey,
    public: PublicIdentity,
}

impl Identity {
    pub fn generate() -> Self {
        Self::from_seed(super::random_bytes())
    }

    pub fn from_seed(mut seed: [u8; 32]) -> Self {
        let x_bytes = Zeroizing::new(blake3::derive_key(X25519_CONTEXT, &seed));
        let ed_bytes = Zeroizing::new(blake3::derive_key(ED25519_CONTEXT, &seed));
        let x25519 = x25519_dalek::StaticSecret::from(*x_bytes);
        let signing = SigningKey::from_bytes(&ed_bytes);
        let public = PublicIdentity {
            x25519: x25519_dalek::PublicKey::from(&x25519).to_bytes(),
            ed25519: signing.verifying_key().to_bytes(),
        };
        let id = Identity {
            seed: Zeroizing::new(seed),
            x25519,
            signing,
            public,
        };
        seed.zeroize();
        id
    }

    pub fn public(&self) -> &PublicIdentity {
        &self.public
    }

    pub fn member_id(&self) -> MemberId {
        self.public.member_id()
    }

    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    pub(crate) fn x25519_secret(&self) -> &x25519_dalek::StaticSecret {
        &self.x25519
    }

    /// Ed25519 signature over the exact bytes given.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }
}

/// Parameters and salt for sealing a seed under a passphrase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassphraseSeal {
    pub salt: [u8; 16],
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
    pub nonce: [u8; 24],
    /// XChaCha20-Poly1305(seed), 32 + 16 bytes.
    pub sealed_seed: Vec<u8>,
}

/// argon2id cost used for new identity files: 64 MiB, 3 passes (RFC 9106's second
/// recommended option). Tests may lower it through `COFFER_TEST_FAST_KDF`.
fn default_kdf_cost() -> (u32, u32, u32) {
    if std::env::var_os("COFFER_TEST_FAST_KDF").is_some() {
        (1024, 1, 1)
    } else {
        (64 * 1024, 3, 1)
    }
}

fn passphrase_key(
    pass: &[u8],
    salt: &[u8; 16],
    m: u32,
    t: u32,
    p: u32,
) -> Result<Zeroizing<[u8; 32]>> {
    // Bound the cost a hostile identity file can make us spend.
    if m > 4 * 1024 * 1024 || t > 64 || p > 16 {
        return Err(Error::corrupt(
            "identity file",
            "passphrase KDF cost out of range",
        ));
    }
    let params = Params::new(m, t, p, Some(32))
        .map_err(|e| Error::corrupt("identity file", format!("bad KDF parameters: {e}")))?;
    let mut out = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(pass, salt, out.as_mut())
        .map_err(|e| Error::Other(format!("argon2id failed: {e}")))?;
    Ok(out)
}

const SEAL_AAD: &[u8] = b"coffer identity seed v1";

pub fn seal_seed(seed: &[u8; 32], passphrase: &[u8]) -> Result<PassphraseSeal> {
    let (m, t, p) = default_kdf_cost();
    let salt = super::random_bytes();
    let nonce: [u8; 24] = super::random_bytes();
    let key = passphrase_key(passphrase, &salt, m, t, p)?;
    let sealed_seed = XChaCha20Poly1305::new(key.as_ref().into())
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: seed,
                aad: SEAL_AAD,
            },
        )
        .map_err(|_| Error::Other("sealing identity failed".into()))?;
    Ok(PassphraseSeal {
        salt,
        m_cost_kib: m,
        t_cost: t,
        p_cost: p,
        nonce,
        sealed_seed,
    })
}

pub fn open_seed(seal: &PassphraseSeal, passphrase: &[u8]) -> Result<[u8; 32]> {
    let key = passphrase_key(
        passphrase,
        &seal.salt,
        seal.m_cost_kib,
        seal.t_cost,
        seal.p_cost,
    )?;
    let plain = Zeroizing::new(
        XChaCha20Poly1305::new(key.as_ref().into())
            .decrypt(
                XNonce::from_slice(&seal.nonce),
                Payload {
                    msg: &seal.sealed_seed,
                    aad: SEAL_AAD,
                },
            )
            .map_err(|_| Error::AccessDenied("wrong passphrase for this identity file".into()))?,
    );
    if plain.len() != 32 {
        return Err(Error::corrupt(
            "identity file",
            "sealed seed has the wrong length",
        ));
    }
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&plain);
    Ok(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_is_fixed() {
        // Regression pin (docs/FORMAT.md "Test vectors", and the fixture vault):
        // changing a derivation context would orphan every identity file.
        let id = Identity::from_seed([1; 32]);
        assert_eq!(
            crate::crypto::hex(&id.public().x25519),
            "5d8f3b568372a7e7c7e04570d0f6dcc444fa5738ec3d2e88d708a764891aa623"
        );
        assert_eq!(
            crate::crypto::hex(&id.public().ed25519),
            "ddb9f7a33213bea04f52d903006897a02cf7825d160ea6265f3c4883c4003b87"
        );
        assert_eq!(id.member_id().to_hex(), "9791b7e5aec5d58ceaa03e88fe405f26");
        assert_eq!(
            id.public().encode(),
            "coffer1XY87VoNyp-fH4EVw0PbcxET6VzjsPS6I1winZIkapiPdufejMhO-oE9S2QMAaJegLPeCXRYOpiZfPEiDxAA7h6l3pZs"
        );
    }

    #[test]
    fn pubkey_text_round_trip_and_typos() {
        let id = Identity::generate();
        let text = id.public().encode();
        assert!(text.starts_with("coffer1"));
        assert_eq!(PublicIdentity::decode(&text).unwrap(), *id.public());
        let mut chars: Vec<char> = text.chars().collect();
        let i = chars.len() - 10;
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        let typo: String = chars.into_iter().collect();
        assert!(matches!(
            PublicIdentity::decode(&typo),
            Err(Error::BadInput(_))
        ));
        assert!(PublicIdentity::decode("age1xyz").is_err());
    }

    #[test]
    fn passphrase_seal_round_trip_and_wrong_passphrase() {
        std::env::set_var("COFFER_TEST_FAST_KDF", "1");
        let seal = seal_seed(&[5; 32], b"correct horse").unwrap();
        assert_eq!(open_seed(&seal, b"correct horse").unwrap(), [5; 32]);
        assert!(matches!(
            open_seed(&seal, b"wrong"),
            Err(Error::AccessDenied(_))
        ));
    }

    #[test]
    fn signatures_verify_with_public_key() {
        let id = Identity::generate();
        let sig = id.sign(b"message");
        assert!(crate::crypto::sign::verify(
            &id.public().ed25519,
            b"message",
            &sig
        ));
        assert!(!crate::crypto::sign::verify(
            &id.public().ed25519,
            b"messagE",
            &sig
        ));
    }
}
