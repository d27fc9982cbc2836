//! Public keys as users paste them (`coffer user add NAME KEY`).
#![no_main]
use coffer::crypto::PublicIdentity;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(p) = PublicIdentity::decode(s) {
            assert_eq!(PublicIdentity::decode(&p.encode()).ok(), Some(p));
        }
    }
});
