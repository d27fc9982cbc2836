//! `log/<member>.head`: the signed log checkpoint.
#![no_main]
use coffer::format::{self, Signed};
use coffer::history::log::{Checkpoint, CHECKPOINT};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = format::decode_file::<Signed<Checkpoint>>(CHECKPOINT, data) {
        let _ = s.verify(&[3; 32]);
        if let Ok(cp) = s.decode_unverified() {
            let _ = format::check_version(cp.format_version);
        }
    }
    let _ = format::from_bytes::<Checkpoint>("log checkpoint", 1024, data);
});
