//! The committed fixture vault, `tests/fixtures/vault-v1/` (made once by
//! `coffer-fixture`, see tools/fixture.rs and docs/FORMAT.md "The fixture vault").
//!
//! **Every later version of coffer must still open it**: this file is that
//! guarantee. Never regenerate `vault-v1` to make these tests pass. A change to
//! the on-disk format bumps `FORMAT_VERSION` and adds a new fixture (`vault-v2`)
//! beside this one; the tests against `vault-v1` keep running unchanged.
//!
//! The tests open the fixture with the library alone (no FUSE): as alice (the
//! admin, reader of everything) they decrypt every name and every file and
//! compare contents with `expected.json`; as bob (a member) they decrypt names
//! but get `Error::AccessDenied` on content he holds no read right to; and on
//! a copy with one byte flipped they get `Error::Integrity`/`Error::Corrupt`,
//! never wrong plaintext.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use coffer::crypto::Identity;
use coffer::format::identity::{IdentityFile, IdentitySecret};
use coffer::format::{self, FORMAT_VERSION, IDENTITY};
use coffer::vault::Vault;
use coffer::Error;

/// `Vault::open` keeps per-machine state under `$XDG_STATE_HOME`, a process-wide
/// variable: tests in this file run one at a time, each with its own state dir.
static ENV_LOCK: Mutex<()> = Mutex::new(());

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vault-v1")
}

#[derive(serde::Deserialize)]
struct Expected {
    format_version: u16,
    vault: String,
    chunk_log2: u8,
    members: BTreeMap<String, ExpectedMember>,
    files: BTreeMap<String, ExpectedFile>,
    directories: Vec<String>,
    symlinks: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct ExpectedMember {
    identity: String,
    member_id: String,
    public_key: String,
    admin: bool,
}

#[derive(serde::Deserialize)]
struct ExpectedFile {
    size: u64,
    blake3: String,
    readers: Vec<String>,
}

fn load_expected(dir: &Path) -> Expected {
    let text = std::fs::read_to_string(dir.join("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("expected.json parses")
}

/// Reads an unprotected identity file (`CFRI || postcard(IdentityFile)`).
fn load_identity(path: &Path) -> Identity {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file: IdentityFile = format::decode_file(IDENTITY, &bytes).expect("identity file decodes");
    assert!(file.format_version >= 1 && file.format_version <= FORMAT_VERSION);
    match &file.secret {
        IdentitySecret::Unprotected(seed) => Identity::from_seed(*seed),
        IdentitySecret::Passphrase(_) => panic!("fixture identities are unprotected"),
    }
}

/// A private copy of a fixture (vault, identities, expected.json) and a private
/// state directory, held under the environment lock.
struct Env {
    _guard: MutexGuard<'static, ()>,
    tmp: tempfile::TempDir,
    expected: Expected,
}

impl Env {
    fn new(source: &Path) -> Env {
        let guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let tmp = tempfile::tempdir().unwrap();
        std::env::set_var("XDG_STATE_HOME", tmp.path().join("state"));
        // Never open the committed fixture itself: a bug that writes on open
        // must not be able to change it.
        copy_dir(source, &tmp.path().join("fixture"));
        let expected = load_expected(source);
        Env {
            _guard: guard,
            tmp,
            expected,
        }
    }

    fn root(&self) -> PathBuf {
        self.tmp.path().join("fixture")
    }

    fn vault_dir(&self) -> PathBuf {
        self.root().join(&self.expected.vault)
    }

    fn identity(&self, name: &str) -> Identity {
        load_identity(&self.root().join(&self.expected.members[name].identity))
    }

    fn open(&self, name: &str) -> Vault {
        Vault::open(&self.vault_dir(), self.identity(name), false)
            .unwrap_or_else(|e| panic!("opening the fixture vault as {name}: {e}"))
    }

    /// Fresh per-machine state, as on another machine (the vault is unchanged).
    fn new_machine(&self, n: u32) {
        std::env::set_var("XDG_STATE_HOME", self.tmp.path().join(format!("state-{n}")));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let t = to.join(e.file_name());
        let m = std::fs::symlink_metadata(e.path()).unwrap();
        if m.is_dir() {
            copy_dir(&e.path(), &t);
        } else if m.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(e.path()).unwrap(), &t).unwrap();
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

/// The plaintext tree as one member sees it, found by decrypting names.
#[derive(Default)]
struct Tree {
    /// plaintext path → backing path
    files: BTreeMap<String, PathBuf>,
    directories: BTreeSet<String>,
    symlinks: BTreeMap<String, String>,
}

fn walk(v: &Vault, backing: &Path, plain: &str, tree: &mut Tree) {
    let dir_id = v.read_dir_record(backing).expect("directory record").dir_id;
    let mut names: Vec<_> = std::fs::read_dir(backing)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for name in names {
        if name.as_bytes().starts_with(b".") {
            continue; // `.coffer-dir` and long-name side files
        }
        let plain_name = v
            .decrypt_name(backing, &dir_id, &name)
            .unwrap_or_else(|e| panic!("name {name:?} in {}: {e}", backing.display()));
        let plain_name = plain_name.to_str().expect("fixture names are UTF-8");
        let path = if plain.is_empty() {
            plain_name.to_string()
        } else {
            format!("{plain}/{plain_name}")
        };
        let child = backing.join(&name);
        let m = std::fs::symlink_metadata(&child).unwrap();
        if m.is_dir() {
            tree.directories.insert(path.clone());
            walk(v, &child, &path, tree);
        } else if m.file_type().is_symlink() {
            let stored = std::fs::read_link(&child).unwrap();
            let target = v
                .decrypt_symlink(stored.as_os_str())
                .expect("symlink target decrypts");
            tree.symlinks
                .insert(path, target.to_str().unwrap().to_string());
        } else {
            assert!(m.is_file(), "{path}: unexpected entry type");
            tree.files.insert(path, child);
        }
    }
}

fn tree_of(v: &Vault) -> Tree {
    let mut t = Tree::default();
    walk(v, &v.paths.tree(), "", &mut t);
    t
}

fn blake3_hex(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

fn check_tree_shape(t: &Tree, e: &Expected) {
    let files: BTreeSet<_> = t.files.keys().cloned().collect();
    let want: BTreeSet<_> = e.files.keys().cloned().collect();
    assert_eq!(files, want, "the files found by decrypting names");
    let dirs: BTreeSet<_> = e.directories.iter().cloned().collect();
    assert_eq!(t.directories, dirs, "directories");
    assert_eq!(t.symlinks, e.symlinks, "symlink targets");
}

fn member_id_of(e: &Expected, name: &str) -> String {
    e.members[name].member_id.clone()
}

/// Everything alice (admin, reader of every file) must see.
fn check_as_alice(env: &Env) {
    let e = &env.expected;
    assert_eq!(e.format_version, 1, "this is the v1 fixture");
    let v = env.open("alice");

    // The identity derivation is pinned by the fixture: fixed seeds must give
    // the same public keys and member ids forever.
    for (name, m) in &e.members {
        let id = env.identity(name);
        assert_eq!(
            id.public().encode(),
            m.public_key,
            "{name}: public key derivation changed"
        );
        assert_eq!(
            id.member_id().to_hex(),
            m.member_id,
            "{name}: member id derivation changed"
        );
    }

    assert_eq!(v.config.format_version, e.format_version);
    assert_eq!(v.config.chunk_log2, e.chunk_log2);
    assert_eq!(v.config.admin, *env.identity("alice").public());
    assert!(v.is_admin());
    let members: BTreeMap<String, (String, bool)> = v
        .members()
        .into_iter()
        .map(|m| (m.name.clone(), (m.public.member_id().to_hex(), m.admin)))
        .collect();
    let want: BTreeMap<String, (String, bool)> = e
        .members
        .iter()
        .map(|(n, m)| (n.clone(), (m.member_id.clone(), m.admin)))
        .collect();
    assert_eq!(members, want, "members");

    let tree = tree_of(&v);
    check_tree_shape(&tree, e);

    for (path, backing) in &tree.files {
        let want = &e.files[path];
        let id = v.read_file_id(backing).unwrap();
        assert!(
            v.paths.sidecar(&id).is_file(),
            "{path}: sidecar at meta/<aa>/<id>.meta"
        );
        let mut f = v
            .open_file(backing, path.clone())
            .unwrap_or_else(|err| panic!("{path}: {err}"));
        assert_eq!(f.file_id, id);
        assert_eq!(f.size(), want.size, "{path}: size");
        assert!(f.can_read(&v), "{path}: alice reads");
        let data = f
            .read(0, want.size as usize + 100)
            .unwrap_or_else(|err| panic!("{path}: {err}"));
        assert_eq!(data.len() as u64, want.size, "{path}: read length");
        assert_eq!(blake3_hex(&data), want.blake3, "{path}: content");
        // Reads that straddle chunk boundaries give the same bytes.
        for (off, len) in [
            (65_530u64, 20usize),
            (131_000, 70_000),
            (want.size.saturating_sub(3), 10),
        ] {
            if off < want.size {
                let part = f.read(off, len).unwrap();
                let end = (off as usize + len).min(data.len());
                assert_eq!(part, &data[off as usize..end], "{path}: read at {off}");
            }
        }
        let readers: BTreeSet<String> =
            f.access().reader_ids().iter().map(|m| m.to_hex()).collect();
        let want_readers: BTreeSet<String> =
            want.readers.iter().map(|n| member_id_of(e, n)).collect();
        assert_eq!(readers, want_readers, "{path}: readers");
    }

    // The whole vault verifies: signatures, chains, chunks, history, bindings;
    // the default check hashes contents, --deep decrypts them too.
    let report = v.verify(&|_, _| {});
    assert!(
        report.failures.is_empty(),
        "verify failures: {:#?}",
        report.failures
    );
    assert_eq!(report.files as usize, e.files.len());
    assert_eq!(report.decrypted_files, 0);
    let deep = coffer::vault::verify::VerifyOptions { deep: true };
    let report = v.verify_with(deep, &|_, _| {});
    assert!(
        report.failures.is_empty(),
        "verify --deep failures: {:#?}",
        report.failures
    );
    assert_eq!(report.files as usize, e.files.len());
    assert_eq!(report.decrypted_files as usize, e.files.len());
}

/// bob is a member: he decrypts names, and content only where he holds read.
fn check_as_bob(env: &Env) {
    let e = &env.expected;
    let v = env.open("bob");
    assert!(!v.is_admin());
    let tree = tree_of(&v);
    check_tree_shape(&tree, e);
    let mut denied = 0;
    for (path, backing) in &tree.files {
        let want = &e.files[path];
        if want.readers.iter().any(|r| r == "bob") {
            let mut f = v
                .open_file(backing, path.clone())
                .unwrap_or_else(|err| panic!("{path}: {err}"));
            let data = f
                .read(0, want.size as usize)
                .unwrap_or_else(|err| panic!("bob reading {path}: {err}"));
            assert_eq!(blake3_hex(&data), want.blake3, "{path}: bob's read");
            continue;
        }
        denied += 1;
        match v.open_file(backing, path.clone()) {
            // Denied at open is fine too (what the mount answers: EACCES).
            Err(Error::AccessDenied(_)) => {}
            Err(err) => panic!("bob opening {path}: expected AccessDenied, got {err}"),
            Ok(mut f) => {
                assert!(!f.can_read(&v), "{path}: bob must not hold read");
                assert!(!f.can_update(&v), "{path}: bob must not hold update");
                if want.size > 0 {
                    match f.read(0, want.size as usize) {
                        Err(Error::AccessDenied(_)) => {}
                        Err(err) => panic!("bob reading {path}: expected AccessDenied, got {err}"),
                        Ok(_) => panic!("bob read {path} without the read right"),
                    }
                }
                assert!(
                    matches!(f.write(&v, 0, b"x"), Err(Error::AccessDenied(_))),
                    "{path}: bob must not write"
                );
            }
        }
    }
    assert!(denied >= 5, "the fixture has files bob cannot read");
}

#[test]
fn fixture_opens_as_alice_and_every_file_matches() {
    let env = Env::new(&fixture_dir());
    check_as_alice(&env);
}

#[test]
fn fixture_bob_decrypts_names_but_not_alices_files() {
    let env = Env::new(&fixture_dir());
    check_as_bob(&env);
    // bob first, then alice on a machine that has never seen the vault.
    env.new_machine(2);
    check_as_alice(&env);
}

#[test]
fn fixture_generator_output_passes_the_same_checks() {
    // The generator must keep producing a vault the current library reads, so a
    // v2 fixture can be made from it when the format changes.
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("gen");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_coffer-fixture"))
        .arg(&dir)
        .env("XDG_STATE_HOME", out.path().join("generator-state"))
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let env = Env::new(&dir);
    // The generator makes the newest fixture: compare with the newest one
    // (when a vault-v2 is added, point this at it).
    assert_eq!(
        load_expected(&fixture_dir())
            .files
            .keys()
            .collect::<Vec<_>>(),
        env.expected.files.keys().collect::<Vec<_>>(),
        "the committed fixture and the generator describe the same files"
    );
    check_as_alice(&env);
    env.new_machine(2);
    check_as_bob(&env);
}

// ---------------------------------------------------------------------------
// Tampering with a copy: one flipped byte must give an integrity error.

fn flip(path: &Path, at: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at as usize] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

fn is_integrity(e: &Error) -> bool {
    matches!(e, Error::Integrity { .. } | Error::Corrupt { .. })
}

/// Opens and reads the whole file: `Ok` only with exactly the right plaintext.
fn read_all(v: &Vault, backing: &Path, path: &str, want: &ExpectedFile) -> Result<(), Error> {
    let mut f = v.open_file_readonly(backing, path.to_string())?;
    let data = f.read(0, want.size as usize)?;
    assert!(
        data.len() as u64 == want.size && blake3_hex(&data) == want.blake3,
        "{path}: WRONG PLAINTEXT returned after tampering"
    );
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> u64 {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("record bytes are in the file") as u64
}

#[test]
fn fixture_flipped_byte_in_content_or_sidecar_is_an_integrity_error() {
    let env = Env::new(&fixture_dir());
    let v = env.open("alice");
    let want = &env.expected.files["big.bin"];
    let backing = v.backing_path(Path::new("big.bin")).unwrap();
    let id = v.read_file_id(&backing).unwrap();
    let sidecar = v.paths.sidecar(&id);
    read_all(&v, &backing, "big.bin", want).expect("intact before tampering");
    let intact = v
        .open_file_readonly(&backing, "big.bin".into())
        .unwrap()
        .read(0, want.size as usize)
        .unwrap();

    let layout = v.layout();
    let slot1 = layout.slot_offset(1);
    let content_flips = [
        ("chunk 1 nonce", slot1 + 3),
        ("chunk 1 ciphertext", slot1 + 24 + 1000),
        ("chunk 1 tag", slot1 + layout.slot_size() - 2),
        ("last chunk", layout.stored_len(want.size) - 1),
        ("header file id", 10),
        ("header magic", 0),
    ];
    for (what, at) in content_flips {
        flip(&backing, at);
        match read_all(&v, &backing, "big.bin", want) {
            Err(e) if is_integrity(&e) => {}
            other => panic!("flipped {what}: expected an integrity error, got {other:?}"),
        }
        if what == "chunk 1 ciphertext" {
            // Only the damaged chunk fails: chunk 0 still reads correctly.
            let mut f = v.open_file_readonly(&backing, "big.bin".into()).unwrap();
            assert_eq!(f.read(0, 65_536).unwrap(), &intact[..65_536]);
            assert!(matches!(f.read(65_536, 10), Err(Error::Integrity { .. })));
        }
        flip(&backing, at); // restore
    }
    read_all(&v, &backing, "big.bin", want).expect("intact after restoring");

    // Sidecar: locate the signed records by their bytes.
    let bytes = std::fs::read(&sidecar).unwrap();
    let parsed: format::Sidecar = format::decode_file(format::SIDECAR, &bytes).unwrap();
    let access_body = find(&bytes, &parsed.access[0].body);
    let manifest_body = find(&bytes, &parsed.manifest.body);
    let manifest_sig = find(&bytes, &parsed.manifest.signature);
    let sidecar_flips = [
        ("magic", 1),
        ("file id", 6),
        ("access entry body", access_body + 20),
        (
            "manifest body (size)",
            manifest_body + parsed.manifest.body.len() as u64 / 2,
        ),
        ("manifest signature", manifest_sig + 7),
        ("manifest signer", manifest_sig - 20),
        ("a chunk hash in the chunk list", bytes.len() as u64 - 5),
    ];
    for (what, at) in sidecar_flips {
        flip(&sidecar, at);
        match read_all(&v, &backing, "big.bin", want) {
            Err(e) if is_integrity(&e) => {}
            other => {
                panic!("flipped the sidecar's {what}: expected an integrity error, got {other:?}")
            }
        }
        flip(&sidecar, at);
    }
    read_all(&v, &backing, "big.bin", want).expect("intact after restoring");
}

#[test]
fn fixture_every_sidecar_byte_flipped_never_gives_wrong_plaintext() {
    let env = Env::new(&fixture_dir());
    let v = env.open("alice");
    let want = &env.expected.files["hello.txt"];
    let backing = v.backing_path(Path::new("hello.txt")).unwrap();
    let sidecar = v.paths.sidecar(&v.read_file_id(&backing).unwrap());
    let bytes = std::fs::read(&sidecar).unwrap();
    let parsed: format::Sidecar = format::decode_file(format::SIDECAR, &bytes).unwrap();
    // Bytes where a flip is caught as something other than tampering today
    // (see the notes below); everywhere else it must be Integrity/Corrupt.
    let keys = format::to_bytes(&parsed.keys);
    let keys_at = find(&bytes, &keys);
    let keys_range = keys_at..keys_at + keys.len() as u64;
    let mut outcomes: BTreeMap<&'static str, u32> = BTreeMap::new();
    for at in 0..bytes.len() as u64 {
        flip(&sidecar, at);
        let r = read_all(&v, &backing, "hello.txt", want);
        flip(&sidecar, at);
        let kind = match &r {
            Ok(()) => "ok with the right plaintext",
            Err(e) if is_integrity(e) => "integrity",
            // The key epochs and wraps are not signed (the manifest commits to
            // the key instead): a damaged wrap means no key, reported as denied.
            Err(Error::AccessDenied(_)) if keys_range.contains(&at) => "denied (damaged key wraps)",
            // The sidecar's own format_version byte: 1 becomes 0.
            Err(Error::UnsupportedVersion { found: 0, .. }) if at == 4 => "unsupported version",
            Err(e) => panic!("flipping sidecar byte {at}: unexpected {e:?}"),
        };
        *outcomes.entry(kind).or_default() += 1;
    }
    eprintln!(
        "{} sidecar bytes flipped one at a time: {outcomes:?}",
        bytes.len()
    );
    assert!(
        outcomes["integrity"] as usize > bytes.len() * 3 / 4,
        "{outcomes:?}"
    );
    read_all(&v, &backing, "hello.txt", want).expect("intact after the sweep");
}

// ---------------------------------------------------------------------------
// The inspector reads the fixture without an identity.

fn inspect(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coffer-inspect"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn fixture_inspector_locates_and_decodes() {
    let env = Env::new(&fixture_dir());
    let vault = env.vault_dir();
    let (code, out, err) = inspect(&["locate".as_ref(), vault.as_os_str(), "--json".as_ref()]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.len(), env.expected.files.len());
    let v = env.open("alice");
    let tree = tree_of(&v);
    for backing in tree.files.values() {
        let id = coffer::crypto::hex(&v.read_file_id(backing).unwrap());
        let row = rows
            .iter()
            .find(|r| r["backing"].as_str() == Some(backing.to_str().unwrap()))
            .unwrap_or_else(|| panic!("locate lists {}", backing.display()));
        assert_eq!(row["file_id"].as_str(), Some(id.as_str()));
        assert_eq!(row["sidecar_exists"], serde_json::Value::Bool(true));
    }
    let big = v.backing_path(Path::new("big.bin")).unwrap();
    let sidecar = v.paths.sidecar(&v.read_file_id(&big).unwrap());
    drop(v);

    let (code, out, err) = inspect(&["sidecar".as_ref(), sidecar.as_os_str(), "--json".as_ref()]);
    assert_eq!(code, 0, "{err}");
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["chunks"].as_array().unwrap().len(), 4);
    assert_eq!(s["manifest"]["body"]["size"], 200 * 1024);
    assert_eq!(s["manifest"]["unverified"], true);
    assert_eq!(s["consistency"]["chunks_root_matches"], true);

    let (code, out, err) = inspect(&["vault".as_ref(), vault.as_os_str(), "--json".as_ref()]);
    assert_eq!(code, 0, "{err}");
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["members"].as_array().unwrap().len(), 2);
    assert_eq!(
        s["sidecars"].as_u64().unwrap() as usize,
        env.expected.files.len()
    );
    assert_eq!(s["config"]["body"]["format_version"], 1);

    let (code, out, err) = inspect(&[
        "data".as_ref(),
        big.as_os_str(),
        "--slots".as_ref(),
        "--json".as_ref(),
    ]);
    assert_eq!(code, 0, "{err}");
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["slots"], 4);
    assert_eq!(s["length_is_canonical"], true);

    // Errors: a missing file is bad input (2); a damaged record is corrupt (4).
    let (code, _, err) = inspect(&["sidecar".as_ref(), vault.join("nope.meta").as_os_str()]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    let (code, _, _) = inspect(&["locate".as_ref(), env.root().as_os_str()]);
    assert_eq!(code, 2, "not a vault");
    flip(&sidecar, 0);
    let (code, _, err) = inspect(&["sidecar".as_ref(), sidecar.as_os_str()]);
    assert_eq!(code, 4, "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}
