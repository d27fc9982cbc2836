//! Content versions: building and checking the signed manifest of a file, and the
//! version chain that links each manifest to the one before it.

pub mod log;

use crate::access::{AccessState, KeyLookup};
use crate::crypto::{Identity, SecretKey};
use crate::error::{Error, Result};
use crate::format::{chunks_root, ChunkRef, Manifest, Signed};

/// Checks a stored manifest against the file's chunk list and access state:
/// the writer signed it, held the update right, and it describes these chunks.
pub fn verify_manifest(
    file_id: &[u8; 16],
    signed: &Signed<Manifest>,
    chunks: &[Option<ChunkRef>],
    access: &AccessState,
    keys: &dyn KeyLookup,
) -> Result<Manifest> {
    let key = keys.ed25519_of(&signed.signer).ok_or_else(|| {
        Error::integrity(format!(
            "manifest signed by {}, who is not a vault member",
            signed.signer
        ))
    })?;
    let m = crate::access::verify_signed(signed, &key, keys)?;
    if m.writer != signed.signer {
        return Err(Error::integrity("manifest writer is not its signer"));
    }
    if &m.file_id != file_id {
        return Err(Error::integrity(
            "manifest belongs to another file (swapped sidecar?)",
        ));
    }
    if !access.accepts_content(&m.writer, &signed.hash()) {
        return Err(Error::integrity(format!(
            "content signed by {}, who does not hold the update right",
            m.writer
        )));
    }
    if m.chunk_count != chunks.len() as u64 || chunks_root(chunks) != m.chunks_root {
        return Err(Error::integrity(
            "chunk list does not match the signed manifest",
        ));
    }
    let layout = crate::format::data::Layout {
        chunk_log2: m.chunk_log2,
    };
    if layout.chunk_count(m.size) != m.chunk_count {
        return Err(Error::integrity("manifest size and chunk count disagree"));
    }
    for c in chunks.iter().flatten() {
        if !m.key_commits.iter().any(|(e, _)| *e == c.epoch) {
            return Err(Error::integrity(format!(
                "chunk on epoch {} without a key commitment",
                c.epoch
            )));
        }
    }
    Ok(m)
}

/// Checks that a key matches the manifest's commitment for its epoch.
pub fn check_key_commitment(m: &Manifest, epoch: u32, key: &SecretKey) -> Result<()> {
    match m.key_commits.iter().find(|(e, _)| *e == epoch) {
        Some((_, c)) if *c == key.commitment(&m.file_id, epoch) => Ok(()),
        Some(_) => Err(Error::integrity(format!(
            "key for epoch {epoch} does not match the manifest's commitment"
        ))),
        // An epoch no chunk uses yet needs no commitment.
        None => Ok(()),
    }
}

/// The manifest that follows `prev` (version 1 after none), written by `me`;
/// unsigned (`Signed::sign` it, unless it may never be stored).
#[allow(clippy::too_many_arguments)]
pub fn manifest_after(
    me: &Identity,
    prev: Option<&Signed<Manifest>>,
    prev_version: u64,
    file_id: [u8; 16],
    chunk_log2: u8,
    size: u64,
    chunks: &[Option<ChunkRef>],
    epoch: u32,
    key_commits: Vec<(u32, [u8; 32])>,
    access_head: [u8; 32],
) -> Manifest {
    Manifest {
        file_id,
        version: prev_version + 1,
        prev: prev.map(|p| p.hash()).unwrap_or([0; 32]),
        writer: me.member_id(),
        time_unix: crate::vault::now_unix(),
        size,
        chunk_log2,
        chunk_count: chunks.len() as u64,
        chunks_root: chunks_root(chunks),
        epoch,
        key_commits,
        access_head,
    }
}
