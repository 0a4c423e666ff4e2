//! The MagicFS storage engine.
//!
//! A store is a directory holding:
//! - `magicfs.redb`: the metadata image (every [`Table`]), durable at checkpoints;
//! - `wal/`: the write-ahead log of batches committed since the last checkpoint;
//! - `packs/`: append-only pack files with the (compressed) chunk bytes;
//! - `LOCK`: held with `flock` while a process has the store open.
//!
//! [`Store::commit`] appends a batch to the log (one `write`, no `fsync`) and
//! hands it to the writer thread, which folds batches into the redb image with
//! one durable commit every [`CHECKPOINT_INTERVAL`]. [`Store::sync`] makes
//! everything committed durable against power loss (fdatasync of the log and
//! the packs). On open, log records newer than the image are replayed.
//!
//! [`Store::memory`] gives the same interface with no files at all.

mod batch;
pub mod chunker;
pub mod codec;
pub mod disk;
mod error;
mod image;
pub mod keys;
mod packs;
pub mod sim_disk;
mod wal;

pub use batch::{Batch, Op};
pub use codec::Codec;
pub use error::{StoreError, StoreResult};
pub use keys::{ChunkMeta, Extent, Location, Table};
pub use packs::{space_reserve, ChunkStore, FilePacks, MemPacks, SharedBytes};
pub use wal::decode_record;

use disk::{Disk, DiskLock, OsDisk};
use image::Image;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wal::Wal;

/// How often the writer thread makes the redb image durable.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(2);
/// Pending operations that force an early checkpoint.
const CHECKPOINT_OPS: usize = 200_000;

/// Name of the database file inside a data directory.
pub const DB_FILE: &str = "magicfs.redb";

enum Msg {
    Batch(u64, Batch),
    Checkpoint(mpsc::Sender<StoreResult<()>>),
}

struct Persist {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    wal: Arc<Wal>,
    image: Arc<Image>,
    tx: Mutex<Option<mpsc::Sender<Msg>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    _lock: DiskLock,
}

/// Counters describing the store, for status reports.
#[derive(Clone, Debug, Default)]
pub struct StoreInfo {
    /// `redb` or `memory`.
    pub backend: &'static str,
    /// The data directory, if any.
    pub path: Option<PathBuf>,
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
    /// Last error of the writer thread, if any.
    pub writer_error: Option<String>,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    checkpoints: AtomicU64,
    writer_failed: AtomicBool,
    writer_error: Mutex<Option<String>>,
}

/// A MagicFS store: metadata tables plus chunk bytes.
pub struct Store {
    chunks: Arc<dyn ChunkStore>,
    persist: Option<Persist>,
    counters: Arc<Counters>,
}

/// Whether `dir` holds a store.
pub fn is_store(dir: &Path) -> bool {
    dir.join(DB_FILE).is_file()
}

fn take_lock(disk: &dyn Disk, dir: &Path) -> StoreResult<DiskLock> {
    let path = dir.join("LOCK");
    disk.lock(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock => StoreError::Locked { path: dir.to_path_buf(), holder: e.to_string() },
        _ => StoreError::io(format!("cannot lock {}", path.display()), e),
    })
}

/// Checks the chunks a replayed batch refers to: a batch logged before its
/// chunk bytes were durable (a power loss between the two) must not be
/// replayed, or the image would point at missing or torn bytes.
fn chunks_intact(packs: &FilePacks, batch: &Batch, verified: &mut HashSet<(u32, u64)>) -> bool {
    for op in batch.ops.iter().filter(|o| o.table == Table::Chunks) {
        let (Some(v), Ok(id)) = (&op.value, <[u8; 32]>::try_from(op.key.as_slice())) else { continue };
        let Some(m) = ChunkMeta::decode(v) else { return false };
        if verified.contains(&(m.pack, m.offset)) {
            continue;
        }
        let ok = packs
            .read(m.location())
            .and_then(|stored| codec::decompress(m.codec, stored, m.raw_len as usize))
            .is_ok_and(|raw| chunker::chunk_id(&raw).0 == id);
        if !ok {
            return false;
        }
        verified.insert((m.pack, m.offset));
    }
    true
}

impl Store {
    /// An empty store that keeps everything in memory.
    pub fn memory() -> Store {
        Store::memory_with(Arc::new(MemPacks::default()))
    }

    /// A store whose metadata lives in memory and whose chunk bytes go to
    /// `chunks` (benchmarks and tests of a chunk store under the core).
    pub fn memory_with(chunks: Arc<dyn ChunkStore>) -> Store {
        Store { chunks, persist: None, counters: Arc::default() }
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
        let io = |what: &str| {
            let what = what.to_string();
            move |e: std::io::Error| StoreError::io(what.clone(), e)
        };
        disk.create_dir_all(dir).map_err(io(&format!("cannot create {}", dir.display())))?;
        if !exists {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                disk.sync_dir(parent).map_err(io(&format!("cannot sync {}", parent.display())))?;
            }
        }
        let lock = take_lock(&*disk, dir)?;
        let image = Arc::new(Image::open(disk.clone(), &dir.join(DB_FILE))?);
        let (wal_dir, pack_dir) = (dir.join("wal"), dir.join("packs"));
        for d in [&wal_dir, &pack_dir] {
            if !disk.is_dir(d) {
                disk.create_dir_all(d).map_err(io(&format!("cannot create {}", d.display())))?;
                disk.sync_dir(dir).map_err(io(&format!("cannot sync {}", dir.display())))?;
            }
        }
        let packs = Arc::new(FilePacks::open_on(disk.clone(), &pack_dir).map_err(io("cannot open pack files"))?);
        // Replay what the log holds beyond the image, and make it durable.
        let base = image.wal_seq()?;
        let mut replayed = Vec::new();
        let mut verified = HashSet::new();
        let last = Wal::replay(&*disk, &wal_dir, base, |seq, b| {
            if !chunks_intact(&packs, &b, &mut verified) {
                log::warn!("logged batch {seq} refers to chunk bytes that did not reach the disk; replay stops here");
                return false;
            }
            replayed.push(b);
            true
        })
        .map_err(io("cannot read the write-ahead log"))?;
        if !replayed.is_empty() {
            log::info!("replaying {} logged batches into the image", replayed.len());
        }
        image.apply_durable(replayed.iter(), last)?;
        let wal = Arc::new(Wal::open(disk.clone(), &wal_dir, last).map_err(io("cannot open the write-ahead log"))?);
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel();
        let writer = {
            let (image, wal, counters) = (image.clone(), wal.clone(), counters.clone());
            let chunks: Arc<dyn ChunkStore> = packs.clone();
            std::thread::Builder::new()
                .name("magicfs-writer".into())
                .spawn(move || writer_loop(image, wal, chunks, rx, counters, last))
                .map_err(io("cannot start the writer thread"))?
        };
        Ok(Store {
            chunks: packs,
            persist: Some(Persist {
                disk,
                dir: dir.to_path_buf(),
                wal,
                image,
                tx: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(writer)),
                _lock: lock,
            }),
            counters,
        })
    }

    /// True for the memory-only backend.
    pub fn is_memory(&self) -> bool {
        self.persist.is_none()
    }

    /// Calls `f` on every entry of table `t` (nothing for a memory store).
    pub fn scan(&self, t: Table, f: impl FnMut(&[u8], &[u8])) -> StoreResult<()> {
        match &self.persist {
            Some(p) => p.image.scan(t, f),
            None => Ok(()),
        }
    }

    /// Commits a batch: it survives a crash of this process once this returns.
    pub fn commit(&self, batch: Batch) -> StoreResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        let Some(p) = &self.persist else { return Ok(()) };
        let tx = p.tx.lock();
        let Some(tx) = tx.as_ref() else {
            return Err(StoreError::io("commit", std::io::Error::other("store is closed")));
        };
        p.wal
            .append(batch, |seq, b| {
                let _ = tx.send(Msg::Batch(seq, b));
            })
            .map_err(|e| StoreError::io("cannot append to the write-ahead log", e))?;
        Ok(())
    }

    /// Makes every committed batch and every stored chunk durable.
    pub fn sync(&self) -> StoreResult<()> {
        self.chunks.sync().map_err(|e| StoreError::io("cannot sync pack files", e))?;
        if let Some(p) = &self.persist {
            p.wal.sync().map_err(|e| StoreError::io("cannot sync the write-ahead log", e))?;
        }
        Ok(())
    }

    /// Folds the log into the redb image now and waits for it.
    pub fn checkpoint(&self) -> StoreResult<()> {
        let Some(p) = &self.persist else { return Ok(()) };
        let (ack, done) = mpsc::channel();
        if let Some(tx) = p.tx.lock().as_ref() {
            let _ = tx.send(Msg::Checkpoint(ack));
        } else {
            return Ok(());
        }
        done.recv().unwrap_or(Ok(()))
    }

    /// Flushes everything, checkpoints and stops the writer. Idempotent.
    pub fn close(&self) -> StoreResult<()> {
        let Some(p) = &self.persist else { return Ok(()) };
        let synced = self.sync();
        let r = if synced.is_ok() { self.checkpoint() } else { Ok(()) };
        p.tx.lock().take();
        if let Some(h) = p.writer.lock().take() {
            let _ = h.join();
        }
        synced.and(r)
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
    /// for the memory backend.
    pub fn space(&self) -> Option<disk::Space> {
        let p = self.persist.as_ref()?;
        let s = p.disk.space(&p.dir).ok()?;
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
            backend: if self.persist.is_some() { "redb" } else { "memory" },
            pack_bytes: self.chunks.bytes(),
            commits: self.counters.commits.load(Ordering::Relaxed),
            checkpoints: self.counters.checkpoints.load(Ordering::Relaxed),
            writer_error: self.counters.writer_error.lock().clone(),
            ..Default::default()
        };
        if let Some(p) = &self.persist {
            i.path = Some(p.dir.clone());
            i.db_bytes = p.disk.open(&p.dir.join(DB_FILE), false).and_then(|f| f.len()).unwrap_or(0);
            i.wal_bytes = p.wal.total_bytes();
        }
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

fn writer_loop(
    image: Arc<Image>,
    wal: Arc<Wal>,
    chunks: Arc<dyn ChunkStore>,
    rx: mpsc::Receiver<Msg>,
    counters: Arc<Counters>,
    start_seq: u64,
) {
    let mut pending: Vec<Batch> = Vec::new();
    let mut pending_ops = 0usize;
    let mut applied = start_seq;
    let mut last_checkpoint = Instant::now();
    let checkpoint = |pending: &mut Vec<Batch>, pending_ops: &mut usize, applied: &mut u64| -> StoreResult<()> {
        let through = wal.rotate().map_err(|e| StoreError::io("cannot rotate the log", e))?;
        // Every batch up to `through` was sent before rotate returned.
        while *applied < through {
            match rx.recv() {
                Ok(Msg::Batch(seq, b)) => {
                    *applied = seq;
                    pending.push(b);
                }
                Ok(Msg::Checkpoint(ack)) => {
                    let _ = ack.send(Ok(()));
                }
                Err(_) => break,
            }
        }
        // The image may name chunks only once their bytes are durable.
        chunks.sync().map_err(|e| StoreError::io("cannot sync pack files", e))?;
        image.apply_durable(pending.iter(), through)?;
        pending.clear();
        *pending_ops = 0;
        wal.remove_through(through).map_err(|e| StoreError::io("cannot remove old log segments", e))?;
        counters.checkpoints.fetch_add(1, Ordering::Relaxed);
        Ok(())
    };
    let report = |r: StoreResult<()>| {
        if let Err(e) = &r {
            log::error!("checkpoint failed: {e}");
            counters.writer_failed.store(true, Ordering::Relaxed);
            *counters.writer_error.lock() = Some(e.to_string());
        }
        r
    };
    loop {
        let wait = CHECKPOINT_INTERVAL.saturating_sub(last_checkpoint.elapsed());
        match rx.recv_timeout(wait) {
            Ok(Msg::Batch(seq, b)) => {
                applied = seq;
                pending_ops += b.ops.len();
                pending.push(b);
                if pending_ops >= CHECKPOINT_OPS {
                    let _ = report(checkpoint(&mut pending, &mut pending_ops, &mut applied));
                    last_checkpoint = Instant::now();
                }
            }
            Ok(Msg::Checkpoint(ack)) => {
                let r = report(checkpoint(&mut pending, &mut pending_ops, &mut applied));
                last_checkpoint = Instant::now();
                let _ = ack.send(r);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if !pending.is_empty() {
                    let _ = report(checkpoint(&mut pending, &mut pending_ops, &mut applied));
                }
                last_checkpoint = Instant::now();
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                if !pending.is_empty() {
                    let _ = report(checkpoint(&mut pending, &mut pending_ops, &mut applied));
                }
                return;
            }
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
