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

/// Sidecar version that carries pending chunks after the record (below).
pub const SIDECAR_WITH_PENDING: u16 = 2;

/// Most pending-chunk bytes a sidecar may carry (decode limit; writers carry
/// far less, see `vault::file::PENDING_MAX`).
pub const PENDING_MAX_LEN: usize = 4 << 20;

/// Chunks a durable commit wrote over committed ones, carried in its sidecar:
/// `(chunk index, stored chunk)`, ascending. They are not trusted: each counts
/// only if its BLAKE3 is the chunk list's hash for its index.
pub type PendingChunks = Vec<(u64, Vec<u8>)>;

/// A sidecar file's bytes: `CFRS || postcard(sidecar)`, and with pending chunks
/// `|| postcard(pending)`, the record's version then being
/// [`SIDECAR_WITH_PENDING`] (so a sidecar without them is byte for byte a
/// version-1 sidecar). The `format_version` field of `sidecar` is ignored.
pub fn encode_sidecar(sidecar: &Sidecar, pending: &[(u64, &[u8])]) -> Vec<u8> {
    let pending_len: usize = pending.iter().map(|(_, c)| c.len() + 16).sum();
    let mut out = Vec::with_capacity(
        256 + sidecar.chunks.len() * 38 + sidecar.access.len() * 200 + pending_len,
    );
    out.extend_from_slice(&super::SIDECAR.magic);
    let version = if pending.is_empty() {
        1
    } else {
        SIDECAR_WITH_PENDING
    };
    let body = SidecarRef {
        format_version: version,
        file_id: &sidecar.file_id,
        access: &sidecar.access,
        keys: &sidecar.keys,
        manifest: &sidecar.manifest,
        chunks: &sidecar.chunks,
    };
    let mut out = postcard::to_extend(&body, out).expect("postcard encoding cannot fail");
    if !pending.is_empty() {
        struct Chunks<'a>(&'a [(u64, &'a [u8])]);
        impl Serialize for Chunks<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                chunk_refs_as_bytes(&self.0, s)
            }
        }
        out = postcard::to_extend(&Chunks(pending), out).expect("postcard encoding cannot fail");
    }
    out
}

/// Decodes a sidecar file: the record and its pending chunks (none for
/// version 1), from the copy in force when the file is in layout 3 (two copies,
/// [`super::copies`]). A newer version is `UnsupportedVersion`; trailing
/// bytes, or pending chunks over [`PENDING_MAX_LEN`], are corrupt.
pub fn decode_sidecar(bytes: &[u8]) -> crate::error::Result<(Sidecar, PendingChunks)> {
    decode_sidecar_file(bytes).map(|(sidecar, pending, _)| (sidecar, pending))
}

/// A decoded sidecar file: the record, its pending chunks, and where its copy
/// in force is (layout 3 only).
pub type SidecarFile = (Sidecar, PendingChunks, Option<super::copies::Copies>);

/// [`decode_sidecar`], also saying where the copy in force is (layout 3), so a
/// writer can overwrite the other copy in place.
pub fn decode_sidecar_file(bytes: &[u8]) -> crate::error::Result<SidecarFile> {
    use crate::error::Error;
    let kind = super::SIDECAR;
    let in_force =
        super::copies::in_force(kind.magic, bytes).map_err(|e| Error::corrupt(kind.name, e))?;
    if let Some((payload, copies)) = in_force {
        if super::copies::is_copies(payload) {
            return Err(Error::corrupt(
                kind.name,
                "a copy holds another layout-3 file",
            ));
        }
        let (sidecar, pending) = decode_sidecar_payload(payload)?;
        return Ok((sidecar, pending, Some(copies)));
    }
    let (sidecar, pending) = decode_sidecar_payload(bytes)?;
    Ok((sidecar, pending, None))
}

/// A sidecar in layout 1 or 2 (a whole file, or one copy of a layout-3 file).
fn decode_sidecar_payload(bytes: &[u8]) -> crate::error::Result<(Sidecar, PendingChunks)> {
    use crate::error::Error;
    let kind = super::SIDECAR;
    if bytes.len() < 4 || bytes[..4] != kind.magic {
        return Err(Error::corrupt(
            kind.name,
            "wrong magic bytes (not a coffer file of this kind)",
        ));
    }
    let body = &bytes[4..];
    if body.len() > kind.max_len {
        return Err(Error::corrupt(
            kind.name,
            format!("{} bytes exceeds the limit of {}", body.len(), kind.max_len),
        ));
    }
    let (sidecar, rest) = postcard::take_from_bytes::<Sidecar>(body)
        .map_err(|e| Error::corrupt(kind.name, e.to_string()))?;
    match sidecar.format_version {
        0 | 1 => {
            super::check_version(sidecar.format_version)?;
            if !rest.is_empty() {
                return Err(Error::corrupt(
                    kind.name,
                    format!("{} trailing bytes", rest.len()),
                ));
            }
            Ok((sidecar, Vec::new()))
        }
        SIDECAR_WITH_PENDING => {
            if rest.len() > PENDING_MAX_LEN + 64 * 1024 {
                return Err(Error::corrupt(
                    kind.name,
                    format!("{} bytes of pending chunks exceed the limit", rest.len()),
                ));
            }
            let pending: PendingChunks =
                super::from_bytes("pending chunks", PENDING_MAX_LEN + 64 * 1024, rest)?;
            if pending.is_empty() {
                return Err(Error::corrupt(
                    kind.name,
                    "version 2 without pending chunks",
                ));
            }
            Ok((sidecar, pending))
        }
        found => Err(Error::UnsupportedVersion {
            found,
            supported: super::copies::LAYOUT_COPIES.into(),
        }),
    }
}

/// A sidecar to encode, borrowing its parts (encodes exactly as [`Sidecar`]).
#[derive(Serialize)]
struct SidecarRef<'a> {
    format_version: u16,
    file_id: &'a [u8; 16],
    access: &'a [super::Signed<AccessEntry>],
    keys: &'a [EpochKeys],
    manifest: &'a super::Signed<Manifest>,
    chunks: &'a [Option<ChunkRef>],
}

/// `meta/<aa>/<file id>.journal`: chunks that overwrite committed ones, written
/// before the sidecar that refers to them so a crash can be rolled forward.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Journal {
    pub format_version: u16,
    pub file_id: [u8; 16],
    /// Hash of the signed manifest these chunks belong to.
    pub manifest_hash: [u8; 32],
    #[serde(serialize_with = "chunks_as_bytes")]
    pub chunks: Vec<(u64, Vec<u8>)>,
}

/// `meta/<aa>/<file id>.journal` of a re-encryption (`rotate`, `migrate`), in
/// place of a [`Journal`]: not the new chunks but what redoes them from their
/// slots, whichever version (or cut of both) a crash left there.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ResealJournal {
    pub format_version: u16,
    pub file_id: [u8; 16],
    /// Hash of the signed manifest the re-encrypted chunks belong to.
    pub manifest_hash: [u8; 32],
    /// The key epoch the chunks were re-encrypted to.
    pub epoch: u32,
    /// The keys of the epochs they came from, sealed under the key of `epoch`
    /// as `EpochKeys::earlier` is (the sidecar may no longer hold them).
    pub old_keys: Vec<u8>,
    pub chunks: Vec<ResealedChunk>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResealedChunk {
    pub index: u64,
    pub old_epoch: u32,
    pub old_nonce: [u8; 24],
    pub new_nonce: [u8; 24],
}

/// A journal to write, borrowing its chunks (encodes exactly as [`Journal`]).
#[derive(Serialize)]
pub struct JournalRef<'a> {
    pub format_version: u16,
    pub file_id: [u8; 16],
    pub manifest_hash: [u8; 32],
    #[serde(serialize_with = "chunk_refs_as_bytes")]
    pub chunks: &'a [(u64, &'a [u8])],
}

impl<'a> JournalRef<'a> {
    /// The journal file's bytes, in one buffer.
    pub fn encode(&self) -> Vec<u8> {
        let payload: usize = self.chunks.iter().map(|(_, c)| c.len() + 20).sum();
        let mut out = Vec::with_capacity(payload + 128);
        out.extend_from_slice(&super::JOURNAL.magic);
        postcard::to_extend(self, out).expect("postcard encoding of a journal cannot fail")
    }

    /// The same bytes as [`JournalRef::encode`], as a list of parts to write in
    /// order: the chunks themselves are borrowed, not copied. `framing` holds
    /// the small parts between them.
    pub fn encode_parts<'b>(&'b self, framing: &'b mut Vec<u8>) -> Vec<&'b [u8]>
    where
        'a: 'b,
    {
        // Postcard: the header fields, the chunk count, then per chunk its
        // index and length (varints) and its bytes.
        framing.clear();
        framing.extend_from_slice(&super::JOURNAL.magic);
        framing.extend(
            postcard::to_stdvec(&(self.format_version, self.file_id, self.manifest_hash))
                .expect("postcard encoding cannot fail"),
        );
        push_varint(framing, self.chunks.len() as u64);
        // Offsets of the framing runs that precede each chunk.
        let mut cuts = Vec::with_capacity(self.chunks.len() + 1);
        for (idx, c) in self.chunks {
            push_varint(framing, *idx);
            push_varint(framing, c.len() as u64);
            cuts.push(framing.len());
        }
        let mut parts = Vec::with_capacity(2 * self.chunks.len() + 1);
        let mut from = 0;
        for ((_, c), cut) in self.chunks.iter().zip(cuts) {
            parts.push(&framing[from..cut]);
            parts.push(*c);
            from = cut;
        }
        if self.chunks.is_empty() {
            parts.push(&framing[..]);
        }
        parts
    }
}

/// Postcard's varint (LEB128) for unsigned integers.
fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

struct RawBytes<'a>(&'a [u8]);

impl Serialize for RawBytes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

fn chunk_refs_as_bytes<S: serde::Serializer>(
    chunks: &&[(u64, &[u8])],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(chunks.iter().map(|(i, b)| (*i, RawBytes(b))))
}

/// Writes each chunk with `serialize_bytes`: postcard encodes that exactly as a
/// sequence of u8 (length, then the bytes), but in one copy instead of one
/// call per byte (journals hold megabytes).
fn chunks_as_bytes<S: serde::Serializer>(
    chunks: &[(u64, Vec<u8>)],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(chunks.iter().map(|(i, b)| (*i, RawBytes(b))))
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

    #[test]
    fn reseal_journal_bytes_are_pinned() {
        let j = ResealJournal {
            format_version: 1,
            file_id: [1; 16],
            manifest_hash: [2; 32],
            epoch: 3,
            old_keys: vec![4; 2],
            chunks: vec![ResealedChunk {
                index: 300,
                old_epoch: 2,
                old_nonce: [5; 24],
                new_nonce: [6; 24],
            }],
        };
        let bytes = crate::format::encode_file(crate::format::RESEAL_JOURNAL, &j);
        // magic, version 1, file id, manifest hash, epoch, old keys (length
        // then bytes), one chunk: index 300 as a varint, old epoch, nonces.
        let mut want = b"CFRK\x01".to_vec();
        want.extend([1; 16]);
        want.extend([2; 32]);
        want.extend([3, 2, 4, 4, 1, 0xac, 0x02, 2]);
        want.extend([5; 24]);
        want.extend([6; 24]);
        assert_eq!(bytes, want);
        let back: ResealJournal =
            crate::format::decode_file(crate::format::RESEAL_JOURNAL, &bytes).unwrap();
        assert_eq!(back.chunks, j.chunks);
        assert_eq!(back.old_keys, j.old_keys);
    }

    /// The journal as it was encoded before `chunks_as_bytes`.
    #[derive(Serialize, Deserialize)]
    struct PlainJournal {
        format_version: u16,
        file_id: [u8; 16],
        manifest_hash: [u8; 32],
        chunks: Vec<(u64, Vec<u8>)>,
    }

    fn sample_sidecar() -> Sidecar {
        use crate::format::Signed;
        Sidecar {
            format_version: 1,
            file_id: [3; 16],
            access: vec![],
            keys: vec![],
            // `len || body || signer || len || signature`, as stored.
            manifest: crate::format::from_bytes::<Signed<Manifest>>(
                "manifest",
                1024,
                &[&[3u8, 1, 2, 3][..], &[4; 16], &[64], &[5; 64]].concat(),
            )
            .unwrap(),
            chunks: vec![
                None,
                Some(ChunkRef {
                    epoch: 2,
                    hash: [6; 32],
                }),
            ],
        }
    }

    #[test]
    fn a_sidecar_without_pending_chunks_is_a_version_1_sidecar() {
        let s = sample_sidecar();
        let bytes = encode_sidecar(&s, &[]);
        assert_eq!(
            bytes,
            crate::format::encode_file(crate::format::SIDECAR, &s)
        );
        let (back, pending) = decode_sidecar(&bytes).unwrap();
        assert_eq!(back.format_version, 1);
        assert_eq!(back.chunks, s.chunks);
        assert!(pending.is_empty());
        // Version 1 with anything after the record is corrupt, not "pending".
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[1, 0, 0]);
        assert!(matches!(
            decode_sidecar(&longer),
            Err(crate::error::Error::Corrupt { .. })
        ));
    }

    #[test]
    fn pending_chunks_round_trip_as_version_2() {
        let s = sample_sidecar();
        let a = vec![7u8; 100];
        let b = vec![8u8; 70_000];
        let bytes = encode_sidecar(&s, &[(1, &a), (9, &b)]);
        // The version field says what follows the record.
        assert_eq!(bytes[4], SIDECAR_WITH_PENDING as u8);
        // The wire layout (FORMAT.md): the version-1 record with its version
        // byte set to 2, then postcard `Vec<(u64, Vec<u8>)>`.
        let mut want = encode_sidecar(&s, &[]);
        want[4] = 2;
        want.extend_from_slice(&[0x02, 0x01, 0x64]);
        want.extend_from_slice(&a);
        want.extend_from_slice(&[0x09, 0xf0, 0xa2, 0x04]);
        want.extend_from_slice(&b);
        assert_eq!(bytes, want);
        let (back, pending) = decode_sidecar(&bytes).unwrap();
        assert_eq!(back.chunks, s.chunks);
        assert_eq!(back.manifest.body, s.manifest.body);
        assert_eq!(pending, vec![(1, a.clone()), (9, b.clone())]);
        // Cut short, or a version-2 record with nothing after it: corrupt.
        assert!(decode_sidecar(&bytes[..bytes.len() - 1]).is_err());
        let mut bare = crate::format::encode_file(crate::format::SIDECAR, &s);
        bare[4] = SIDECAR_WITH_PENDING as u8;
        assert!(decode_sidecar(&bare).is_err());
        // A version from the future says "upgrade", whatever follows.
        bare[4] = 4;
        assert!(matches!(
            decode_sidecar(&bare),
            Err(crate::error::Error::UnsupportedVersion { found: 4, .. })
        ));
        // In layout 3 the same record (pending chunks and all) is a copy's payload.
        let (copied, _) = crate::format::copies::new_file(crate::format::SIDECAR.magic, &bytes)
            .expect("small enough for copies");
        let (back, pending, copies) = decode_sidecar_file(&copied).unwrap();
        assert_eq!(back.manifest.body, s.manifest.body);
        assert_eq!(pending, vec![(1, a), (9, b)]);
        assert_eq!(copies.map(|c| (c.current, c.seq)), Some((0, 1)));
        let (nested, _) =
            crate::format::copies::new_file(crate::format::SIDECAR.magic, &copied).unwrap();
        assert!(decode_sidecar(&nested).is_err());
    }

    #[test]
    fn journal_bytes_encoding_is_unchanged() {
        let chunks = vec![
            (0u64, vec![]),
            (7, vec![1, 2, 3]),
            (300, vec![0xAB; 70_000]),
        ];
        let j = Journal {
            format_version: 1,
            file_id: [5; 16],
            manifest_hash: [9; 32],
            chunks: chunks.clone(),
        };
        let plain = PlainJournal {
            format_version: 1,
            file_id: [5; 16],
            manifest_hash: [9; 32],
            chunks,
        };
        let a = crate::format::to_bytes(&j);
        assert_eq!(a, crate::format::to_bytes(&plain));
        let back: Journal = crate::format::from_bytes("journal", 1 << 20, &a).unwrap();
        assert_eq!(back.chunks, plain.chunks);
        let refs: Vec<(u64, &[u8])> = plain.chunks.iter().map(|(i, c)| (*i, &c[..])).collect();
        let r = JournalRef {
            format_version: 1,
            file_id: [5; 16],
            manifest_hash: [9; 32],
            chunks: &refs,
        };
        assert_eq!(
            r.encode(),
            crate::format::encode_file(crate::format::JOURNAL, &plain)
        );
        let mut framing = Vec::new();
        assert_eq!(r.encode_parts(&mut framing).concat(), r.encode());
        let none = JournalRef { chunks: &[], ..r };
        let mut framing = Vec::new();
        assert_eq!(none.encode_parts(&mut framing).concat(), none.encode());
    }
}
