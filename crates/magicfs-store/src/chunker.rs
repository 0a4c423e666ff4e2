//! Content-defined chunking (FastCDC 2020) and chunk naming (BLAKE3).

use magicfs_types::ChunkId;

/// Smallest chunk the chunker cuts (except at the end of a stream).
pub const MIN_CHUNK: u32 = 16 * 1024;
/// Average chunk size aimed at.
pub const AVG_CHUNK: u32 = 64 * 1024;
/// Largest chunk the chunker cuts.
pub const MAX_CHUNK: u32 = 256 * 1024;

/// Splits `data` into content-defined chunks, returning `(offset, len)` pairs
/// that tile `data` exactly.
pub fn split(data: &[u8]) -> Vec<(usize, usize)> {
    if data.is_empty() {
        return Vec::new();
    }
    fastcdc::v2020::FastCDC::new(data, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK)
        .map(|c| (c.offset, c.length))
        .collect()
}

/// Names a chunk by the BLAKE3 hash of its raw bytes.
pub fn chunk_id(data: &[u8]) -> ChunkId {
    ChunkId(*blake3::hash(data).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn chunks_tile_the_input() {
        let d = noise(3 << 20, 9);
        let c = split(&d);
        let mut at = 0;
        for (o, l) in &c {
            assert_eq!(*o, at);
            assert!(*l <= MAX_CHUNK as usize);
            at += l;
        }
        assert_eq!(at, d.len());
        assert!(c.len() > 20 && c.len() < 100, "{} chunks", c.len());
    }

    #[test]
    fn an_insert_only_changes_nearby_chunks() {
        let a = noise(2 << 20, 3);
        let mut b = a.clone();
        b.insert(1 << 20, 0x55);
        let ids = |d: &[u8]| -> Vec<ChunkId> {
            split(d).iter().map(|(o, l)| chunk_id(&d[*o..o + l])).collect()
        };
        let (ia, ib) = (ids(&a), ids(&b));
        let shared = ib.iter().filter(|x| ia.contains(x)).count();
        assert!(shared + 3 >= ia.len(), "{shared} of {}", ia.len());
    }
}
