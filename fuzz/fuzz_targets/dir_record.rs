//! `.coffer-dir`: the directory record and its signed defaults.
#![no_main]
use coffer::format::{self, DirRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(rec) = format::decode_file::<DirRecord>(format::DIR, data) {
        let _ = format::check_version(rec.format_version);
        if let Some(d) = &rec.defaults {
            let _ = d.decode_unverified();
            let _ = d.verify(&[7; 32]);
        }
    }
});
