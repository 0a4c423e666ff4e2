//! A cache of decompressed chunks, bounded in bytes, for reads.

use lru::LruCache;
use magicfs_types::ChunkId;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::Arc;

/// Cached chunks and the bytes they hold.
type Inner = (LruCache<ChunkId, Arc<Vec<u8>>>, usize);

/// Least-recently-used cache of raw chunk bytes.
pub struct ChunkCache {
    inner: Mutex<Inner>,
    limit: usize,
}

impl ChunkCache {
    /// A cache holding at most `limit` bytes.
    pub fn new(limit: usize) -> ChunkCache {
        ChunkCache { inner: Mutex::new((LruCache::unbounded(), 0)), limit }
    }

    /// The cached bytes of `id`, if present.
    pub fn get(&self, id: &ChunkId) -> Option<Arc<Vec<u8>>> {
        self.inner.lock().0.get(id).cloned()
    }

    /// Whether `id` is cached (without touching its recency).
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.inner.lock().0.contains(id)
    }

    /// Caches `data` as the bytes of `id`, evicting old entries as needed.
    pub fn put(&self, id: ChunkId, data: Arc<Vec<u8>>) {
        let mut g = self.inner.lock();
        let (lru, used) = &mut *g;
        *used += data.len();
        if let Some(old) = lru.put(id, data) {
            *used -= old.len();
        }
        while *used > self.limit {
            match lru.pop_lru() {
                Some((_, d)) => *used -= d.len(),
                None => break,
            }
        }
    }

    /// Bytes currently cached.
    pub fn bytes(&self) -> usize {
        self.inner.lock().1
    }
}

/// Raw chunks read straight from the packs whose bytes were checked
/// against their hash. Bounded: when full it starts over, and chunks are
/// checked again on their next read.
#[derive(Default)]
pub struct Verified(Mutex<HashSet<ChunkId>>);

/// Chunks [`Verified`] remembers (about 12 MiB).
const VERIFIED_MAX: usize = 256 << 10;

impl Verified {
    /// True when `id` was checked since the set last started over.
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.0.lock().contains(id)
    }

    /// Remembers that `id` was checked.
    pub fn insert(&self, id: ChunkId) {
        let mut s = self.0.lock();
        if s.len() >= VERIFIED_MAX {
            s.clear();
        }
        s.insert(id);
    }
}
