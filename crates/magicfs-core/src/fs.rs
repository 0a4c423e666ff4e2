//! The filesystem object: opening a store, loading the inode table, and the
//! helpers every operation shares.

use crate::atime::Atime;
use crate::cache::{ChunkCache, Verified};
use crate::cluster::{Cluster, ClusterConfig};
use crate::handles::{HandleTable, LockFreeHandles, MutexHandles};
use crate::node::{Meta, Node, NEXT_INO_KEY};
use magicfs_store::keys::be_u64;
use magicfs_store::{Batch, ChunkMeta, Codec, Store, StoreError, Table};
use magicfs_types::{Attr, FileKind, FsError, FsResult, Ino, NAME_MAX, ROOT_INO};
use parking_lot::RwLock;
use std::path::Path;
use std::sync::atomic::AtomicU64;

/// Settings of a mounted filesystem.
#[derive(Clone, Debug)]
pub struct FsConfig {
    /// Codec for new chunks unless a file's `user.magic.codec` says otherwise.
    pub codec: Codec,
    /// Dirty bytes of one file above which its pages are committed early.
    pub spill_bytes: usize,
    /// Bytes of decompressed chunks kept for reads.
    pub cache_bytes: usize,
    /// Use the mutex-based handle table (the benchmark baseline) instead of the lock-free one.
    pub mutex_handles: bool,
    /// Refuse every change (`EROFS`) once loaded.
    pub read_only: bool,
    /// When reads move access times.
    pub atime: Atime,
    /// Whether listing a directory moves its access time (`nodiratime`: no).
    pub dir_atime: bool,
}

impl FsConfig {
    /// The settings for a cluster volume: commits every 128 MiB rather than
    /// 32. A commit waits for its segments' uploads before its metadata goes
    /// out (the next commit of the file chunks meanwhile), so larger commits
    /// keep more uploads in flight and fewer gaps between them (32, 64 and
    /// 128 MiB measured against S3; BENCHMARKS.md).
    pub fn for_cluster(self) -> FsConfig {
        FsConfig { spill_bytes: 128 << 20, ..self }
    }
}

impl Default for FsConfig {
    fn default() -> Self {
        FsConfig {
            codec: Codec::Zstd,
            spill_bytes: 32 << 20,
            cache_bytes: 64 << 20,
            mutex_handles: false,
            read_only: false,
            atime: Atime::default(),
            dir_atime: true,
        }
    }
}

/// Who is asking: owner of anything created.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ctx {
    /// Caller's user id.
    pub uid: u32,
    /// Caller's group id.
    pub gid: u32,
}

/// Why a filesystem could not be opened.
pub type OpenError = StoreError;

/// A MagicFS filesystem: the inode table over a store.
pub struct Fs {
    pub(crate) meta: RwLock<Meta>,
    /// Set on a mount of a shared volume.
    pub(crate) cluster: Option<Cluster>,
    pub(crate) store: Store,
    pub(crate) cfg: FsConfig,
    pub(crate) cache: ChunkCache,
    pub(crate) verified: Verified,
    pub(crate) handles: Box<dyn HandleTable>,
    pub(crate) chunk_reads: AtomicU64,
    pub(crate) flush_buf: parking_lot::Mutex<Vec<u8>>,
}

impl Fs {
    /// Opens the filesystem in a store directory (created when `create` and
    /// the directory is missing or empty).
    pub fn open_store(dir: &Path, create: bool, cfg: FsConfig) -> Result<Fs, OpenError> {
        Self::load(Store::open(dir, create)?, cfg)
    }

    /// A new, empty filesystem held in memory only.
    pub fn memory(cfg: FsConfig) -> Fs {
        match Self::load(Store::memory(), cfg) {
            Ok(fs) => fs,
            Err(e) => unreachable!("an empty memory store always loads: {e}"),
        }
    }

    /// Builds the inode table from the store's tables.
    pub fn load(store: Store, cfg: FsConfig) -> Result<Fs, OpenError> {
        Self::load_with(store, cfg, ClusterConfig::default())
    }

    /// [`Fs::load`], with the timing of a mount of a shared volume.
    pub fn load_with(store: Store, cfg: FsConfig, cluster: ClusterConfig) -> Result<Fs, OpenError> {
        let mut meta = Meta::empty();
        let mut bad = None;
        let mut orphans = Vec::new();
        let seq = store.snapshot(|t, k, v| {
            if t == Table::Orphans {
                orphans.extend(be_u64(k));
            }
            if let Err(e) = meta.apply_row(t, k, Some(v), None) {
                bad.get_or_insert(e);
            }
        })?;
        if let Some(e) = bad {
            return Err(e);
        }
        let cache = ChunkCache::new(cfg.cache_bytes);
        let mutex_handles = cfg.mutex_handles;
        let mut fs = Fs {
            meta: RwLock::new(meta),
            cluster: store.shared().map(|_| Cluster::new(cluster, seq)),
            store,
            cfg,
            cache,
            verified: Verified::default(),
            handles: if mutex_handles {
                Box::new(MutexHandles::default())
            } else {
                Box::new(LockFreeHandles::default())
            },
            chunk_reads: AtomicU64::new(0),
            flush_buf: parking_lot::Mutex::new(Vec::new()),
        };
        // A new volume gets its root; on a private store, inodes unlinked
        // while open when the last process stopped are freed (on a shared
        // volume other mounts may still have them open: the cleaner frees them).
        let root_missing = !fs.meta.read().nodes.contains_key(&ROOT_INO);
        let private = fs.cluster.is_none();
        // Setting up the volume is not a change a read-only mount refuses.
        let read_only = std::mem::replace(&mut fs.cfg.read_only, false);
        if root_missing || (private && !orphans.is_empty()) {
            fs.mutate(|meta, b| {
                if let std::collections::hash_map::Entry::Vacant(v) = meta.nodes.entry(ROOT_INO) {
                    // SAFETY: getuid/getgid cannot fail.
                    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
                    let mut attr = Attr::new(ROOT_INO, FileKind::Dir, 0o755, uid, gid);
                    attr.nlink = 2;
                    v.insert(Node::new(attr, ROOT_INO));
                    meta.log_node(b, ROOT_INO);
                    b.put(Table::Meta, NEXT_INO_KEY.to_vec(), meta.next_ino.to_le_bytes().to_vec());
                }
                if private {
                    for ino in &orphans {
                        let freed = meta.free_node(b, *ino);
                        fs.release_chunks(freed);
                    }
                }
                Ok(())
            })
            .map_err(|e| StoreError::Volume(format!("cannot create the root directory or free orphans: {e}")))?;
        }
        fs.cfg.read_only = read_only;
        Ok(fs)
    }

    /// Writes `batch` to the store (`ENOSPC` on a full disk, `EROFS` on a
    /// read-only filesystem, else `EIO`).
    pub(crate) fn commit(&self, batch: Batch) -> FsResult<()> {
        if self.cfg.read_only && !batch.is_empty() {
            return Err(FsError::ReadOnly);
        }
        self.store.commit(batch).map_err(|e| store_failed("store commit", &e))
    }

    /// Releases chunks that are no longer referenced.
    pub(crate) fn release_chunks(&self, freed: Vec<ChunkMeta>) {
        if self.cluster.is_some() {
            // Other mounts may still read them; compaction reclaims the space.
            return;
        }
        for c in freed {
            self.store.free_chunk(c.location());
        }
    }

    /// The attributes of an inode.
    pub fn getattr(&self, ino: Ino) -> FsResult<Attr> {
        self.meta.read().nodes.get(&ino).map(Node::attr_out).ok_or(FsError::NotFound)
    }

    /// Makes everything committed so far durable (the whole store).
    pub fn sync_store(&self) -> FsResult<()> {
        self.store.sync().map_err(|e| store_failed("store sync", &e))
    }

    /// Folds the store's log into its image now (durably) and waits for it.
    pub fn checkpoint(&self) -> FsResult<()> {
        self.store.checkpoint().map_err(|e| {
            log::error!("checkpoint failed: {e}");
            FsError::Io
        })
    }

    /// Commits every dirty file, then flushes and checkpoints the store.
    /// Call before exit; the filesystem stays usable.
    pub fn shutdown(&self) -> FsResult<()> {
        let dirty: Vec<Ino> = {
            let m = self.meta.read();
            m.nodes.iter().filter(|(_, n)| n.file().is_some_and(|f| !f.pages.is_empty())).map(|(i, _)| *i).collect()
        };
        // Every file gets its chance and the store is closed even when one
        // cannot be committed (a full disk); the first error is returned.
        let mut first = Ok(());
        for ino in dirty {
            if let Err(e) = self.flush(ino) {
                log::error!("committing inode {ino} at shutdown: {e}");
                first = first.and(Err(e));
            }
        }
        self.leave_cluster();
        let closed = self.store.close().map_err(|e| store_failed("closing the store", &e));
        first.and(closed)
    }

    /// True for the memory-only backend.
    pub fn is_memory(&self) -> bool {
        self.store.is_memory()
    }
}

impl Drop for Fs {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            log::error!("filesystem shutdown: {e}");
        }
    }
}

/// The errno of a failed store operation: a full disk is `ENOSPC` (so
/// `write`, `close` and `fsync` say so), anything else `EIO`.
pub(crate) fn store_failed(what: &str, e: &StoreError) -> FsError {
    let errno = match e {
        StoreError::Io { source, .. } => source.raw_os_error(),
        _ => None,
    };
    match errno {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => {
            log::warn!("{what}: {e}");
            FsError::NoSpace
        }
        Some(libc::EROFS) => FsError::ReadOnly,
        _ => {
            log::error!("{what} failed: {e}");
            FsError::Io
        }
    }
}

/// Checks a name for one directory entry.
pub(crate) fn check_name(name: &[u8]) -> FsResult<()> {
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
        return Err(FsError::Invalid);
    }
    Ok(())
}
