//! The embedded engine: the redb image plus the write-ahead log, in a data
//! directory locked by one process.
//!
//! [`Embedded::commit`] appends a batch to the log (one `write`, no
//! `fsync`) and hands it to the writer thread, which folds batches into the
//! redb image with one durable commit every [`CHECKPOINT_INTERVAL`].
//! [`Embedded::sync`] makes the log durable against power loss. On open, log
//! records newer than the image are replayed.

use crate::batch::Batch;
use crate::engine::MetaEngine;
use crate::error::{StoreError, StoreResult};
use crate::image::Image;
use crate::keys::Table;
use crate::wal::Wal;
use crate::{StoreInfo, DB_FILE};
use parking_lot::Mutex;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
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
    dir: PathBuf,
    wal: Arc<Wal>,
    image: Arc<Image>,
    tx: Mutex<Option<mpsc::Sender<Msg>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
    _lock: File,
}

fn take_lock(dir: &Path) -> StoreResult<File> {
    let path = dir.join("LOCK");
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io(format!("cannot open {}", path.display()), e))?;
    // SAFETY: flock on a valid, owned file descriptor.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let mut holder = String::new();
        let _ = f.read_to_string(&mut holder);
        return Err(StoreError::Locked { path: dir.to_path_buf(), holder: holder.trim().to_string() });
    }
    f.set_len(0).map_err(|e| StoreError::io("lock file", e))?;
    let _ = write!(f, "{}", std::process::id());
    Ok(f)
}

impl Embedded {
    /// Locks `dir` (which exists), replays its log into the image and
    /// starts the writer thread.
    pub fn open(dir: &Path) -> StoreResult<Embedded> {
        let lock = take_lock(dir)?;
        let image = Arc::new(Image::open(&dir.join(DB_FILE))?);
        // Replay what the log holds beyond the image, and make it durable.
        let wal_dir = dir.join("wal");
        fs::create_dir_all(&wal_dir).map_err(|e| StoreError::io("cannot create wal directory", e))?;
        let base = image.wal_seq()?;
        let mut replayed = Vec::new();
        let last = Wal::replay(&wal_dir, base, |_, b| replayed.push(b))
            .map_err(|e| StoreError::io("cannot read the write-ahead log", e))?;
        if !replayed.is_empty() {
            log::info!("replaying {} logged batches into the image", replayed.len());
        }
        image.apply_durable(replayed.iter(), last)?;
        let wal =
            Arc::new(Wal::open(&wal_dir, last).map_err(|e| StoreError::io("cannot open the write-ahead log", e))?);
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel();
        let writer = {
            let (image, wal, counters) = (image.clone(), wal.clone(), counters.clone());
            std::thread::Builder::new()
                .name("magicfs-writer".into())
                .spawn(move || writer_loop(image, wal, rx, counters, last))
                .map_err(|e| StoreError::io("cannot start the writer thread", e))?
        };
        Ok(Embedded {
            dir: dir.to_path_buf(),
            wal,
            image,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            counters,
            _lock: lock,
        })
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
        self.sync()?;
        let r = self.checkpoint();
        self.tx.lock().take();
        if let Some(h) = self.writer.lock().take() {
            let _ = h.join();
        }
        r
    }

    fn info(&self, i: &mut StoreInfo) {
        i.path = Some(self.dir.clone());
        i.db_bytes = fs::metadata(self.dir.join(DB_FILE)).map(|m| m.len()).unwrap_or(0);
        i.wal_bytes = self.wal.total_bytes();
        i.checkpoints = self.counters.checkpoints.load(Ordering::Relaxed);
        i.writer_error = self.counters.writer_error.lock().clone();
    }
}

fn writer_loop(image: Arc<Image>, wal: Arc<Wal>, rx: mpsc::Receiver<Msg>, counters: Arc<Counters>, start_seq: u64) {
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
