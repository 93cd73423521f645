//! The controllers' one stable hash, for names that every master computes
//! alike on every run (pod-template hashes, event names): FNV-1a 64 rendered
//! as 10 lowercase base-36 characters. Not for security.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const WIDTH: u32 = 10;

/// FNV-1a, 64 bits.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME))
}

/// The hash of `bytes` as exactly 10 characters of `[0-9a-z]` (the hash
/// modulo 36^10, left-padded with zeros): short enough for object names.
pub(crate) fn short_hash(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut v = fnv1a64(bytes) % 36u64.pow(WIDTH);
    let mut out = [b'0'; WIDTH as usize];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(v % 36) as usize];
        v /= 36;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_reference_vectors() {
        for (input, expected) in
            [("", 0xcbf2_9ce4_8422_2325), ("a", 0xaf63_dc4c_8601_ec8c), ("foobar", 0x8594_4171_f739_67e8)]
        {
            assert_eq!(fnv1a64(input.as_bytes()), expected, "{input:?}");
        }
    }

    #[test]
    fn short_hashes_are_ten_base36_characters_and_stable() {
        for input in ["", "a", "web", "a much longer input than the hash itself"] {
            let h = short_hash(input.as_bytes());
            assert_eq!(h.len(), 10, "{h}");
            assert!(h.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()), "{h}");
            assert_eq!(h, short_hash(input.as_bytes()));
        }
        assert_ne!(short_hash(b"a"), short_hash(b"b"));
        // 0 renders as all zeros: the padding is on the left.
        assert_eq!(short_hash(b""), format!("{:0>10}", radix36(fnv1a64(b"") % 36u64.pow(10))));
    }

    fn radix36(mut v: u64) -> String {
        let mut s = Vec::new();
        while v > 0 {
            s.push(std::char::from_digit((v % 36) as u32, 36).unwrap_or('?'));
            v /= 36;
        }
        s.iter().rev().collect()
    }
}
