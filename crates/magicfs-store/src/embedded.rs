//! The embedded engine: the redb image plus the write-ahead log, in a data
//! directory locked by one process.
//!
//! [`Embedded::commit`] appends a batch to the log (one `write`, no
//! `fsync`) and hands it to the writer thread, which folds batches into the
//! redb image with one durable commit every [`CHECKPOINT_INTERVAL`].
//! [`Embedded::sync`] makes the log durable against power loss. On open, log
//! records newer than the image are replayed.

use crate::batch::Batch;
use crate::disk::{Disk, DiskLock};
use crate::engine::MetaEngine;
use crate::error::{StoreError, StoreResult};
use crate::image::Image;
use crate::keys::{ChunkMeta, Table};
use crate::packs::{ChunkStore, FilePacks};
use crate::wal::Wal;
use crate::{chunker, codec, StoreInfo, DB_FILE};
use parking_lot::Mutex;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the writer thread makes the redb image durable.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(2);
/// Pending operations that force an early checkpoint.
const CHECKPOINT_OPS: usize = 200_000;

enum Msg {
    Batch(u64, Batch),
    Checkpoint(mpsc::Sender<StoreResult<()>>),
}

#[derive(Default)]
struct Counters {
    /// Batches appended to the log.
    logged: AtomicU64,
    /// Batches the image holds (through the last checkpoint).
    folded: AtomicU64,
    checkpoints: AtomicU64,
    writer_failed: AtomicBool,
    writer_error: Mutex<Option<String>>,
}

/// The redb image and write-ahead log of a data directory.
pub struct Embedded {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    wal: Arc<Wal>,
    image: Arc<Image>,
    tx: Mutex<Option<mpsc::Sender<Msg>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
    _lock: DiskLock,
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

impl Embedded {
    /// The engine of the data directory `dir` on the real filesystem
    /// (its pack files are opened too, for the writer's checkpoints).
    pub fn open(dir: &Path) -> StoreResult<Embedded> {
        Self::open_on(crate::disk::OsDisk::shared(), dir, dir.is_dir()).map(|(engine, _)| engine)
    }

    /// Creates `dir` if needed (`existed` says whether it was there), locks
    /// it, opens its pack files, replays its log into the image and starts
    /// the writer thread. Returns the engine and the pack files.
    pub fn open_on(disk: Arc<dyn Disk>, dir: &Path, existed: bool) -> StoreResult<(Embedded, Arc<FilePacks>)> {
        let io = |what: &str| {
            let what = what.to_string();
            move |e: std::io::Error| StoreError::io(what.clone(), e)
        };
        disk.create_dir_all(dir).map_err(io(&format!("cannot create {}", dir.display())))?;
        if !existed {
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
        let engine = Embedded {
            disk,
            dir: dir.to_path_buf(),
            wal,
            image,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            counters,
            _lock: lock,
        };
        Ok((engine, packs))
    }

    /// Folds what the log holds beyond the image first, so reads of the
    /// image see every committed batch.
    fn current(&self) -> StoreResult<()> {
        let c = &self.counters;
        if c.logged.load(Ordering::Acquire) > c.folded.load(Ordering::Acquire) {
            self.checkpoint()?;
        }
        Ok(())
    }
}

impl MetaEngine for Embedded {
    fn kind(&self) -> &'static str {
        "redb"
    }

    fn scan(&self, t: Table, f: &mut dyn FnMut(&[u8], &[u8])) -> StoreResult<()> {
        self.current()?;
        self.image.scan(t, f)
    }

    fn get(&self, t: Table, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        self.current()?;
        self.image.get(t, key)
    }

    fn commit(&self, batch: Batch) -> StoreResult<()> {
        let tx = self.tx.lock();
        let Some(tx) = tx.as_ref() else {
            return Err(StoreError::io("commit", std::io::Error::other("store is closed")));
        };
        self.wal
            .append(batch, |seq, b| {
                let _ = tx.send(Msg::Batch(seq, b));
            })
            .map_err(|e| StoreError::io("cannot append to the write-ahead log", e))?;
        self.counters.logged.fetch_add(1, Ordering::Release);
        Ok(())
    }

    fn sync(&self) -> StoreResult<()> {
        self.wal.sync().map_err(|e| StoreError::io("cannot sync the write-ahead log", e))
    }

    fn checkpoint(&self) -> StoreResult<()> {
        let (ack, done) = mpsc::channel();
        let logged = self.counters.logged.load(Ordering::Acquire);
        if let Some(tx) = self.tx.lock().as_ref() {
            let _ = tx.send(Msg::Checkpoint(ack));
        } else {
            return Ok(());
        }
        let r = done.recv().unwrap_or(Ok(()));
        if r.is_ok() {
            self.counters.folded.fetch_max(logged, Ordering::AcqRel);
        }
        r
    }

    fn close(&self) -> StoreResult<()> {
        let synced = self.sync();
        let r = if synced.is_ok() { self.checkpoint() } else { Ok(()) };
        self.tx.lock().take();
        if let Some(h) = self.writer.lock().take() {
            let _ = h.join();
        }
        synced.and(r)
    }

    fn info(&self, i: &mut StoreInfo) {
        i.path = Some(self.dir.clone());
        i.db_bytes = self.disk.open(&self.dir.join(DB_FILE), false).and_then(|f| f.len()).unwrap_or(0);
        i.wal_bytes = self.wal.total_bytes();
        i.checkpoints = self.counters.checkpoints.load(Ordering::Relaxed);
        i.writer_error = self.counters.writer_error.lock().clone();
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
