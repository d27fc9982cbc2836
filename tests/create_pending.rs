//! A new file's sidecar is written by its first commit, not at create
//! (docs/FORMAT.md, "Created, not yet written"). Until then nobody but the
//! creating process may open it; a creation interrupted by a crash is
//! recovered by its creator as an empty file; and a missing sidecar is still
//! tampering whenever the file had a version anyone could rely on.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use coffer::crypto::Identity;
use coffer::format::data::DataHeader;
use coffer::store::Durability;
use coffer::vault::Vault;
use coffer::Error;

/// Tests here set XDG_STATE_HOME (per-machine state); run them one at a time.
static ENV_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

const ALICE: [u8; 32] = [51; 32];
const BOB: [u8; 32] = [52; 32];

struct World {
    dir: tempfile::TempDir,
    root: PathBuf,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var("XDG_STATE_HOME", dir.path().join("state"));
        let root = dir.path().join("vault");
        let alice = Vault::init(&root, Identity::from_seed(ALICE), "alice").unwrap();
        alice
            .add_member("bob", Identity::from_seed(BOB).public())
            .unwrap();
        World { dir, root }
    }

    /// Another process of `seed` on this machine (its own open file
    /// descriptions, so flock sees it as someone else).
    fn open(&self, seed: [u8; 32]) -> Vault {
        Vault::open(&self.root, Identity::from_seed(seed), false).unwrap()
    }

    /// A process on a machine that has never seen this vault.
    fn open_elsewhere(&self, seed: [u8; 32], machine: &str) -> Vault {
        std::env::set_var("XDG_STATE_HOME", self.dir.path().join(machine));
        Vault::open(&self.root, Identity::from_seed(seed), false).unwrap()
    }

    /// The backing path of `name` in the root directory (an encrypted name,
    /// as the mount makes it, so `verify` can walk the tree).
    fn path(&self, v: &Vault, name: &str) -> PathBuf {
        let tree = v.paths.tree();
        let dir_id = v.read_dir_record(&tree).unwrap().dir_id;
        tree.join(v.encrypt_name(&dir_id, name.as_ref()).unwrap().name)
    }
}

fn open(v: &Vault, p: &Path) -> Result<coffer::vault::OpenFile, Error> {
    v.open_file(p, p.display().to_string())
}

fn read_all(v: &Vault, p: &Path) -> Vec<u8> {
    let mut f = open(v, p).unwrap();
    let n = f.size() as usize;
    f.read(0, n).unwrap()
}

/// The manifest of the sidecar on disk, checked against the signer's key
/// (no cache of checked signatures in between).
fn stored_manifest(v: &Vault, file_id: &[u8; 16]) -> coffer::format::Manifest {
    let bytes = std::fs::read(v.paths.sidecar(file_id)).unwrap();
    let (sidecar, _, _) = coffer::format::records::decode_sidecar_file(&bytes).unwrap();
    sidecar
        .manifest
        .verify(&v.me.public().ed25519)
        .expect("the stored manifest carries its writer's signature")
}

fn expect_being_created(r: Result<coffer::vault::OpenFile, Error>, who: &str) -> String {
    match r {
        Err(e @ Error::BeingCreated(_)) => {
            assert_eq!(e.exit_code(), 1, "{who}: exit code");
            assert_eq!(e.errno(), libc::EACCES, "{who}: errno in a mount");
            e.to_string()
        }
        other => panic!("{who}: want BeingCreated, got {other:?}"),
    }
}

#[test]
fn a_file_being_created_opens_for_nobody_else_until_its_first_commit() {
    let _serial = serial();
    let w = World::new();
    let creator = w.open(ALICE);
    let p = w.path(&creator, "new");
    let mut f = creator.create_file(&p, 0o644, "new".into()).unwrap();
    let sidecar = creator.paths.sidecar(&f.file_id);
    f.write(&creator, 0, b"first words").unwrap();
    assert!(!sidecar.exists(), "no sidecar before the first commit");

    // Another process of alice's, and bob: no rights exist yet.
    let alice2 = w.open(ALICE);
    let msg = expect_being_created(open(&alice2, &p), "alice, another process");
    assert!(msg.contains("being created by alice"), "{msg}");
    // Not even a writable open by the creator takes over a live creation.
    assert!(!sidecar.exists());
    let bob = w.open(BOB);
    let msg = expect_being_created(open(&bob, &p), "bob");
    assert!(msg.contains("being created by alice"), "{msg}");
    let report = bob.verify(&|_, _| {});
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.problem.contains("being created")),
        "verify warns about the file being created: {:?}",
        report.warnings
    );

    // The first commit writes the sidecar once, as version 1 with nothing
    // before it (the version held since the create was never signed or
    // stored), and logs it; another process verifies it.
    f.commit(&creator, Durability::Lazy).unwrap();
    assert!(sidecar.exists());
    assert_eq!(f.manifest().version, 1);
    assert_eq!(f.manifest().prev, [0; 32]);
    assert_eq!(stored_manifest(&creator, &f.file_id).size, 11);
    assert_eq!(read_all(&alice2, &p), b"first words");
    let g = open(&bob, &p).unwrap();
    assert!(!g.can_read(&bob), "bob holds no right on alice's file");
}

#[test]
fn an_open_waits_for_a_creation_that_finishes() {
    let _serial = serial();
    let w = World::new();
    let creator = w.open(ALICE);
    let p = w.path(&creator, "soon");
    let mut f = creator.create_file(&p, 0o644, "soon".into()).unwrap();
    f.write(&creator, 0, b"ready").unwrap();
    let reader = w.open(ALICE);
    let started = std::time::Instant::now();
    let got = std::thread::scope(|scope| {
        // As the kernel's release (after close returns) or the flusher would.
        scope.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(200));
            f.commit(&creator, Durability::Lazy).unwrap();
        });
        read_all(&reader, &p)
    });
    assert_eq!(got, b"ready");
    assert!(started.elapsed() >= std::time::Duration::from_millis(200));
}

#[test]
fn a_file_closed_empty_gets_its_create_version() {
    let _serial = serial();
    let w = World::new();
    let alice = w.open(ALICE);
    let p = w.path(&alice, "touched");
    let mut f = alice.create_file(&p, 0o644, "touched".into()).unwrap();
    assert!(f.is_dirty(), "a new file must still be committed");
    assert!(!f.content_dirty());
    f.commit(&alice, Durability::Sync).unwrap();
    assert!(!f.is_dirty());
    assert_eq!(f.manifest().version, 1);
    assert_eq!(stored_manifest(&alice, &f.file_id).version, 1);
    drop(f);
    let other = w.open(ALICE);
    let g = open(&other, &p).unwrap();
    assert_eq!(g.size(), 0);
    assert!(g.can_update(&other));
}

#[test]
fn an_interrupted_create_is_recovered_by_its_creator_as_an_empty_file() {
    let _serial = serial();
    let w = World::new();
    let file_id = {
        let v = w.open(ALICE);
        let p = w.path(&v, "crashed");
        let mut f = v.create_file(&p, 0o644, "crashed".into()).unwrap();
        f.write(&v, 0, &vec![7u8; 200_000]).unwrap();
        // As if a first commit had put its chunks in place and then the
        // process died (dropping the file releases its lock, as death does).
        f.data_file().write_all_at(&[0xAB; 5000], 32).unwrap();
        f.file_id
    };
    let p = w.path(&w.open(ALICE), "crashed");
    let sidecar = w.open(ALICE).paths.sidecar(&file_id);
    assert!(!sidecar.exists());

    // Bob cannot take it over, and a read-only open by alice repairs nothing.
    let bob = w.open(BOB);
    let msg = expect_being_created(open(&bob, &p), "bob");
    assert!(msg.contains("alice can open it to recover it"), "{msg}");
    let alice = w.open(ALICE);
    expect_being_created(
        alice.open_file_readonly(&p, "crashed".into()),
        "alice, read-only",
    );
    assert!(!sidecar.exists());

    // Alice's writable open recovers it: empty, hers, writable, and the
    // stray bytes past the header are gone.
    let mut f = open(&alice, &p).unwrap();
    assert!(sidecar.exists());
    assert_eq!(stored_manifest(&alice, &file_id).size, 0);
    assert_eq!(f.size(), 0);
    assert!(f.can_update(&alice));
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 32, "header only");
    f.write(&alice, 0, b"second life").unwrap();
    f.commit(&alice, Durability::Lazy).unwrap();
    assert_eq!(read_all(&w.open(ALICE), &p), b"second life");
    let report = alice.verify(&|_, _| {});
    assert!(report.failures.is_empty(), "{:?}", report.failures);
}

#[test]
fn a_missing_sidecar_is_tampering_once_the_file_had_a_version() {
    let _serial = serial();
    let w = World::new();
    let alice = w.open(ALICE);
    // Written: its version is in the history.
    let written = w.path(&alice, "written");
    let mut f = alice
        .create_file(&written, 0o644, "written".into())
        .unwrap();
    f.write(&alice, 0, b"content").unwrap();
    f.commit(&alice, Durability::Lazy).unwrap();
    let written_sidecar = alice.paths.sidecar(&f.file_id);
    drop(f);
    // Created and closed empty: seen by this machine.
    let empty = w.path(&alice, "empty");
    let mut f = alice.create_file(&empty, 0o644, "empty".into()).unwrap();
    f.commit(&alice, Durability::Lazy).unwrap();
    let empty_sidecar = alice.paths.sidecar(&f.file_id);
    drop(f);
    alice.save_state();

    std::fs::remove_file(&written_sidecar).unwrap();
    std::fs::remove_file(&empty_sidecar).unwrap();
    for (who, v) in [
        ("alice, this machine", w.open(ALICE)),
        ("bob, a new machine", w.open_elsewhere(BOB, "bob-machine")),
    ] {
        match open(&v, &written) {
            Err(Error::Integrity { what }) => assert!(what.contains("missing"), "{who}: {what}"),
            other => panic!("{who}: deleted sidecar of a written file: {other:?}"),
        }
    }
    // The empty file: this machine saw its version 1, so it is a rollback
    // here; a machine that never saw it cannot tell it from a creation.
    std::env::set_var("XDG_STATE_HOME", w.dir.path().join("state"));
    match open(&w.open(ALICE), &empty) {
        Err(Error::Integrity { .. }) => {}
        other => panic!("deleted sidecar of a file this machine saw: {other:?}"),
    }
    expect_being_created(open(&w.open_elsewhere(BOB, "bob-2"), &empty), "bob");
}

#[test]
fn a_content_file_unknown_to_the_history_without_sidecar_is_tampering() {
    let _serial = serial();
    let w = World::new();
    let alice = w.open(ALICE);
    let p = w.path(&alice, "planted");
    let header = DataHeader {
        format_version: 1,
        chunk_log2: 16,
        file_id: [9; 16],
    };
    std::fs::write(&p, header.encode()).unwrap();
    match open(&alice, &p) {
        Err(Error::Integrity { what }) => assert!(what.contains("missing"), "{what}"),
        other => panic!("planted content file: {other:?}"),
    }
    let report = alice.verify(&|_, _| {});
    assert!(
        report.failures.iter().any(|f| f.path.contains("planted")),
        "{:?}",
        report.failures
    );
}

#[test]
fn a_create_is_in_the_history_before_its_name_and_a_cut_one_is_a_warning() {
    let _serial = serial();
    let w = World::new();
    let alice = w.open(ALICE);
    let p = w.path(&alice, "cut");
    let f = alice.create_file(&p, 0o644, "cut".into()).unwrap();
    let file_id = f.file_id;
    // Named only once the history records it: another process that finds the
    // entry finds its creation too (not "unknown to the history").
    let other = w.open(BOB);
    assert_eq!(
        other.with_bindings(|idx| idx.creator(&file_id)).unwrap(),
        Some(alice.me.member_id())
    );
    drop(f);
    // A crash after the history record and before the name: the record
    // stays, no entry and no sidecar exist. Nothing was ever in the file.
    std::fs::remove_file(&p).unwrap();
    assert!(!alice.paths.sidecar(&file_id).exists());
    let v = w.open_elsewhere(BOB, "bob-machine");
    let report = v.verify(&|_, _| {});
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(
        report
            .warnings
            .iter()
            .any(|f| f.problem.contains("interrupted create")),
        "{:?}",
        report.warnings
    );
    // Once written, the same loss is tampering.
    std::env::set_var("XDG_STATE_HOME", w.dir.path().join("state"));
    let alice = w.open(ALICE);
    let q = w.path(&alice, "written");
    let mut f = alice.create_file(&q, 0o644, "written".into()).unwrap();
    f.write(&alice, 0, b"content").unwrap();
    f.commit(&alice, Durability::Lazy).unwrap();
    let sidecar = alice.paths.sidecar(&f.file_id);
    drop(f);
    std::fs::remove_file(&q).unwrap();
    std::fs::remove_file(&sidecar).unwrap();
    let report = w.open_elsewhere(BOB, "bob-machine-2").verify(&|_, _| {});
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.problem.contains("deleted outside coffer")),
        "{:?}",
        report.failures
    );
}

#[test]
fn a_first_commit_remakes_a_sidecar_directory_removed_meanwhile() {
    let _serial = serial();
    let w = World::new();
    let alice = w.open(ALICE);
    // A first file's commit makes its sidecar's fan-out directory (the
    // process remembers it exists)...
    let p = w.path(&alice, "first");
    let mut f = alice.create_file(&p, 0o644, "first".into()).unwrap();
    f.write(&alice, 0, b"one").unwrap();
    f.commit(&alice, Durability::Lazy).unwrap();
    let fanout = alice
        .paths
        .sidecar(&f.file_id)
        .parent()
        .unwrap()
        .to_path_buf();
    let prefix = f.file_id[0];
    drop(f);
    // ...which someone then removes (a sync tool, a hand clean-up).
    std::fs::remove_dir_all(&fanout).unwrap();
    // The next new file of the same fan-out (ids are random: try until one
    // falls there) is still committed, its directory made again.
    for i in 0..5000 {
        let p = w.path(&alice, &format!("n{i}"));
        let mut g = alice.create_file(&p, 0o644, format!("n{i}")).unwrap();
        if g.file_id[0] != prefix {
            g.commit(&alice, Durability::Lazy).unwrap();
            continue;
        }
        g.write(&alice, 0, b"two").unwrap();
        g.commit(&alice, Durability::Lazy)
            .expect("a first commit into a removed fan-out directory");
        assert!(alice.paths.sidecar(&g.file_id).exists());
        drop(g);
        assert_eq!(read_all(&w.open(ALICE), &p), b"two");
        return;
    }
    panic!("no file id fell into fan-out {prefix:02x} in 5000 tries");
}
