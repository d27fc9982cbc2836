//! Identity files (`coffer keygen`): record, version, and the passphrase seal
//! (opened only when its KDF cost is tiny, so the fuzzer stays fast).
#![no_main]
use coffer::crypto::identity::open_seed;
use coffer::format::identity::{IdentityFile, IdentitySecret};
use coffer::format::{self, IDENTITY};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = format::decode_file::<IdentityFile>(IDENTITY, data) {
        let _ = format::check_version(f.format_version);
        if let IdentitySecret::Passphrase(seal) = &f.secret {
            if seal.m_cost_kib <= 64 && seal.t_cost <= 2 && seal.p_cost <= 2 {
                let _ = open_seed(seal, b"passphrase");
            }
        }
    }
});
