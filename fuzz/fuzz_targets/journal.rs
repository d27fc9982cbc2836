//! `meta/<aa>/<id>.journal`: the redo journal of an interrupted commit, or
//! the re-encryption journal of an interrupted `rotate`/`migrate`.
#![no_main]
use coffer::format::{self, Journal, ResealJournal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(j) = format::decode_file::<Journal>(format::JOURNAL, data) {
        let _ = format::check_version(j.format_version);
        let _: usize = j.chunks.iter().map(|(_, c)| c.len()).sum();
    }
    if let Ok(j) = format::decode_file::<ResealJournal>(format::RESEAL_JOURNAL, data) {
        let _ = format::check_version(j.format_version);
        let _ = j.chunks.iter().map(|c| c.index).max();
    }
});
