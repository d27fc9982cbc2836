//! A whole access list (as stored in a sidecar), replayed: chain, order,
//! signer and rights checks on hostile entries.
#![no_main]
use coffer::access::{self, KeyLookup};
use coffer::crypto::{Identity, MemberId};
use coffer::format::{self, AccessEntry, Signed};
use libfuzzer_sys::fuzz_target;

use std::sync::OnceLock;

/// Keys of the members whose ids start with 0, 2, 4 or 6.
fn key(b: u8) -> Option<[u8; 32]> {
    static KEYS: OnceLock<Vec<[u8; 32]>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        (0..4u8)
            .map(|i| Identity::from_seed([i * 2; 32]).public().ed25519)
            .collect()
    });
    (b % 2 == 0).then(|| keys.get(b as usize / 2).copied()).flatten()
}

struct Keys;
impl KeyLookup for Keys {
    fn ed25519_of(&self, id: &MemberId) -> Option<[u8; 32]> {
        key(id.0[0])
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let file_id: [u8; 16] = data[..16].try_into().unwrap();
    if let Ok(list) =
        format::from_bytes::<Vec<Signed<AccessEntry>>>("access list", 1 << 20, &data[16..])
    {
        let _ = access::replay(&file_id, &list, &Keys);
    }
});
