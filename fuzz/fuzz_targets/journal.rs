//! `meta/<aa>/<id>.journal`: the redo journal of an interrupted commit.
#![no_main]
use coffer::format::{self, Journal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(j) = format::decode_file::<Journal>(format::JOURNAL, data) {
        let _ = format::check_version(j.format_version);
        let _: usize = j.chunks.iter().map(|(_, c)| c.len()).sum();
    }
});
