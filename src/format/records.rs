//! The records a vault holds. Field order is the wire order (postcard); changing
//! it is a format change and needs a new `FORMAT_VERSION`.

use serde::{Deserialize, Serialize};

use super::signed::SignedBody;
use crate::crypto::wrap::Wrap;
use crate::crypto::{MemberId, PublicIdentity};

/// `coffer.vault`: signed by the admin named inside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultConfig {
    pub format_version: u16,
    pub vault_id: [u8; 16],
    pub created_unix: u64,
    pub admin: PublicIdentity,
    /// log2 of the plaintext chunk size of new files (16 = 64 KiB).
    pub chunk_log2: u8,
}

impl SignedBody for VaultConfig {
    const DOMAIN: &'static [u8] = b"coffer vault config v1\0";
    const KIND: &'static str = "vault config";
    const MAX_LEN: usize = 4096;
}

/// `members/<member id>.member`: who belongs to the vault, signed by an admin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub format_version: u16,
    pub vault_id: [u8; 16],
    pub name: String,
    pub public: PublicIdentity,
    pub admin: bool,
    pub added_by: MemberId,
    pub added_unix: u64,
    /// The vault's name key wrapped for this member (file id = vault id, epoch 0).
    pub name_key: Wrap,
}

impl SignedBody for MemberRecord {
    const DOMAIN: &'static [u8] = b"coffer member record v1\0";
    const KIND: &'static str = "member record";
    const MAX_LEN: usize = 4096;
}

/// `.coffer-dir` in every backing directory: the id names are encrypted under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirRecord {
    pub format_version: u16,
    pub dir_id: [u8; 16],
    /// Grants that files created in this directory start with (sharing, `-r`).
    pub defaults: Option<super::Signed<DirDefaults>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirDefaults {
    pub dir_id: [u8; 16],
    pub readers: Vec<MemberId>,
    pub updaters: Vec<MemberId>,
}

impl SignedBody for DirDefaults {
    const DOMAIN: &'static [u8] = b"coffer dir defaults v1\0";
    const KIND: &'static str = "directory defaults";
    const MAX_LEN: usize = 1 << 20;
}

/// A right on one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Right {
    Read,
    Update,
}

/// One change to a file's access list. Entries chain by hash back to `Create`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    pub file_id: [u8; 16],
    pub seq: u64,
    /// Hash of the previous signed entry (zero for the first).
    pub prev: [u8; 32],
    pub actor: MemberId,
    pub time_unix: u64,
    pub change: AccessChange,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccessChange {
    /// The creator's first entry: the starting readers and updaters.
    Create {
        readers: Vec<MemberId>,
        updaters: Vec<MemberId>,
    },
    Grant {
        member: MemberId,
        right: Right,
    },
    /// Takes `right` (Read takes Update too). `content_pin` is the hash of the
    /// signed manifest current at the revocation: the revoker vouches for it, so
    /// content the revoked member wrote before stays valid and nothing they sign
    /// later is accepted.
    Revoke {
        member: MemberId,
        right: Right,
        content_pin: [u8; 32],
    },
    /// A new key epoch: from now on content is written under `epoch`.
    Rotate {
        epoch: u32,
    },
}

impl SignedBody for AccessEntry {
    const DOMAIN: &'static [u8] = b"coffer access entry v1\0";
    const KIND: &'static str = "access entry";
    const MAX_LEN: usize = 4096;
}

/// One key epoch of a file: its content key wrapped for each reader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochKeys {
    pub epoch: u32,
    pub wraps: Vec<Wrap>,
    /// Keys of earlier epochs sealed under this epoch's key, so readers of the
    /// newest epoch can still read chunks not yet migrated (lazy revocation).
    pub earlier: Option<Vec<u8>>,
}

/// Where one chunk stands: its key epoch and the BLAKE3 hash of its stored bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub epoch: u32,
    pub hash: [u8; 32],
}

/// A content version, signed by its writer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub file_id: [u8; 16],
    pub version: u64,
    /// Hash of the previous signed manifest (zero for version 1).
    pub prev: [u8; 32],
    pub writer: MemberId,
    pub time_unix: u64,
    /// Plaintext length in bytes.
    pub size: u64,
    pub chunk_log2: u8,
    pub chunk_count: u64,
    /// BLAKE3 over the sidecar's chunk list (epochs and stored-chunk hashes).
    pub chunks_root: [u8; 32],
    /// The epoch new writes use.
    pub epoch: u32,
    /// Commitments to the key of every epoch a chunk uses.
    pub key_commits: Vec<(u32, [u8; 32])>,
    /// Hash of the newest access entry the writer saw, so content is tied to the
    /// access state that allowed it.
    pub access_head: [u8; 32],
}

impl SignedBody for Manifest {
    const DOMAIN: &'static [u8] = b"coffer manifest v1\0";
    const KIND: &'static str = "manifest";
    const MAX_LEN: usize = 64 * 1024;
}

/// `meta/<aa>/<file id>.meta`: everything about one file except its content.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sidecar {
    pub format_version: u16,
    pub file_id: [u8; 16],
    pub access: Vec<super::Signed<AccessEntry>>,
    pub keys: Vec<EpochKeys>,
    pub manifest: super::Signed<Manifest>,
    /// One entry per chunk; `None` is a hole (reads as zeros).
    pub chunks: Vec<Option<ChunkRef>>,
}

/// `meta/<aa>/<file id>.journal`: chunks that overwrite committed ones, written
/// before the sidecar that refers to them so a crash can be rolled forward.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Journal {
    pub format_version: u16,
    pub file_id: [u8; 16],
    /// Hash of the signed manifest these chunks belong to.
    pub manifest_hash: [u8; 32],
    #[serde(with = "chunk_list")]
    pub chunks: Vec<(u64, Vec<u8>)>,
}

/// The journal's chunks with each stored chunk as one byte string. postcard
/// writes a byte string exactly like a sequence of `u8` (length, then the
/// bytes), so the wire format is unchanged; this only avoids serde's per-byte
/// path, which was the largest cost of a commit of overwritten chunks.
mod chunk_list {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::ser::{SerializeSeq, Serializer};
    use serde::{Deserialize, Serialize};

    struct Bytes<'a>(&'a [u8]);

    impl Serialize for Bytes<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    struct ByteBuf(Vec<u8>);

    impl<'de> Deserialize<'de> for ByteBuf {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = ByteBuf;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a byte string")
                }
                fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                    Ok(ByteBuf(v.to_vec()))
                }
                fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                    Ok(ByteBuf(v))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<ByteBuf, A::Error> {
                    let mut v = Vec::with_capacity(a.size_hint().unwrap_or(0).min(1 << 20));
                    while let Some(b) = a.next_element()? {
                        v.push(b);
                    }
                    Ok(ByteBuf(v))
                }
            }
            d.deserialize_bytes(V)
        }
    }

    pub fn serialize<S: Serializer>(chunks: &[(u64, Vec<u8>)], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(chunks.len()))?;
        for (idx, stored) in chunks {
            seq.serialize_element(&(idx, Bytes(stored)))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(u64, Vec<u8>)>, D::Error> {
        let v: Vec<(u64, ByteBuf)> = Deserialize::deserialize(d)?;
        Ok(v.into_iter().map(|(i, b)| (i, b.0)).collect())
    }
}

/// A long-name side file: the full encrypted name of a hashed entry name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LongName {
    pub format_version: u16,
    pub encrypted: Vec<u8>,
}

/// BLAKE3 over the chunk list, as the manifest's `chunks_root`.
pub fn chunks_root(chunks: &[Option<ChunkRef>]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("coffer 2026 chunk list v1");
    h.update(&(chunks.len() as u64).to_le_bytes());
    for c in chunks {
        match c {
            None => {
                h.update(&[0]);
            }
            Some(c) => {
                h.update(&[1]);
                h.update(&c.epoch.to_le_bytes());
                h.update(&c.hash);
            }
        }
    }
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The journal as it was encoded before `chunk_list` (serde's default for
    /// `Vec<u8>`): the bytes on disk must not change.
    #[derive(Serialize, Deserialize)]
    struct PlainJournal {
        format_version: u16,
        file_id: [u8; 16],
        manifest_hash: [u8; 32],
        chunks: Vec<(u64, Vec<u8>)>,
    }

    #[test]
    fn journal_chunks_keep_the_plain_wire_format() {
        let chunks: Vec<(u64, Vec<u8>)> = vec![
            (0, (0..=255u8).collect()),
            (300, vec![]),
            (7, vec![0x80; 1000]),
        ];
        let j = Journal {
            format_version: 1,
            file_id: [3; 16],
            manifest_hash: [4; 32],
            chunks: chunks.clone(),
        };
        let plain = PlainJournal {
            format_version: 1,
            file_id: [3; 16],
            manifest_hash: [4; 32],
            chunks,
        };
        let a = postcard::to_stdvec(&j).unwrap();
        assert_eq!(a, postcard::to_stdvec(&plain).unwrap());
        let back: Journal = postcard::from_bytes(&a).unwrap();
        assert_eq!(back.chunks, j.chunks);
        assert_eq!(back.manifest_hash, j.manifest_hash);
    }
}
