//! Cryptographic primitives and constructions. No I/O happens here: callers pass
//! bytes in and get bytes out, so every construction can be tested with vectors.

pub mod chunk;
pub mod identity;
pub mod keys;
pub mod names;
pub mod sign;
pub mod wrap;

pub use identity::{Identity, MemberId, PublicIdentity};
pub use keys::SecretKey;

use rand_core::{OsRng, RngCore};

/// Fills a fresh array from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    OsRng.fill_bytes(&mut out);
    out
}

/// BLAKE3 over the exact bytes, used wherever a record is chained or committed to.
pub fn hash(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

/// Lower-case hex, used for ids in file names and human output.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Parses lower- or upper-case hex into exactly `N` bytes.
pub fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let bytes = s.as_bytes();
    if bytes.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let v = [0u8, 1, 0xab, 0xff];
        assert_eq!(hex(&v), "0001abff");
        assert_eq!(unhex::<4>("0001ABff"), Some(v));
        assert_eq!(unhex::<4>("0001ab"), None);
        assert_eq!(unhex::<2>("zz00"), None);
    }
}
