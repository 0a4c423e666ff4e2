//! Deterministic pseudo-random bytes (xorshift64) for tests and benchmarks:
//! incompressible, unique per seed, cheap to make.

/// `len` pseudo-random bytes determined by `seed`.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
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
