//! The operations over one byte window.
//!
//! Each function reads a slice once, front to back, and returns the value the
//! instruction format reports (see [`crate::Op`]). The fast versions here are
//! written so that the compiler can keep several bytes per instruction in
//! flight; [`reference`](mod@reference) holds the same definitions written the plain way, and
//! the tests hold the two equal.

/// FNV-1a 64-bit offset basis: the hash of the empty window.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a 64-bit prime.
pub const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Number of bytes equal to `imm`. 0 for an empty window.
///
/// Uses AVX2 when the CPU has it (chosen at run time), otherwise a portable
/// word-at-a-time count.
pub fn counteq(data: &[u8], imm: u8) -> u64 {
    bytecount::count(data, imm) as u64
}

/// XOR of all bytes: `data[0] ^ data[1] ^ … ^ data[n-1]`, a single byte.
/// 0 for an empty window.
pub fn xor(data: &[u8]) -> u8 {
    const LANES: usize = 64;
    let mut acc = [0u8; LANES];
    let mut chunks = data.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (a, &b) in acc.iter_mut().zip(chunk) {
            *a ^= b;
        }
    }
    let folded = acc.iter().fold(0u8, |x, &a| x ^ a);
    chunks.remainder().iter().fold(folded, |x, &b| x ^ b)
}

/// Sum of all bytes, each read as an unsigned value 0-255, modulo 2^64
/// (wrapping). 0 for an empty window.
pub fn add(data: &[u8]) -> u64 {
    const LANES: usize = 64;
    // A 16-bit lane gains at most 255 per row: 256 rows keep it below 65536.
    const BLOCK: usize = LANES * 256;
    let mut total = 0u64;
    let mut blocks = data.chunks_exact(BLOCK);
    for block in &mut blocks {
        let mut acc = [0u16; LANES];
        for row in block.chunks_exact(LANES) {
            for (a, &b) in acc.iter_mut().zip(row) {
                *a = a.wrapping_add(u16::from(b));
            }
        }
        total = total.wrapping_add(acc.iter().map(|&a| u64::from(a)).sum::<u64>());
    }
    blocks.remainder().iter().fold(total, |t, &b| t.wrapping_add(u64::from(b)))
}

/// FNV-1a 64-bit hash: start from [`FNV_OFFSET`]; for each byte, XOR it into
/// the low byte of the state, then multiply by [`FNV_PRIME`] modulo 2^64.
/// [`FNV_OFFSET`] for an empty window.
pub fn fnv(data: &[u8]) -> u64 {
    fnv_append(FNV_OFFSET, data)
}

/// Continues an FNV-1a 64-bit hash: `fnv(a ++ b) == fnv_append(fnv(a), b)`.
pub fn fnv_append(state: u64, data: &[u8]) -> u64 {
    data.iter().fold(state, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME))
}

/// CRC-32C (Castagnoli: reflected polynomial 0x82F63B78, initial value and
/// final XOR 0xFFFFFFFF), as used by iSCSI, ext4 and SSE 4.2's `crc32`
/// instruction. 0 for an empty window.
///
/// Uses the CPU's CRC instruction when it has one.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// Continues a CRC-32C: `crc32c(a ++ b) == crc32c_append(crc32c(a), b)`.
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, data)
}

/// CRC-32C of `a ++ b` from `crc32c(a)`, `crc32c(b)` and the length of `b`.
pub fn crc32c_combine(crc_a: u32, crc_b: u32, len_b: usize) -> u32 {
    crc32c::crc32c_combine(crc_a, crc_b, len_b)
}

/// The same definitions written the plain way, one byte at a time: the
/// yardstick the fast versions are tested against.
pub mod reference {
    use super::{FNV_OFFSET, FNV_PRIME};
    use crate::instr::Op;

    /// The value of `op` (with `imm`, used by `counteq`) over `data`.
    pub fn eval(op: Op, imm: u8, data: &[u8]) -> u64 {
        match op {
            Op::Counteq => counteq(data, imm),
            Op::Xor => u64::from(xor(data)),
            Op::Add => add(data),
            Op::Fnv => fnv(data),
            Op::Crc32c => u64::from(crc32c(data)),
        }
    }

    /// Number of bytes equal to `imm`.
    pub fn counteq(data: &[u8], imm: u8) -> u64 {
        data.iter().filter(|&&b| b == imm).count() as u64
    }

    /// XOR of all bytes (0 for an empty window).
    pub fn xor(data: &[u8]) -> u8 {
        data.iter().fold(0, |x, &b| x ^ b)
    }

    /// Sum of all bytes modulo 2^64.
    pub fn add(data: &[u8]) -> u64 {
        data.iter().fold(0u64, |t, &b| t.wrapping_add(u64::from(b)))
    }

    /// FNV-1a 64-bit.
    pub fn fnv(data: &[u8]) -> u64 {
        let mut h = FNV_OFFSET;
        for &b in data {
            h ^= u64::from(b);
            h = h.wrapping_mul(FNV_PRIME);
        }
        h
    }

    /// CRC-32C, bit by bit.
    pub fn crc32c(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
            }
        }
        !crc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::{random_bytes, XorShift};

    #[test]
    fn known_values() {
        assert_eq!(reference::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(reference::fnv(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(reference::fnv(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(reference::fnv(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(fnv(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(xor(&[0x0f, 0xf0, 0x01]), 0xfe);
        assert_eq!(add(&[255; 1000]), 255_000);
        assert_eq!(counteq(b"abracadabra", b'a'), 5);
    }

    #[test]
    fn identities_on_empty() {
        assert_eq!((counteq(&[], 0), xor(&[]), add(&[]), fnv(&[]), crc32c(&[])), (0, 0, 0, FNV_OFFSET, 0));
    }

    #[test]
    fn fast_equals_reference_on_random_slices() {
        let data = random_bytes(1 << 20, 7);
        let mut rng = XorShift::new(99);
        for round in 0..400 {
            let len = match round % 4 {
                0 => rng.below(64),
                1 => rng.below(4096),
                _ => rng.below(data.len() as u64),
            } as usize;
            let start = rng.below((data.len() - len) as u64 + 1) as usize;
            let w = &data[start..start + len];
            let imm = rng.next() as u8;
            assert_eq!(counteq(w, imm), reference::counteq(w, imm), "counteq {start}+{len}");
            assert_eq!(xor(w), reference::xor(w), "xor {start}+{len}");
            assert_eq!(add(w), reference::add(w), "add {start}+{len}");
            assert_eq!(fnv(w), reference::fnv(w), "fnv {start}+{len}");
            assert_eq!(crc32c(w), reference::crc32c(w), "crc32c {start}+{len}");
        }
    }

    #[test]
    fn add_does_not_lose_carries_on_all_ones() {
        for len in [1, 63, 64, 65, 16383, 16384, 16385, 100_000] {
            let w = vec![255u8; len];
            assert_eq!(add(&w), 255 * len as u64);
        }
    }

    #[test]
    fn append_and_combine_split_anywhere() {
        let data = random_bytes(10_000, 3);
        for cut in [0, 1, 7, 64, 4095, 9999, 10_000] {
            let (a, b) = data.split_at(cut);
            assert_eq!(fnv_append(fnv(a), b), fnv(&data));
            assert_eq!(crc32c_append(crc32c(a), b), crc32c(&data));
            assert_eq!(crc32c_combine(crc32c(a), crc32c(b), b.len()), crc32c(&data));
        }
    }
}
