//! The filesystem object: opening a store, loading the inode table, and the
//! helpers every operation shares.

use crate::atime::Atime;
use crate::cache::{ChunkCache, Verified};
use crate::handles::{HandleTable, LockFreeHandles, MutexHandles};
use crate::node::{Body, Meta, Node, NEXT_INO_KEY};
use magicfs_store::keys::{be_u64, split_key};
use magicfs_store::{Batch, ChunkMeta, Codec, Extent, Store, StoreError, Table};
use magicfs_types::{Attr, FileKind, FsError, FsResult, Ino, NAME_MAX, ROOT_INO};
use parking_lot::RwLock;
use std::collections::HashMap;
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
    pub(crate) store: Store,
    pub(crate) cfg: FsConfig,
    pub(crate) cache: ChunkCache,
    pub(crate) verified: Verified,
    pub(crate) handles: Box<dyn HandleTable>,
    pub(crate) chunk_reads: AtomicU64,
    pub(crate) flush_buf: parking_lot::Mutex<Vec<u8>>,
}

fn corrupt(what: &str, key: &[u8]) -> StoreError {
    StoreError::Corrupt(format!("undecodable {what} entry (key {key:02x?})"))
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

    /// Builds the inode table from the store's image.
    pub fn load(store: Store, cfg: FsConfig) -> Result<Fs, OpenError> {
        let mut meta = Meta { nodes: HashMap::new(), chunks: HashMap::new(), next_ino: ROOT_INO + 1 };
        let mut bad = None;
        store.scan(Table::Inodes, |k, v| {
            let attr = Attr::decode(v);
            match (be_u64(k), attr) {
                (Some(ino), Some(attr)) => {
                    let mut n = Node::new(attr, ino);
                    if let Body::Symlink(t) = &mut n.body {
                        *t = v[magicfs_types::ATTR_LEN..].to_vec();
                    }
                    meta.nodes.insert(ino, n);
                }
                _ => bad = bad.take().or(Some(corrupt("inode", k))),
            }
        })?;
        let mut links = Vec::new();
        store.scan(Table::Dirents, |k, v| match (split_key(k), be_u64(v)) {
            (Some((parent, name)), Some(child)) => links.push((parent, name.to_vec(), child)),
            _ => bad = bad.take().or(Some(corrupt("dirent", k))),
        })?;
        for (parent, name, child) in links {
            if let Some(Body::Dir { parent: p, .. }) = meta.nodes.get_mut(&child).map(|n| &mut n.body) {
                *p = parent;
            }
            if let Some(e) = meta.nodes.get_mut(&parent).and_then(Node::entries_mut) {
                e.insert(name, child);
            }
        }
        store.scan(Table::Extents, |k, v| {
            match (split_key(k).and_then(|(i, o)| Some((i, be_u64(o)?))), Extent::decode(v)) {
                (Some((ino, off)), Some(e)) => {
                    if let Some(f) = meta.nodes.get_mut(&ino).and_then(Node::file_mut) {
                        f.extent_bytes += e.len as u64;
                        f.extents.insert(off, e);
                    }
                }
                _ => bad = bad.take().or(Some(corrupt("extent", k))),
            }
        })?;
        store.scan(Table::Xattrs, |k, v| match split_key(k) {
            Some((ino, name)) => {
                if let Some(n) = meta.nodes.get_mut(&ino) {
                    n.xattrs.insert(name.to_vec(), v.to_vec());
                }
            }
            None => bad = bad.take().or(Some(corrupt("xattr", k))),
        })?;
        store.scan(Table::Chunks, |k, v| match (<[u8; 32]>::try_from(k), ChunkMeta::decode(v)) {
            (Ok(id), Some(m)) => {
                meta.chunks.insert(magicfs_types::ChunkId(id), m);
            }
            _ => bad = bad.take().or(Some(corrupt("chunk", k))),
        })?;
        let mut orphans = Vec::new();
        store.scan(Table::Orphans, |k, _| orphans.extend(be_u64(k)))?;
        store.scan(Table::Meta, |k, v| {
            if k == NEXT_INO_KEY {
                if let Ok(b) = <[u8; 8]>::try_from(v) {
                    meta.next_ino = u64::from_le_bytes(b);
                }
            }
        })?;
        if let Some(e) = bad {
            return Err(e);
        }
        let mut batch = Batch::new();
        if let std::collections::hash_map::Entry::Vacant(v) = meta.nodes.entry(ROOT_INO) {
            // SAFETY: getuid/getgid cannot fail.
            let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
            let mut attr = Attr::new(ROOT_INO, FileKind::Dir, 0o755, uid, gid);
            attr.nlink = 2;
            v.insert(Node::new(attr, ROOT_INO));
            meta.log_node(&mut batch, ROOT_INO);
            batch.put(Table::Meta, NEXT_INO_KEY.to_vec(), meta.next_ino.to_le_bytes().to_vec());
        }
        // Inodes unlinked while open when the last process stopped.
        for ino in orphans {
            let freed = meta.free_node(&mut batch, ino);
            for c in freed {
                store.free_chunk(c.location());
            }
        }
        store.commit(batch)?;
        let cache = ChunkCache::new(cfg.cache_bytes);
        let mutex_handles = cfg.mutex_handles;
        Ok(Fs {
            meta: RwLock::new(meta),
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
        })
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
