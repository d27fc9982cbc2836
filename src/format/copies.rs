//! Sidecar files kept as two copies (sidecar layout 3, FORMAT.md "Sidecar
//! copies"): a change overwrites the older copy in place and gives it the next
//! sequence number, instead of replacing the whole file by rename. A reader
//! takes the intact copy with the highest sequence number, so a write cut
//! short (a crash, or a read racing the write) leaves the other copy, the
//! version before, in force. Nothing here is trusted: each copy holds a whole
//! sidecar whose parts are signed; the check tells a torn copy apart, and
//! covers every byte of the copy's room, so no byte of the file is slack that
//! could change unnoticed.
//!
//! ```text
//! file:  "CFRS" || 0x03 || 3 zero bytes || capacity u32 LE || 24 zero bytes
//!        || copy 0 || copy 1        (copy i at 32 + i * (32 + capacity))
//! copy:  seq u64 LE || len u32 LE || 4 zero bytes || check [16]
//!        || payload [len] || zeros [capacity - len]
//! check: BLAKE3 derive_key(CHECK_CONTEXT) over capacity u32 LE || seq || len
//!        || payload || zeros, first 16 bytes
//! ```
//! Bytes past the end of the file read as zeros (a new file ends after copy
//! 0's payload). `capacity` is a multiple of 32, so no copy header straddles a
//! 4 KiB page: a write stopped between pages leaves each header old or new.

/// The byte after the magic that marks this layout (a layout-1/2 sidecar has
/// its postcard `format_version` there: 1 or 2).
pub const LAYOUT_COPIES: u8 = 3;
pub const FILE_HEADER_LEN: usize = 32;
pub const COPY_HEADER_LEN: usize = 32;
/// The largest payload kept in copies. Larger sidecars (the chunk lists of
/// files over ~400 MiB) are written whole, as layout 1/2: each change rewrites
/// most of them either way, and two copies would double their reads.
pub const MAX_PAYLOAD: usize = 256 << 10;
/// Capacity bound a reader accepts (the writer's rounding of [`MAX_PAYLOAD`]).
pub const MAX_CAPACITY: usize = MAX_PAYLOAD + MAX_PAYLOAD / 4 + 8192;
const CHECK_CONTEXT: &str = "coffer 2026-12 sidecar copy check";

/// Where the copy in force of a layout-3 file is, as read or written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Copies {
    pub capacity: u32,
    /// Index (0 or 1) of the copy in force.
    pub current: u8,
    pub seq: u64,
    /// What the other copy holds.
    pub other: OtherCopy,
}

/// The copy not in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtherCopy {
    /// Never written (all zeros, or past the end of the file).
    Empty,
    /// An intact earlier version.
    Older,
    /// Torn, claiming the next sequence number: a write that was cut short
    /// (a crash), or one in progress while this was read.
    Interrupted,
    /// Torn or altered otherwise: not what any write of coffer leaves (except
    /// a power cut that wrote back a later page of a copy before its first).
    Damaged,
}

/// True if `bytes` (a whole sidecar file) is in layout 3.
pub fn is_copies(bytes: &[u8]) -> bool {
    bytes.len() > 4 && bytes[4] == LAYOUT_COPIES
}

/// Room for the payload to grow by a quarter (a grant or two) before the file
/// must be rewritten, rounded so the whole file fills its 4 KiB blocks: a small
/// sidecar's two copies share the one block a layout-1 sidecar takes.
fn capacity_for(len: usize) -> u32 {
    let wanted = len + len / 4 + 256;
    let file = (FILE_HEADER_LEN + 2 * (COPY_HEADER_LEN + wanted)).next_multiple_of(4096);
    (((file - FILE_HEADER_LEN) / 2 - COPY_HEADER_LEN) / 32 * 32) as u32
}

fn copy_offset(capacity: u32, index: u8) -> usize {
    FILE_HEADER_LEN + usize::from(index) * (COPY_HEADER_LEN + capacity as usize)
}

/// The check of a copy whose room holds `payload` then `padding` (the bytes
/// after it that the file has), then zeros up to `capacity`.
fn check(capacity: u32, seq: u64, payload: &[u8], padding: &[u8]) -> [u8; 16] {
    static ZEROS: [u8; 4096] = [0; 4096];
    let mut h = blake3::Hasher::new_derive_key(CHECK_CONTEXT);
    h.update(&capacity.to_le_bytes());
    h.update(&seq.to_le_bytes());
    h.update(&(payload.len() as u32).to_le_bytes());
    h.update(payload);
    h.update(padding);
    let mut left = (capacity as usize).saturating_sub(payload.len() + padding.len());
    while left > 0 {
        let n = left.min(ZEROS.len());
        h.update(&ZEROS[..n]);
        left -= n;
    }
    let mut out = [0; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    out
}

/// One copy's header and payload; `pad` adds the zeros up to the capacity.
fn copy_bytes(capacity: u32, seq: u64, payload: &[u8], pad: bool) -> Vec<u8> {
    let room = if pad {
        capacity as usize
    } else {
        payload.len()
    };
    let mut out = Vec::with_capacity(COPY_HEADER_LEN + room);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&check(capacity, seq, payload, &[]));
    out.extend_from_slice(payload);
    out.resize(COPY_HEADER_LEN + room, 0);
    out
}

/// A new layout-3 file whose copy 0 holds `payload` (sequence 1); `None` if
/// the payload is too large for copies ([`MAX_PAYLOAD`]).
pub fn new_file(magic: [u8; 4], payload: &[u8]) -> Option<(Vec<u8>, Copies)> {
    new_file_with_room(magic, payload, 0)
}

/// [`new_file`] with room in each copy for a payload of `room` bytes or more
/// (up to [`MAX_PAYLOAD`]), for a record its writer expects to grow soon.
pub fn new_file_with_room(
    magic: [u8; 4],
    payload: &[u8],
    room: usize,
) -> Option<(Vec<u8>, Copies)> {
    if payload.len() > MAX_PAYLOAD {
        return None;
    }
    let capacity = capacity_for(payload.len().max(room.min(MAX_PAYLOAD)));
    let mut out = Vec::with_capacity(FILE_HEADER_LEN + COPY_HEADER_LEN + payload.len());
    out.extend_from_slice(&magic);
    out.extend_from_slice(&[LAYOUT_COPIES, 0, 0, 0]);
    out.extend_from_slice(&capacity.to_le_bytes());
    out.resize(FILE_HEADER_LEN, 0);
    out.extend_from_slice(&copy_bytes(capacity, 1, payload, false));
    Some((
        out,
        Copies {
            capacity,
            current: 0,
            seq: 1,
            other: OtherCopy::Empty,
        },
    ))
}

impl Copies {
    /// The write that puts `payload` in force: `(file offset, bytes)` for the
    /// other copy (its whole room, so nothing of what it held before is left),
    /// with the state after it. `None` when the file should be rewritten whole
    /// instead: no room, the payload shrank to under a quarter of a large
    /// capacity (the file would stay large), or no sequence number left.
    pub fn next(&self, payload: &[u8]) -> Option<(u64, Vec<u8>, Copies)> {
        let capacity = self.capacity as usize;
        if payload.len() > capacity
            || payload.len() > MAX_PAYLOAD
            || (capacity > 16384 && payload.len() < capacity / 4)
        {
            return None;
        }
        let seq = self.seq.checked_add(1)?;
        let index = 1 - self.current;
        let next = Copies {
            capacity: self.capacity,
            current: index,
            seq,
            other: OtherCopy::Older,
        };
        Some((
            copy_offset(self.capacity, index) as u64,
            copy_bytes(self.capacity, seq, payload, true),
            next,
        ))
    }
}

/// The copy in force of `bytes` if they are a layout-3 file with `magic`;
/// `Ok(None)` for any other file (a record written whole, layout 1/2).
pub fn in_force(magic: [u8; 4], bytes: &[u8]) -> Result<Option<(&[u8], Copies)>, String> {
    if !(bytes.starts_with(&magic) && is_copies(bytes)) {
        return Ok(None);
    }
    current(bytes).map(Some)
}

/// The payload of the copy in force in a layout-3 file (magic already
/// checked) and where it is. Errors describe the damage.
pub fn current(bytes: &[u8]) -> Result<(&[u8], Copies), String> {
    if bytes.len() < FILE_HEADER_LEN {
        return Err("truncated header".into());
    }
    if bytes[4] != LAYOUT_COPIES || bytes[5..8] != [0; 3] || bytes[12..32].iter().any(|b| *b != 0) {
        return Err("malformed header".into());
    }
    let capacity = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if capacity as usize > MAX_CAPACITY || capacity == 0 || capacity % 32 != 0 {
        return Err(format!("copy capacity {capacity} out of range"));
    }
    let end = copy_offset(capacity, 2);
    if bytes.len() > end {
        return Err(format!("{} trailing bytes", bytes.len() - end));
    }
    let copies = [read_copy(bytes, capacity, 0), read_copy(bytes, capacity, 1)];
    let mut best: Option<(u8, u64, &[u8])> = None;
    for (index, copy) in copies.iter().enumerate() {
        if let CopyRead::Intact(seq, payload) = *copy {
            match best {
                Some((_, b, _)) if seq == b => {
                    return Err(format!("both copies claim sequence number {seq}"));
                }
                Some((_, b, _)) if seq < b => {}
                _ => best = Some((index as u8, seq, payload)),
            }
        }
    }
    let Some((current, seq, payload)) = best else {
        return Err("neither copy is intact (torn or damaged)".into());
    };
    let other = match copies[usize::from(1 - current)] {
        CopyRead::Blank => OtherCopy::Empty,
        CopyRead::Intact(..) => OtherCopy::Older,
        CopyRead::Torn(claimed) if Some(claimed) == seq.checked_add(1) => OtherCopy::Interrupted,
        CopyRead::Torn(_) => OtherCopy::Damaged,
    };
    Ok((
        payload,
        Copies {
            capacity,
            current,
            seq,
            other,
        },
    ))
}

enum CopyRead<'a> {
    /// All zeros (or past the end of the file): never written.
    Blank,
    Intact(u64, &'a [u8]),
    /// Its check fails; the sequence number its header claims.
    Torn(u64),
}

fn read_copy(bytes: &[u8], capacity: u32, index: u8) -> CopyRead<'_> {
    let at = copy_offset(capacity, index);
    let room = at + COPY_HEADER_LEN..at + COPY_HEADER_LEN + capacity as usize;
    let present =
        |r: std::ops::Range<usize>| &bytes[r.start.min(bytes.len())..r.end.min(bytes.len())];
    let header = present(at..at + COPY_HEADER_LEN);
    if present(at..room.end).iter().all(|b| *b == 0) {
        return CopyRead::Blank;
    }
    let mut full = [0u8; COPY_HEADER_LEN];
    full[..header.len()].copy_from_slice(header);
    let seq = u64::from_le_bytes(full[..8].try_into().expect("8 bytes"));
    let len = u32::from_le_bytes(full[8..12].try_into().expect("4 bytes")) as usize;
    if seq == 0 || len > capacity as usize || full[12..16] != [0; 4] {
        return CopyRead::Torn(seq);
    }
    let payload_end = room.start + len;
    if bytes.len() < payload_end {
        return CopyRead::Torn(seq);
    }
    let payload = &bytes[room.start..payload_end];
    if full[16..32] == check(capacity, seq, payload, present(payload_end..room.end)) {
        CopyRead::Intact(seq, payload)
    } else {
        CopyRead::Torn(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC: [u8; 4] = *b"CFRS";

    /// Applies a write to a file image, extending it as `pwrite` would.
    fn apply(file: &mut Vec<u8>, at: u64, bytes: &[u8]) {
        let at = at as usize;
        if file.len() < at + bytes.len() {
            file.resize(at + bytes.len(), 0);
        }
        file[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// A file after `payloads` were written in turn.
    fn written(payloads: &[&[u8]]) -> (Vec<u8>, Copies) {
        let (mut file, mut state) = new_file(MAGIC, payloads[0]).unwrap();
        for p in &payloads[1..] {
            let (at, bytes, next) = state.next(p).unwrap();
            apply(&mut file, at, &bytes);
            state = next;
        }
        (file, state)
    }

    #[test]
    fn each_write_goes_to_the_other_copy_and_wins() {
        let (mut file, mut state) = new_file(MAGIC, b"version one").unwrap();
        assert_eq!(current(&file).unwrap(), (&b"version one"[..], state));
        assert_eq!(state.other, OtherCopy::Empty);
        for (n, text) in ["version two, longer", "three", "version four"]
            .iter()
            .enumerate()
        {
            let (at, bytes, next) = state.next(text.as_bytes()).unwrap();
            assert_eq!(next.current, (n as u8 + 1) % 2);
            assert_eq!(at % 32, 0, "copy headers never straddle a page");
            apply(&mut file, at, &bytes);
            state = next;
            assert_eq!(current(&file).unwrap(), (text.as_bytes(), state));
            assert_eq!(state.other, OtherCopy::Older);
        }
        // A small sidecar's file, both copies written, stays within one block.
        assert!(file.len() <= 4096, "{}", file.len());
    }

    #[test]
    fn a_write_cut_anywhere_leaves_the_old_or_the_new_version() {
        let (file, settled) = written(&[&[7; 900], &[8; 950]]);
        let (at, bytes, _) = settled.next(&[9; 700]).unwrap();
        let mut full = file.clone();
        apply(&mut full, at, &bytes);
        for cut in 0..=bytes.len() {
            let mut torn = file.clone();
            apply(&mut torn, at, &bytes[..cut]);
            let (payload, state) = current(&torn).unwrap();
            if payload == [9; 700] {
                // Only once every byte that differs is written.
                assert!(torn == full, "cut at {cut}");
            } else {
                assert_eq!(payload, &[8; 950][..], "cut at {cut}");
                if cut >= COPY_HEADER_LEN {
                    assert_eq!(state.other, OtherCopy::Interrupted, "cut at {cut}");
                }
            }
        }
    }

    #[test]
    fn damage_anywhere_is_noticed() {
        let (file, state) = written(&[b"first", b"second, longer than the first", b"third"]);
        assert_eq!((state.current, state.other), (0, OtherCopy::Older));
        // (The magic, bytes 0..4, is the caller's to check.)
        for at in 4..file.len() {
            let mut flipped = file.clone();
            flipped[at] ^= 0x10;
            match current(&flipped) {
                Err(_) => {}
                // In the copy in force: the one before takes over (a reader
                // then sees an older version, which the history catches).
                Ok((payload, s)) if s.current == 1 => {
                    assert_eq!(payload, b"second, longer than the first", "flip at {at}")
                }
                // In the other copy (or its unused room): it no longer counts
                // as an intact older version.
                Ok((payload, s)) => {
                    assert_eq!(payload, b"third");
                    assert!(
                        matches!(s.other, OtherCopy::Damaged | OtherCopy::Interrupted),
                        "flip at {at}: {s:?}"
                    );
                }
            }
        }
        // Only one copy: a flipped payload byte leaves nothing intact.
        let (mut one, _) = new_file(MAGIC, b"first").unwrap();
        *one.last_mut().unwrap() ^= 1;
        assert!(current(&one).unwrap_err().contains("neither copy"));
        let mut long = file.clone();
        long.extend_from_slice(&[0; 8192]);
        assert!(current(&long).unwrap_err().contains("trailing"));
        let mut big = file.clone();
        big[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(current(&big).unwrap_err().contains("capacity"));
        assert!(current(&file[..10]).is_err());
        // Two intact copies with one sequence number: someone wrote them.
        let mut twin = file.clone();
        let at1 = copy_offset(state.capacity, 1);
        let copy = copy_bytes(state.capacity, 3, b"other", true);
        twin[at1..at1 + copy.len()].copy_from_slice(&copy);
        assert!(current(&twin).unwrap_err().contains("both copies"));
    }

    /// FORMAT.md "Sidecar copies (layout 3)": a new file, then the write of
    /// its second copy, byte for byte.
    #[test]
    fn the_layout_bytes_are_pinned() {
        let (file, state) = new_file(MAGIC, b"payload").unwrap();
        assert_eq!(state.capacity, 1984);
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(
            hex(&file),
            "4346525303000000c00700000000000000000000000000000000000000000000\
             010000000000000007000000000000001bbfff2ac34183e2ce61315992c96635\
             7061796c6f6164"
        );
        let (at, copy, _) = state.next(b"second").unwrap();
        assert_eq!((at, copy.len()), (2048, 32 + 1984));
        assert_eq!(
            hex(&copy[..38]),
            "020000000000000006000000000000006160a36b8308890144b095de81c12b147365636f6e64"
        );
    }

    #[test]
    fn a_payload_that_outgrows_or_shrinks_far_below_its_room_rewrites_the_file() {
        let (_, state) = new_file(MAGIC, &[1; 1000]).unwrap();
        assert_eq!(state.capacity, 1984, "two copies fill one 4 KiB block");
        assert!(state.next(&[1; 1984]).is_some());
        assert!(state.next(&[1; 1985]).is_none());
        let (_, big) = new_file(MAGIC, &[1; 100_000]).unwrap();
        assert!(big.next(&[1; 40_000]).is_some());
        assert!(big.next(&[1; 20_000]).is_none());
        assert!(new_file(MAGIC, &vec![0; MAX_PAYLOAD + 1]).is_none());
        // Room asked for up front: a payload of that size is then written in place.
        let (_, roomy) = new_file_with_room(MAGIC, b"small", 20_000).unwrap();
        assert!(roomy.next(&[3; 20_000]).is_some());
        assert!(state.next(&[3; 20_000]).is_none());
        let last = Copies {
            seq: u64::MAX,
            ..state
        };
        assert!(last.next(b"x").is_none());
    }
}
