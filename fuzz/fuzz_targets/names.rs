//! Encrypted names as stored in the tree: entry names, symlink targets and
//! xattr names.
#![no_main]
use coffer::crypto::names::{NameCipher, NameKind};
use coffer::crypto::SecretKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cipher = NameCipher::new(&SecretKey::from_bytes([4; 32]));
    let dir = [2; 16];
    for kind in [NameKind::Entry, NameKind::SymlinkTarget, NameKind::XattrName] {
        let _ = cipher.decrypt(kind, &dir, data);
    }
});
