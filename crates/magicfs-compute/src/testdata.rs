//! Deterministic pseudo-random data for tests (xorshift64*).

/// A xorshift64* generator.
pub struct XorShift(u64);

impl XorShift {
    /// A generator seeded with `seed` (any value; 0 is mapped to a fixed non-zero state).
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `len` pseudo-random bytes from `seed`; every eighth run of bytes is biased
/// towards 0 so that counting zeros is not trivial.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = XorShift::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        let word = rng.next();
        if word.is_multiple_of(8) {
            out.extend_from_slice(&[0, 0, 0, word as u8, 0, 0, 0, 0]);
        } else {
            out.extend_from_slice(&word.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}
