//! Deterministic authenticated encryption of file names (and symlink targets), per
//! directory: an SIV construction from BLAKE3 and XChaCha20.
//!
//! `siv = BLAKE3-keyed(mac_key, label || dir_id || name)[..16]`,
//! `ct = name XOR XChaCha20(enc_key, nonce = siv || 0^8)`; stored as `siv || ct`.
//! Decryption recomputes the SIV over the recovered name and compares, so a
//! modified name fails. Equal names in one directory encrypt equally (needed for
//! lookup); the same name in two directories does not (the dir id differs).

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::XChaCha20;
use subtle_eq::ct_eq;

use super::SecretKey;

pub const SIV_LEN: usize = 16;

/// What a name is encrypted as; a label keeps the domains apart.
#[derive(Clone, Copy, Debug)]
pub enum NameKind {
    Entry,
    SymlinkTarget,
    XattrName,
}

impl NameKind {
    fn label(self) -> &'static [u8] {
        match self {
            NameKind::Entry => b"coffer name v1\0\0",
            NameKind::SymlinkTarget => b"coffer symlink v1",
            NameKind::XattrName => b"coffer xattr v1\0",
        }
    }
}

/// The name key of a vault, split into its two independent subkeys.
pub struct NameCipher {
    mac_key: SecretKey,
    enc_key: SecretKey,
    xattr_key: SecretKey,
}

impl NameCipher {
    pub fn new(name_key: &SecretKey) -> Self {
        NameCipher {
            mac_key: name_key.derive("coffer 2026 names siv mac v1"),
            enc_key: name_key.derive("coffer 2026 names siv enc v1"),
            xattr_key: name_key.derive("coffer 2026 xattr values v1"),
        }
    }

    /// Key for xattr values (vault-wide, like names).
    pub fn xattr_key(&self) -> SecretKey {
        self.xattr_key.clone()
    }

    fn siv(&self, kind: NameKind, dir_id: &[u8; 16], name: &[u8]) -> [u8; SIV_LEN] {
        let mut h = blake3::Hasher::new_keyed(self.mac_key.as_bytes());
        h.update(kind.label());
        h.update(dir_id);
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name);
        let mut siv = [0u8; SIV_LEN];
        siv.copy_from_slice(&h.finalize().as_bytes()[..SIV_LEN]);
        siv
    }

    fn keystream_xor(&self, siv: &[u8; SIV_LEN], data: &mut [u8]) {
        let mut nonce = [0u8; 24];
        nonce[..SIV_LEN].copy_from_slice(siv);
        let mut c = XChaCha20::new(self.enc_key.as_bytes().into(), &nonce.into());
        c.apply_keystream(data);
    }

    pub fn encrypt(&self, kind: NameKind, dir_id: &[u8; 16], name: &[u8]) -> Vec<u8> {
        let siv = self.siv(kind, dir_id, name);
        let mut out = Vec::with_capacity(SIV_LEN + name.len());
        out.extend_from_slice(&siv);
        out.extend_from_slice(name);
        self.keystream_xor(&siv, &mut out[SIV_LEN..]);
        out
    }

    pub fn decrypt(&self, kind: NameKind, dir_id: &[u8; 16], stored: &[u8]) -> Option<Vec<u8>> {
        if stored.len() < SIV_LEN {
            return None;
        }
        let mut siv = [0u8; SIV_LEN];
        siv.copy_from_slice(&stored[..SIV_LEN]);
        let mut name = stored[SIV_LEN..].to_vec();
        self.keystream_xor(&siv, &mut name);
        if ct_eq(&self.siv(kind, dir_id, &name), &siv) {
            Some(name)
        } else {
            None
        }
    }
}

/// Constant-time comparison without another dependency.
mod subtle_eq {
    pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        let mut diff = 0u8;
        for (x, y) in a.iter().zip(b) {
            diff |= x ^ y;
        }
        std::hint::black_box(diff) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher() -> NameCipher {
        NameCipher::new(&SecretKey::from_bytes([4; 32]))
    }

    #[test]
    fn round_trip_and_determinism() {
        let c = cipher();
        let a = c.encrypt(NameKind::Entry, &[1; 16], b"report.txt");
        assert_eq!(a, c.encrypt(NameKind::Entry, &[1; 16], b"report.txt"));
        assert_ne!(
            a,
            c.encrypt(NameKind::Entry, &[2; 16], b"report.txt"),
            "per directory"
        );
        assert_ne!(
            a,
            c.encrypt(NameKind::SymlinkTarget, &[1; 16], b"report.txt"),
            "per kind"
        );
        assert_eq!(
            c.decrypt(NameKind::Entry, &[1; 16], &a).unwrap(),
            b"report.txt"
        );
        assert!(
            c.decrypt(NameKind::Entry, &[2; 16], &a).is_none(),
            "moved to another dir"
        );
        assert!(!a.windows(6).any(|w| w == b"report"), "name is not visible");
    }

    #[test]
    fn tampered_name_fails() {
        let c = cipher();
        let mut a = c.encrypt(NameKind::Entry, &[1; 16], b"x");
        let last = a.len() - 1;
        a[last] ^= 1;
        assert!(c.decrypt(NameKind::Entry, &[1; 16], &a).is_none());
        assert!(c.decrypt(NameKind::Entry, &[1; 16], &a[..3]).is_none());
    }

    #[test]
    fn fixed_vector() {
        // Regression pin (docs/FORMAT.md "Test vectors"): changing the SIV
        // construction would make every existing vault's names unreadable.
        let a = cipher().encrypt(NameKind::Entry, &[0; 16], b"a");
        assert_eq!(crate::crypto::hex(&a), "87a6e6e5b67b441182cfdd7f5642af6e58");
        let cipher = NameCipher::new(&SecretKey::from_bytes([4; 32]));
        assert_eq!(
            crate::crypto::hex(&cipher.encrypt(NameKind::SymlinkTarget, &[0; 16], b"hello.txt")),
            "0f32fed83b42badb9a0c0dd91420fc4e4e479ec5aab9c56a3d"
        );
    }
}
