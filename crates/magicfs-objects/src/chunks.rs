//! [`ObjectChunks`]: the chunk store on an object store.
//!
//! Chunks are appended to an open segment held in memory. A segment becomes
//! one immutable object (`segments/NNNNNNNNNN`, written create-only) when it
//! is full, when a commit needs more than a small tail made readable, or
//! when it has been open for a few seconds. A commit's small tail (a 4 KiB
//! file) is instead staged as a row in the catalog, so a stream of small
//! files makes few objects. Locations never change when a segment is
//! sealed: a read asks, in order, this process's open and uploading
//! segments, the block cache (memory, then disk), the catalog's staged rows
//! (segment still open elsewhere), and finally a ranged GET of the object.

use crate::backend::Backend;
use crate::cache::{BlockCache, BlockId, CacheConfig, BLOCK};
use crate::catalog::{Catalog, MemCatalog, SegInfo, SegState};
use crate::error::{ObjectsError, ObjectsResult};
use bytes::Bytes;
use magicfs_store::{ChunkStore, Location, SharedBytes, Staged};
use object_store::PutPayload;
use parking_lot::{Condvar, Mutex, RwLock};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Tuning of an object chunk store.
#[derive(Clone, Debug)]
pub struct Options {
    /// The local chunk cache.
    pub cache: CacheConfig,
    /// A segment is sealed once it holds this many bytes.
    pub segment_bytes: u64,
    /// A commit whose new bytes are at most this many is staged in the
    /// catalog; a larger one seals the segment at once.
    pub stage_max: u64,
    /// An open segment with staged bytes is sealed after this long.
    pub seal_after: Duration,
    /// An open segment whose writer sent no heartbeat for this long is
    /// sealed by another mount.
    pub adopt_after: Duration,
    /// Retired segments stay readable this long before they are deleted.
    pub grace: Duration,
    /// Segments uploading at once before `put` waits.
    pub uploads: usize,
    /// Blocks fetched ahead of a sequential reader.
    pub readahead: u32,
    /// `persist_deferred` hands the small tail to the caller, whose
    /// metadata commit stages it in the catalog's database (a cluster
    /// volume: the PostgreSQL engine shares that database), instead of
    /// staging it in a transaction of its own.
    pub defer_staging: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cache: CacheConfig::default(),
            segment_bytes: 32 << 20,
            stage_max: 1 << 20,
            seal_after: Duration::from_secs(5),
            adopt_after: Duration::from_secs(120),
            grace: Duration::from_secs(3600),
            uploads: 3,
            readahead: 8,
            defer_staging: false,
        }
    }
}

/// Chunks of a segment held in this process: (offset, bytes), by offset.
type Pieces = Vec<(u64, Bytes)>;

fn find(pieces: &Pieces, loc: Location) -> Option<Bytes> {
    let i = pieces.binary_search_by_key(&loc.offset, |(o, _)| *o).ok()?;
    let b = &pieces[i].1;
    (b.len() == loc.len as usize).then(|| b.clone())
}

/// The segment being appended to.
struct OpenSeg {
    id: u32,
    pieces: Pieces,
    len: u64,
    /// Bytes staged in the catalog (a prefix of the segment).
    staged: u64,
    /// When the first bytes were staged.
    since: Option<Instant>,
}

#[derive(Clone, Debug)]
enum Upload {
    Running,
    Failed(String),
}

/// A segment sealed here whose object is being written (or failed to be).
struct Pending {
    pieces: Arc<Pieces>,
    len: u64,
    state: Upload,
}

/// A block fetch other readers of the same block wait for.
#[derive(Default)]
struct Flight {
    done: Mutex<Option<Result<Bytes, String>>>,
    cv: Condvar,
}

impl Flight {
    fn finish(&self, r: Result<Bytes, String>) {
        *self.done.lock() = Some(r);
        self.cv.notify_all();
    }

    fn wait(&self) -> Result<Bytes, String> {
        let mut g = self.done.lock();
        loop {
            if let Some(r) = &*g {
                return r.clone();
            }
            self.cv.wait(&mut g);
        }
    }
}

/// Counters for status reports and benchmarks.
#[derive(Default, Debug, Clone, Copy)]
pub struct ObjectStats {
    /// Objects written (sealed segments).
    pub uploads: u64,
    /// Rows staged in the catalog.
    pub staged: u64,
    /// Ranged GETs of blocks.
    pub fetches: u64,
    /// Blocks fetched ahead of a sequential reader.
    pub prefetches: u64,
    /// Reads answered from staged rows.
    pub staged_reads: u64,
}

struct Inner {
    backend: Backend,
    catalog: Arc<dyn Catalog>,
    rt: tokio::runtime::Handle,
    owner: u64,
    opts: Options,
    open: Mutex<Option<OpenSeg>>,
    stage_lock: Mutex<()>,
    pending: Mutex<BTreeMap<u32, Pending>>,
    pending_cv: Condvar,
    cache: BlockCache,
    /// Lengths of segments known sealed (or retired): immutable objects.
    sealed: RwLock<HashMap<u32, u64>>,
    flights: Mutex<HashMap<BlockId, Arc<Flight>>>,
    recent: Mutex<VecDeque<BlockId>>,
    total: AtomicU64,
    stop: AtomicBool,
    uploads: AtomicU64,
    staged: AtomicU64,
    fetches: AtomicU64,
    prefetches: AtomicU64,
    staged_reads: AtomicU64,
}

/// The chunk store on an object store; see the module documentation.
pub struct ObjectChunks {
    inner: Arc<Inner>,
    sealer: Mutex<Option<JoinHandle<()>>>,
    rt: Option<tokio::runtime::Runtime>,
}

fn segment_name(id: u32) -> String {
    format!("segments/{id:010}")
}

fn owner_id() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.finish() >> 1
}

fn to_io(e: ObjectsError) -> io::Error {
    e.into()
}

impl ObjectChunks {
    /// A chunk store over `backend`, recording segments in `catalog`.
    /// `volume` names the volume for the local cache. Checks that the
    /// object store answers (a missing bucket or refused credentials are
    /// reported here) and starts the sealer thread.
    pub fn open(backend: Backend, catalog: Arc<dyn Catalog>, volume: &str, opts: Options) -> ObjectsResult<Self> {
        Self::open_on(runtime()?, backend, catalog, volume, opts)
    }

    fn open_on(
        rt: tokio::runtime::Runtime,
        backend: Backend,
        catalog: Arc<dyn Catalog>,
        volume: &str,
        opts: Options,
    ) -> ObjectsResult<Self> {
        run(rt.handle(), {
            let b = backend.clone();
            async move { b.check().await }
        })?;
        let cache = BlockCache::open(&opts.cache, volume).map_err(ObjectsError::Io)?;
        let total = catalog.list()?.iter().map(|s| s.len).sum();
        let inner = Arc::new(Inner {
            backend,
            catalog,
            rt: rt.handle().clone(),
            owner: owner_id(),
            opts,
            open: Mutex::new(None),
            stage_lock: Mutex::new(()),
            pending: Mutex::new(BTreeMap::new()),
            pending_cv: Condvar::new(),
            cache,
            sealed: RwLock::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
            recent: Mutex::new(VecDeque::new()),
            total: AtomicU64::new(total),
            stop: AtomicBool::new(false),
            uploads: AtomicU64::new(0),
            staged: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
            prefetches: AtomicU64::new(0),
            staged_reads: AtomicU64::new(0),
        });
        let i = inner.clone();
        let sealer = std::thread::Builder::new()
            .name("magicfs-sealer".into())
            .spawn(move || i.sealer_loop())
            .map_err(ObjectsError::Io)?;
        Ok(ObjectChunks { inner, sealer: Mutex::new(Some(sealer)), rt: Some(rt) })
    }

    /// A store used by this process alone (no shared catalog): the segments
    /// already in the object store are found by listing it.
    pub fn standalone(backend: Backend, volume: &str, opts: Options) -> ObjectsResult<Self> {
        let rt = runtime()?;
        let b = backend.clone();
        let found = run(rt.handle(), async move { b.list("segments").await })?;
        let catalog = MemCatalog::default();
        for (name, size, _) in found {
            if let Ok(id) = name.parse::<u32>() {
                catalog.insert_sealed(id, size);
            }
        }
        ObjectChunks::open_on(rt, backend, Arc::new(catalog), volume, opts)
    }

    /// Counters since open.
    pub fn stats(&self) -> ObjectStats {
        let i = &self.inner;
        ObjectStats {
            uploads: i.uploads.load(Ordering::Relaxed),
            staged: i.staged.load(Ordering::Relaxed),
            fetches: i.fetches.load(Ordering::Relaxed),
            prefetches: i.prefetches.load(Ordering::Relaxed),
            staged_reads: i.staged_reads.load(Ordering::Relaxed),
        }
    }

    /// Bytes of the local cache: (memory, disk).
    pub fn cache_usage(&self) -> (u64, u64) {
        self.inner.cache.usage()
    }

    /// Forgets the blocks cached in memory: the next reads go to the object
    /// store or the disk cache (cold-read benchmarks).
    pub fn clear_memory_cache(&self) {
        self.inner.cache.clear_memory();
        self.inner.recent.lock().clear();
    }

    /// The object store's service name, for messages.
    pub fn service(&self) -> &str {
        self.inner.backend.service()
    }

    /// Seals the open segment and waits for every upload: afterwards
    /// nothing of this process is staged.
    pub fn seal_now(&self) -> ObjectsResult<()> {
        let taken = self.inner.open.lock().take();
        if let Some(seg) = taken {
            self.inner.start_upload(seg);
        }
        self.inner.wait_uploads()
    }

    /// Deletes the objects of segments retired longer than the grace period
    /// ago, and objects no catalog entry names that are older than it (left
    /// by a writer that stopped between writing and recording them).
    /// Returns how many objects were deleted.
    pub fn reap(&self) -> ObjectsResult<usize> {
        let i = &self.inner;
        let mut n = 0;
        for id in i.catalog.expired(i.opts.grace)? {
            i.delete_segment(id)?;
            i.catalog.forget(id)?;
            i.sealed.write().remove(&id);
            n += 1;
        }
        let known: HashMap<u32, SegState> = i.catalog.list()?.into_iter().map(|s| (s.id, s.state)).collect();
        let b = i.backend.clone();
        for (name, _, age) in run(&i.rt, async move { b.list("segments").await })? {
            let Ok(id) = name.parse::<u32>() else { continue };
            if !known.contains_key(&id) && age >= i.opts.grace {
                i.delete_segment(id)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Stops as a killed process would: no sealing, no heartbeats; what
    /// was staged stays staged for another mount to seal (for tests).
    #[doc(hidden)]
    pub fn abandon(self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.sealer.lock().take() {
            let _ = h.join();
        }
        self.inner.open.lock().take();
    }

    /// Every segment the catalog records.
    pub fn catalog_segments(&self) -> ObjectsResult<Vec<SegInfo>> {
        self.inner.catalog.list()
    }
}

impl Drop for ObjectChunks {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.sealer.lock().take() {
            let _ = h.join();
        }
        // Leave nothing staged: seal what this mount staged.
        let staged = self.inner.open.lock().as_ref().is_some_and(|s| s.staged > 0);
        if staged {
            if let Err(e) = self.seal_now() {
                log::error!("{e}; the staged bytes stay readable and another mount seals them later");
            }
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// The store's own small runtime for object store calls.
fn runtime() -> ObjectsResult<tokio::runtime::Runtime> {
    crate::install_tls_provider();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("magicfs-objects")
        .enable_all()
        .build()
        .map_err(ObjectsError::Io)
}

/// Runs a future on the store's runtime from a plain thread and waits for
/// it (also safe on a thread that belongs to another runtime).
fn run<T: Send + 'static>(
    rt: &tokio::runtime::Handle,
    fut: impl std::future::Future<Output = ObjectsResult<T>> + Send + 'static,
) -> ObjectsResult<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().unwrap_or_else(|_| Err(ObjectsError::Io(io::Error::other("the object store runtime stopped"))))
}

impl Inner {
    fn delete_segment(&self, id: u32) -> ObjectsResult<()> {
        let b = self.backend.clone();
        let key = b.key(&segment_name(id));
        run(&self.rt, async move { b.delete(&key).await })
    }

    /// Moves a sealed-here segment to the uploads and starts writing its object.
    fn start_upload(self: &Arc<Self>, seg: OpenSeg) {
        if seg.len == 0 {
            // Nothing was ever put: no object. The catalog entry goes too.
            if let Err(e) = self.catalog.forget(seg.id) {
                log::warn!("{e}");
            }
            return;
        }
        let pieces = Arc::new(seg.pieces);
        self.pending.lock().insert(seg.id, Pending { pieces, len: seg.len, state: Upload::Running });
        self.spawn_upload(seg.id);
    }

    fn spawn_upload(self: &Arc<Self>, id: u32) {
        let me = self.clone();
        self.rt.spawn(async move {
            let r = me.upload(id).await;
            let mut p = me.pending.lock();
            match r {
                Ok(()) => {
                    if let Some(done) = p.remove(&id) {
                        me.sealed.write().insert(id, done.len);
                        // Small segments (small files) stay readable here
                        // without a round trip.
                        if done.len <= 4 * BLOCK {
                            me.cache_written(id, &done.pieces, done.len);
                        }
                    }
                }
                Err(e) => {
                    log::error!("{e}");
                    if let Some(x) = p.get_mut(&id) {
                        x.state = Upload::Failed(e.to_string());
                    }
                }
            }
            drop(p);
            me.pending_cv.notify_all();
        });
    }

    async fn upload(self: &Arc<Self>, id: u32) -> ObjectsResult<()> {
        let (pieces, len) = {
            let p = self.pending.lock();
            let Some(x) = p.get(&id) else { return Ok(()) };
            (x.pieces.clone(), x.len)
        };
        let key = self.backend.key(&segment_name(id));
        let payload: PutPayload = pieces.iter().map(|(_, b)| b.clone()).collect();
        if !self.backend.put_new(&key, payload).await? {
            // Written already: a retry after an answer that was lost. The
            // id is this writer's alone, so a matching size is this data.
            let size = self.backend.size(&key).await?;
            if size != Some(len) {
                return Err(ObjectsError::Corrupt(format!(
                    "segment {id} exists with {size:?} bytes where {len} were written"
                )));
            }
        }
        self.uploads.fetch_add(1, Ordering::Relaxed);
        let catalog = self.catalog.clone();
        tokio::task::spawn_blocking(move || catalog.seal(id, len))
            .await
            .map_err(|e| ObjectsError::Catalog(format!("sealing segment {id}: {e}")))?
    }

    /// Caches the blocks of a segment written here.
    fn cache_written(&self, id: u32, pieces: &Pieces, len: u64) {
        let mut block = Vec::with_capacity(BLOCK.min(len) as usize);
        let mut blk = 0u32;
        for (_, b) in pieces.iter() {
            let mut rest = &b[..];
            while !rest.is_empty() {
                let room = BLOCK as usize - block.len();
                let n = room.min(rest.len());
                block.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                if block.len() == BLOCK as usize {
                    self.cache.put((id, blk), Bytes::from(std::mem::take(&mut block)));
                    blk += 1;
                }
            }
        }
        if !block.is_empty() {
            self.cache.put((id, blk), Bytes::from(block));
        }
    }

    /// Waits until every upload started so far has finished; failed ones
    /// are tried again for one more retry window, then reported. The wait
    /// is bounded (three retry windows) even while the sealer keeps trying
    /// failed uploads again in the background.
    fn wait_uploads(self: &Arc<Self>) -> ObjectsResult<()> {
        let ids: Vec<u32> = self.pending.lock().keys().copied().collect();
        let deadline = self.upload_deadline();
        let mut retried = false;
        let mut last_error: Option<(u32, String)> = None;
        loop {
            let mut p = self.pending.lock();
            let mut failed = Vec::new();
            let mut running = false;
            for id in &ids {
                match p.get(id).map(|x| x.state.clone()) {
                    Some(Upload::Running) => running = true,
                    Some(Upload::Failed(e)) => {
                        last_error = Some((*id, e.clone()));
                        failed.push((*id, e));
                    }
                    None => {}
                }
            }
            if !running && failed.is_empty() {
                return Ok(());
            }
            let not_written =
                |id: u32, detail: Option<String>| self.upload_error(format!("segment {id} is not written yet"), detail);
            if Instant::now() >= deadline {
                return Err(match last_error {
                    Some((id, e)) => not_written(id, Some(e)),
                    None => not_written(ids.first().copied().unwrap_or_default(), None),
                });
            }
            if !running {
                if retried {
                    let (id, e) = failed.swap_remove(0);
                    return Err(not_written(id, Some(e)));
                }
                retried = true;
                for (id, _) in &failed {
                    if let Some(x) = p.get_mut(id) {
                        x.state = Upload::Running;
                    }
                }
                drop(p);
                for (id, _) in failed {
                    self.spawn_upload(id);
                }
                continue;
            }
            self.pending_cv.wait_for(&mut p, Duration::from_millis(200));
        }
    }

    /// Bytes of a segment held here (open or uploading).
    fn held(&self, loc: Location) -> Option<Bytes> {
        if let Some(s) = self.open.lock().as_ref().filter(|s| s.id == loc.pack) {
            return find(&s.pieces, loc);
        }
        self.pending.lock().get(&loc.pack).and_then(|p| find(&p.pieces, loc))
    }

    fn blocks(loc: Location) -> (u32, u32) {
        let first = loc.offset / BLOCK;
        let last = (loc.offset + loc.len.max(1) as u64 - 1) / BLOCK;
        (first as u32, last as u32)
    }

    /// The chunk's bytes from cached blocks, if all of them are cached.
    fn cached_range(&self, loc: Location) -> Option<Bytes> {
        let (first, last) = Self::blocks(loc);
        let start = (loc.offset - first as u64 * BLOCK) as usize;
        if first == last {
            let b = self.cache.get((loc.pack, first))?;
            return b.get(start..start + loc.len as usize).map(|_| b.slice(start..start + loc.len as usize));
        }
        let mut out = Vec::with_capacity(loc.len as usize);
        for blk in first..=last {
            let b = self.cache.get((loc.pack, blk))?;
            let from = if blk == first { start } else { 0 };
            let want = loc.len as usize - out.len();
            let to = (from + want).min(b.len());
            out.extend_from_slice(b.get(from..to)?);
        }
        (out.len() == loc.len as usize).then(|| Bytes::from(out))
    }

    /// The length of a segment whose object can be read, asking the catalog
    /// when it is not known here; `None` while it is still open.
    fn sealed_len(&self, id: u32) -> ObjectsResult<Option<u64>> {
        if let Some(l) = self.sealed.read().get(&id) {
            return Ok(Some(*l));
        }
        match self.catalog.state(id)? {
            SegState::Sealed(l) | SegState::Retired(l) => {
                self.sealed.write().insert(id, l);
                Ok(Some(l))
            }
            SegState::Open => Ok(None),
            SegState::Unknown => Err(ObjectsError::Catalog(format!("segment {id} is not in the catalog"))),
        }
    }

    fn read(self: &Arc<Self>, loc: Location) -> ObjectsResult<Bytes> {
        if let Some(b) = self.held(loc) {
            return Ok(b);
        }
        if let Some(b) = self.cached_range(loc) {
            self.note_read(loc);
            return Ok(b);
        }
        let len = match self.sealed_len(loc.pack)? {
            Some(l) => l,
            None => {
                if let Some(b) = self.catalog.staged(loc.pack, loc.offset, loc.len)? {
                    self.staged_reads.fetch_add(1, Ordering::Relaxed);
                    return Ok(b);
                }
                // Sealed (its rows dropped) since the state was read.
                self.sealed_len(loc.pack)?.ok_or_else(|| {
                    ObjectsError::Corrupt(format!(
                        "segment {} is open but holds no staged bytes at {}",
                        loc.pack, loc.offset
                    ))
                })?
            }
        };
        if loc.offset + loc.len as u64 > len {
            return Err(ObjectsError::Corrupt(format!(
                "bytes {}..{} are past the end of segment {} ({len} bytes)",
                loc.offset,
                loc.offset + loc.len as u64,
                loc.pack
            )));
        }
        let (first, last) = Self::blocks(loc);
        let start = (loc.offset - first as u64 * BLOCK) as usize;
        let end = start + loc.len as usize;
        let b = if first == last {
            self.block(loc.pack, first, len)?.slice(start..end)
        } else {
            let mut out = Vec::with_capacity(loc.len as usize);
            for blk in first..=last {
                out.extend_from_slice(&self.block(loc.pack, blk, len)?);
            }
            Bytes::from(out).slice(start..end)
        };
        self.note_read(loc);
        Ok(b)
    }

    /// One block of a sealed segment, from the cache or fetched (once,
    /// however many readers ask at the same time).
    fn block(self: &Arc<Self>, seg: u32, blk: u32, seg_len: u64) -> ObjectsResult<Bytes> {
        if let Some(b) = self.cache.get((seg, blk)) {
            return Ok(b);
        }
        let (flight, mine) = {
            let mut f = self.flights.lock();
            match f.get(&(seg, blk)) {
                Some(x) => (x.clone(), false),
                None => {
                    let x = Arc::new(Flight::default());
                    f.insert((seg, blk), x.clone());
                    (x, true)
                }
            }
        };
        if mine {
            let me = self.clone();
            return run(&self.rt, async move { me.fetch(seg, blk, seg_len).await });
        }
        flight.wait().map_err(|detail| ObjectsError::Service {
            service: self.backend.service().to_string(),
            what: format!("cannot read segment {seg}"),
            detail,
        })
    }

    /// The GET of a block whose flight the caller registered.
    async fn fetch(self: &Arc<Self>, seg: u32, blk: u32, seg_len: u64) -> ObjectsResult<Bytes> {
        let start = blk as u64 * BLOCK;
        let end = (start + BLOCK).min(seg_len);
        let key = self.backend.key(&segment_name(seg));
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let r = self.backend.get_range(&key, start..end).await;
        if let Ok(b) = &r {
            self.cache.put((seg, blk), b.clone());
        }
        if let Some(f) = self.flights.lock().remove(&(seg, blk)) {
            f.finish(r.as_ref().map(|b| b.clone()).map_err(|e| e.to_string()));
        }
        r
    }

    /// Remembers a read of a sealed segment's blocks; a reader moving
    /// block by block gets the next blocks fetched ahead.
    fn note_read(self: &Arc<Self>, loc: Location) {
        let (_, last) = Self::blocks(loc);
        let id = (loc.pack, last);
        let sequential = {
            let mut r = self.recent.lock();
            if r.back() == Some(&id) {
                return;
            }
            let seq = r.iter().any(|&(s, b)| (s == id.0 && b + 1 == id.1) || (id.1 == 0 && s + 1 == id.0));
            r.push_back(id);
            if r.len() > 64 {
                r.pop_front();
            }
            seq
        };
        if sequential {
            self.read_ahead(id);
        }
    }

    fn read_ahead(self: &Arc<Self>, (seg, blk): BlockId) {
        let Some(len) = self.sealed.read().get(&seg).copied() else { return };
        let next = if (blk as u64 + 1) * BLOCK < len { (seg, blk + 1) } else { (seg + 1, 0) };
        // Never more ahead than half the memory cache holds: blocks fetched
        // ahead must still be there when the reader arrives.
        let room = (self.opts.cache.mem_bytes / BLOCK / 2) as u32;
        self.prefetch_from(next, self.opts.readahead.min(room));
    }

    /// Starts fetching `n` blocks from `at` on, in segment order.
    fn prefetch_from(self: &Arc<Self>, mut at: BlockId, mut n: u32) {
        while n > 0 {
            let Some(len) = self.sealed.read().get(&at.0).copied() else {
                // The segment's state is not known here yet: look it up off
                // this thread, then go on from there.
                let me = self.clone();
                self.rt.spawn_blocking(move || {
                    if let Ok(Some(_)) = me.sealed_len(at.0) {
                        me.prefetch_from(at, n);
                    }
                });
                return;
            };
            if at.1 as u64 * BLOCK >= len {
                at = (at.0 + 1, 0);
                continue;
            }
            n -= 1;
            let here = at;
            at = (at.0, at.1 + 1);
            if self.cache.contains(here) {
                continue;
            }
            let mut f = self.flights.lock();
            if f.contains_key(&here) {
                continue;
            }
            f.insert(here, Arc::new(Flight::default()));
            drop(f);
            self.prefetches.fetch_add(1, Ordering::Relaxed);
            let me = self.clone();
            self.rt.spawn(async move {
                let _ = me.fetch(here.0, here.1, len).await;
            });
        }
    }

    /// The open segment's bytes not yet staged: (segment, offset, bytes);
    /// or, when they are many (or the segment is full), nothing, after
    /// starting the segment's upload.
    fn take_tail(self: &Arc<Self>) -> Option<(u32, u64, Vec<u8>)> {
        let mut open = self.open.lock();
        match open.as_mut() {
            Some(s) if s.len - s.staged > self.opts.stage_max || s.len >= self.opts.segment_bytes => {
                if let Some(seg) = open.take() {
                    self.start_upload(seg);
                }
                None
            }
            Some(s) if s.len > s.staged => {
                let from = s.pieces.partition_point(|(o, _)| *o < s.staged);
                let mut bytes = Vec::with_capacity((s.len - s.staged) as usize);
                for (_, b) in &s.pieces[from..] {
                    bytes.extend_from_slice(b);
                }
                Some((s.id, s.staged, bytes))
            }
            _ => None,
        }
    }

    /// Records that bytes up to `end` of segment `id` are staged.
    fn mark_staged(&self, id: u32, end: u64) {
        let mut open = self.open.lock();
        // Sealed meanwhile: its object carries the bytes.
        if let Some(s) = open.as_mut().filter(|s| s.id == id) {
            self.staged.fetch_add(1, Ordering::Relaxed);
            s.staged = s.staged.max(end);
            s.since.get_or_insert_with(Instant::now);
        }
    }

    /// Stages the unstaged tail of the open segment, or seals the segment
    /// when the tail is large; then waits for every upload.
    fn persist(self: &Arc<Self>) -> ObjectsResult<()> {
        // One stager at a time; the open segment's lock is not held across
        // the round trip, so puts and locality checks (FUSE request
        // threads) never wait on it.
        let _one = self.stage_lock.lock();
        if let Some((id, at, bytes)) = self.take_tail() {
            let end = at + bytes.len() as u64;
            let staged = self.catalog.stage(id, self.owner, at, &bytes);
            let still_open = self.open.lock().as_ref().is_some_and(|s| s.id == id);
            // Sealed meanwhile: its upload (awaited below) carries the
            // bytes, and a sealed segment takes no more rows.
            if still_open {
                staged?;
                self.mark_staged(id, end);
            }
        }
        self.wait_uploads()
    }

    /// [`Inner::persist`] for a store that defers its staging: the tail is
    /// returned for the metadata commit to stage (rows staged by commits
    /// running side by side may overlap; a row is written only as far as
    /// the bytes of its own moment, and the longer row at an offset wins).
    fn persist_deferred(self: &Arc<Self>) -> ObjectsResult<Option<Staged>> {
        if !self.opts.defer_staging {
            return self.persist().map(|()| None);
        }
        let tail = self.take_tail();
        self.wait_uploads()?;
        Ok(tail.map(|(segment, offset, bytes)| Staged { segment, owner: self.owner, offset, bytes }))
    }

    fn put(self: &Arc<Self>, bytes: &[u8]) -> ObjectsResult<Location> {
        let len = u32::try_from(bytes.len()).map_err(|_| ObjectsError::Io(io::Error::other("chunk too large")))?;
        self.wait_for_upload_room()?;
        let mut open = self.open.lock();
        if open.as_ref().is_some_and(|s| s.len > 0 && s.len + len as u64 > self.opts.segment_bytes) {
            if let Some(full) = open.take() {
                self.start_upload(full);
            }
        }
        if open.is_none() {
            let id = self.catalog.create(self.owner)?;
            *open = Some(OpenSeg { id, pieces: Vec::new(), len: 0, staged: 0, since: None });
        }
        let Some(s) = open.as_mut() else { unreachable!("an open segment was just made") };
        let loc = Location { pack: s.id, offset: s.len, len };
        s.pieces.push((s.len, Bytes::copy_from_slice(bytes)));
        s.len += len as u64;
        self.total.fetch_add(len as u64, Ordering::Relaxed);
        Ok(loc)
    }

    /// How long a writer waits on uploads: three retry windows, however
    /// long the sealer keeps trying failed uploads in the background.
    fn upload_deadline(&self) -> Instant {
        Instant::now() + 3 * self.backend.retry()
    }

    /// The error of uploads that did not finish, naming the store.
    fn upload_error(&self, what: String, detail: Option<String>) -> ObjectsError {
        ObjectsError::Service {
            service: self.backend.service().to_string(),
            what,
            detail: detail.unwrap_or_else(|| "uploads are not finishing".into()),
        }
    }

    /// Back-pressure: a writer waits while too many segments are uploading.
    fn wait_for_upload_room(&self) -> ObjectsResult<()> {
        let deadline = self.upload_deadline();
        let mut p = self.pending.lock();
        while p.len() >= self.opts.uploads {
            if p.values().all(|x| matches!(x.state, Upload::Failed(_))) || Instant::now() >= deadline {
                let detail = p.values().find_map(|x| match &x.state {
                    Upload::Failed(e) => Some(e.clone()),
                    Upload::Running => None,
                });
                return Err(self.upload_error("cannot take more data until segments are written".into(), detail));
            }
            self.pending_cv.wait_for(&mut p, Duration::from_millis(200));
        }
        Ok(())
    }

    /// Seals old open segments, retries failed uploads, sends heartbeats and
    /// seals segments whose writers stopped.
    fn sealer_loop(self: Arc<Self>) {
        let tick = Duration::from_millis(250);
        let beat_every = (self.opts.adopt_after / 4).max(Duration::from_millis(500));
        let mut last_beat = Instant::now();
        let mut last_adopt = Instant::now();
        let mut last_retry = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(tick);
            let old = {
                let mut open = self.open.lock();
                let due = open.as_ref().is_some_and(|s| {
                    s.since.is_some_and(|t| t.elapsed() >= self.opts.seal_after) || s.len >= self.opts.segment_bytes
                });
                if due {
                    open.take()
                } else {
                    None
                }
            };
            if let Some(seg) = old {
                self.start_upload(seg);
            }
            if last_retry.elapsed() >= Duration::from_secs(2) {
                last_retry = Instant::now();
                let failed: Vec<u32> = {
                    let mut p = self.pending.lock();
                    p.iter_mut()
                        .filter(|(_, x)| matches!(x.state, Upload::Failed(_)))
                        .map(|(id, x)| {
                            x.state = Upload::Running;
                            *id
                        })
                        .collect()
                };
                for id in failed {
                    self.spawn_upload(id);
                }
            }
            if last_beat.elapsed() >= beat_every {
                last_beat = Instant::now();
                let mut ids: Vec<u32> = self.pending.lock().keys().copied().collect();
                ids.extend(self.open.lock().as_ref().map(|s| s.id));
                if let Err(e) = self.catalog.heartbeat(self.owner, &ids) {
                    log::warn!("{e}");
                }
            }
            if last_adopt.elapsed() >= self.opts.adopt_after / 2 {
                last_adopt = Instant::now();
                if let Err(e) = self.adopt() {
                    log::warn!("sealing segments of stopped writers: {e}");
                }
            }
        }
    }

    /// Seals the open segments of writers that stopped: their staged rows
    /// become the object.
    fn adopt(self: &Arc<Self>) -> ObjectsResult<()> {
        for id in self.catalog.adopt(self.owner, self.opts.adopt_after)? {
            let rows = self.catalog.staged_rows(id)?;
            let mut pieces = Vec::with_capacity(rows.len());
            let mut len = 0;
            for (off, b) in rows {
                if off > len {
                    return Err(ObjectsError::Corrupt(format!("segment {id}: staged rows leave a gap at {len}")));
                }
                // Rows staged by commits side by side may overlap (the same
                // bytes): keep what is new.
                let skip = (len - off) as usize;
                if skip < b.len() {
                    let b = b.slice(skip..);
                    pieces.push((len, b.clone()));
                    len += b.len() as u64;
                }
            }
            log::info!("sealing segment {id} of a writer that stopped ({len} bytes)");
            self.start_upload(OpenSeg { id, pieces, len, staged: len, since: None });
        }
        Ok(())
    }
}

impl ChunkStore for ObjectChunks {
    fn put(&self, bytes: &[u8]) -> io::Result<Location> {
        self.inner.put(bytes).map_err(to_io)
    }

    fn share(&self, loc: Location) -> io::Result<SharedBytes> {
        self.inner.read(loc).map(SharedBytes::Bytes).map_err(|e| {
            log::error!("{e}");
            to_io(e)
        })
    }

    fn sync(&self) -> io::Result<()> {
        self.persist()
    }

    fn persist(&self) -> io::Result<()> {
        self.inner.persist().map_err(|e| {
            log::error!("{e}");
            to_io(e)
        })
    }

    fn persist_deferred(&self) -> io::Result<Option<Staged>> {
        self.inner.persist_deferred().map_err(|e| {
            log::error!("{e}");
            to_io(e)
        })
    }

    fn staged_committed(&self, staged: &Staged) {
        self.inner.mark_staged(staged.segment, staged.offset + staged.bytes.len() as u64);
    }

    fn is_local(&self, loc: Location) -> bool {
        let (first, last) = Inner::blocks(loc);
        self.inner.held(loc).is_some() || (first..=last).all(|b| self.inner.cache.contains((loc.pack, b)))
    }

    fn always_local(&self) -> bool {
        false
    }

    fn bytes(&self) -> u64 {
        self.inner.total.load(Ordering::Relaxed)
    }

    fn segments(&self) -> io::Result<Vec<(u32, u64)>> {
        let list = self.inner.catalog.list().map_err(to_io)?;
        // A segment sealed less than the grace period ago may be named by a
        // commit still on its way from another mount: not a candidate yet.
        let grace = self.inner.opts.grace;
        Ok(list
            .into_iter()
            .filter(|s| matches!(s.state, SegState::Sealed(_)) && s.age >= grace)
            .map(|s| (s.id, s.len))
            .collect())
    }

    fn roll(&self) -> io::Result<()> {
        self.seal_now().map_err(to_io)
    }

    fn retire(&self, id: u32) -> io::Result<()> {
        self.inner.catalog.retire(id).map_err(to_io)?;
        if let Some(l) = self.inner.sealed.read().get(&id) {
            self.inner.total.fetch_sub(*l, Ordering::Relaxed);
        }
        Ok(())
    }

    fn reap(&self) -> io::Result<usize> {
        ObjectChunks::reap(self).map_err(to_io)
    }
}
