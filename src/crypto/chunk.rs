//! Content chunks: XChaCha20-Poly1305 with a fresh random 192-bit nonce on every
//! write (so rewriting a chunk in place never reuses a nonce), and an AAD that binds
//! the file id, the key epoch and the chunk index so chunks cannot move between
//! files, epochs or offsets.
//!
//! Stored chunk: `nonce (24) || ciphertext (len) || tag (16)`.

use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use super::SecretKey;

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// Bytes a stored chunk adds to its plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

const AAD_LABEL: &[u8; 16] = b"coffer chunk v1\0";

fn aad(file_id: &[u8; 16], epoch: u32, index: u64) -> [u8; 44] {
    let mut a = [0u8; 44];
    a[..16].copy_from_slice(AAD_LABEL);
    a[16..32].copy_from_slice(file_id);
    a[32..36].copy_from_slice(&epoch.to_le_bytes());
    a[36..44].copy_from_slice(&index.to_le_bytes());
    a
}

/// Encrypts one chunk with a fresh random nonce.
pub fn seal(key: &SecretKey, file_id: &[u8; 16], epoch: u32, index: u64, plain: &[u8]) -> Vec<u8> {
    seal_with_nonce(key, file_id, epoch, index, plain, super::random_bytes())
}

/// Deterministic variant for test vectors only; production code uses [`seal`].
pub fn seal_with_nonce(
    key: &SecretKey,
    file_id: &[u8; 16],
    epoch: u32,
    index: u64,
    plain: &[u8],
    nonce: [u8; NONCE_LEN],
) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.as_bytes().into());
    let ad = aad(file_id, epoch, index);
    let ct = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: &ad,
            },
        )
        .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

/// Decrypts one stored chunk; `None` when it fails authentication.
pub fn open(
    key: &SecretKey,
    file_id: &[u8; 16],
    epoch: u32,
    index: u64,
    stored: &[u8],
) -> Option<Vec<u8>> {
    if stored.len() < OVERHEAD {
        return None;
    }
    let cipher = XChaCha20Poly1305::new(key.as_bytes().into());
    let ad = aad(file_id, epoch, index);
    cipher
        .decrypt(
            XNonce::from_slice(&stored[..NONCE_LEN]),
            Payload {
                msg: &stored[NONCE_LEN..],
                aad: &ad,
            },
        )
        .ok()
}

/// [`open`] without allocating: decrypts `stored` in place and says whether it
/// is authentic. On success the plaintext is `stored[NONCE_LEN..len - TAG_LEN]`;
/// on failure those bytes are unspecified. For `coffer verify --deep`.
pub fn open_in_place(
    key: &SecretKey,
    file_id: &[u8; 16],
    epoch: u32,
    index: u64,
    stored: &mut [u8],
) -> bool {
    if stored.len() < OVERHEAD {
        return false;
    }
    let cipher = XChaCha20Poly1305::new(key.as_bytes().into());
    let ad = aad(file_id, epoch, index);
    let (nonce, rest) = stored.split_at_mut(NONCE_LEN);
    let (ct, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
    cipher
        .decrypt_in_place_detached(XNonce::from_slice(nonce), &ad, ct, (&*tag).into())
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretKey {
        SecretKey::from_bytes([0x11; 32])
    }

    #[test]
    fn fixed_vector() {
        // Pinned; cross-checked with PyCryptodome XChaCha20-Poly1305 and the same AAD.
        let stored = seal_with_nonce(&key(), &[0x22; 16], 3, 5, b"hello coffer", [0x33; 24]);
        assert_eq!(stored.len(), 12 + OVERHEAD);
        assert_eq!(
            crate::crypto::hex(&stored[24..]),
            "d2c11be5174b6058e4f24dd6eee329ca8589eda6f7e4d2b56d7f2627"
        );
        assert_eq!(
            open(&key(), &[0x22; 16], 3, 5, &stored).unwrap(),
            b"hello coffer"
        );
    }

    #[test]
    fn aad_binds_file_epoch_and_index() {
        let stored = seal(&key(), &[1; 16], 0, 0, b"data");
        assert!(open(&key(), &[1; 16], 0, 0, &stored).is_some());
        assert!(
            open(&key(), &[2; 16], 0, 0, &stored).is_none(),
            "other file"
        );
        assert!(
            open(&key(), &[1; 16], 1, 0, &stored).is_none(),
            "other epoch"
        );
        assert!(
            open(&key(), &[1; 16], 0, 1, &stored).is_none(),
            "other index"
        );
        assert!(open(&SecretKey::from_bytes([9; 32]), &[1; 16], 0, 0, &stored).is_none());
    }

    #[test]
    fn every_seal_uses_a_new_nonce() {
        let a = seal(&key(), &[1; 16], 0, 0, b"same");
        let b = seal(&key(), &[1; 16], 0, 0, b"same");
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
    }

    #[test]
    fn flipped_bit_or_truncation_fails() {
        let mut stored = seal(&key(), &[1; 16], 0, 0, b"data");
        stored[30] ^= 1;
        assert!(open(&key(), &[1; 16], 0, 0, &stored).is_none());
        assert!(open(&key(), &[1; 16], 0, 0, &stored[..10]).is_none());
    }

    #[test]
    fn open_in_place_agrees_with_open() {
        let plain: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
        let stored = seal(&key(), &[1; 16], 2, 7, &plain);
        let mut buf = stored.clone();
        assert!(open_in_place(&key(), &[1; 16], 2, 7, &mut buf));
        assert_eq!(&buf[NONCE_LEN..buf.len() - TAG_LEN], &plain[..]);
        for (id, epoch, index) in [([2; 16], 2, 7), ([1; 16], 3, 7), ([1; 16], 2, 8)] {
            let mut buf = stored.clone();
            assert!(!open_in_place(&key(), &id, epoch, index, &mut buf));
        }
        for at in [0, NONCE_LEN + 5, stored.len() - 1] {
            let mut buf = stored.clone();
            buf[at] ^= 1;
            assert!(
                !open_in_place(&key(), &[1; 16], 2, 7, &mut buf),
                "flip at {at}"
            );
        }
        assert!(!open_in_place(
            &key(),
            &[1; 16],
            2,
            7,
            &mut stored.clone()[..OVERHEAD - 1]
        ));
    }
}
