//! Deterministic pseudo-random bytes (xorshift64) for tests and benchmarks:
//! incompressible, unique per seed, cheap to make.

/// A xorshift64 generator (Marsaglia's 13/7/17 triple).
#[derive(Clone, Debug)]
pub struct XorShift64(u64);

impl XorShift64 {
    /// A generator whose state starts at `seed` (a zero seed yields only zeros).
    pub fn new(seed: u64) -> XorShift64 {
        XorShift64(seed)
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n`; 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        let x = self.next_u64();
        if n == 0 {
            0
        } else {
            x % n
        }
    }

    /// A number in `[0, 1)` with 24 bits of precision.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// `len` pseudo-random bytes determined by `seed`.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = XorShift64::new(seed | 1);
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&x.next_u64().to_le_bytes());
    }
    v.truncate(len);
    v
}

#[cfg(test)]
mod tests {
    #[test]
    fn deterministic_and_seed_dependent() {
        assert_eq!(super::noise(1000, 3), super::noise(1000, 3));
        assert_ne!(super::noise(1000, 3), super::noise(1000, 4));
        assert_eq!(super::noise(13, 9).len(), 13);
    }
}
