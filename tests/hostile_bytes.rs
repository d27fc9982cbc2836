//! Hostile bytes: every decoder must reject garbage and mutated records with an
//! error, never a panic or an unbounded allocation. Random inputs plus single-
//! and multi-byte mutations of valid records (proptest). The long-running
//! version of this is `scripts/fuzz.sh`.

use coffer::crypto::names::{NameCipher, NameKind};
use coffer::crypto::{Identity, PublicIdentity, SecretKey};
use coffer::format::data::DataHeader;
use coffer::format::identity::IdentityFile;
use coffer::format::{
    self, DirRecord, Journal, LongName, MemberRecord, Sidecar, Signed, VaultConfig,
};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("COFFER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// Feeds bytes to every decoder; none may panic.
fn decode_everything(bytes: &[u8]) {
    let _ = format::decode_file::<Signed<VaultConfig>>(format::VAULT_CONFIG, bytes);
    let _ = format::decode_file::<Signed<MemberRecord>>(format::MEMBER, bytes);
    let _ = format::decode_file::<DirRecord>(format::DIR, bytes);
    let _ = format::decode_file::<Sidecar>(format::SIDECAR, bytes);
    let _ = format::decode_file::<Journal>(format::JOURNAL, bytes);
    let _ = format::decode_file::<LongName>(format::LONG_NAME, bytes);
    let _ = format::decode_file::<IdentityFile>(format::IDENTITY, bytes);
    let _ = format::decode_file::<Signed<coffer::history::log::Checkpoint>>(
        coffer::history::log::CHECKPOINT,
        bytes,
    );
    let _ = format::from_bytes::<Signed<coffer::history::log::LogEntry>>("log record", 9000, bytes);
    let _ = DataHeader::decode(bytes);
    if let Ok(s) = format::from_bytes::<Signed<coffer::format::AccessEntry>>("entry", 9000, bytes) {
        let _ = s.verify(&[7; 32]);
        let _ = s.decode_unverified();
    }
    let cipher = NameCipher::new(&SecretKey::from_bytes([4; 32]));
    let _ = cipher.decrypt(NameKind::Entry, &[0; 16], bytes);
    let _ = PublicIdentity::decode(&String::from_utf8_lossy(bytes));
    let _ = coffer::crypto::chunk::open(&SecretKey::from_bytes([1; 32]), &[0; 16], 0, 0, bytes);
}

/// Valid records of every kind, to mutate.
fn valid_records() -> Vec<Vec<u8>> {
    let id = Identity::from_seed([9; 32]);
    let config = VaultConfig {
        format_version: 1,
        vault_id: [1; 16],
        created_unix: 5,
        admin: *id.public(),
        chunk_log2: 16,
    };
    let dir = DirRecord {
        format_version: 1,
        dir_id: [2; 16],
        defaults: None,
    };
    let header = DataHeader {
        format_version: 1,
        chunk_log2: 16,
        file_id: [3; 16],
    };
    vec![
        format::encode_file(format::VAULT_CONFIG, &Signed::sign(&config, &id)),
        format::encode_file(format::DIR, &dir),
        header.encode().to_vec(),
        format::encode_file(
            format::LONG_NAME,
            &LongName {
                format_version: 1,
                encrypted: vec![5; 40],
            },
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        decode_everything(&bytes);
        // With each magic in front, so decoding gets past the first check.
        for magic in [b"CFRV", b"CFRM", b"CFRD", b"CFRS", b"CFRJ", b"CFRN", b"CFRI", b"CFRH", b"CFRC"] {
            let mut v = magic.to_vec();
            v.extend_from_slice(&bytes);
            decode_everything(&v);
        }
    }

    #[test]
    fn mutated_records_never_panic(which in 0usize..4, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in any::<usize>()) {
        let mut rec = valid_records().swap_remove(which);
        for (at, x) in flips {
            let i = at % rec.len();
            rec[i] ^= x | 1;
        }
        decode_everything(&rec);
        let n = cut % (rec.len() + 1);
        decode_everything(&rec[..n]);
    }

    #[test]
    fn huge_length_prefixes_are_bounded(len in any::<u32>()) {
        // A varint claiming a huge vector must fail without allocating it.
        let mut v = b"CFRS".to_vec();
        v.push(1);
        v.extend_from_slice(&[0x80 | (len as u8 & 0x7f), 0xff, 0xff, 0xff, 0x0f]);
        decode_everything(&v);
    }
}
