//! The content read/write path at the library level against a plain byte
//! model: small writes into committed chunks (whose loading is put off to the
//! commit), reads that span several chunks and holes, truncates, lazy and
//! synced commits, and reopening; then tampering with one chunk must fail a
//! small read inside it and a read spanning it, and leave its neighbours
//! readable.

use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use coffer::crypto::Identity;
use coffer::store::Durability;
use coffer::vault::Vault;
use coffer::Error;

const CHUNK: u64 = 64 * 1024;

struct World {
    _dir: tempfile::TempDir,
    vault: Vault,
    path: PathBuf,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("XDG_STATE_HOME", dir.path().join("state"));
    let root = dir.path().join("vault");
    let vault = Vault::init(&root, Identity::from_seed([41; 32]), "alice").unwrap();
    let path = root.join("tree").join("f");
    World {
        _dir: dir,
        vault,
        path,
    }
}

/// xorshift: reproducible without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.next() as u8).collect()
}

/// Writes `data` at `off` to the file and to its byte model.
fn write_both(
    vault: &Vault,
    f: &mut coffer::vault::OpenFile,
    model: &mut Vec<u8>,
    off: u64,
    data: &[u8],
) {
    f.write(vault, off, data).unwrap();
    let end = off as usize + data.len();
    model.resize(model.len().max(end), 0);
    model[off as usize..end].copy_from_slice(data);
}

fn check_read(f: &mut coffer::vault::OpenFile, model: &[u8], off: u64, len: usize) {
    let got = f.read(off, len).unwrap();
    let lo = (off as usize).min(model.len());
    let hi = (off as usize + len).min(model.len());
    assert_eq!(got.len(), hi - lo, "read length at {off}+{len}");
    assert!(got == model[lo..hi], "read content at {off}+{len}");
}

#[test]
fn random_small_writes_reads_and_commits_match_a_model() {
    let w = world();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut f = w.vault.create_file(&w.path, 0o644, "f".into()).unwrap();
    // Six committed chunks and a short seventh, with a hole in chunk 2.
    let mut model = bytes(&mut rng, (6 * CHUNK + 1000) as usize);
    model[(2 * CHUNK) as usize..(3 * CHUNK) as usize].fill(0);
    f.write(&w.vault, 0, &model).unwrap();
    f.commit(&w.vault, Durability::Sync).unwrap();
    for round in 0..40 {
        for _ in 0..(1 + rng.below(12)) {
            match rng.below(10) {
                0..=5 => {
                    // small writes, mostly inside committed chunks
                    let off = rng.below(model.len() as u64 + 5000);
                    let n = 1 + rng.below(5000) as usize;
                    let data = bytes(&mut rng, n);
                    write_both(&w.vault, &mut f, &mut model, off, &data);
                }
                6 => {
                    let size = rng.below(model.len() as u64 + CHUNK);
                    f.truncate(&w.vault, size).unwrap();
                    model.resize(size as usize, 0);
                }
                _ => {
                    let off = rng.below(model.len() as u64 + 100);
                    let len = 1 + rng.below(3 * CHUNK) as usize;
                    check_read(&mut f, &model, off, len);
                }
            }
        }
        assert_eq!(f.size(), model.len() as u64);
        match round % 4 {
            0 => f.commit(&w.vault, Durability::Lazy).unwrap(),
            1 => f.commit(&w.vault, Durability::Sync).unwrap(),
            2 => {}
            _ => {
                f.commit(&w.vault, Durability::Lazy).unwrap();
                f = w.vault.open_file(&w.path, "f".into()).unwrap();
            }
        }
        check_read(&mut f, &model, 0, model.len() + 10);
    }
    f.commit(&w.vault, Durability::Sync).unwrap();
    let mut g = w.vault.open_file(&w.path, "f".into()).unwrap();
    check_read(&mut g, &model, 0, model.len());
}

/// Large writes: whole new chunks are sealed and written to their slots before
/// the commit that names them ("streamed"), then may be read back, partly
/// rewritten, truncated away or regrown before that commit. Every read and every
/// reopen after a commit matches the model; another process sees the committed
/// state only.
#[test]
fn streamed_chunks_read_rewrite_truncate_and_commit_like_a_model() {
    let w = world();
    let mut rng = Rng(0x51ed_2705);
    let mut f = w.vault.create_file(&w.path, 0o644, "f".into()).unwrap();
    let mut model: Vec<u8> = Vec::new();
    let mut committed: Vec<u8> = Vec::new();
    for round in 0..24 {
        for _ in 0..(1 + rng.below(6)) {
            match rng.below(12) {
                0..=4 => {
                    // Appends of up to 1.5 MiB, at the end or a little past it.
                    let off = model.len() as u64 + rng.below(3) * rng.below(CHUNK);
                    let n = 1 + rng.below(24 * CHUNK) as usize;
                    let mut data = bytes(&mut rng, n);
                    if rng.below(4) == 0 {
                        // All-zero whole chunks become holes.
                        let z = (2 * CHUNK as usize).min(data.len());
                        data[..z].fill(0);
                    }
                    write_both(&w.vault, &mut f, &mut model, off, &data);
                }
                5..=6 => {
                    // A small rewrite anywhere (streamed chunks included).
                    let off = rng.below(model.len() as u64 + 100);
                    let n = 1 + rng.below(9000) as usize;
                    let data = bytes(&mut rng, n);
                    write_both(&w.vault, &mut f, &mut model, off, &data);
                }
                7 => {
                    let size = rng.below(model.len() as u64 + CHUNK);
                    f.truncate(&w.vault, size).unwrap();
                    model.resize(size as usize, 0);
                }
                _ => {
                    let off = rng.below(model.len() as u64 + 100);
                    let len = 1 + rng.below(20 * CHUNK) as usize;
                    check_read(&mut f, &model, off, len);
                }
            }
        }
        // Another process sees the last commit, not what is streamed.
        {
            let other =
                Vault::open(&w.vault.paths.root, Identity::from_seed([41; 32]), true).unwrap();
            if let Ok(mut g) = other.open_file_readonly(&w.path, "f".into()) {
                check_read(&mut g, &committed, 0, committed.len() + 10);
            }
        }
        match round % 3 {
            0 => f.commit(&w.vault, Durability::Lazy).unwrap(),
            1 => f.commit(&w.vault, Durability::Sync).unwrap(),
            _ => {
                f.commit(&w.vault, Durability::Lazy).unwrap();
                f = w.vault.open_file(&w.path, "f".into()).unwrap();
            }
        }
        committed = model.clone();
        check_read(&mut f, &model, 0, model.len() + 10);
        assert_eq!(
            std::fs::metadata(&w.path).unwrap().len(),
            w.vault.layout().stored_len(model.len() as u64),
            "the content file is exactly as long as its committed size needs"
        );
    }
}

#[test]
fn a_tampered_chunk_fails_small_and_spanning_reads() {
    let w = world();
    let mut rng = Rng(77);
    let mut f = w.vault.create_file(&w.path, 0o644, "f".into()).unwrap();
    let model = bytes(&mut rng, (4 * CHUNK) as usize);
    f.write(&w.vault, 0, &model).unwrap();
    f.commit(&w.vault, Durability::Sync).unwrap();
    drop(f);
    // Flip one ciphertext byte of chunk 2 (past the content file's header).
    let data = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&w.path)
        .unwrap();
    let slot = CHUNK + 40; // nonce and tag around each chunk
    let at = coffer::format::data::HEADER_LEN + 2 * slot + 1000;
    let mut b = [0u8; 1];
    data.read_exact_at(&mut b, at).unwrap();
    data.write_all_at(&[b[0] ^ 0x10], at).unwrap();
    let mut f = w.vault.open_file(&w.path, "f".into()).unwrap();
    for (off, len) in [(2 * CHUNK + 4096, 4096), (CHUNK, 3 * CHUNK as usize)] {
        match f.read(off, len) {
            Err(Error::Integrity { .. }) => {}
            other => panic!("read {off}+{len} of a tampered chunk: {other:?}"),
        }
    }
    check_read(&mut f, &model, CHUNK + 10, 5000);
    check_read(&mut f, &model, 3 * CHUNK, CHUNK as usize);
}

/// A read planned before a commit and run after it (as a FUSE read runs
/// without the file's lock while another request commits): the chunks the
/// commit rewrote in their slots no longer match the plan's hashes, so the
/// run leaves them to `finish_read`, which reads the new version; the chunks
/// the commit left alone come from the plan. Never bytes of neither version.
#[test]
fn a_read_planned_before_a_commit_yields_whole_chunks_after_it() {
    let w = world();
    let mut rng = Rng(7);
    let old = bytes(&mut rng, 3 * CHUNK as usize);
    let mut f = w.vault.create_file(&w.path, 0o644, "f".into()).unwrap();
    f.write(&w.vault, 0, &old).unwrap();
    f.commit(&w.vault, Durability::Lazy).unwrap();

    let plan = f.plan_read(0, old.len()).unwrap();
    // Chunk 1 is overwritten and committed (journaled: its slot is rewritten
    // after the commit point) between the plan and its run.
    let new1 = bytes(&mut rng, CHUNK as usize);
    f.write(&w.vault, CHUNK, &new1).unwrap();
    f.commit(&w.vault, Durability::Lazy).unwrap();

    let done = match plan.run().into_complete() {
        Ok(_) => panic!("chunk 1's slot changed under the plan: the run cannot verify it"),
        Err(rest) => rest,
    };
    let got = f.finish_read(done).unwrap();
    let mut want = old.clone();
    want[CHUNK as usize..2 * CHUNK as usize].copy_from_slice(&new1);
    assert_eq!(got, want);

    // A plan run with nothing in between needs no second look.
    let plan = f.plan_read(0, want.len()).unwrap();
    match plan.run().into_complete() {
        Ok(bytes) => assert_eq!(bytes, want),
        Err(_) => panic!("nothing changed: every chunk verifies without the lock"),
    }
}
