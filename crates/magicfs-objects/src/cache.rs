//! The local chunk cache: fixed-size blocks of sealed segments, in memory
//! (LRU, bounded) and on disk under `--cache-dir` (LRU, bounded; survives
//! restarts). Segments are immutable, so a cached block never goes stale.

use bytes::Bytes;
use lru::LruCache;
use parking_lot::Mutex;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;

/// Bytes of a cache block: reads fetch whole aligned blocks of a segment.
pub const BLOCK: u64 = 4 << 20;

/// A block: (segment, index of the block in it).
pub type BlockId = (u32, u32);

/// Where and how much to cache.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// The disk cache's directory (none: memory only).
    pub dir: Option<PathBuf>,
    /// Bytes the disk cache may hold.
    pub disk_bytes: u64,
    /// Bytes the memory cache may hold.
    pub mem_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { dir: None, disk_bytes: 10 << 30, mem_bytes: 256 << 20 }
    }
}

type Lru<V> = Mutex<(LruCache<BlockId, V>, u64)>;

fn insert<V>(m: &Lru<V>, limit: u64, id: BlockId, v: V, size: u64, size_of: impl Fn(&V) -> u64) -> Vec<BlockId> {
    let mut g = m.lock();
    let (lru, used) = &mut *g;
    *used += size;
    if let Some(old) = lru.put(id, v) {
        *used -= size_of(&old);
    }
    let mut evicted = Vec::new();
    while *used > limit {
        match lru.pop_lru() {
            Some((k, old)) => {
                *used -= size_of(&old);
                evicted.push(k);
            }
            None => break,
        }
    }
    evicted
}

struct Disk {
    dir: PathBuf,
    limit: u64,
    index: Lru<u64>,
    writer: SyncSender<(BlockId, Bytes)>,
}

/// Blocks cached in memory and on disk.
pub struct BlockCache {
    mem: Lru<Bytes>,
    mem_limit: u64,
    disk: Option<Arc<Disk>>,
}

fn block_path(dir: &Path, (seg, blk): BlockId) -> PathBuf {
    dir.join(format!("{seg:010}")).join(format!("{blk:05}"))
}

impl BlockCache {
    /// A cache; with a directory, the blocks already there are indexed
    /// (oldest first by modification time) and kept within the bound.
    /// `volume` separates the caches of different volumes in one directory.
    pub fn open(cfg: &CacheConfig, volume: &str) -> io::Result<BlockCache> {
        let disk = match &cfg.dir {
            None => None,
            Some(root) => {
                let key = blake3::hash(volume.as_bytes()).to_hex();
                let dir = root.join(&key[..16]);
                fs::create_dir_all(&dir)?;
                let mut found = Vec::new();
                for seg in fs::read_dir(&dir)? {
                    let seg = seg?;
                    let Some(s) = seg.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
                    for blk in fs::read_dir(seg.path())? {
                        let blk = blk?;
                        let name = blk.file_name();
                        let Some(b) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
                            // A block whose write was interrupted.
                            let _ = fs::remove_file(blk.path());
                            continue;
                        };
                        let m = blk.metadata()?;
                        found.push((m.modified().ok(), (s, b), m.len()));
                    }
                }
                found.sort_unstable();
                let (tx, rx) = sync_channel::<(BlockId, Bytes)>(16);
                let disk = Arc::new(Disk {
                    dir,
                    limit: cfg.disk_bytes,
                    index: Mutex::new((LruCache::unbounded(), 0)),
                    writer: tx,
                });
                for (_, id, len) in found {
                    for old in insert(&disk.index, disk.limit, id, len, len, |l| *l) {
                        let _ = fs::remove_file(block_path(&disk.dir, old));
                    }
                }
                let d = disk.clone();
                std::thread::Builder::new().name("magicfs-cache".into()).spawn(move || {
                    for (id, bytes) in rx {
                        if let Err(e) = d.write(id, &bytes) {
                            log::warn!("chunk cache {}: cannot write a block: {e}", d.dir.display());
                        }
                    }
                })?;
                Some(disk)
            }
        };
        Ok(BlockCache { mem: Mutex::new((LruCache::unbounded(), 0)), mem_limit: cfg.mem_bytes, disk })
    }

    /// A block from memory, or from disk (then kept in memory too).
    pub fn get(&self, id: BlockId) -> Option<Bytes> {
        if let Some(b) = self.mem.lock().0.get(&id) {
            return Some(b.clone());
        }
        let disk = self.disk.as_ref()?;
        disk.index.lock().0.get(&id)?;
        match fs::read(block_path(&disk.dir, id)) {
            Ok(v) => {
                let b = Bytes::from(v);
                self.put_mem(id, b.clone());
                Some(b)
            }
            Err(_) => {
                let mut g = disk.index.lock();
                if let Some(len) = g.0.pop(&id) {
                    g.1 -= len;
                }
                None
            }
        }
    }

    /// Whether a block is cached (memory or disk), without reading it.
    pub fn contains(&self, id: BlockId) -> bool {
        self.mem.lock().0.contains(&id) || self.disk.as_ref().is_some_and(|d| d.index.lock().0.contains(&id))
    }

    /// Caches a block in memory, and on disk in the background.
    pub fn put(&self, id: BlockId, bytes: Bytes) {
        if let Some(d) = &self.disk {
            // A full queue drops the disk copy: the cache never slows reads.
            let _ = d.writer.try_send((id, bytes.clone()));
        }
        self.put_mem(id, bytes);
    }

    fn put_mem(&self, id: BlockId, bytes: Bytes) {
        let len = bytes.len() as u64;
        insert(&self.mem, self.mem_limit, id, bytes, len, |b| b.len() as u64);
    }

    /// Empties the memory cache (the disk cache stays).
    pub fn clear_memory(&self) {
        let mut g = self.mem.lock();
        g.0.clear();
        g.1 = 0;
    }

    /// Bytes held in memory and on disk.
    pub fn usage(&self) -> (u64, u64) {
        (self.mem.lock().1, self.disk.as_ref().map_or(0, |d| d.index.lock().1))
    }
}

impl Disk {
    fn write(&self, id: BlockId, bytes: &[u8]) -> io::Result<()> {
        let path = block_path(&self.dir, id);
        if let Some(p) = path.parent() {
            fs::create_dir_all(p)?;
        }
        let tmp = path.with_extension("part");
        fs::write(&tmp, bytes)?;
        fs::rename(&tmp, &path)?;
        let len = bytes.len() as u64;
        for old in insert(&self.index, self.limit, id, len, len, |l| *l) {
            let _ = fs::remove_file(block_path(&self.dir, old));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_blocks_survive_reopen_and_stay_within_bounds() {
        let d = tempfile::tempdir().unwrap();
        let cfg = CacheConfig { dir: Some(d.path().to_path_buf()), disk_bytes: 3 * 1000, mem_bytes: 1500 };
        let c = BlockCache::open(&cfg, "vol").unwrap();
        for i in 0..5u32 {
            c.put((1, i), Bytes::from(vec![i as u8; 1000]));
        }
        // Memory keeps the newest one (1500 bytes), disk the newest three.
        assert_eq!(c.usage().0, 1000);
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(c.usage().1, 3000);
        drop(c);
        let c = BlockCache::open(&cfg, "vol").unwrap();
        assert!(!c.contains((1, 0)) && !c.contains((1, 1)));
        assert_eq!(&c.get((1, 3)).unwrap()[..], &[3u8; 1000][..]);
        // Another volume in the same directory sees none of them.
        let other = BlockCache::open(&cfg, "other").unwrap();
        assert!(other.get((1, 3)).is_none());
    }
}
