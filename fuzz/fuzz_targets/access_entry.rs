//! One signed access-list entry and its body.
#![no_main]
use coffer::format::{self, AccessEntry, Signed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = format::from_bytes::<Signed<AccessEntry>>("access entry", 4096 + 256, data) {
        let _ = s.verify(&[7; 32]);
        let _ = s.decode_unverified();
    }
    let _ = format::from_bytes::<AccessEntry>("access entry", 4096, data);
});
