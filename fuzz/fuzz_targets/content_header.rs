//! A content file: its header, then stored chunks opened with a fixed key.
#![no_main]
use coffer::crypto::{chunk, SecretKey};
use coffer::format::data::{DataHeader, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(h) = DataHeader::decode(data) else {
        return;
    };
    let key = SecretKey::from_bytes([1; 32]);
    let rest = data.get(HEADER_LEN as usize..).unwrap_or(&[]);
    let _ = chunk::open(&key, &h.file_id, 0, 0, rest);
});
