//! `members/<id>.member`: signed record, its version, and the wrapped name key.
#![no_main]
use coffer::crypto::{wrap, Identity};
use coffer::format::{self, MemberRecord, Signed};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn me() -> &'static Identity {
    static ME: OnceLock<Identity> = OnceLock::new();
    ME.get_or_init(|| Identity::from_seed([1; 32]))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(signed) = format::decode_file::<Signed<MemberRecord>>(format::MEMBER, data) {
        if let Ok(rec) = signed.decode_unverified() {
            let _ = format::check_version(rec.format_version);
            let _ = signed.verify(&rec.public.ed25519);
            let _ = wrap::unwrap(&rec.name_key, me(), &rec.vault_id, 0);
        }
    }
    // The body on its own, as it is decoded after a good signature.
    let _ = format::from_bytes::<MemberRecord>("member record", 4096, data);
});
