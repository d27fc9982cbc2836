//! Identity files on disk (`CFRI || postcard(IdentityFile)`, see `format::identity`):
//! loading, with the passphrase when the seed is sealed, and saving with mode 0600
//! through a new temp file renamed into place.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::crypto::identity::{open_seed, seal_seed};
use crate::crypto::Identity;
use crate::error::{Error, Result};
use crate::format::identity::{IdentityFile, IdentitySecret};
use crate::format::{check_version, decode_file, encode_file, FORMAT_VERSION, IDENTITY};

/// An identity read from its file.
pub struct Loaded {
    pub identity: Identity,
    /// The name stored in the file (the default member name).
    pub name: String,
    pub path: PathBuf,
    /// Whether the seed was sealed under a passphrase.
    pub protected: bool,
}

/// How to store the seed.
pub enum Protection<'a> {
    /// The seed in the clear (`--no-passphrase`, for scripts and tests).
    None,
    /// Sealed under this passphrase (argon2id + XChaCha20-Poly1305).
    Passphrase(&'a [u8]),
}

/// Reads the identity at `path`. `passphrase` is asked only when the file is sealed.
pub fn load(
    path: &Path,
    passphrase: impl FnOnce(&Path) -> Result<Zeroizing<String>>,
) -> Result<Loaded> {
    let bytes = read_identity_bytes(path)?;
    if bytes.len() < 4 || bytes[..4] != IDENTITY.magic {
        return Err(Error::BadInput(format!(
            "{} is not a coffer identity file; create one with `coffer keygen --out FILE`",
            path.display()
        )));
    }
    let file: IdentityFile = decode_file(IDENTITY, &bytes).map_err(|e| match e {
        Error::Corrupt { kind, detail } => Error::Corrupt {
            kind,
            detail: format!("{}: {detail}", path.display()),
        },
        other => other,
    })?;
    check_version(file.format_version)?;
    let (identity, protected) = match &file.secret {
        IdentitySecret::Unprotected(seed) => (Identity::from_seed(*seed), false),
        IdentitySecret::Passphrase(seal) => {
            let pass = passphrase(path)?;
            let seed = open_seed(seal, pass.as_bytes()).map_err(|e| match e {
                Error::AccessDenied(m) => Error::AccessDenied(format!("{m} ({})", path.display())),
                other => other,
            })?;
            (Identity::from_seed(seed), true)
        }
    };
    Ok(Loaded {
        identity,
        name: file.name.clone(),
        path: path.to_path_buf(),
        protected,
    })
}

fn read_identity_bytes(path: &Path) -> Result<Vec<u8>> {
    let meta = fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::BadInput(format!(
            "identity file {} does not exist; create one with `coffer keygen --out FILE`",
            path.display()
        )),
        _ => Error::io(path, e),
    })?;
    if !meta.is_file() {
        return Err(Error::BadInput(format!(
            "{} is not a coffer identity file (not a regular file)",
            path.display()
        )));
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        eprintln!(
            "coffer: warning: identity file {} is accessible by other users (mode {:04o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o7777,
            path.display()
        );
    }
    let max = IDENTITY.max_len + 4;
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|f| f.take(max as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() > max {
        return Err(Error::BadInput(format!(
            "{} is not a coffer identity file (too large)",
            path.display()
        )));
    }
    Ok(bytes)
}

/// Writes `identity` to `path` with mode 0600. Without `overwrite`, an existing
/// `path` is left alone and the result is a bad-input error (exit 2).
pub fn save(
    path: &Path,
    name: &str,
    identity: &Identity,
    protection: Protection<'_>,
    overwrite: bool,
) -> Result<()> {
    if let Ok(m) = fs::symlink_metadata(path) {
        if m.is_dir() {
            return Err(Error::BadInput(format!(
                "{} is a directory; --out needs a file name",
                path.display()
            )));
        }
        if !overwrite {
            return Err(exists(path));
        }
    }
    let secret = match protection {
        Protection::None => IdentitySecret::Unprotected(*identity.seed()),
        Protection::Passphrase(pass) => {
            IdentitySecret::Passphrase(seal_seed(identity.seed(), pass)?)
        }
    };
    let file = IdentityFile {
        format_version: FORMAT_VERSION,
        name: name.to_string(),
        secret,
    };
    let bytes = Zeroizing::new(encode_file(IDENTITY, &file));
    write_new_0600(path, &bytes, overwrite)
}

fn exists(path: &Path) -> Error {
    Error::BadInput(format!(
        "{} already exists; pass --force to overwrite it (the identity in it is then lost)",
        path.display()
    ))
}

/// Temp file created with `create_new` and mode 0600, fsync'ed, then moved into
/// place: renamed (overwrite) or hard-linked (fails if the target appeared meanwhile).
fn write_new_0600(path: &Path, bytes: &[u8], overwrite: bool) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::BadInput(format!("{} is not a file name", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        file_name.to_string_lossy(),
        std::process::id(),
        crate::crypto::hex(&crate::crypto::random_bytes::<6>())
    ));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, e))?;
    let placed = (|| -> Result<()> {
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        if overwrite {
            return fs::rename(&tmp, path).map_err(|e| Error::io(path, e));
        }
        match fs::hard_link(&tmp, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(exists(path)),
            // A filesystem without hard links: check, then rename.
            Err(_) if fs::symlink_metadata(path).is_err() => {
                fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
            }
            Err(_) => Err(exists(path)),
        }
    })();
    drop(f);
    let _ = fs::remove_file(&tmp);
    placed?;
    // Make the new name durable too (best effort: some filesystems refuse).
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast_kdf() {
        std::env::set_var("COFFER_TEST_FAST_KDF", "1");
    }

    fn pass(p: &'static str) -> impl FnOnce(&Path) -> Result<Zeroizing<String>> {
        move |_| Ok(Zeroizing::new(p.to_string()))
    }

    fn no_prompt(_: &Path) -> Result<Zeroizing<String>> {
        panic!("an unprotected identity must not ask for a passphrase")
    }

    #[test]
    fn unprotected_round_trip_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alice.key");
        let id = Identity::generate();
        save(&path, "alice", &id, Protection::None, false).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        let loaded = load(&path, no_prompt).unwrap();
        assert_eq!(loaded.identity.public(), id.public());
        assert_eq!(loaded.name, "alice");
        assert!(!loaded.protected);
        // No temp files left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn sealed_round_trip_and_wrong_passphrase() {
        fast_kdf();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bob.key");
        let id = Identity::generate();
        save(&path, "bob", &id, Protection::Passphrase(b"s3cret"), false).unwrap();
        let loaded = load(&path, pass("s3cret")).unwrap();
        assert_eq!(loaded.identity.public(), id.public());
        assert!(loaded.protected);
        let err = load(&path, pass("wrong")).err().unwrap();
        assert!(matches!(err, Error::AccessDenied(_)), "{err}");
        assert_eq!(err.exit_code(), 3);
    }

    #[test]
    fn refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.key");
        let first = Identity::generate();
        save(&path, "a", &first, Protection::None, false).unwrap();
        let second = Identity::generate();
        let err = save(&path, "a", &second, Protection::None, false).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert_eq!(
            load(&path, no_prompt).unwrap().identity.public(),
            first.public()
        );
        save(&path, "a", &second, Protection::None, true).unwrap();
        assert_eq!(
            load(&path, no_prompt).unwrap().identity.public(),
            second.public()
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn wrong_files_are_bad_input_and_damage_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("notes.txt");
        fs::write(&other, b"hello world").unwrap();
        let err = load(&other, no_prompt).err().unwrap();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("not a coffer identity file"));

        let missing = load(&dir.path().join("missing.key"), no_prompt)
            .err()
            .unwrap();
        assert_eq!(missing.exit_code(), 2);

        let path = dir.path().join("a.key");
        save(&path, "a", &Identity::generate(), Protection::None, false).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 5);
        fs::write(&path, &bytes).unwrap();
        assert_eq!(load(&path, no_prompt).err().unwrap().exit_code(), 4);
    }

    #[test]
    fn refuses_a_directory_as_output() {
        let dir = tempfile::tempdir().unwrap();
        let err = save(
            dir.path(),
            "a",
            &Identity::generate(),
            Protection::None,
            true,
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
