//! On-disk records and their encodings (see docs/FORMAT.md, kept in step).
//!
//! Every record file is `magic (4 bytes) || postcard(record)`; every record carries
//! a format version. Every decode checks a size limit first, so hostile files
//! cannot make coffer allocate without bound. Signed records keep the exact bytes
//! that were signed: verify first, decode after.

pub mod copies;
pub mod data;
pub mod identity;
pub mod records;
pub mod signed;

pub use records::*;
pub use signed::Signed;

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};

/// The format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u16 = 1;

/// Record kinds with their file magic and size limit.
#[derive(Clone, Copy, Debug)]
pub struct Kind {
    pub name: &'static str,
    pub magic: [u8; 4],
    pub max_len: usize,
}

pub const VAULT_CONFIG: Kind = Kind {
    name: "vault config",
    magic: *b"CFRV",
    max_len: 4096,
};
pub const MEMBER: Kind = Kind {
    name: "member record",
    magic: *b"CFRM",
    max_len: 8192,
};
pub const IDENTITY: Kind = Kind {
    name: "identity file",
    magic: *b"CFRI",
    max_len: 4096,
};
pub const DIR: Kind = Kind {
    name: "directory record",
    magic: *b"CFRD",
    max_len: 1 << 20,
};
/// Large enough for the chunk list of a ~100 GiB file at 64 KiB chunks.
pub const SIDECAR: Kind = Kind {
    name: "file sidecar",
    magic: *b"CFRS",
    max_len: 64 << 20,
};
pub const JOURNAL: Kind = Kind {
    name: "write journal",
    magic: *b"CFRJ",
    max_len: 256 << 20,
};
/// At the journal's path, told apart by its magic.
pub const RESEAL_JOURNAL: Kind = Kind {
    name: "re-encryption journal",
    magic: *b"CFRK",
    max_len: 4 << 20,
};
pub const LONG_NAME: Kind = Kind {
    name: "long name",
    magic: *b"CFRN",
    max_len: 8192,
};

/// postcard encoding of a record without magic (used for signed bodies).
pub fn to_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("postcard encoding of coffer records cannot fail")
}

/// Size-limited postcard decode that must consume all input.
pub fn from_bytes<T: DeserializeOwned>(
    kind: &'static str,
    max_len: usize,
    bytes: &[u8],
) -> Result<T> {
    if bytes.len() > max_len {
        return Err(Error::corrupt(
            kind,
            format!("{} bytes exceeds the limit of {max_len}", bytes.len()),
        ));
    }
    let (value, rest) =
        postcard::take_from_bytes::<T>(bytes).map_err(|e| Error::corrupt(kind, e.to_string()))?;
    if !rest.is_empty() {
        return Err(Error::corrupt(
            kind,
            format!("{} trailing bytes", rest.len()),
        ));
    }
    Ok(value)
}

/// `magic || postcard(record)`.
pub fn encode_file<T: Serialize>(kind: Kind, value: &T) -> Vec<u8> {
    let mut out = kind.magic.to_vec();
    out.extend_from_slice(&to_bytes(value));
    out
}

pub fn decode_file<T: DeserializeOwned>(kind: Kind, bytes: &[u8]) -> Result<T> {
    if bytes.len() < 4 || bytes[..4] != kind.magic {
        return Err(Error::corrupt(
            kind.name,
            "wrong magic bytes (not a coffer file of this kind)",
        ));
    }
    from_bytes(kind.name, kind.max_len, &bytes[4..])
}

/// Rejects records written by a newer coffer with a clear message.
pub fn check_version(found: u16) -> Result<()> {
    check_version_up_to(found, FORMAT_VERSION)
}

/// [`check_version`] for a record kind versioned on its own (the history log).
pub fn check_version_up_to(found: u16, newest: u16) -> Result<()> {
    if found == 0 {
        return Err(Error::corrupt("record", "format version 0 does not exist"));
    }
    if found > newest {
        return Err(Error::UnsupportedVersion {
            found,
            supported: newest,
        });
    }
    Ok(())
}
