//! `meta/<aa>/<id>.meta`: sidecar, its access list (replayed), key wraps,
//! manifest and chunk list.
#![no_main]
use coffer::access::{self, KeyLookup};
use coffer::crypto::{wrap, Identity, MemberId};
use coffer::format;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn me() -> &'static Identity {
    static ME: OnceLock<Identity> = OnceLock::new();
    ME.get_or_init(|| Identity::from_seed([1; 32]))
}

/// Every signer is "known" with one fixed key, so replay gets to the
/// signature check of each entry.
struct AnyKey;
impl KeyLookup for AnyKey {
    fn ed25519_of(&self, _id: &MemberId) -> Option<[u8; 32]> {
        Some(me().public().ed25519)
    }
}

fuzz_target!(|data: &[u8]| {
    // Versions 1 and 2 (pending chunks after the record).
    let Ok((s, pending)) = format::decode_sidecar(data) else {
        return;
    };
    for (idx, c) in &pending {
        let _ = (s.chunks.get(*idx as usize), c.len());
    }
    let _ = access::replay(&s.file_id, &s.access, &AnyKey);
    for e in &s.access {
        let _ = e.decode_unverified();
    }
    let me = me();
    for ek in &s.keys {
        for w in &ek.wraps {
            let _ = wrap::unwrap(w, me, &s.file_id, ek.epoch);
        }
    }
    if let Ok(m) = s.manifest.decode_unverified() {
        let _ = m.chunk_count.checked_mul(1 << m.chunk_log2.min(63));
    }
    let _ = s.manifest.hash();
    let _ = format::chunks_root(&s.chunks);
});
