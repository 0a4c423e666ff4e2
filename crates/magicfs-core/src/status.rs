//! Status reports (`.magic/status`, `magicfs stats`) and `statfs`.

use crate::fs::Fs;
use magicfs_types::FileKind;
use serde::Serialize;

/// A snapshot of the filesystem's counters.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// MagicFS version.
    pub version: &'static str,
    /// `redb` or `memory`.
    pub backend: &'static str,
    /// Data directory, if any.
    pub store_path: Option<String>,
    /// Inodes of every kind.
    pub inodes: u64,
    /// Regular files.
    pub files: u64,
    /// Directories.
    pub directories: u64,
    /// Distinct chunks stored.
    pub chunks: u64,
    /// Sum of regular file sizes.
    pub logical_bytes: u64,
    /// Bytes of file data held in extents (holes excluded).
    pub data_bytes: u64,
    /// Raw bytes of distinct chunks (after deduplication).
    pub unique_bytes: u64,
    /// Bytes of distinct chunks as stored (after compression).
    pub stored_bytes: u64,
    /// `data_bytes / unique_bytes`.
    pub dedup_ratio: f64,
    /// `unique_bytes / stored_bytes`.
    pub compression_ratio: f64,
    /// `data_bytes / stored_bytes`.
    pub total_ratio: f64,
    /// Bytes in pack files, including space of freed chunks.
    pub pack_bytes: u64,
    /// Pack bytes no chunk refers to (reclaimed by `magicfs gc`).
    pub garbage_bytes: u64,
    /// Size of the redb image.
    pub db_bytes: u64,
    /// Size of the live write-ahead log.
    pub wal_bytes: u64,
    /// Bytes written but not yet committed.
    pub dirty_bytes: u64,
    /// Open file and directory handles.
    pub open_handles: u64,
    /// Bytes in the decompressed-chunk cache.
    pub cache_bytes: u64,
    /// Chunks read from the store (cache misses).
    pub chunk_reads: u64,
    /// Batches committed since start.
    pub commits: u64,
    /// Durable checkpoints since start.
    pub checkpoints: u64,
    /// Last storage error, if any.
    pub last_error: Option<String>,
}

/// Filesystem capacity figures for `statfs`.
#[derive(Clone, Copy, Debug)]
pub struct StatFs {
    /// Total blocks.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Free blocks for unprivileged users.
    pub bavail: u64,
    /// Inodes in use plus free.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Block size.
    pub bsize: u32,
    /// Longest name.
    pub namelen: u32,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        1.0
    } else {
        ((a as f64 / b as f64) * 1000.0).round() / 1000.0
    }
}

impl Fs {
    /// Counts everything; O(inodes + chunks).
    pub fn status(&self) -> Status {
        let info = self.store.info();
        let meta = self.meta.read();
        let (mut files, mut dirs, mut logical, mut data, mut dirty) = (0u64, 0u64, 0u64, 0u64, 0u64);
        for n in meta.nodes.values() {
            match n.attr.kind {
                FileKind::File => {
                    files += 1;
                    logical += n.attr.size;
                    if let Some(f) = n.file() {
                        data += f.extent_bytes;
                        dirty += f.dirty_bytes as u64;
                    }
                }
                FileKind::Dir => dirs += 1,
                _ => {}
            }
        }
        let unique: u64 = meta.chunks.values().map(|c| c.raw_len as u64).sum();
        let stored: u64 = meta.chunks.values().map(|c| c.stored_len as u64).sum();
        Status {
            version: env!("CARGO_PKG_VERSION"),
            backend: info.backend,
            store_path: info.path.map(|p| p.display().to_string()),
            inodes: meta.nodes.len() as u64,
            files,
            directories: dirs,
            chunks: meta.chunks.len() as u64,
            logical_bytes: logical,
            data_bytes: data,
            unique_bytes: unique,
            stored_bytes: stored,
            dedup_ratio: ratio(data, unique),
            compression_ratio: ratio(unique, stored),
            total_ratio: ratio(data, stored),
            pack_bytes: info.pack_bytes,
            garbage_bytes: if info.backend == "memory" { 0 } else { info.pack_bytes.saturating_sub(stored) },
            db_bytes: info.db_bytes,
            wal_bytes: info.wal_bytes,
            dirty_bytes: dirty,
            open_handles: self.handles.len() as u64,
            cache_bytes: self.cache.bytes() as u64,
            chunk_reads: self.chunk_reads.load(std::sync::atomic::Ordering::Relaxed),
            commits: info.commits,
            checkpoints: info.checkpoints,
            last_error: info.writer_error,
        }
    }

    /// Capacity: that of the disk under the data directory, less the space
    /// kept for the log and the image (or of memory).
    pub fn statfs(&self) -> StatFs {
        let bsize = 4096u64;
        let (blocks, bfree, bavail) = match self.store.space() {
            Some(s) => (s.total / bsize, s.free / bsize, s.avail / bsize),
            None if !self.store.is_memory() => (1 << 30, 1 << 30, 1 << 30),
            None => {
                // SAFETY: sysconf has no preconditions.
                let (pages, avail) =
                    unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_AVPHYS_PAGES)) };
                let ps = 4096u64;
                let t = pages.max(0) as u64 * ps / bsize;
                let a = avail.max(0) as u64 * ps / bsize;
                (t, a, a)
            }
        };
        let used = self.meta.read().nodes.len() as u64;
        StatFs { blocks, bfree, bavail, files: used + (1 << 32), ffree: 1 << 32, bsize: bsize as u32, namelen: 255 }
    }
}
