//! `coffer.vault`: magic, size limit, signed body, version check, signature.
#![no_main]
use coffer::format::{self, Signed, VaultConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(signed) = format::decode_file::<Signed<VaultConfig>>(format::VAULT_CONFIG, data) {
        if let Ok(cfg) = signed.decode_unverified() {
            let _ = format::check_version(cfg.format_version);
            let _ = signed.verify(&cfg.admin.ed25519);
        }
        let _ = signed.hash();
    }
});
