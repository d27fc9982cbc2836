//! Durable commits (`fsync`) that overwrite a few committed chunks carry the new
//! chunks in the sidecar instead of a separate journal (FORMAT.md, "Pending
//! chunks"): the sidecar is the one file synced. These tests play the crash
//! between that sidecar and the chunks reaching their slots (the slots put back
//! to the old ciphertext), and check that readers then get the new content, never
//! the old one or a mix; that a damaged pending chunk is an integrity failure;
//! and that later commits and the settle step fold the chunks into the content
//! file and shrink the sidecar back to a version-1 sidecar.

mod common;

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use coffer::crypto::Identity;
use coffer::format;
use coffer::store::Durability;
use coffer::vault::verify::VerifyOptions;
use coffer::vault::Vault;
use coffer::Error;
use common::pattern;

/// Tests here set XDG_STATE_HOME (per-machine state); run them one at a time.
static ENV_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

const CHUNK: usize = 65_536;
const SLOT: u64 = 65_536 + 40;
const HEADER: u64 = 32;
const SEED: [u8; 32] = [57; 32];

struct World {
    dir: tempfile::TempDir,
    vault: Vault,
    backing: PathBuf,
    sidecar: PathBuf,
    journal: PathBuf,
}

/// A vault holding `f` (four full chunks and a short fifth), committed durably.
fn world(model: &[u8]) -> World {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("XDG_STATE_HOME", dir.path().join("state"));
    let vault = Vault::init(
        &dir.path().join("vault"),
        Identity::from_seed(SEED),
        "alice",
    )
    .unwrap();
    // As in a mount (commands leave it off: nothing would fold the chunks back).
    vault.carry_pending.store(true, Ordering::Relaxed);
    let tree = vault.paths.tree();
    let id = vault.read_dir_record(&tree).unwrap().dir_id;
    let backing = tree.join(vault.encrypt_name(&id, "f".as_ref()).unwrap().name);
    let mut f = vault.create_file(&backing, 0o644, "f".into()).unwrap();
    f.write(&vault, 0, model).unwrap();
    f.commit(&vault, Durability::Sync).unwrap();
    let file_id = f.file_id;
    drop(f);
    let sidecar = vault.paths.sidecar(&file_id);
    let journal = vault.paths.journal(&file_id);
    World {
        dir,
        vault,
        backing,
        sidecar,
        journal,
    }
}

impl World {
    /// A second process on this machine: no caches shared with `self.vault`.
    fn other_process(&self) -> Vault {
        let v = Vault::open(
            &self.dir.path().join("vault"),
            Identity::from_seed(SEED),
            false,
        )
        .unwrap();
        v.carry_pending.store(true, Ordering::Relaxed);
        v
    }

    fn slot(&self, idx: u64) -> Vec<u8> {
        let mut buf = vec![0u8; SLOT as usize];
        let f = std::fs::File::open(&self.backing).unwrap();
        let n = f.read_at(&mut buf, HEADER + idx * SLOT).unwrap();
        buf.truncate(n);
        buf
    }

    fn put_slot(&self, idx: u64, bytes: &[u8]) {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.backing)
            .unwrap();
        f.write_all_at(bytes, HEADER + idx * SLOT).unwrap();
    }

    /// The sidecar record's version and its pending chunk indices.
    fn pending(&self) -> (u16, Vec<u64>) {
        let bytes = std::fs::read(&self.sidecar).unwrap();
        let (sidecar, pending) = format::decode_sidecar(&bytes).unwrap();
        (
            sidecar.format_version,
            pending.iter().map(|(i, _)| *i).collect(),
        )
    }

    fn read_all(&self, vault: &Vault) -> coffer::Result<Vec<u8>> {
        let mut f = vault.open_file_readonly(&self.backing, "f".into())?;
        let size = f.size();
        f.read(0, size as usize)
    }
}

#[test]
fn a_synced_overwrite_is_carried_in_the_sidecar_and_survives_lost_slot_writes() {
    let _g = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut model = pattern(1, 4 * CHUNK + 5000);
    let w = world(&model);
    assert_eq!(w.pending(), (1, vec![]), "a first commit writes in place");
    let old_slot1 = w.slot(1);
    let old_slot3 = w.slot(3);

    // Overwrite 4 KiB in chunk 1 and fsync: the sidecar carries chunk 1, no
    // journal file is left, and the slot holds the new chunk.
    let mut f = w.vault.open_file(&w.backing, "f".into()).unwrap();
    let patch = pattern(2, 4096);
    f.write(&w.vault, (CHUNK + 100) as u64, &patch).unwrap();
    model[CHUNK + 100..CHUNK + 100 + 4096].copy_from_slice(&patch);
    f.commit(&w.vault, Durability::Sync).unwrap();
    assert_eq!(w.pending(), (2, vec![1]));
    assert!(
        !w.journal.exists(),
        "no journal beside a sidecar that carries the chunks"
    );
    assert_ne!(w.slot(1), old_slot1);

    // A second synced overwrite (chunk 3) carries chunk 1 along: its slot
    // write was never synced.
    let patch = pattern(3, 100);
    f.write(&w.vault, (3 * CHUNK + 7) as u64, &patch).unwrap();
    model[3 * CHUNK + 7..3 * CHUNK + 107].copy_from_slice(&patch);
    f.commit(&w.vault, Durability::Sync).unwrap();
    assert_eq!(w.pending(), (2, vec![1, 3]));
    drop(f);

    // The crash: both slots lost their writes (old ciphertext, which the new
    // chunk list does not name). Another process reads the new content.
    let new_slot1 = w.slot(1);
    w.put_slot(1, &old_slot1);
    w.put_slot(3, &old_slot3);
    let other = w.other_process();
    assert!(
        w.read_all(&other).unwrap() == model,
        "new content from the sidecar"
    );
    // verify: a warning (an interrupted commit), not a failure.
    let r = other.verify_with(VerifyOptions { deep: true }, &|_, _| {});
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert!(
        r.warnings
            .iter()
            .any(|x| x.problem.contains("chunk 1 is pending")),
        "{:?}",
        r.warnings
    );

    // A damaged pending chunk with its slot lost: an integrity failure, never
    // the old bytes.
    let genuine = std::fs::read(&w.sidecar).unwrap();
    let mut bad = genuine.clone();
    let at = bad.len() - 200; // inside the last pending chunk (chunk 3)
    bad[at] ^= 1;
    std::fs::write(&w.sidecar, &bad).unwrap();
    let other = w.other_process();
    match w.read_all(&other) {
        Err(Error::Integrity { .. }) => {}
        other => panic!(
            "a damaged pending chunk must fail, got {:?}",
            other.map(|v| v.len())
        ),
    }
    std::fs::write(&w.sidecar, &genuine).unwrap();

    // The next (lazy) commit by a writer puts the chunks into their slots,
    // syncs them and drops them from the sidecar.
    let other = w.other_process();
    let mut f = other.open_file(&w.backing, "f".into()).unwrap();
    let patch = pattern(4, 10);
    f.write(&other, 0, &patch).unwrap();
    model[..10].copy_from_slice(&patch);
    f.commit(&other, Durability::Lazy).unwrap();
    drop(f);
    assert_eq!(w.pending(), (1, vec![]), "dropped once in their slots");
    assert_eq!(w.slot(1), new_slot1);
    assert!(w.read_all(&w.other_process()).unwrap() == model);
}

#[test]
fn settling_folds_pending_chunks_into_the_content_file() {
    let _g = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut model = pattern(5, 2 * CHUNK);
    let w = world(&model);
    let mut f = w.vault.open_file(&w.backing, "f".into()).unwrap();
    let patch = pattern(6, 300);
    f.write(&w.vault, 5, &patch).unwrap();
    model[5..305].copy_from_slice(&patch);
    f.commit(&w.vault, Durability::Sync).unwrap();
    assert_eq!(w.pending(), (2, vec![0]));
    assert!(f.has_pending());
    f.settle_pending(&w.vault).unwrap();
    assert!(!f.has_pending());
    assert_eq!(w.pending(), (1, vec![]));
    // Same version, now served from the slot alone.
    assert!(w.read_all(&w.other_process()).unwrap() == model);
    assert!(f.read(0, model.len()).unwrap() == model);
}

#[test]
fn a_large_synced_overwrite_goes_through_the_journal() {
    let _g = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut model = pattern(7, 40 * CHUNK);
    let w = world(&model);
    let mut f = w.vault.open_file(&w.backing, "f".into()).unwrap();
    // 2.5 MiB over committed chunks: more than a sidecar carries.
    let patch = pattern(8, 40 * CHUNK);
    f.write(&w.vault, 0, &patch).unwrap();
    model.copy_from_slice(&patch);
    f.commit(&w.vault, Durability::Sync).unwrap();
    drop(f);
    assert_eq!(w.pending(), (1, vec![]));
    assert!(
        !w.journal.exists(),
        "the journal goes once its chunks are synced"
    );
    assert!(w.read_all(&w.other_process()).unwrap() == model);
}

/// Commits that are not synced (a flusher's, a close's) keep the journal: their
/// sidecar carries nothing.
#[test]
fn a_lazy_overwrite_leaves_a_version_1_sidecar() {
    let _g = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut model = pattern(9, CHUNK + 10);
    let w = world(&model);
    let mut f = w.vault.open_file(&w.backing, "f".into()).unwrap();
    f.write(&w.vault, 3, b"xyz").unwrap();
    model[3..6].copy_from_slice(b"xyz");
    f.commit(&w.vault, Durability::Lazy).unwrap();
    drop(f);
    assert_eq!(w.pending(), (1, vec![]));
    assert!(w.read_all(&w.other_process()).unwrap() == model);
}

/// Through a mount: right after an `fsync`'ed overwrite the sidecar carries the
/// chunk (version 2); once the file has been idle for a second the mount's
/// flusher folds it into the content file (version 1 again), with the file
/// still open; the content is the new one throughout and after a remount.
#[test]
fn the_mount_settles_pending_chunks_of_an_idle_file() {
    use std::io::Write;
    require_fuse!();
    // The other tests here set XDG_STATE_HOME while this one spawns commands.
    let _g = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let v = common::TestVault::new(&["alice"]);
    let m = v.mount("alice");
    let path = m.join("db");
    let mut model = pattern(10, 3 * CHUNK);
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&model).unwrap();
    f.sync_all().unwrap();
    let patch = pattern(11, 4096);
    f.write_all_at(&patch, 70_000).unwrap();
    f.sync_all().unwrap();
    model[70_000..70_000 + 4096].copy_from_slice(&patch);
    let sidecars = sidecar_files(&v.root);
    assert_eq!(sidecars.len(), 1, "{sidecars:?}");
    let version = || {
        let bytes = std::fs::read(&sidecars[0]).unwrap();
        format::decode_sidecar(&bytes).unwrap().0.format_version
    };
    assert_eq!(
        version(),
        2,
        "the fsync'ed overwrite is carried in the sidecar"
    );
    let settled = common::eventually(std::time::Duration::from_secs(8), || {
        (version() == 1).then_some(())
    });
    assert!(
        settled.is_some(),
        "the flusher never settled the pending chunk"
    );
    assert!(std::fs::read(&path).unwrap() == model);
    drop(f);
    m.unmount();
    let m = v.mount("alice");
    assert!(std::fs::read(m.join("db")).unwrap() == model);
    m.unmount();
}

/// A rollback journal's pattern (sqlite): a new file written and `fsync`'ed,
/// then a few bytes of it overwritten and `fsync`'ed again. The first sidecar
/// has room for the overwrite's pending chunk, so the second commit is made in
/// place (same sidecar inode: no second file, rename and directory sync), and
/// the content is the new one, in this mount and the next.
#[test]
fn a_file_synced_when_new_takes_its_next_synced_overwrite_in_place() {
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;
    require_fuse!();
    let _g = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let v = common::TestVault::new(&["alice"]);
    let m = v.mount("alice");
    let path = m.join("db-journal");
    let mut model = pattern(12, 8 * 1024 + 600);
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&model).unwrap();
    f.sync_all().unwrap();
    let sidecars = sidecar_files(&v.root);
    assert_eq!(sidecars.len(), 1, "{sidecars:?}");
    let inode = std::fs::metadata(&sidecars[0]).unwrap().ino();
    f.write_all_at(b"header with a record count", 0).unwrap();
    model[..26].copy_from_slice(b"header with a record count");
    f.sync_all().unwrap();
    assert_eq!(
        std::fs::metadata(&sidecars[0]).unwrap().ino(),
        inode,
        "the synced overwrite replaced the sidecar instead of writing it in place"
    );
    let bytes = std::fs::read(&sidecars[0]).unwrap();
    assert_eq!(
        format::decode_sidecar(&bytes).unwrap().0.format_version,
        2,
        "the overwrite is carried in the sidecar"
    );
    drop(f);
    assert!(std::fs::read(&path).unwrap() == model);
    m.unmount();
    let m = v.mount("alice");
    assert!(std::fs::read(m.join("db-journal")).unwrap() == model);
}

/// Every sidecar file of the vault at `root`.
fn sidecar_files(root: &std::path::Path) -> Vec<PathBuf> {
    std::fs::read_dir(root.join("meta"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "meta"))
        .collect()
}
