//! Content chunks: XChaCha20-Poly1305 with a fresh random 192-bit nonce on every
//! write (so rewriting a chunk in place never reuses a nonce), and an AAD that binds
//! the file id, the key epoch and the chunk index so chunks cannot move between
//! files, epochs or offsets.
//!
//! Stored chunk: `nonce (24) || ciphertext (len) || tag (16)`.
//!
//! XChaCha20-Poly1305 is computed as its definition gives it
//! (draft-irtf-cfrg-xchacha §2.3): HChaCha20 of the key and the first 16 nonce
//! bytes gives a subkey for IETF ChaCha20-Poly1305 (RFC 8439) with the nonce
//! `0^4 || nonce[16..24]`. HChaCha20 comes from the `chacha20` crate and the
//! bulk AEAD from `ring`, whose x86_64 assembly interleaves ChaCha20 and
//! Poly1305 in one pass (about twice the `chacha20poly1305` crate's speed on
//! this machine: docs/BENCHMARKS.md "chunk crypto in one pass"). The output is byte for
//! byte XChaCha20-Poly1305: a test checks it against `chacha20poly1305`.

use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use poly1305::universal_hash::{KeyInit, UniversalHash};
use poly1305::Poly1305;
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, CHACHA20_POLY1305};
use zeroize::Zeroize;

use super::SecretKey;

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// Bytes a stored chunk adds to its plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

const AAD_LABEL: &[u8; 16] = b"coffer chunk v1\0";

fn aad(file_id: &[u8; 16], epoch: u32, index: u64) -> [u8; 44] {
    let mut a = [0u8; 44];
    a[..16].copy_from_slice(AAD_LABEL);
    a[16..32].copy_from_slice(file_id);
    a[32..36].copy_from_slice(&epoch.to_le_bytes());
    a[36..44].copy_from_slice(&index.to_le_bytes());
    a
}

/// The RFC 8439 key and nonce that XChaCha20-Poly1305 under `key` and the
/// 24-byte `nonce` amounts to. The subkey is wiped here; `ring` keeps its
/// copy in the returned key, which lives on the caller's stack for one chunk
/// and is scrubbed after it ([`scrub_stack`]).
fn ietf_key(key: &SecretKey, nonce: &[u8]) -> (LessSafeKey, Nonce) {
    let mut sub = chacha20::hchacha::<chacha20::cipher::consts::U10>(
        key.as_bytes().into(),
        nonce[..16].into(),
    );
    let unbound = UnboundKey::new(&CHACHA20_POLY1305, &sub).expect("a 32-byte key");
    sub.as_mut_slice().zeroize();
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&nonce[16..NONCE_LEN]);
    // Unique: the 24-byte nonce is random per seal, so (subkey, nonce) is too.
    (LessSafeKey::new(unbound), Nonce::assume_unique_for_key(n))
}

/// Overwrites the stack the AEAD call just used, where [`ietf_key`]'s key and
/// `ring`'s cipher state were (ring does not wipe them on drop). Best effort:
/// the compiler decides frame layout, and this covers the few KiB the AEAD
/// calls use.
#[inline(never)]
fn scrub_stack() {
    let mut area = [0u64; 512];
    area.zeroize();
    std::hint::black_box(&area);
}

/// Seals `body` in place under `key` and the 24-byte `nonce`; returns the tag.
fn seal_body(key: &SecretKey, nonce: &[u8], ad: &[u8; 44], body: &mut [u8]) -> [u8; TAG_LEN] {
    let tag = {
        let (k, n) = ietf_key(key, nonce);
        k.seal_in_place_separate_tag(n, Aad::from(ad), body)
            .expect("ChaCha20-Poly1305 sealing fails only past 256 GiB")
    };
    scrub_stack();
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Opens `body` in place; on failure `body` is zeroed (ring checks the tag
/// while it decrypts, and wipes rather than release unauthenticated bytes).
fn open_body(key: &SecretKey, nonce: &[u8], ad: &[u8; 44], body: &mut [u8], tag: &[u8]) -> bool {
    let Ok(tag) = <[u8; TAG_LEN]>::try_from(tag) else {
        return false;
    };
    let ok = {
        let (k, n) = ietf_key(key, nonce);
        k.open_in_place_separate_tag(n, Aad::from(ad), Tag::from(tag), body, 0..)
            .is_ok()
    };
    scrub_stack();
    ok
}

/// Encrypts one chunk with a fresh random nonce.
pub fn seal(key: &SecretKey, file_id: &[u8; 16], epoch: u32, index: u64, plain: &[u8]) -> Vec<u8> {
    seal_with_nonce(key, file_id, epoch, index, plain, super::random_bytes())
}

/// [`seal`] in the plaintext's own buffer: the plaintext becomes the stored
/// chunk, so a commit of many chunks never holds each one twice (and leaves no
/// plaintext copy behind). With `OVERHEAD` bytes of spare capacity it does not
/// reallocate either.
pub fn seal_owned(
    key: &SecretKey,
    file_id: &[u8; 16],
    epoch: u32,
    index: u64,
    buf: Vec<u8>,
) -> Vec<u8> {
    seal_owned_with_nonce(key, file_id, epoch, index, buf, super::random_bytes())
}

fn seal_owned_with_nonce(
    key: &SecretKey,
    file_id: &[u8; 16],
    epoch: u32,
    index: u64,
    mut buf: Vec<u8>,
    nonce: [u8; NONCE_LEN],
) -> Vec<u8> {
    let len = buf.len();
    buf.reserve_exact(OVERHEAD);
    buf.resize(len + NONCE_LEN, 0);
    buf.copy_within(0..len, NONCE_LEN);
    seal_framed(key, file_id, epoch, index, buf, nonce)
}

/// Seals `buf` (room for the nonce, then the plaintext) in place: writes the
/// nonce, encrypts the rest, appends the tag.
fn seal_framed(
    key: &SecretKey,
    file_id: &[u8; 16],
    epoch: u32,
    index: u64,
    mut buf: Vec<u8>,
    nonce: [u8; NONCE_LEN],
) -> Vec<u8> {
    buf[..NONCE_LEN].copy_from_slice(&nonce);
    let tag = seal_body(
        key,
        &nonce,
        &aad(file_id, epoch, index),
        &mut buf[NONCE_LEN..],
    );
    buf.extend_from_slice(&tag);
    buf
}

/// Deterministic variant for test vectors only; production code uses [`seal`].
pub fn seal_with_nonce(
    key: &SecretKey,
    file_id: &[u8; 16],
    epoch: u32,
    index: u64,
    plain: &[u8],
    nonce: [u8; NONCE_LEN],
) -> Vec<u8> {
    let mut buf = Vec::with_capacity(OVERHEAD + plain.len());
    buf.extend_from_slice(&[0; NONCE_LEN]);
    buf.extend_from_slice(plain);
    seal_framed(key, file_id, epoch, index, buf, nonce)
}

/// Re-encrypts a stored chunk in place: opens it under `old` (epoch
/// `old_epoch`) and seals it under `new` (epoch `new_epoch`) with a fresh random
/// nonce, giving what [`seal`] would. The plaintext never leaves `stored`.
/// Returns false when it fails authentication; the chunk's body is then
/// zeroed (never unauthenticated plaintext).
#[allow(clippy::too_many_arguments)]
pub fn reseal_in_place(
    old: &SecretKey,
    old_epoch: u32,
    new: &SecretKey,
    new_epoch: u32,
    file_id: &[u8; 16],
    index: u64,
    stored: &mut [u8],
) -> bool {
    if stored.len() < OVERHEAD {
        return false;
    }
    let (nonce, rest) = stored.split_at_mut(NONCE_LEN);
    let (body, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
    if !open_body(old, nonce, &aad(file_id, old_epoch, index), body, tag) {
        return false;
    }
    let fresh: [u8; NONCE_LEN] = super::random_bytes();
    let t = seal_body(new, &fresh, &aad(file_id, new_epoch, index), body);
    nonce.copy_from_slice(&fresh);
    tag.copy_from_slice(&t);
    true
}

/// What a re-encryption journal records of one chunk (FORMAT.md, "Re-encryption
/// journal"): enough to redo its re-encryption from whatever its slot holds.
pub struct Reseal<'a> {
    pub file_id: &'a [u8; 16],
    pub index: u64,
    pub old: &'a SecretKey,
    pub old_nonce: [u8; NONCE_LEN],
    pub new: &'a SecretKey,
    pub new_epoch: u32,
    pub new_nonce: [u8; NONCE_LEN],
}

/// Cut points a buffered write can leave inside a slot: a `write` cut short (a
/// fatal signal stops it between pages) ends at a 4 KiB boundary of the file.
pub const TEAR_GRANULE: u64 = 4096;

/// The XChaCha20 keystream of `key` and `nonce` XORed into `body`, from where
/// the AEAD starts encrypting (block 1; block 0 keys Poly1305). No tag check:
/// callers accept the result only through a signed hash.
fn xor_keystream(key: &SecretKey, nonce: &[u8; NONCE_LEN], body: &mut [u8]) {
    let mut c = chacha20::XChaCha20::new(key.as_bytes().into(), nonce.into());
    c.seek(64u64);
    c.apply_keystream(body);
}

/// Redoes a re-encryption a crash interrupted. `slot` is what the content file
/// holds at `slot_offset` (the old stored chunk, the new one, or new bytes up to
/// a [`TEAR_GRANULE`] boundary and old ones after it); the new stored chunk is
/// `r.new_nonce` sealed under `r.new` over the chunk's plaintext, which each
/// byte yields under the keystream of the version it belongs to. Returns the new
/// stored chunk if a cut point gives one whose BLAKE3 is `want` (the signed
/// chunk list's hash): nothing else is accepted, so a damaged slot or a forged
/// journal yields `None`, never other content. A candidate that misses was
/// sealed under the journaled nonce too, but it never leaves this function (it
/// is overwritten by the next and wiped), so no two ciphertexts under one nonce
/// are ever stored or sent.
pub fn recover_resealed(
    r: &Reseal<'_>,
    slot: &[u8],
    slot_offset: u64,
    plain_len: usize,
    want: &[u8; 32],
) -> Option<Vec<u8>> {
    let stored_len = plain_len + OVERHEAD;
    let mut body = zeroize::Zeroizing::new(vec![0u8; plain_len]);
    let have = slot
        .len()
        .min(stored_len)
        .saturating_sub(NONCE_LEN)
        .min(plain_len);
    body[..have].copy_from_slice(&slot[NONCE_LEN..NONCE_LEN + have]);
    let mut under_new = body.clone();
    xor_keystream(r.new, &r.new_nonce, &mut under_new);
    let mut under_old = body;
    xor_keystream(r.old, &r.old_nonce, &mut under_old);
    // Cut points within the slot, as offsets into the stored chunk: none (all
    // old), every file-page boundary inside it, all new.
    let first = (slot_offset / TEAR_GRANULE + 1) * TEAR_GRANULE;
    let cuts = std::iter::once(0)
        .chain(
            (first..slot_offset + stored_len as u64)
                .step_by(TEAR_GRANULE as usize)
                .map(|p| (p - slot_offset) as usize),
        )
        .chain(std::iter::once(stored_len));
    let mut framed = zeroize::Zeroizing::new(Vec::with_capacity(stored_len));
    for cut in cuts {
        let new_bytes = cut.saturating_sub(NONCE_LEN).min(plain_len);
        framed.clear();
        framed.extend_from_slice(&[0; NONCE_LEN]);
        framed.extend_from_slice(&under_new[..new_bytes]);
        framed.extend_from_slice(&under_old[new_bytes..]);
        let sealed = seal_framed(
            r.new,
            r.file_id,
            r.new_epoch,
            r.index,
            std::mem::take(&mut *framed),
            r.new_nonce,
        );
        if blake3::hash(&sealed).as_bytes() == want {
            return Some(sealed);
        }
        *framed = sealed;
    }
    None
}

/// Decrypts one stored chunk; `None` when it fails authentication.
pub fn open(
    key: &SecretKey,
    file_id: &[u8; 16],
    epoch: u32,
    index: u64,
    stored: &[u8],
) -> Option<Vec<u8>> {
    if stored.len() < OVERHEAD {
        return None;
    }
    let (nonce, rest) = stored.split_at(NONCE_LEN);
    let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut plain = body.to_vec();
    open_body(key, nonce, &aad(file_id, epoch, index), &mut plain, tag).then_some(plain)
}

/// Decrypts one stored chunk in its own buffer (no allocation, no copy): on
/// success the plaintext is `stored[NONCE_LEN..stored.len() - TAG_LEN]`. On
/// failure `false` is returned and the body is zeroed: the tag is checked
/// while decrypting, and nothing unauthenticated is left behind.
pub fn open_in_place(
    key: &SecretKey,
    file_id: &[u8; 16],
    epoch: u32,
    index: u64,
    stored: &mut [u8],
) -> bool {
    if stored.len() < OVERHEAD {
        return false;
    }
    let (nonce, rest) = stored.split_at_mut(NONCE_LEN);
    let (body, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
    open_body(key, nonce, &aad(file_id, epoch, index), body, tag)
}

/// Authenticates a whole stored chunk, then decrypts only its plaintext bytes
/// `lo..lo + out.len()` into `out`. The same construction as the AEAD's
/// decrypt (RFC 8439 over XChaCha20), with the keystream applied to just the
/// bytes wanted: a 4 KiB read of a 64 KiB chunk needs the MAC over all of it
/// but a tenth of the cipher work. `false` when the tag does not verify or the
/// range is outside the chunk; `out` then holds no plaintext (untouched, or
/// zeroed when the range was the whole chunk).
pub fn open_range(
    key: &SecretKey,
    file_id: &[u8; 16],
    epoch: u32,
    index: u64,
    stored: &[u8],
    lo: usize,
    out: &mut [u8],
) -> bool {
    if stored.len() < OVERHEAD {
        return false;
    }
    let (nonce, rest) = stored.split_at(NONCE_LEN);
    let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
    match lo.checked_add(out.len()) {
        Some(hi) if hi <= body.len() => {}
        _ => return false,
    }
    if lo == 0 && out.len() == body.len() {
        // The whole chunk: one interleaved pass is faster than MAC then cipher.
        out.copy_from_slice(body);
        return open_body(key, nonce, &aad(file_id, epoch, index), out, tag);
    }
    let mut cipher = chacha20::XChaCha20::new(
        chacha20::Key::from_slice(key.as_bytes()),
        chacha20::XNonce::from_slice(nonce),
    );
    // Block 0 of the keystream keys Poly1305; the message starts at block 1.
    let mut mac_key = [0u8; 32];
    cipher.apply_keystream(&mut mac_key);
    let mut mac = Poly1305::new(poly1305::Key::from_slice(&mac_key));
    mac_key.zeroize();
    let ad = aad(file_id, epoch, index);
    mac.update_padded(&ad);
    mac.update_padded(body);
    let mut lens = poly1305::Block::default();
    lens[..8].copy_from_slice(&(ad.len() as u64).to_le_bytes());
    lens[8..].copy_from_slice(&(body.len() as u64).to_le_bytes());
    mac.update(&[lens]);
    // Constant-time comparison (universal-hash's verify).
    if mac.verify(poly1305::Block::from_slice(tag)).is_err() {
        return false;
    }
    out.copy_from_slice(&body[lo..lo + out.len()]);
    cipher.seek(64 + lo as u64);
    cipher.apply_keystream(out);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretKey {
        SecretKey::from_bytes([0x11; 32])
    }

    #[test]
    fn fixed_vector() {
        // Pinned; cross-checked with PyCryptodome XChaCha20-Poly1305 and the same AAD.
        let stored = seal_with_nonce(&key(), &[0x22; 16], 3, 5, b"hello coffer", [0x33; 24]);
        assert_eq!(stored.len(), 12 + OVERHEAD);
        assert_eq!(
            crate::crypto::hex(&stored[24..]),
            "d2c11be5174b6058e4f24dd6eee329ca8589eda6f7e4d2b56d7f2627"
        );
        assert_eq!(
            open(&key(), &[0x22; 16], 3, 5, &stored).unwrap(),
            b"hello coffer"
        );
    }

    #[test]
    fn sealing_in_the_plaintext_buffer_gives_the_same_chunk() {
        for len in [0usize, 1, 12, 65536] {
            let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let want = seal_with_nonce(&key(), &[0x22; 16], 3, 5, &plain, [0x33; 24]);
            let mut buf = Vec::with_capacity(len + OVERHEAD);
            buf.extend_from_slice(&plain);
            let at = buf.as_ptr();
            let got = seal_owned_with_nonce(&key(), &[0x22; 16], 3, 5, buf, [0x33; 24]);
            assert_eq!(got, want);
            // Room for the overhead: sealed where the plaintext was.
            assert_eq!(got.as_ptr(), at);
        }
        let sealed = seal_owned(&key(), &[1; 16], 2, 9, b"abc".to_vec());
        assert_eq!(open(&key(), &[1; 16], 2, 9, &sealed).unwrap(), b"abc");
    }

    #[test]
    fn an_interrupted_reseal_is_redone_from_any_cut_of_its_slot() {
        let new = SecretKey::from_bytes([0x44; 32]);
        let file_id = [9u8; 16];
        let plain: Vec<u8> = (0..65536u32).map(|i| (i * 7 % 251) as u8).collect();
        let old_stored = seal_with_nonce(&key(), &file_id, 1, 6, &plain, [0x55; 24]);
        let new_stored = seal_with_nonce(&new, &file_id, 2, 6, &plain, [0x66; 24]);
        let want = *blake3::hash(&new_stored).as_bytes();
        let r = Reseal {
            file_id: &file_id,
            index: 6,
            old: &key(),
            old_nonce: [0x55; 24],
            new: &new,
            new_epoch: 2,
            new_nonce: [0x66; 24],
        };
        // The slot of chunk 6 in a content file with a 32-byte header.
        let at = 32 + 6 * (65536 + OVERHEAD as u64);
        let len = plain.len();
        let got = |slot: &[u8]| recover_resealed(&r, slot, at, len, &want);
        assert_eq!(got(&old_stored).as_deref(), Some(&new_stored[..]));
        assert_eq!(got(&new_stored).as_deref(), Some(&new_stored[..]));
        let mut cuts = 0;
        for page in (at / 4096 + 1)..(at + new_stored.len() as u64).div_ceil(4096) {
            let cut = (page * 4096 - at) as usize;
            let mut torn = new_stored[..cut].to_vec();
            torn.extend_from_slice(&old_stored[cut..]);
            assert_eq!(got(&torn).as_deref(), Some(&new_stored[..]), "cut at {cut}");
            cuts += 1;
        }
        assert_eq!(cuts, 16);
        // Not at a page boundary, a flipped byte, the wrong old key, a short
        // slot: nothing is made up.
        let mut odd = new_stored[..1000].to_vec();
        odd.extend_from_slice(&old_stored[1000..]);
        assert_eq!(got(&odd), None);
        let mut flipped = old_stored.clone();
        flipped[5000] ^= 1;
        assert_eq!(got(&flipped), None);
        let other = SecretKey::from_bytes([0x77; 32]);
        let wrong = Reseal { old: &other, ..r };
        assert_eq!(recover_resealed(&wrong, &old_stored, at, len, &want), None);
        assert_eq!(got(&old_stored[..30000]), None);
    }

    #[test]
    fn reseal_in_place_changes_key_epoch_and_nonce() {
        let new = SecretKey::from_bytes([0x44; 32]);
        let plain = vec![7u8; 1000];
        let mut stored = seal(&key(), &[1; 16], 2, 9, &plain);
        let before = stored.clone();
        // Wrong old epoch, or a flipped bit: refused, and the body wiped
        // rather than left decrypted.
        let wiped = |c: &[u8]| c[NONCE_LEN..c.len() - TAG_LEN].iter().all(|&b| b == 0);
        let mut wrong_epoch = stored.clone();
        assert!(!reseal_in_place(
            &key(),
            1,
            &new,
            3,
            &[1; 16],
            9,
            &mut wrong_epoch
        ));
        assert!(wiped(&wrong_epoch));
        let mut flipped = stored.clone();
        flipped[40] ^= 1;
        assert!(!reseal_in_place(
            &key(),
            2,
            &new,
            3,
            &[1; 16],
            9,
            &mut flipped
        ));
        assert!(wiped(&flipped));
        assert!(reseal_in_place(
            &key(),
            2,
            &new,
            3,
            &[1; 16],
            9,
            &mut stored
        ));
        assert_ne!(stored[..NONCE_LEN], before[..NONCE_LEN], "fresh nonce");
        assert_eq!(open(&new, &[1; 16], 3, 9, &stored).unwrap(), plain);
        assert!(
            open(&key(), &[1; 16], 2, 9, &stored).is_none(),
            "old key opens nothing"
        );
        assert!(
            open(&new, &[1; 16], 2, 9, &stored).is_none(),
            "epoch is bound"
        );
    }

    #[test]
    fn aad_binds_file_epoch_and_index() {
        let stored = seal(&key(), &[1; 16], 0, 0, b"data");
        assert!(open(&key(), &[1; 16], 0, 0, &stored).is_some());
        assert!(
            open(&key(), &[2; 16], 0, 0, &stored).is_none(),
            "other file"
        );
        assert!(
            open(&key(), &[1; 16], 1, 0, &stored).is_none(),
            "other epoch"
        );
        assert!(
            open(&key(), &[1; 16], 0, 1, &stored).is_none(),
            "other index"
        );
        assert!(open(&SecretKey::from_bytes([9; 32]), &[1; 16], 0, 0, &stored).is_none());
    }

    /// The ring path is XChaCha20-Poly1305: same bytes as the
    /// `chacha20poly1305` crate for lengths around block and chunk edges, and
    /// each opens the other's output.
    #[test]
    fn same_bytes_as_the_reference_xchacha20poly1305() {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        use chacha20poly1305::{XChaCha20Poly1305, XNonce};
        for (i, len) in [
            0usize, 1, 15, 16, 17, 63, 64, 65, 255, 256, 4096, 65_535, 65_536, 70_001,
        ]
        .into_iter()
        .enumerate()
        {
            let k = SecretKey::from_bytes([i as u8 ^ 0x5a; 32]);
            let nonce: [u8; NONCE_LEN] = crate::crypto::random_bytes();
            let plain: Vec<u8> = (0..len).map(|j| (j * 7 + i) as u8).collect();
            let ours = seal_with_nonce(&k, &[i as u8; 16], 4, i as u64, &plain, nonce);
            let ad = aad(&[i as u8; 16], 4, i as u64);
            let theirs = XChaCha20Poly1305::new(k.as_bytes().into())
                .encrypt(
                    XNonce::from_slice(&nonce),
                    Payload {
                        msg: &plain,
                        aad: &ad,
                    },
                )
                .unwrap();
            assert_eq!(ours[..NONCE_LEN], nonce);
            assert_eq!(ours[NONCE_LEN..], theirs[..], "length {len}");
            assert_eq!(open(&k, &[i as u8; 16], 4, i as u64, &ours).unwrap(), plain);
            let back = XChaCha20Poly1305::new(k.as_bytes().into())
                .decrypt(
                    XNonce::from_slice(&nonce),
                    Payload {
                        msg: &ours[NONCE_LEN..],
                        aad: &ad,
                    },
                )
                .unwrap();
            assert_eq!(back, plain);
        }
    }

    #[test]
    fn every_seal_uses_a_new_nonce() {
        let a = seal(&key(), &[1; 16], 0, 0, b"same");
        let b = seal(&key(), &[1; 16], 0, 0, b"same");
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
    }

    #[test]
    fn open_range_matches_open() {
        let plain: Vec<u8> = (0..70_000u32).map(|i| (i * 13 + 1) as u8).collect();
        let stored = seal(&key(), &[5; 16], 1, 3, &plain);
        for (lo, hi) in [
            (0, 0),
            (0, 1),
            (0, 64),
            (1, 65),
            (63, 4159),
            (4096, 8192),
            (69_999, 70_000),
            (0, 70_000),
            (12_345, 54_321),
        ] {
            let mut out = vec![0u8; hi - lo];
            assert!(
                open_range(&key(), &[5; 16], 1, 3, &stored, lo, &mut out),
                "{lo}..{hi}"
            );
            assert_eq!(out, &plain[lo..hi], "{lo}..{hi}");
        }
        let mut out = vec![0u8; 10];
        assert!(
            !open_range(&key(), &[5; 16], 1, 3, &stored, 69_995, &mut out),
            "past the end"
        );
        assert!(
            !open_range(&key(), &[5; 16], 1, 4, &stored, 0, &mut out),
            "other index"
        );
        assert!(
            !open_range(&key(), &[6; 16], 1, 3, &stored, 0, &mut out),
            "other file"
        );
        for at in [0, 30, 40_000, stored.len() - 1] {
            let mut bad = stored.clone();
            bad[at] ^= 0x40;
            let mut out = vec![7u8; 100];
            assert!(
                !open_range(&key(), &[5; 16], 1, 3, &bad, 0, &mut out),
                "flip at {at}"
            );
            assert_eq!(out, vec![7u8; 100], "nothing released on failure");
        }
        // Pinned vector, through the range path.
        let stored = seal_with_nonce(&key(), &[0x22; 16], 3, 5, b"hello coffer", [0x33; 24]);
        let mut out = [0u8; 6];
        assert!(open_range(&key(), &[0x22; 16], 3, 5, &stored, 6, &mut out));
        assert_eq!(&out, b"coffer");
    }

    #[test]
    fn flipped_bit_or_truncation_fails() {
        let mut stored = seal(&key(), &[1; 16], 0, 0, b"data");
        stored[30] ^= 1;
        assert!(open(&key(), &[1; 16], 0, 0, &stored).is_none());
        assert!(open(&key(), &[1; 16], 0, 0, &stored[..10]).is_none());
    }

    #[test]
    fn open_in_place_agrees_with_open() {
        let plain: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
        let stored = seal(&key(), &[1; 16], 2, 7, &plain);
        let mut buf = stored.clone();
        assert!(open_in_place(&key(), &[1; 16], 2, 7, &mut buf));
        assert_eq!(&buf[NONCE_LEN..buf.len() - TAG_LEN], &plain[..]);
        for (id, epoch, index) in [([2; 16], 2, 7), ([1; 16], 3, 7), ([1; 16], 2, 8)] {
            let mut buf = stored.clone();
            assert!(!open_in_place(&key(), &id, epoch, index, &mut buf));
        }
        for at in [0, NONCE_LEN + 5, stored.len() - 1] {
            let mut buf = stored.clone();
            buf[at] ^= 1;
            assert!(
                !open_in_place(&key(), &[1; 16], 2, 7, &mut buf),
                "flip at {at}"
            );
        }
        assert!(!open_in_place(
            &key(),
            &[1; 16],
            2,
            7,
            &mut stored.clone()[..OVERHEAD - 1]
        ));
    }
}
