//! Sharing at the library level: grant, delegation, refused escalation, revoke
//! (eager and lazy), rotate, migrate, and attacks by a member with raw access
//! to the vault directory. The mount-level flow is in tests/mount_sharing.rs.

use std::path::{Path, PathBuf};

use coffer::crypto::Identity;
use coffer::format::Right;
use coffer::vault::share::RevokeMode;
use coffer::vault::Vault;

/// Tests here set XDG_STATE_HOME (per-machine state); run them one at a time.
static ENV_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
use coffer::Error;

struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    seeds: [[u8; 32]; 3],
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var("XDG_STATE_HOME", dir.path().join("state"));
        let root = dir.path().join("vault");
        let seeds = [[11u8; 32], [12u8; 32], [13u8; 32]];
        let alice = Vault::init(&root, Identity::from_seed(seeds[0]), "alice").unwrap();
        alice
            .add_member("bob", Identity::from_seed(seeds[1]).public())
            .unwrap();
        alice
            .add_member("carol", Identity::from_seed(seeds[2]).public())
            .unwrap();
        World {
            _dir: dir,
            root,
            seeds,
        }
    }

    fn open(&self, who: usize) -> Vault {
        Vault::open(&self.root, Identity::from_seed(self.seeds[who]), false).unwrap()
    }

    fn path(&self, name: &str) -> PathBuf {
        // Backing names do not matter to the library; encryption of names is the fs layer's.
        self.root.join("tree").join(name)
    }
}

fn read_all(v: &Vault, p: &Path) -> Result<Vec<u8>, Error> {
    let mut f = v.open_file(p, p.display().to_string())?;
    if !f.can_read(v) {
        return Err(Error::AccessDenied("no read right".into()));
    }
    let size = f.size();
    f.read(0, size as usize)
}

fn write_all(v: &Vault, p: &Path, data: &[u8]) -> Result<(), Error> {
    let mut f = v.open_file(p, p.display().to_string())?;
    f.truncate(v, 0)?;
    f.write(v, 0, data)?;
    f.commit(v, coffer::store::Durability::Lazy)
}

const ALICE: usize = 0;
const BOB: usize = 1;
const CAROL: usize = 2;

#[test]
fn full_flow() {
    let _serial = serial();
    let w = World::new();
    let (alice, bob, carol) = (w.open(ALICE), w.open(BOB), w.open(CAROL));
    let p = w.path("doc");
    let mut f = alice.create_file(&p, 0o644, "doc".into()).unwrap();
    let content = vec![7u8; 200_000];
    f.write(&alice, 0, &content).unwrap();
    f.commit(&alice, coffer::store::Durability::Lazy).unwrap();
    drop(f);

    // Denied without a grant.
    assert!(matches!(read_all(&bob, &p), Err(Error::AccessDenied(_))));

    // Grant read; bob reads.
    let bob_rec = alice.find_member("bob").unwrap();
    let carol_rec = alice.find_member("carol").unwrap();
    let mut f = alice.open_file(&p, "doc".into()).unwrap();
    assert!(f.grant(&alice, &bob_rec, Right::Read).unwrap());
    assert!(
        !f.grant(&alice, &bob_rec, Right::Read).unwrap(),
        "second grant is a no-op"
    );
    drop(f);
    assert_eq!(read_all(&bob, &p).unwrap(), content);

    // Bob (reader) may pass read on, not update; and cannot write.
    let mut fb = bob.open_file(&p, "doc".into()).unwrap();
    assert!(fb.grant(&bob, &carol_rec, Right::Read).unwrap());
    assert!(matches!(
        fb.grant(&bob, &carol_rec, Right::Update),
        Err(Error::AccessDenied(_))
    ));
    assert!(matches!(
        fb.write(&bob, 0, b"x"),
        Err(Error::AccessDenied(_))
    ));
    drop(fb);
    assert_eq!(read_all(&carol, &p).unwrap(), content);

    // Grant update to bob; bob writes; alice reads bob's version.
    let mut f = alice.open_file(&p, "doc".into()).unwrap();
    f.grant(&alice, &bob_rec, Right::Update).unwrap();
    drop(f);
    write_all(&bob, &p, b"bob was here").unwrap();
    assert_eq!(read_all(&alice, &p).unwrap(), b"bob was here");

    // Revoke bob's update only: bob still reads, cannot write; his content stays valid.
    let mut f = alice.open_file(&p, "doc".into()).unwrap();
    f.revoke(
        &alice,
        bob_rec.public.member_id(),
        Right::Update,
        RevokeMode::Eager,
    )
    .unwrap();
    drop(f);
    assert_eq!(read_all(&bob, &p).unwrap(), b"bob was here");
    assert_eq!(read_all(&carol, &p).unwrap(), b"bob was here");
    assert!(matches!(
        write_all(&bob, &p, b"nope"),
        Err(Error::AccessDenied(_))
    ));

    // Rotate: the stored ciphertext changes, everyone still reads.
    let before = std::fs::read(&p).unwrap();
    let mut f = alice.open_file(&p, "doc".into()).unwrap();
    f.rotate(&alice).unwrap();
    drop(f);
    assert_ne!(std::fs::read(&p).unwrap(), before);
    for v in [&alice, &bob, &carol] {
        assert_eq!(read_all(v, &p).unwrap(), b"bob was here");
    }

    // Revoke bob's read (eager): bob loses access, carol (his delegate) keeps it.
    let mut f = alice.open_file(&p, "doc".into()).unwrap();
    f.revoke(
        &alice,
        bob_rec.public.member_id(),
        Right::Read,
        RevokeMode::Eager,
    )
    .unwrap();
    assert_eq!(f.chunks_on_old_epochs(), 0);
    drop(f);
    assert!(matches!(read_all(&bob, &p), Err(Error::AccessDenied(_))));
    assert_eq!(read_all(&carol, &p).unwrap(), b"bob was here");
}

#[test]
fn updater_revokes_creator_and_lazy_revoke_then_migrate() {
    let _serial = serial();
    let w = World::new();
    let (alice, bob, carol) = (w.open(ALICE), w.open(BOB), w.open(CAROL));
    let p = w.path("f");
    let mut f = alice.create_file(&p, 0o644, "f".into()).unwrap();
    f.write(&alice, 0, &vec![1u8; 300_000]).unwrap();
    f.commit(&alice, coffer::store::Durability::Lazy).unwrap();
    f.grant(&alice, &alice.find_member("bob").unwrap(), Right::Update)
        .unwrap();
    f.grant(&alice, &alice.find_member("carol").unwrap(), Right::Read)
        .unwrap();
    drop(f);

    // Bob, an updater, revokes the creator lazily: alice is out at once.
    let mut fb = bob.open_file(&p, "f".into()).unwrap();
    fb.revoke(&bob, alice.me.member_id(), Right::Read, RevokeMode::Lazy)
        .unwrap();
    assert!(
        fb.chunks_on_old_epochs() > 0,
        "lazy leaves content on the old epoch"
    );
    drop(fb);
    assert!(matches!(read_all(&alice, &p), Err(Error::AccessDenied(_))));
    // Remaining readers read old-epoch content through the sealed earlier keys.
    assert_eq!(read_all(&carol, &p).unwrap(), vec![1u8; 300_000]);

    // Migrate re-encrypts what is left.
    let mut fb = bob.open_file(&p, "f".into()).unwrap();
    let n = fb.migrate(&bob).unwrap();
    assert_eq!(n, 5, "300 000 bytes are five 64 KiB chunks");
    assert_eq!(fb.chunks_on_old_epochs(), 0);
    assert_eq!(fb.migrate(&bob).unwrap(), 0, "nothing left");
    drop(fb);
    assert_eq!(read_all(&carol, &p).unwrap(), vec![1u8; 300_000]);
}

#[test]
fn revoked_member_old_key_opens_nothing_new() {
    let _serial = serial();
    let w = World::new();
    let (alice, bob) = (w.open(ALICE), w.open(BOB));
    let p = w.path("secret");
    let mut f = alice.create_file(&p, 0o644, "secret".into()).unwrap();
    f.write(&alice, 0, b"old secret").unwrap();
    f.commit(&alice, coffer::store::Durability::Lazy).unwrap();
    f.grant(&alice, &alice.find_member("bob").unwrap(), Right::Read)
        .unwrap();
    drop(f);
    // Bob keeps a copy of the sidecar holding his wrapped key.
    let id = alice.read_file_id(&p).unwrap();
    let old_sidecar = std::fs::read(alice.paths.sidecar(&id)).unwrap();

    let mut f = alice.open_file(&p, "secret".into()).unwrap();
    f.revoke(&alice, bob.me.member_id(), Right::Read, RevokeMode::Eager)
        .unwrap();
    f.truncate(&alice, 0).unwrap();
    f.write(&alice, 0, b"new secret").unwrap();
    f.commit(&alice, coffer::store::Durability::Lazy).unwrap();
    drop(f);

    // Replaying his old sidecar (old key, old access list) is a rollback: the
    // chunks on disk no longer match it, so nothing decrypts to the new content.
    let current = std::fs::read(alice.paths.sidecar(&id)).unwrap();
    std::fs::write(alice.paths.sidecar(&id), &old_sidecar).unwrap();
    let got = read_all(&bob, &p);
    assert!(
        !matches!(&got, Ok(d) if d == b"new secret"),
        "revoked key must not open new content"
    );
    assert!(matches!(got, Err(Error::Integrity { .. })), "got {got:?}");
    std::fs::write(alice.paths.sidecar(&id), &current).unwrap();
    assert_eq!(read_all(&alice, &p).unwrap(), b"new secret");
}

#[test]
fn reader_with_raw_access_cannot_forge() {
    let _serial = serial();
    use coffer::format::{self, AccessChange, Signed};
    let w = World::new();
    let (alice, bob, carol) = (w.open(ALICE), w.open(BOB), w.open(CAROL));
    let p = w.path("doc");
    let mut f = alice.create_file(&p, 0o644, "doc".into()).unwrap();
    f.write(&alice, 0, b"genuine").unwrap();
    f.commit(&alice, coffer::store::Durability::Lazy).unwrap();
    f.grant(&alice, &alice.find_member("bob").unwrap(), Right::Read)
        .unwrap();
    f.grant(&alice, &alice.find_member("carol").unwrap(), Right::Read)
        .unwrap();
    drop(f);
    let id = alice.read_file_id(&p).unwrap();
    let sc_path = alice.paths.sidecar(&id);
    let genuine_sidecar = std::fs::read(&sc_path).unwrap();
    let genuine_data = std::fs::read(&p).unwrap();
    let (sc, _) = format::decode_sidecar(&genuine_sidecar).unwrap();

    // 1. Bob holds the read key and encrypts a correct chunk with a new manifest he signs.
    let mut fb = bob.open_file(&p, "doc".into()).unwrap();
    assert!(
        fb.write(&bob, 0, b"forged!").is_err(),
        "the library refuses; now bypass it"
    );
    drop(fb);
    {
        let key = {
            let ek = &sc.keys[0];
            let w = ek
                .wraps
                .iter()
                .find(|w| w.recipient == bob.me.member_id())
                .unwrap();
            coffer::crypto::wrap::unwrap(w, &bob.me, &id, ek.epoch).unwrap()
        };
        let stored = coffer::crypto::chunk::seal(&key, &id, 0, 0, b"forged!");
        let mut data = genuine_data[..32].to_vec();
        data.extend_from_slice(&stored);
        std::fs::write(&p, &data).unwrap();
        let chunks = vec![Some(format::ChunkRef {
            epoch: 0,
            hash: *blake3::hash(&stored).as_bytes(),
        })];
        let m = sc.manifest.decode_unverified().unwrap();
        let forged = coffer::format::Signed::sign(
            &coffer::history::manifest_after(
                &bob.me,
                Some(&sc.manifest),
                m.version,
                id,
                m.chunk_log2,
                7,
                &chunks,
                0,
                m.key_commits.clone(),
                m.access_head,
            ),
            &bob.me,
        );
        let mut bad = sc.clone();
        bad.manifest = forged;
        bad.chunks = chunks;
        std::fs::write(&sc_path, format::encode_file(format::SIDECAR, &bad)).unwrap();
        for v in [&alice, &carol] {
            let got = read_all(v, &p);
            assert!(
                matches!(got, Err(Error::Integrity { .. })),
                "forged content accepted: {got:?}"
            );
        }
    }
    std::fs::write(&p, &genuine_data).unwrap();
    std::fs::write(&sc_path, &genuine_sidecar).unwrap();

    // 2. Bob appends an access entry granting himself update.
    {
        let state = coffer::access::replay(&id, &sc.access, &alice).unwrap();
        let entry = coffer::access::next_entry(
            &state,
            &bob.me,
            AccessChange::Grant {
                member: bob.me.member_id(),
                right: Right::Update,
            },
        );
        let mut bad = sc.clone();
        bad.access.push(entry);
        std::fs::write(&sc_path, format::encode_file(format::SIDECAR, &bad)).unwrap();
        for v in [&alice, &carol] {
            assert!(matches!(read_all(v, &p), Err(Error::Integrity { .. })));
        }
    }
    // 3. An entry signed by alice's key but edited afterwards.
    {
        let mut bad = sc.clone();
        let mut entry: Signed<coffer::format::AccessEntry> = bad.access[1].clone();
        let last = entry.body.len() - 1;
        entry.body[last] ^= 1;
        bad.access[1] = entry;
        std::fs::write(&sc_path, format::encode_file(format::SIDECAR, &bad)).unwrap();
        assert!(matches!(read_all(&carol, &p), Err(Error::Integrity { .. })));
    }
    std::fs::write(&sc_path, &genuine_sidecar).unwrap();
    assert_eq!(read_all(&carol, &p).unwrap(), b"genuine");
}

#[test]
fn rotate_of_a_file_larger_than_the_dirty_limit() {
    let _serial = serial();
    let w = World::new();
    let alice = w.open(ALICE);
    let p = w.path("large");
    let data: Vec<u8> = (0..(coffer::vault::file::DIRTY_LIMIT + 3 * 65_536 + 7))
        .map(|i| (i % 253) as u8)
        .collect();
    let mut f = alice.create_file(&p, 0o644, "large".into()).unwrap();
    f.write(&alice, 0, &data).unwrap();
    f.commit(&alice, coffer::store::Durability::Lazy).unwrap();
    let before = std::fs::read(&p).unwrap();
    f.rotate(&alice).unwrap();
    assert_eq!(f.chunks_on_old_epochs(), 0);
    drop(f);
    assert_ne!(
        std::fs::read(&p).unwrap(),
        before,
        "every chunk re-encrypted"
    );
    assert_eq!(read_all(&alice, &p).unwrap(), data);
}

/// A sparse file over several migrate batches (runs of chunks split by holes,
/// a short last chunk): rotate re-encrypts every stored chunk, keeps the holes,
/// and the old key opens none of the new chunks.
#[test]
fn rotate_across_batches_with_holes() {
    use coffer::vault::share::MIGRATE_BATCH;
    let _serial = serial();
    let w = World::new();
    let alice = w.open(ALICE);
    let p = w.path("sparse");
    let cs = 65_536usize;
    let len = 2 * MIGRATE_BATCH as usize + 5 * cs + 123;
    let mut data = vec![0u8; len];
    for (i, b) in data.iter_mut().enumerate() {
        // Every seventh chunk stays all zero (a hole).
        if (i / cs) % 7 != 3 {
            *b = (i % 251) as u8 | 1;
        }
    }
    let mut f = alice.create_file(&p, 0o644, "sparse".into()).unwrap();
    f.write(&alice, 0, &data).unwrap();
    f.commit(&alice, coffer::store::Durability::Lazy).unwrap();
    let holes_before = f.sidecar().chunks.iter().filter(|c| c.is_none()).count();
    assert!(holes_before > 0);
    let before = std::fs::read(&p).unwrap();
    f.rotate(&alice).unwrap();
    assert_eq!(f.chunks_on_old_epochs(), 0);
    let sc = f.sidecar().clone();
    assert_eq!(
        sc.chunks.iter().filter(|c| c.is_none()).count(),
        holes_before
    );
    assert_eq!(sc.keys.len(), 1, "old epochs pruned");
    drop(f);
    let after = std::fs::read(&p).unwrap();
    assert_eq!(after.len(), before.len());
    let slot = cs + 40;
    let header = after.len() - (len.div_ceil(cs) - 1) * slot - (len % cs + 40);
    for (i, c) in sc.chunks.iter().enumerate() {
        if c.is_some() {
            let at = header + i * slot;
            let end = (at + slot).min(after.len());
            assert_ne!(after[at..end], before[at..end], "chunk {i} re-encrypted");
        }
    }
    assert_eq!(read_all(&alice, &p).unwrap(), data);
    assert_eq!(
        w.open(ALICE).open_file(&p, "x".into()).unwrap().size(),
        len as u64
    );
}

/// A stored chunk altered behind coffer's back makes migrate fail with an
/// integrity error and leaves the file as it was.
#[test]
fn migrate_refuses_a_tampered_chunk() {
    use std::os::unix::fs::FileExt;
    let _serial = serial();
    let w = World::new();
    let alice = w.open(ALICE);
    let p = w.path("victim");
    let data = vec![9u8; 10 * 65_536];
    let mut f = alice.create_file(&p, 0o644, "victim".into()).unwrap();
    f.write(&alice, 0, &data).unwrap();
    f.commit(&alice, coffer::store::Durability::Lazy).unwrap();
    drop(f);
    let raw = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    let len = raw.metadata().unwrap().len();
    raw.write_all_at(&[0xFF], len - 3 * 65_536).unwrap();
    let before = std::fs::read(&p).unwrap();
    let mut f = alice.open_file(&p, "victim".into()).unwrap();
    assert!(matches!(f.rotate(&alice), Err(Error::Integrity { .. })));
    drop(f);
    assert_eq!(std::fs::read(&p).unwrap(), before, "nothing rewritten");
}
