//! One signed history entry (a record of a member's log) and its body.
#![no_main]
use coffer::format::{self, Signed};
use coffer::history::log::{LogEntry, MAX_ENTRY};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = format::from_bytes::<Signed<LogEntry>>("log record", MAX_ENTRY + 256, data) {
        let _ = s.verify(&[3; 32]);
        let _ = s.decode_unverified();
        let _ = s.hash();
    }
    let _ = format::from_bytes::<LogEntry>("log entry", MAX_ENTRY, data);
});
