//! Backing names: each plaintext name is encrypted (SIV, per directory id) and
//! base64url-encoded. Names whose encoding exceeds 255 bytes are stored as
//! `~` + base64url(BLAKE3(encrypted name)), with the full encrypted name in a
//! side file `.~<hash>.name` beside it.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use base64::Engine;

use super::Vault;
use crate::crypto::names::NameKind;
use crate::error::{Error, Result};
use crate::format::{self, LongName, FORMAT_VERSION};
use crate::store::{atomic_write, read_limited, Durability, LONG_NAME_PREFIX, LONG_NAME_SUFFIX};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
/// Longest backing name most filesystems accept.
const MAX_BACKING_NAME: usize = 255;
pub const MAX_NAME: usize = 255;

/// A plaintext name mapped to its backing form.
pub struct BackingName {
    pub name: OsString,
    /// For long names: the side file's name and contents to write on create.
    pub long: Option<(OsString, Vec<u8>)>,
}

pub fn long_name_side_file(backing: &OsStr) -> Option<OsString> {
    let b = backing.as_bytes();
    if b.starts_with(LONG_NAME_PREFIX.as_bytes()) {
        let mut s = OsString::from(".");
        s.push(backing);
        s.push(LONG_NAME_SUFFIX);
        Some(s)
    } else {
        None
    }
}

impl Vault {
    pub fn encrypt_name(&self, dir_id: &[u8; 16], name: &OsStr) -> Result<BackingName> {
        let raw = name.as_bytes();
        if raw.is_empty() || raw.len() > MAX_NAME || raw.contains(&b'/') || raw.contains(&0) {
            return Err(Error::BadInput("invalid file name".into()));
        }
        let enc = self.names().encrypt(NameKind::Entry, dir_id, raw);
        let text = B64.encode(&enc);
        if text.len() <= MAX_BACKING_NAME {
            return Ok(BackingName {
                name: text.into(),
                long: None,
            });
        }
        let hashed = format!(
            "{LONG_NAME_PREFIX}{}",
            B64.encode(&blake3::hash(&enc).as_bytes()[..24])
        );
        let side = long_name_side_file(OsStr::new(&hashed)).expect("hashed names carry the prefix");
        let body = format::encode_file(
            format::LONG_NAME,
            &LongName {
                format_version: FORMAT_VERSION,
                encrypted: enc,
            },
        );
        Ok(BackingName {
            name: hashed.into(),
            long: Some((side, body)),
        })
    }

    /// Decrypts a backing name found in `dir`; `None` for entries that are not
    /// ours or fail authentication (reported by the caller).
    pub fn decrypt_name(&self, dir: &Path, dir_id: &[u8; 16], backing: &OsStr) -> Result<OsString> {
        let b = backing.as_bytes();
        let enc = if b.starts_with(LONG_NAME_PREFIX.as_bytes()) {
            let side = long_name_side_file(backing).expect("checked prefix");
            let bytes = read_limited(&dir.join(&side), format::LONG_NAME.max_len, "long name")?;
            let ln: LongName = format::decode_file(format::LONG_NAME, &bytes)?;
            format::check_version(ln.format_version)?;
            let expect = format!(
                "{LONG_NAME_PREFIX}{}",
                B64.encode(&blake3::hash(&ln.encrypted).as_bytes()[..24])
            );
            if expect.as_bytes() != b {
                return Err(Error::integrity(
                    "long-name side file does not match its entry",
                ));
            }
            ln.encrypted
        } else {
            B64.decode(b)
                .map_err(|_| Error::integrity("backing name is not base64url"))?
        };
        let plain = self
            .names()
            .decrypt(NameKind::Entry, dir_id, &enc)
            .ok_or_else(|| Error::integrity("encrypted name fails authentication"))?;
        Ok(OsString::from_vec(plain))
    }

    /// Writes the side file of a long name (before the entry itself appears).
    pub fn write_long_name(&self, dir: &Path, bn: &BackingName) -> Result<()> {
        if let Some((side, body)) = &bn.long {
            atomic_write(&dir.join(side), body, Durability::Lazy)?;
        }
        Ok(())
    }

    /// Removes the side file of a long name, if it is one.
    pub fn remove_long_name(&self, dir: &Path, backing: &OsStr) {
        if let Some(side) = long_name_side_file(backing) {
            let _ = std::fs::remove_file(dir.join(side));
        }
    }

    pub fn encrypt_symlink(&self, target: &OsStr) -> Result<OsString> {
        let raw = target.as_bytes();
        if raw.is_empty() || raw.len() > 2048 {
            return Err(Error::BadInput("symlink target too long".into()));
        }
        Ok(B64
            .encode(self.names().encrypt(NameKind::SymlinkTarget, &[0; 16], raw))
            .into())
    }

    pub fn decrypt_symlink(&self, stored: &OsStr) -> Result<OsString> {
        let enc = B64
            .decode(stored.as_bytes())
            .map_err(|_| Error::integrity("symlink target is not base64url"))?;
        let plain = self
            .names()
            .decrypt(NameKind::SymlinkTarget, &[0; 16], &enc)
            .ok_or_else(|| Error::integrity("symlink target fails authentication"))?;
        Ok(OsString::from_vec(plain))
    }

    /// Backing xattr name for a user xattr (`user.` + encrypted rest).
    pub fn encrypt_xattr_name(&self, name: &OsStr) -> Result<OsString> {
        let raw = name.as_bytes();
        let rest = raw
            .strip_prefix(b"user.")
            .ok_or_else(|| Error::BadInput("only user.* xattrs".into()))?;
        let enc = B64.encode(self.names().encrypt(NameKind::XattrName, &[0; 16], rest));
        let full = format!("user.c.{enc}");
        if full.len() > 255 {
            return Err(Error::BadInput("xattr name too long".into()));
        }
        Ok(full.into())
    }

    pub fn decrypt_xattr_name(&self, backing: &OsStr) -> Option<OsString> {
        let enc = backing.as_bytes().strip_prefix(b"user.c.")?;
        let raw = B64.decode(enc).ok()?;
        let plain = self.names().decrypt(NameKind::XattrName, &[0; 16], &raw)?;
        let mut out = b"user.".to_vec();
        out.extend_from_slice(&plain);
        Some(OsString::from_vec(out))
    }

    /// xattr values: XChaCha20-Poly1305 under a key derived from the name key,
    /// bound to the xattr name. Visible to all members, like names.
    /// Seals an xattr value bound to its name and to the entry it sits on
    /// (`entry_id`: a file id or dir id), so values cannot be moved between
    /// attributes or files.
    pub fn seal_xattr_value(&self, entry_id: &[u8; 16], name: &OsStr, value: &[u8]) -> Vec<u8> {
        crate::crypto::chunk::seal(&self.xattr_key(), &xattr_id(entry_id, name), 0, 0, value)
    }

    pub fn open_xattr_value(
        &self,
        entry_id: &[u8; 16],
        name: &OsStr,
        stored: &[u8],
    ) -> Result<Vec<u8>> {
        crate::crypto::chunk::open(&self.xattr_key(), &xattr_id(entry_id, name), 0, 0, stored)
            .ok_or_else(|| Error::integrity("xattr value fails authentication (modified or moved)"))
    }

    fn xattr_key(&self) -> crate::crypto::SecretKey {
        self.names().xattr_key()
    }
}

fn xattr_id(entry_id: &[u8; 16], name: &OsStr) -> [u8; 16] {
    let mut h = blake3::Hasher::new_derive_key("coffer 2026 xattr binding v1");
    h.update(entry_id);
    h.update(name.as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&h.finalize().as_bytes()[..16]);
    id
}
