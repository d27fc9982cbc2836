//! A signed manifest and its body (decoded after the signature checks out).
#![no_main]
use coffer::format::{self, Manifest, Signed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = format::from_bytes::<Signed<Manifest>>("manifest", 64 * 1024 + 256, data) {
        let _ = s.verify(&[9; 32]);
        let _ = s.decode_unverified();
    }
    let _ = format::from_bytes::<Manifest>("manifest", 64 * 1024, data);
});
