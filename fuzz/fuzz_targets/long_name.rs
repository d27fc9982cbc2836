//! `.~<hash>.name`: the long-name side file and the name it holds.
#![no_main]
use coffer::crypto::names::{NameCipher, NameKind};
use coffer::crypto::SecretKey;
use coffer::format::{self, LongName};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ln) = format::decode_file::<LongName>(format::LONG_NAME, data) {
        let _ = format::check_version(ln.format_version);
        let cipher = NameCipher::new(&SecretKey::from_bytes([4; 32]));
        let _ = cipher.decrypt(NameKind::Entry, &[0; 16], &ln.encrypted);
    }
});
