//! The content file: a 32-byte header, then fixed-size chunk slots.
//!
//! Header: `magic "CFRC" (4) | format version u16 LE | chunk_log2 u8 | 0u8 |
//! file id (16) | 0 (8)`. Chunk `i` starts at `HEADER_LEN + i * (chunk + 40)`;
//! the last chunk may be shorter. This file holds the offset arithmetic alone.

use crate::crypto::chunk::OVERHEAD;
use crate::error::{Error, Result};

pub const HEADER_LEN: u64 = 32;
pub const MAGIC: &[u8; 4] = b"CFRC";
pub const MIN_CHUNK_LOG2: u8 = 12;
pub const MAX_CHUNK_LOG2: u8 = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataHeader {
    pub format_version: u16,
    pub chunk_log2: u8,
    pub file_id: [u8; 16],
}

impl DataHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut h = [0u8; HEADER_LEN as usize];
        h[..4].copy_from_slice(MAGIC);
        h[4..6].copy_from_slice(&self.format_version.to_le_bytes());
        h[6] = self.chunk_log2;
        h[8..24].copy_from_slice(&self.file_id);
        h
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < HEADER_LEN as usize || &bytes[..4] != MAGIC {
            return Err(Error::corrupt("content file", "missing or wrong header"));
        }
        let format_version = u16::from_le_bytes([bytes[4], bytes[5]]);
        super::check_version(format_version)?;
        let chunk_log2 = bytes[6];
        if !(MIN_CHUNK_LOG2..=MAX_CHUNK_LOG2).contains(&chunk_log2) {
            return Err(Error::corrupt(
                "content file",
                format!("chunk size 2^{chunk_log2} out of range"),
            ));
        }
        let mut file_id = [0u8; 16];
        file_id.copy_from_slice(&bytes[8..24]);
        Ok(DataHeader {
            format_version,
            chunk_log2,
            file_id,
        })
    }
}

/// Chunk geometry of one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub chunk_log2: u8,
}

impl Layout {
    pub fn chunk_size(&self) -> u64 {
        1u64 << self.chunk_log2
    }

    pub fn slot_size(&self) -> u64 {
        self.chunk_size() + OVERHEAD as u64
    }

    /// Offset of chunk `index` in the content file.
    pub fn slot_offset(&self, index: u64) -> u64 {
        HEADER_LEN + index * self.slot_size()
    }

    /// Number of chunks a plaintext of `size` bytes occupies.
    pub fn chunk_count(&self, size: u64) -> u64 {
        size.div_ceil(self.chunk_size())
    }

    /// Plaintext bytes held by chunk `index` of a file of `size` bytes.
    pub fn chunk_plain_len(&self, size: u64, index: u64) -> usize {
        let start = index * self.chunk_size();
        size.saturating_sub(start).min(self.chunk_size()) as usize
    }

    /// Length of the content file for a plaintext of `size` bytes.
    pub fn stored_len(&self, size: u64) -> u64 {
        let n = self.chunk_count(size);
        if n == 0 {
            return HEADER_LEN;
        }
        HEADER_LEN
            + (n - 1) * self.slot_size()
            + self.chunk_plain_len(size, n - 1) as u64
            + OVERHEAD as u64
    }

    /// Plaintext size implied by a content file's length (inverse of `stored_len`
    /// for lengths it produces); used by `stat` without reading the sidecar.
    pub fn plain_len(&self, stored: u64) -> u64 {
        if stored <= HEADER_LEN {
            return 0;
        }
        let body = stored - HEADER_LEN;
        let full = body / self.slot_size();
        let rest = body % self.slot_size();
        full * self.chunk_size() + rest.saturating_sub(OVERHEAD as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = DataHeader {
            format_version: 1,
            chunk_log2: 16,
            file_id: [9; 16],
        };
        assert_eq!(DataHeader::decode(&h.encode()).unwrap(), h);
        let mut bad = h.encode();
        bad[0] = b'X';
        assert!(DataHeader::decode(&bad).is_err());
        let mut newer = h.encode();
        newer[4] = 99;
        assert!(matches!(
            DataHeader::decode(&newer),
            Err(Error::UnsupportedVersion { .. })
        ));
    }

    #[test]
    fn offsets() {
        let l = Layout { chunk_log2: 12 };
        assert_eq!(l.chunk_count(0), 0);
        assert_eq!(l.chunk_count(1), 1);
        assert_eq!(l.chunk_count(4096), 1);
        assert_eq!(l.chunk_count(4097), 2);
        assert_eq!(l.stored_len(0), 32);
        assert_eq!(l.stored_len(1), 32 + 1 + 40);
        assert_eq!(l.stored_len(4097), 32 + 4136 + 41);
        assert_eq!(l.chunk_plain_len(4097, 1), 1);
        assert_eq!(l.chunk_plain_len(4097, 2), 0);
        for size in [0u64, 1, 100, 4095, 4096, 4097, 8192, 123_456, 5 << 30] {
            assert_eq!(l.plain_len(l.stored_len(size)), size, "size {size}");
        }
    }
}
