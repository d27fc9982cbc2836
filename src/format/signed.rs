//! A signed record: the exact postcard bytes of the body, who signed them, and an
//! Ed25519 signature over `domain || body`. Verification happens on the stored
//! bytes; the body is decoded only after the signature checks out.

use std::marker::PhantomData;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::crypto::{sign, Identity, MemberId};
use crate::error::{Error, Result};

/// Each signed type names its own domain so a signature cannot be replayed as
/// another kind of record.
pub trait SignedBody: Serialize + DeserializeOwned {
    const DOMAIN: &'static [u8];
    const KIND: &'static str;
    const MAX_LEN: usize;
}

#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Signed<T> {
    pub body: Vec<u8>,
    pub signer: MemberId,
    pub signature: Vec<u8>,
    #[serde(skip)]
    _marker: PhantomData<fn() -> T>,
}

impl<T> Clone for Signed<T> {
    fn clone(&self) -> Self {
        Signed {
            body: self.body.clone(),
            signer: self.signer,
            signature: self.signature.clone(),
            _marker: PhantomData,
        }
    }
}

impl<T> PartialEq for Signed<T> {
    fn eq(&self, other: &Self) -> bool {
        self.body == other.body && self.signer == other.signer && self.signature == other.signature
    }
}

impl<T> Eq for Signed<T> {}

impl<T> std::fmt::Debug for Signed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Signed({} body bytes by {})",
            self.body.len(),
            self.signer
        )
    }
}

fn message(domain: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(domain.len() + body.len());
    m.extend_from_slice(domain);
    m.extend_from_slice(body);
    m
}

impl<T: SignedBody> Signed<T> {
    pub fn sign(value: &T, by: &Identity) -> Self {
        let body = super::to_bytes(value);
        let signature = by.sign(&message(T::DOMAIN, &body)).to_vec();
        Signed {
            body,
            signer: by.member_id(),
            signature,
            _marker: PhantomData,
        }
    }

    /// A record of `signer` with an empty signature, for a format where a later
    /// signed record covers it (the history log's covered entries).
    pub fn unsigned(value: &T, signer: MemberId) -> Self {
        Signed {
            body: super::to_bytes(value),
            signer,
            signature: Vec::new(),
            _marker: PhantomData,
        }
    }

    /// Verifies against the signer's Ed25519 key, then decodes.
    pub fn verify(&self, signer_ed25519: &[u8; 32]) -> Result<T> {
        self.verify_with(sign::Verifier::new(signer_ed25519).as_ref())
    }

    /// [`Signed::verify`] with the key decoded once by the caller (`None`: an
    /// invalid key, which verifies nothing).
    pub fn verify_with(&self, key: Option<&sign::Verifier>) -> Result<T> {
        let sig: [u8; 64] = self.signature.as_slice().try_into().map_err(|_| {
            Error::integrity(format!("{}: signature has the wrong length", T::KIND))
        })?;
        if !key.is_some_and(|k| k.verify(&message(T::DOMAIN, &self.body), &sig)) {
            return Err(Error::integrity(format!(
                "{}: bad signature by {}",
                T::KIND,
                self.signer
            )));
        }
        super::from_bytes(T::KIND, T::MAX_LEN, &self.body)
    }

    /// Decodes without checking the signature: for inspection tools only.
    pub fn decode_unverified(&self) -> Result<T> {
        super::from_bytes(T::KIND, T::MAX_LEN, &self.body)
    }

    /// BLAKE3 over the signed bytes and signature: what chains point at.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(&(self.body.len() as u64).to_le_bytes());
        h.update(&self.body);
        h.update(&self.signer.0);
        h.update(&self.signature);
        *h.finalize().as_bytes()
    }
}
