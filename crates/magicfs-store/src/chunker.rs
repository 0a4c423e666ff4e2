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
    if data.len() <= MIN_CHUNK as usize {
        // What FastCDC answers too, without building its tables.
        return vec![(0, data.len())];
    }
    fastcdc::v2020::FastCDC::new(data, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK).map(|c| (c.offset, c.length)).collect()
}

/// Chunking restarts at every multiple of this file offset, so the pieces
/// between seams can be chunked in parallel and identical content at the
/// same offsets always gives identical chunks.
pub const SEAM: u64 = 8 << 20;

/// Splits `data`, which starts at file offset `at`, into chunks, cutting at
/// every [`SEAM`] and chunking the pieces between seams in parallel.
pub fn split_file_range(data: &[u8], at: u64) -> Vec<(usize, usize)> {
    use rayon::prelude::*;
    let mut pieces = Vec::new();
    let mut start = 0usize;
    while start < data.len() {
        let abs = at + start as u64;
        let next_seam = (abs / SEAM + 1) * SEAM;
        let end = (start as u64 + (next_seam - abs)).min(data.len() as u64) as usize;
        pieces.push((start, end));
        start = end;
    }
    if let [(s, e)] = pieces[..] {
        // One piece (every small write): no hand-off to the thread pool.
        return split(&data[s..e]);
    }
    pieces
        .par_iter()
        .map(|&(s, e)| split(&data[s..e]).into_iter().map(|(o, l)| (s + o, l)).collect::<Vec<_>>())
        .collect::<Vec<_>>()
        .concat()
}

/// Names a chunk by the BLAKE3 hash of its raw bytes.
pub fn chunk_id(data: &[u8]) -> ChunkId {
    ChunkId(*blake3::hash(data).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use magicfs_types::noise::noise;

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
    fn small_inputs_are_one_chunk_as_fastcdc_cuts_them() {
        let d = noise(MIN_CHUNK as usize + 2, 3);
        for n in [1, 18, 4096, MIN_CHUNK as usize - 1, MIN_CHUNK as usize, MIN_CHUNK as usize + 1] {
            let cdc: Vec<_> = fastcdc::v2020::FastCDC::new(&d[..n], MIN_CHUNK, AVG_CHUNK, MAX_CHUNK)
                .map(|c| (c.offset, c.length))
                .collect();
            assert_eq!(split(&d[..n]), cdc, "{n} bytes");
            assert_eq!(split_file_range(&d[..n], 5), cdc, "{n} bytes");
        }
    }

    #[test]
    fn seamed_split_tiles_and_cuts_at_seams() {
        let d = noise(20 << 20, 5);
        let at = SEAM - 12345;
        let c = split_file_range(&d, at);
        let mut pos = 0;
        for (o, l) in &c {
            assert_eq!(*o, pos);
            pos += l;
        }
        assert_eq!(pos, d.len());
        assert!(c.iter().any(|(o, _)| at + *o as u64 == SEAM), "a chunk starts at the seam");
        assert!(c.iter().any(|(o, _)| at + *o as u64 == 2 * SEAM));
    }

    #[test]
    fn an_insert_only_changes_nearby_chunks() {
        let a = noise(2 << 20, 3);
        let mut b = a.clone();
        b.insert(1 << 20, 0x55);
        let ids = |d: &[u8]| -> Vec<ChunkId> { split(d).iter().map(|(o, l)| chunk_id(&d[*o..o + l])).collect() };
        let (ia, ib) = (ids(&a), ids(&b));
        let shared = ib.iter().filter(|x| ia.contains(x)).count();
        assert!(shared + 3 >= ia.len(), "{shared} of {}", ia.len());
    }
}
