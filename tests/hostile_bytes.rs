//! Hostile bytes: every decoder must reject garbage and mutated records with an
//! error, never a panic or an unbounded allocation. Random inputs plus single-
//! and multi-byte mutations of valid records (proptest). The long-running
//! version of this is `scripts/fuzz.sh`.

use coffer::crypto::names::{NameCipher, NameKind};
use coffer::crypto::{Identity, PublicIdentity, SecretKey};
use coffer::format::data::DataHeader;
use coffer::format::identity::IdentityFile;
use coffer::format::{
    self, DirRecord, Journal, LongName, MemberRecord, ResealJournal, ResealedChunk, Sidecar,
    Signed, VaultConfig,
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
    let _ = format::decode_sidecar(bytes);
    let _ = format::decode_file::<Journal>(format::JOURNAL, bytes);
    let _ = format::decode_file::<ResealJournal>(format::RESEAL_JOURNAL, bytes);
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

/// Regenerates the seed corpora of the cargo-fuzz targets (fuzz/corpus/<target>/
/// seed-*) from the committed fixture vault and a few built records:
/// `cargo test --release --test hostile_bytes -- --ignored write_fuzz_seeds`.
/// Seeds that need a key use the fixed keys the fuzz targets use, so the
/// fuzzer starts from inputs that get past authentication.
#[test]
#[ignore = "writes fuzz/corpus; run by hand after a format change"]
fn write_fuzz_seeds() {
    use coffer::history::log::{CHECKPOINT, LOG_HEADER_LEN};
    use std::path::{Path, PathBuf};

    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixture = repo.join("tests/fixtures/vault-v1");
    let vault = fixture.join("vault");
    let corpus = repo.join("fuzz/corpus");
    let mut seeds: std::collections::BTreeMap<&str, Vec<Vec<u8>>> = Default::default();
    let mut add =
        |target: &'static str, bytes: Vec<u8>| seeds.entry(target).or_default().push(bytes);

    fn files(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        v.sort();
        for p in v {
            let ft = std::fs::symlink_metadata(&p).unwrap().file_type();
            if ft.is_dir() {
                files(&p, out);
            } else if ft.is_file() {
                out.push(p);
            }
        }
    }
    let mut all = Vec::new();
    files(&vault, &mut all);
    let name_of = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    let mut log_file = Vec::new();
    let mut head_file = Vec::new();
    for p in &all {
        let bytes = std::fs::read(p).unwrap();
        let name = name_of(p);
        let rel = p.strip_prefix(&vault).unwrap();
        if name == "coffer.vault" {
            add("vault_config", bytes);
        } else if name.ends_with(".member") {
            add("member_record", bytes);
        } else if name == ".coffer-dir" {
            add("dir_record", bytes);
        } else if name.ends_with(".name") {
            add("long_name", bytes);
        } else if name.ends_with(".head") {
            head_file = bytes.clone();
            add("checkpoint", bytes);
        } else if name.ends_with(".log") {
            // Each length-prefixed record is one log entry.
            let mut pos = LOG_HEADER_LEN;
            while pos + 4 <= bytes.len() {
                let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
                add("log_entry", bytes[pos + 4..pos + 4 + len].to_vec());
                pos += 4 + len;
            }
            log_file = bytes;
        } else if name.ends_with(".meta") {
            let (s, _) = format::decode_sidecar(&bytes).unwrap();
            add("manifest", format::to_bytes(&s.manifest));
            for e in &s.access {
                add("access_entry", format::to_bytes(e));
            }
            let mut list = s.file_id.to_vec();
            list.extend_from_slice(&format::to_bytes(&s.access));
            add("access_list", list);
            add("sidecar", bytes);
        } else if rel.starts_with("tree") && !name.starts_with('.') {
            // A content file: header and the start of its first chunk (whole when small).
            add("content_header", bytes[..bytes.len().min(8192)].to_vec());
        }
    }
    let mut whole = log_file.clone();
    whole.extend_from_slice(b"\0CP\0");
    whole.extend_from_slice(&head_file);
    add("log_file", whole);
    add("log_file", log_file);
    let _ = CHECKPOINT;
    for key in ["alice.key", "bob.key"] {
        add(
            "identity_file",
            std::fs::read(fixture.join("identities").join(key)).unwrap(),
        );
    }
    let sealed = coffer::crypto::identity::seal_seed(&[8; 32], b"passphrase").unwrap();
    add(
        "identity_file",
        format::encode_file(
            format::IDENTITY,
            &coffer::format::identity::IdentityFile {
                format_version: 1,
                name: "carol".into(),
                secret: coffer::format::identity::IdentitySecret::Passphrase(sealed),
            },
        ),
    );
    for seed in [[1u8; 32], [2; 32]] {
        add(
            "public_key",
            Identity::from_seed(seed).public().encode().into_bytes(),
        );
    }
    // Names and chunks sealed with the keys the targets use.
    let cipher = NameCipher::new(&SecretKey::from_bytes([4; 32]));
    for (kind, name) in [
        (NameKind::Entry, "report.txt".to_string()),
        (NameKind::SymlinkTarget, "../a/b".to_string()),
        (NameKind::XattrName, "user.comment".to_string()),
        (NameKind::Entry, "n".repeat(255)),
    ] {
        add("names", cipher.encrypt(kind, &[2; 16], name.as_bytes()));
        if matches!(kind, NameKind::Entry) {
            let enc = cipher.encrypt(kind, &[0; 16], name.as_bytes());
            add(
                "long_name",
                format::encode_file(
                    format::LONG_NAME,
                    &LongName {
                        format_version: 1,
                        encrypted: enc,
                    },
                ),
            );
        }
    }
    let header = DataHeader {
        format_version: 1,
        chunk_log2: 16,
        file_id: [3; 16],
    };
    let mut content = header.encode().to_vec();
    content.extend_from_slice(&coffer::crypto::chunk::seal(
        &SecretKey::from_bytes([1; 32]),
        &[3; 16],
        0,
        0,
        b"hello, fuzzer",
    ));
    add("content_header", content);
    add(
        "journal",
        format::encode_file(
            format::JOURNAL,
            &Journal {
                format_version: 1,
                file_id: [3; 16],
                manifest_hash: [4; 32],
                chunks: vec![(0, vec![5; 100]), (7, vec![6; 40])],
            },
        ),
    );
    add(
        "journal",
        format::encode_file(
            format::RESEAL_JOURNAL,
            &ResealJournal {
                format_version: 1,
                file_id: [3; 16],
                manifest_hash: [4; 32],
                epoch: 2,
                old_keys: vec![7; 80],
                chunks: vec![ResealedChunk {
                    index: 5,
                    old_epoch: 1,
                    old_nonce: [8; 24],
                    new_nonce: [9; 24],
                }],
            },
        ),
    );
    for r in valid_records() {
        let target = match &r[..4] {
            b"CFRV" => "vault_config",
            b"CFRD" => "dir_record",
            b"CFRN" => "long_name",
            _ => "content_header",
        };
        add(target, r);
    }

    for (target, list) in seeds {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for old in std::fs::read_dir(&dir).unwrap().flatten() {
            if old.file_name().to_string_lossy().starts_with("seed-") {
                std::fs::remove_file(old.path()).unwrap();
            }
        }
        for (i, bytes) in list.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:03}")), bytes).unwrap();
        }
        eprintln!("{target}: {} seeds", list.len());
    }
}
