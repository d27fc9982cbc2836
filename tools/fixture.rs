//! `coffer-fixture OUT_DIR`: generates the fixture vault that
//! `tests/fixture_vault.rs` opens (committed as `tests/fixtures/vault-v1/`).
//!
//! It uses the library directly (no FUSE mount) and does what the mount does for
//! each operation: encrypt the name in its directory, write long-name side files
//! and directory records, create and commit files, and bind each entry to its id
//! in the signed history (`Vault::record_link`).
//!
//! Output:
//! ```text
//! OUT_DIR/vault/                 the vault (alice admin, bob member)
//! OUT_DIR/identities/alice.key   unprotected identity files (fixed seeds [1;32], [2;32])
//! OUT_DIR/identities/bob.key
//! OUT_DIR/expected.json          plaintext paths, BLAKE3 of contents, readers, symlinks
//! ```
//! Ids, nonces and ephemeral keys are random, so two runs differ byte for byte
//! but describe the same plaintext. Git keeps neither xattrs nor empty
//! directories, so the fixture has neither.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use coffer::crypto::{hex, random_bytes, Identity};
use coffer::format::identity::{IdentityFile, IdentitySecret};
use coffer::format::{self, Right, FORMAT_VERSION, IDENTITY};
use coffer::store::Durability;
use coffer::vault::share::RevokeMode;
use coffer::vault::Vault;
use coffer::{Error, Result};

const ALICE_SEED: [u8; 32] = [1; 32];
const BOB_SEED: [u8; 32] = [2; 32];

/// The 200 KiB file: four 64 KiB chunks, the last one partial.
pub const BIG_LEN: usize = 200 * 1024;

fn big_content() -> Vec<u8> {
    // A deterministic pattern that differs in every chunk and never repeats a
    // whole chunk (so no chunk is all zeros and becomes a hole).
    (0..BIG_LEN as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ (i >> 16) as u8)
        .collect()
}

fn long_name() -> String {
    // 200 bytes: longer than the 175 bytes that fit inline in a 255-byte backing name.
    let stem = "a-file-name-two-hundred-bytes-long-";
    let mut s = stem.to_string();
    while s.len() < 196 {
        s.push((b'a' + (s.len() % 26) as u8) as char);
    }
    s.push_str(".txt");
    assert_eq!(s.len(), 200);
    s
}

#[derive(serde::Serialize)]
struct ExpectedFile {
    size: u64,
    blake3: String,
    /// Members holding read (by name); the others must get AccessDenied.
    readers: Vec<String>,
}

#[derive(serde::Serialize)]
struct ExpectedMember {
    identity: String,
    member_id: String,
    public_key: String,
    admin: bool,
}

#[derive(serde::Serialize)]
struct Expected {
    generator: String,
    format_version: u16,
    vault: String,
    chunk_log2: u8,
    members: BTreeMap<String, ExpectedMember>,
    files: BTreeMap<String, ExpectedFile>,
    directories: Vec<String>,
    symlinks: BTreeMap<String, String>,
}

struct Builder<'a> {
    vault: &'a Vault,
    expected: Expected,
}

impl Builder<'_> {
    /// Backing path for `name` in the backing directory `dir`; writes the
    /// long-name side file first when the name needs one (as the mount does).
    fn entry(&self, dir: &Path, name: &str) -> Result<PathBuf> {
        let dir_id = self.vault.read_dir_record(dir)?.dir_id;
        let bn = self.vault.encrypt_name(&dir_id, OsStr::new(name))?;
        self.vault.write_long_name(dir, &bn)?;
        Ok(dir.join(&bn.name))
    }

    fn link(&self, id: [u8; 16], backing: &Path) -> Result<()> {
        let parent = backing.parent().expect("entries have a parent");
        let name = backing.file_name().expect("entries have a name");
        self.vault.record_link(id, parent, name, true)
    }

    fn mkdir(&mut self, dir: &Path, name: &str, plain: &str) -> Result<PathBuf> {
        let path = self.entry(dir, name)?;
        std::fs::create_dir(&path).map_err(|e| Error::io(&path, e))?;
        let id = self.vault.write_dir_record(&path)?;
        self.link(id, &path)?;
        self.expected.directories.push(plain.to_string());
        Ok(path)
    }

    /// Creates a file, writes `parts` (offset, bytes) each followed by a commit,
    /// and returns the open file for further changes.
    fn file(
        &mut self,
        dir: &Path,
        name: &str,
        plain: &str,
        parts: &[(u64, &[u8])],
    ) -> Result<coffer::vault::OpenFile> {
        let path = self.entry(dir, name)?;
        // create_file binds the new entry to its id in the history itself.
        let mut f = self.vault.create_file(&path, 0o644, plain.to_string())?;
        let mut content = Vec::new();
        for (offset, bytes) in parts {
            f.write(self.vault, *offset, bytes)?;
            f.commit(self.vault, Durability::Sync)?;
            let end = *offset as usize + bytes.len();
            if content.len() < end {
                content.resize(end, 0);
            }
            content[*offset as usize..end].copy_from_slice(bytes);
        }
        if parts.is_empty() {
            // An empty file's sidecar is written by its first commit too.
            f.commit(self.vault, Durability::Sync)?;
        }
        assert_eq!(f.size(), content.len() as u64);
        self.expected.files.insert(
            plain.to_string(),
            ExpectedFile {
                size: content.len() as u64,
                blake3: blake3::hash(&content).to_hex().to_string(),
                readers: vec!["alice".into()],
            },
        );
        Ok(f)
    }

    fn symlink(&mut self, dir: &Path, name: &str, plain: &str, target: &str) -> Result<()> {
        let path = self.entry(dir, name)?;
        let enc = self.vault.encrypt_symlink(OsStr::new(target))?;
        std::os::unix::fs::symlink(&enc, &path).map_err(|e| Error::io(&path, e))?;
        self.expected
            .symlinks
            .insert(plain.to_string(), target.to_string());
        Ok(())
    }
}

fn write_identity(path: &Path, name: &str, seed: [u8; 32]) -> Result<()> {
    let file = IdentityFile {
        format_version: FORMAT_VERSION,
        name: name.to_string(),
        secret: IdentitySecret::Unprotected(seed),
    };
    let bytes = format::encode_file(IDENTITY, &file);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    std::io::Write::write_all(&mut f, &bytes).map_err(|e| Error::io(path, e))
}

fn generate(out: &Path) -> Result<()> {
    if out.exists()
        && std::fs::read_dir(out)
            .map_err(|e| Error::io(out, e))?
            .next()
            .is_some()
    {
        return Err(Error::BadInput(format!(
            "{} is not empty; give a new or empty directory",
            out.display()
        )));
    }
    let ids = out.join("identities");
    std::fs::create_dir_all(&ids).map_err(|e| Error::io(&ids, e))?;
    write_identity(&ids.join("alice.key"), "alice", ALICE_SEED)?;
    write_identity(&ids.join("bob.key"), "bob", BOB_SEED)?;

    let alice = Identity::from_seed(ALICE_SEED);
    let bob = Identity::from_seed(BOB_SEED);
    let member = |name: &str, id: &Identity, admin: bool| {
        (
            name.to_string(),
            ExpectedMember {
                identity: format!("identities/{name}.key"),
                member_id: id.member_id().to_hex(),
                public_key: id.public().encode(),
                admin,
            },
        )
    };
    let members = BTreeMap::from([member("alice", &alice, true), member("bob", &bob, false)]);

    let vault = Vault::init(&out.join("vault"), alice, "alice")?;
    let bob_record = vault.add_member("bob", bob.public())?;
    let mut b = Builder {
        vault: &vault,
        expected: Expected {
            generator: "coffer-fixture".into(),
            format_version: FORMAT_VERSION,
            vault: "vault".into(),
            chunk_log2: vault.chunk_log2(),
            members,
            files: BTreeMap::new(),
            directories: Vec::new(),
            symlinks: BTreeMap::new(),
        },
    };
    let tree = vault.paths.tree();

    // A small text file written in two versions (a version chain of 3 manifests).
    b.file(
        &tree,
        "hello.txt",
        "hello.txt",
        &[
            (0, b"Hello, coffer!\n"),
            (15, b"This is the fixture vault v1.\n"),
        ],
    )?;
    // 200 KiB over two commits: chunks 0-1, then 2-3 (the last one 8 KiB).
    let big = big_content();
    b.file(
        &tree,
        "big.bin",
        "big.bin",
        &[(0, &big[..128 * 1024]), (128 * 1024, &big[128 * 1024..])],
    )?;
    // An empty file: a header and no chunks.
    b.file(&tree, "empty", "empty", &[])?;
    // A sparse file: chunk 0 is a hole (all zeros are never encrypted).
    b.file(
        &tree,
        "sparse.bin",
        "sparse.bin",
        &[(65_536 + 100, b"after a 64 KiB hole\n")],
    )?;
    // A name too long to fit a backing name: `~hash` plus a `.~hash.name` side file.
    let long = long_name();
    b.file(
        &tree,
        &long,
        &long,
        &[(0, b"a file with a 200-byte name\n")],
    )?;
    // A subdirectory with its own dir id (names in it encrypt differently).
    let docs = b.mkdir(&tree, "docs", "docs")?;
    b.file(
        &docs,
        "notes.md",
        "docs/notes.md",
        &[(0, b"# Notes\n\nInside a subdirectory.\n")],
    )?;
    b.file(
        &docs,
        "hello.txt",
        "docs/hello.txt",
        &[(0, b"same name, other directory\n")],
    )?;
    // A symlink: the backing symlink's target is the encrypted target.
    b.symlink(&tree, "link-to-hello", "link-to-hello", "hello.txt")?;
    b.symlink(&docs, "up", "docs/up", "../big.bin")?;

    // Sharing: bob holds read on one file (two wraps, a Grant entry) ...
    let mut shared = b.file(
        &tree,
        "shared.txt",
        "shared.txt",
        &[(0, b"alice shares this with bob\n")],
    )?;
    shared.grant(&vault, &bob_record, Right::Read)?;
    b.expected
        .files
        .get_mut("shared.txt")
        .expect("created above")
        .readers
        .push("bob".into());
    // ... and lost it on another, lazily: Grant, Revoke and Rotate entries, a
    // second key epoch whose key seals epoch 0's (`EpochKeys::earlier`), and
    // chunks still on epoch 0.
    let mut revoked = b.file(
        &tree,
        "revoked.txt",
        "revoked.txt",
        &[(0, b"bob could read this once\n")],
    )?;
    revoked.grant(&vault, &bob_record, Right::Read)?;
    revoked.revoke(
        &vault,
        bob_record.public.member_id(),
        Right::Read,
        RevokeMode::Lazy,
    )?;

    // A directory whose signed default grants give bob read on what is created
    // in it (`DirRecord::defaults`, a `Create` entry naming a reader).
    let team = b.mkdir(&tree, "team", "team")?;
    vault.update_dir_defaults(&team, |d| d.readers.push(bob_record.public.member_id()))?;
    b.file(
        &team,
        "plan.txt",
        "team/plan.txt",
        &[(0, b"bob reads this through the directory default\n")],
    )?;
    b.expected
        .files
        .get_mut("team/plan.txt")
        .expect("created above")
        .readers
        .push("bob".into());

    let expected = serde_json::to_string_pretty(&b.expected).expect("plain data serializes");
    let path = out.join("expected.json");
    std::fs::write(&path, expected + "\n").map_err(|e| Error::io(&path, e))?;
    // Dropping the vault checkpoints alice's history log.
    drop(vault);
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.len() != 1 || args[0] == "--help" || args[0] == "-h" {
        eprintln!("usage: coffer-fixture OUT_DIR   (writes OUT_DIR/vault, OUT_DIR/identities, OUT_DIR/expected.json)");
        return ExitCode::from(2);
    }
    let out = PathBuf::from(&args[0]);
    // Vault::init pins the vault and records what it has seen under
    // $XDG_STATE_HOME: keep that out of the user's own state.
    let state = std::env::temp_dir().join(format!(
        "coffer-fixture-state-{}",
        hex(&random_bytes::<8>())
    ));
    std::env::set_var("XDG_STATE_HOME", &state);
    let result = generate(&out);
    let _ = std::fs::remove_dir_all(&state);
    match result {
        Ok(()) => {
            println!("fixture vault written to {}", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("coffer-fixture: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
