//! The MagicFS storage engine.
//!
//! A [`Store`] pairs a metadata engine ([`MetaEngine`]: where the tables
//! live) with a chunk store ([`ChunkStore`]: where chunk bytes live).
//!
//! The embedded store is a directory holding:
//! - `magicfs.redb`: the metadata image (every [`Table`]), durable at checkpoints;
//! - `wal/`: the write-ahead log of batches committed since the last checkpoint;
//! - `packs/`: append-only pack files with the (compressed) chunk bytes;
//! - `LOCK`: held with `flock` while a process has the store open.
//!
//! [`Store::memory`] gives the same interface with no files at all, and
//! [`Store::new`] pairs any engine with any chunk store (a volume shared by
//! several mounts: see [`SharedMeta`]).

mod batch;
pub mod chunker;
pub mod claims;
pub mod codec;
pub mod conformance;
pub mod disk;
mod embedded;
mod engine;
mod error;
mod image;
pub mod keys;
mod memory;
mod packs;
pub mod sim_disk;
mod wal;

pub use batch::{Batch, Op, Staged};
pub use claims::Claims;
pub use codec::Codec;
pub use embedded::{Embedded, CHECKPOINT_INTERVAL};
pub use engine::{Change, Housekeeping, MetaEngine, RowSink, SharedMeta, Turn};
pub use error::{StoreError, StoreResult};
pub use keys::{ChunkMeta, Extent, Location, Table};
pub use memory::{MemEngine, MemVolume};
pub use packs::{space_reserve, ChunkStore, FilePacks, MemPacks, SharedBytes};
pub use wal::decode_record;

use disk::{Disk, OsDisk};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Name of the database file inside a data directory.
pub const DB_FILE: &str = "magicfs.redb";

/// Counters describing the store, for status reports.
#[derive(Clone, Debug, Default)]
pub struct StoreInfo {
    /// The metadata engine: `redb`, `memory` or `postgres`.
    pub backend: &'static str,
    /// The data directory, if any.
    pub path: Option<PathBuf>,
    /// Where the volume lives, for engines reached by URL (password masked).
    pub url: Option<String>,
    /// Bytes in pack files (or chunk memory), garbage included.
    pub pack_bytes: u64,
    /// Bytes of the redb file.
    pub db_bytes: u64,
    /// Bytes of the live write-ahead log.
    pub wal_bytes: u64,
    /// Batches committed since open.
    pub commits: u64,
    /// Durable checkpoints since open.
    pub checkpoints: u64,
    /// Shared volumes: the last change-log entry this mount applied.
    pub applied: Option<u64>,
    /// Shared volumes: this mount's session number.
    pub session: Option<u64>,
    /// Last error of the writer thread, if any.
    pub writer_error: Option<String>,
}

/// A MagicFS store: a metadata engine plus a chunk store.
pub struct Store {
    meta: Arc<dyn MetaEngine>,
    chunks: Arc<dyn ChunkStore>,
    memory: bool,
    commits: AtomicU64,
    /// The embedded store's data directory and the disk it is on.
    dir: Option<(Arc<dyn Disk>, PathBuf)>,
}

/// Whether `dir` holds a store.
pub fn is_store(dir: &Path) -> bool {
    dir.join(DB_FILE).is_file()
}

impl Store {
    /// An empty store that keeps everything in memory.
    pub fn memory() -> Store {
        Store::memory_with(Arc::new(MemPacks::default()))
    }

    /// A store whose metadata lives in memory and whose chunk bytes go to
    /// `chunks` (benchmarks and tests of a chunk store under the core).
    pub fn memory_with(chunks: Arc<dyn ChunkStore>) -> Store {
        Store { meta: Arc::new(MemEngine::new()), chunks, memory: true, commits: AtomicU64::new(0), dir: None }
    }

    /// A store over any metadata engine and chunk store (a cluster volume).
    pub fn new(meta: Arc<dyn MetaEngine>, chunks: Arc<dyn ChunkStore>) -> Store {
        Store { meta, chunks, memory: false, commits: AtomicU64::new(0), dir: None }
    }

    /// Opens the store in `dir`. With `create`, a missing or empty directory
    /// becomes a new store; otherwise it must already hold one.
    pub fn open(dir: &Path, create: bool) -> StoreResult<Store> {
        Self::open_on(OsDisk::shared(), dir, create)
    }

    /// [`Store::open`] with every file on `disk`.
    pub fn open_on(disk: Arc<dyn Disk>, dir: &Path, create: bool) -> StoreResult<Store> {
        let exists = disk.is_dir(dir);
        if !exists && disk.is_file(dir) {
            return Err(StoreError::NotAStore(dir.to_path_buf()));
        }
        if !exists && !create {
            return Err(StoreError::Missing(dir.to_path_buf()));
        }
        if exists && !disk.is_file(&dir.join(DB_FILE)) {
            // What a store's creation leaves before its image is in place
            // (the lock, a half-made image) does not count.
            let leftover = |n: &std::ffi::OsString| {
                *n == *"LOCK" || Some(n.as_os_str()) == image::new_image_path(&dir.join(DB_FILE)).file_name()
            };
            let empty = disk
                .list(dir)
                .map_err(|e| StoreError::io(format!("cannot read {}", dir.display()), e))?
                .iter()
                .all(leftover);
            if !create {
                return Err(StoreError::Missing(dir.to_path_buf()));
            }
            if !empty {
                return Err(StoreError::NotAStore(dir.to_path_buf()));
            }
        }
        let (meta, packs) = Embedded::open_on(disk.clone(), dir, exists)?;
        Ok(Store {
            meta: Arc::new(meta),
            chunks: packs,
            memory: false,
            commits: AtomicU64::new(0),
            dir: Some((disk, dir.to_path_buf())),
        })
    }

    /// True for the memory-only backend.
    pub fn is_memory(&self) -> bool {
        self.memory
    }

    /// The metadata engine.
    pub fn engine(&self) -> &dyn MetaEngine {
        &*self.meta
    }

    /// The cluster protocol, when the engine is shared by several mounts.
    pub fn shared(&self) -> Option<&dyn SharedMeta> {
        self.meta.shared()
    }

    /// Claims work for this daemon (see [`claims`]); always granted on a
    /// store of one daemon.
    pub fn claim(&self, kind: &str, key: &str, lease: std::time::Duration) -> StoreResult<bool> {
        claims::claim(&*self.meta, kind, key, lease)
    }

    /// Ends a claim made with [`Store::claim`].
    pub fn finish_claim(&self, kind: &str, key: &str) -> StoreResult<()> {
        claims::finish(&*self.meta, kind, key)
    }

    /// Calls `f` on every entry of table `t`, in key order.
    pub fn scan(&self, t: Table, mut f: impl FnMut(&[u8], &[u8])) -> StoreResult<()> {
        self.meta.scan(t, &mut f)
    }

    /// Every row of every table from one consistent state (see
    /// [`MetaEngine::snapshot`]); returns its change-log sequence number.
    pub fn snapshot(&self, mut f: impl FnMut(Table, &[u8], &[u8])) -> StoreResult<u64> {
        self.meta.snapshot(&mut f)
    }

    /// Commits a batch: it survives a crash of this process once this returns.
    pub fn commit(&self, batch: Batch) -> StoreResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.meta.commit(batch)
    }

    /// Counts a batch committed through a turn of a shared engine.
    pub fn count_commit(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    /// Makes every committed batch and every stored chunk durable.
    pub fn sync(&self) -> StoreResult<()> {
        self.chunks.sync().map_err(|e| StoreError::io("cannot sync pack files", e))?;
        self.meta.sync()
    }

    /// Folds the log into the redb image now and waits for it.
    pub fn checkpoint(&self) -> StoreResult<()> {
        self.meta.checkpoint()
    }

    /// Flushes everything, checkpoints and stops the writer. Idempotent.
    pub fn close(&self) -> StoreResult<()> {
        let chunks = self.chunks.sync().map_err(|e| StoreError::io("cannot sync pack files", e));
        // The engine stops its writer either way (it checkpoints only if it
        // can make its own log durable).
        let meta = self.meta.close();
        chunks.and(meta)
    }

    /// Stores chunk bytes (already encoded) and returns their location.
    pub fn put_chunk(&self, stored: &[u8]) -> StoreResult<Location> {
        self.chunks.put(stored).map_err(|e| StoreError::io("cannot write chunk", e))
    }

    /// Reads a chunk's stored bytes.
    pub fn read_chunk(&self, loc: Location) -> StoreResult<Vec<u8>> {
        self.chunks.read(loc).map_err(|e| StoreError::io("cannot read chunk", e))
    }

    /// A chunk's stored bytes without copying them (see [`SharedBytes`]).
    pub fn share_chunk(&self, loc: Location) -> StoreResult<SharedBytes> {
        let b = self.chunks.share(loc).map_err(|e| StoreError::io("cannot read chunk", e))?;
        if b.len() != loc.len as usize {
            return Err(StoreError::io("cannot read chunk", std::io::Error::other("chunk is shorter than recorded")));
        }
        Ok(b)
    }

    /// Makes every chunk stored so far readable by the other mounts of the
    /// volume; call before committing metadata that refers to new chunks.
    pub fn persist_chunks(&self) -> StoreResult<()> {
        self.chunks.persist().map_err(|e| StoreError::io("cannot persist chunks", e))
    }

    /// [`Store::persist_chunks`], except that a small tail the chunk store
    /// would stage on its own is returned instead, for the batch that names
    /// it to carry ([`Batch::staged`]); report its commit with
    /// [`Store::chunks_staged`].
    pub fn persist_chunks_deferred(&self) -> StoreResult<Option<Staged>> {
        self.chunks.persist_deferred().map_err(|e| StoreError::io("cannot persist chunks", e))
    }

    /// A batch carrying `staged` committed.
    pub fn chunks_staged(&self, staged: &Staged) {
        self.chunks.staged_committed(staged)
    }

    /// Whether reading the chunk at `loc` is answered without waiting on a
    /// network service (see [`ChunkStore::is_local`]).
    pub fn chunk_is_local(&self, loc: Location) -> bool {
        self.chunks.is_local(loc)
    }

    /// Tells the backend a chunk is no longer referenced. Pack files keep the
    /// bytes until compaction; the memory backend frees them at once.
    pub fn free_chunk(&self, loc: Location) {
        self.chunks.free(loc);
    }

    /// The chunk store, for compaction.
    pub fn chunks(&self) -> &dyn ChunkStore {
        &*self.chunks
    }

    /// Space of the filesystem under the data directory, the part kept for
    /// the log and the image (see [`space_reserve`]) counted as used; `None`
    /// for stores without a data directory.
    pub fn space(&self) -> Option<disk::Space> {
        let (disk, dir) = self.dir.as_ref()?;
        let s = disk.space(dir).ok()?;
        let reserve = space_reserve(s.total);
        Some(disk::Space {
            total: s.total,
            free: s.free.saturating_sub(reserve),
            avail: s.avail.saturating_sub(reserve),
        })
    }

    /// True while the disk under the store has no room for more file data
    /// (after a chunk was refused, until space is freed).
    pub fn out_of_space(&self) -> bool {
        self.chunks.out_of_space()
    }

    /// Bytes of file data the store can still take (see [`Store::space`]).
    pub fn free_space(&self) -> Option<u64> {
        self.space().map(|s| s.avail)
    }

    /// Counters for status reports.
    pub fn info(&self) -> StoreInfo {
        let mut i = StoreInfo {
            backend: self.meta.kind(),
            pack_bytes: self.chunks.bytes(),
            commits: self.commits.load(Ordering::Relaxed),
            ..Default::default()
        };
        self.meta.info(&mut i);
        i
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            log::error!("closing the store: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn batch(k: u8) -> Batch {
        let mut b = Batch::new();
        b.put(Table::Inodes, vec![k], vec![k; 4]);
        b
    }

    fn keys(s: &Store) -> Vec<u8> {
        let mut v = Vec::new();
        s.scan(Table::Inodes, |k, _| v.push(k[0])).unwrap();
        v
    }

    fn copy_dir(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for e in fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &to.join(e.file_name()));
            } else if e.file_name() != "LOCK" {
                fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }

    #[test]
    fn commits_survive_a_crash_with_and_without_checkpoint() {
        let d = tempfile::tempdir().unwrap();
        let (live, crashed) = (d.path().join("live"), d.path().join("crashed"));
        let s = Store::open(&live, true).unwrap();
        s.commit(batch(1)).unwrap();
        s.checkpoint().unwrap();
        s.commit(batch(2)).unwrap();
        // A crash now leaves exactly the files as they are: copy them.
        copy_dir(&live, &crashed);
        let s2 = Store::open(&crashed, false).map_err(|e| e.to_string()).unwrap();
        assert_eq!(keys(&s2), vec![1, 2]);
        drop(s);
    }

    #[test]
    fn second_open_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let _s = Store::open(d.path(), true).unwrap();
        match Store::open(d.path(), true) {
            Err(StoreError::Locked { .. }) => {}
            other => panic!("expected Locked, got {:?}", other.err()),
        }
    }

    #[test]
    fn missing_and_foreign_dirs_are_explained() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(Store::open(&d.path().join("nope"), false), Err(StoreError::Missing(_))));
        fs::write(d.path().join("x"), "hi").unwrap();
        assert!(matches!(Store::open(d.path(), true), Err(StoreError::NotAStore(_))));
    }

    #[test]
    fn chunks_roundtrip_in_both_backends() {
        let d = tempfile::tempdir().unwrap();
        for s in [Store::memory(), Store::open(d.path(), true).unwrap()] {
            let loc = s.put_chunk(b"abc").unwrap();
            assert_eq!(s.read_chunk(loc).unwrap(), b"abc");
        }
    }
}
