//! `verify` on contents: files larger than one segment (checked in parallel
//! segments) report the first bad chunk, in both modes; and what `--deep` adds:
//! a chunk that matches its signed hash but does not decrypt (which only a
//! member holding update can produce) fails `--deep` only.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use coffer::crypto::Identity;
use coffer::format;
use coffer::store::Durability;
use coffer::vault::verify::{VerifyOptions, VerifyReport};
use coffer::vault::Vault;

/// Tests here set XDG_STATE_HOME (per-machine state); run them one at a time.
static ENV_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

const DEEP: VerifyOptions = VerifyOptions { deep: true };
/// 64 KiB chunks plus 40 bytes of nonce and tag.
const SLOT: u64 = 65_536 + 40;
const HEADER: u64 = 32;

fn content(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9u32;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A vault holding `big.bin` (`len` bytes); returns it with the file's backing path.
fn vault_with(dir: &Path, len: usize) -> (Vault, PathBuf, [u8; 16]) {
    std::env::set_var("XDG_STATE_HOME", dir.join("state"));
    let v = Vault::init(&dir.join("vault"), Identity::from_seed([31; 32]), "alice").unwrap();
    let tree = v.paths.tree();
    let id = v.read_dir_record(&tree).unwrap().dir_id;
    let b = tree.join(v.encrypt_name(&id, "big.bin".as_ref()).unwrap().name);
    let mut f = v.create_file(&b, 0o644, "big.bin".into()).unwrap();
    f.write(&v, 0, &content(len)).unwrap();
    f.commit(&v, Durability::Lazy).unwrap();
    let file_id = f.file_id;
    drop(f);
    (v, b, file_id)
}

fn failures(r: &VerifyReport) -> Vec<String> {
    r.failures.iter().map(|f| f.problem.clone()).collect()
}

fn flip_chunk(backing: &Path, idx: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(backing)
        .unwrap();
    let at = HEADER + idx * SLOT + 1000;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x04], at).unwrap();
}

#[test]
fn large_file_reports_its_first_bad_chunk_in_both_modes() {
    let _serial = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    // 320 chunks: three segments of up to 127 chunks.
    let len = 320 * 65_536 - 123;
    let (v, backing, _) = vault_with(dir.path(), len);
    let r = v.verify(&|_, _| {});
    assert!(r.ok(), "{:?}", r.failures);
    assert_eq!((r.files, r.bytes, r.decrypted_files), (1, len as u64, 0));
    let r = v.verify_with(DEEP, &|_, _| {});
    assert!(r.ok(), "{:?}", r.failures);
    assert_eq!(r.decrypted_files, 1);

    // Progress reaches the whole stored size.
    let last = std::sync::Mutex::new((0u64, 0u64));
    v.verify(&|done, total| {
        let mut l = last.lock().unwrap();
        assert!(done <= total);
        *l = (*l).max((done, total));
    });
    let (done, total) = *last.lock().unwrap();
    assert_eq!(done, total);
    assert_eq!(total, std::fs::metadata(&backing).unwrap().len());

    // Bad chunks in the second and third segments: the first one is reported.
    flip_chunk(&backing, 300);
    flip_chunk(&backing, 200);
    let want =
        vec!["chunk 200 does not match the signed manifest (modified, swapped or rolled back)"];
    for opts in [VerifyOptions::default(), DEEP] {
        let r = v.verify_with(opts, &|_, _| {});
        assert_eq!(failures(&r), want, "{opts:?}");
        assert_eq!(r.failures[0].path, "/big.bin");
        assert_eq!(r.decrypted_files, 0);
    }
}

#[test]
fn truncated_large_file_is_reported_once() {
    let _serial = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (v, backing, _) = vault_with(dir.path(), 300 * 65_536);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&backing)
        .unwrap();
    f.set_len(HEADER + 150 * SLOT).unwrap();
    let r = v.verify(&|_, _| {});
    assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
    assert!(
        failures(&r)[0].starts_with("content file truncated"),
        "{:?}",
        r.failures
    );
}

/// alice (who holds update) signs a version whose chunk 1 is random bytes: the
/// signed chunk list covers them, so only decrypting shows they are not a chunk.
#[test]
fn chunk_signed_by_an_updater_that_does_not_decrypt_fails_deep_only() {
    let _serial = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (v, backing, file_id) = vault_with(dir.path(), 3 * 65_536);
    let side_path = v.paths.sidecar(&file_id);
    let (mut side, _) = format::decode_sidecar(&std::fs::read(&side_path).unwrap()).unwrap();
    let garbage = content(65_536 + 40 + 7)[7..].to_vec();
    let data = std::fs::OpenOptions::new()
        .write(true)
        .open(&backing)
        .unwrap();
    data.write_all_at(&garbage, HEADER + SLOT).unwrap();
    let c = side.chunks[1].as_mut().unwrap();
    c.hash = *blake3::hash(&garbage).as_bytes();
    let old = side.manifest.decode_unverified().unwrap();
    side.manifest = coffer::format::Signed::sign(
        &coffer::history::manifest_after(
            &Identity::from_seed([31; 32]),
            Some(&side.manifest),
            old.version,
            file_id,
            old.chunk_log2,
            old.size,
            &side.chunks,
            old.epoch,
            old.key_commits.clone(),
            old.access_head,
        ),
        &Identity::from_seed([31; 32]),
    );
    std::fs::write(&side_path, format::encode_file(format::SIDECAR, &side)).unwrap();

    let r = v.verify(&|_, _| {});
    assert!(
        r.ok(),
        "the default check trusts what the signer hashed: {:?}",
        r.failures
    );
    let r = v.verify_with(DEEP, &|_, _| {});
    assert_eq!(failures(&r), vec!["chunk 1 fails authentication"]);
    assert_eq!(r.decrypted_files, 0);
    // Reading it is an integrity error, never wrong data.
    let mut f = v.open_file_readonly(&backing, "big.bin".into()).unwrap();
    assert!(f.read(0, 3 * 65_536).is_err());
}
