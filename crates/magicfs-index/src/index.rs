//! [`Index`]: the search index of one mount — the model (loaded in the
//! background), the records, the vectors, the queue of files to (re)index,
//! the result cache, and the status counters.

use crate::extract::Skip;
use crate::fusion::{fuse, Ranking, DEFAULT_RANKING};
use crate::lexical::Lexical;
use crate::records::DocRecord;
use crate::store::{EmbeddedStore, Hash, IndexStore};
use crate::{IndexError, SearchError};
use magicfs_core::Fs;
use magicfs_embed::{Embedder, DIM};
use magicfs_types::Ino;
use parking_lot::{Condvar, Mutex};
use serde::Serialize;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default number of results of a query.
pub const DEFAULT_TOP_K: usize = 20;
/// Default lowest score (cosine similarity) a result may have.
pub const DEFAULT_MIN_SCORE: f32 = 0.2;
/// Longest query in bytes; longer ones are cut (at a character boundary).
pub const MAX_QUERY_BYTES: usize = 4096;
/// Queries whose results are kept.
const CACHE_QUERIES: usize = 512;

/// How an index is set up.
#[derive(Clone, Debug)]
pub struct IndexConfig {
    /// Directory with the MiniLM model files.
    pub model_dir: PathBuf,
    /// Where `search.redb` lives; `None` keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    /// Host directories to watch and index.
    pub watch: Vec<PathBuf>,
    /// Results per query.
    pub top_k: usize,
    /// Lowest score listed.
    pub min_score: f32,
    /// Threads one embedding batch may use while indexing (1 leaves the
    /// other core to the filesystem).
    pub index_threads: usize,
    /// Index the chat transcripts under `sessions/` too (left out by default).
    pub include_sessions: bool,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            model_dir: magicfs_embed::default_model_dir(),
            data_dir: None,
            watch: Vec::new(),
            top_k: DEFAULT_TOP_K,
            min_score: DEFAULT_MIN_SCORE,
            index_threads: 1,
            include_sessions: false,
        }
    }
}

/// The directory of chat transcripts, left out of the index unless asked for.
pub const SESSIONS_PREFIX: &str = "sessions/";

/// Candidates taken from each ranking before fusion (at least k).
const FUSION_DEPTH: usize = 50;

/// Most lexical changes between two commits of the lexical index, and
/// the longest time a change waits for one while files keep coming.
const LEXICAL_BATCH: usize = 1000;
const LEXICAL_DELAY: Duration = Duration::from_secs(1);

/// Something to (re)index or forget.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Job {
    /// A file of the mount, by inode.
    Mount(Ino),
    /// A host path (file or directory, present or gone).
    Host(PathBuf),
}

pub(crate) enum ModelState {
    Loading,
    Ready(Arc<Embedder>),
    Failed(String),
}

/// Summary of a record kept in memory: enough to tell "unchanged".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Known {
    pub size: u64,
    pub mtime_ns: i64,
    /// Hash of the file's base name (the lexical index holds it: a rename re-indexes).
    pub name: u64,
}

impl Known {
    pub(crate) fn new(size: u64, mtime_ns: i64, base: &str) -> Known {
        let h = blake3::hash(base.as_bytes());
        let mut b = [0u8; 8];
        b.copy_from_slice(&h.as_bytes()[..8]);
        Known { size, mtime_ns, name: u64::from_le_bytes(b) }
    }
}

/// The base name of a path.
pub(crate) fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// One search result.
#[derive(Clone, Debug, Serialize)]
pub struct Hit {
    /// Path: relative to the mount root for the mount's files, absolute for watched host files.
    pub path: String,
    /// True for a file of the mount, false for a watched host file.
    pub in_mount: bool,
    /// Fused score: meaning and words together (at most 1; see [`crate::fusion`]).
    pub score: f32,
    /// Cosine similarity of the best passage by meaning (−1 to 1), if computed.
    pub similarity: Option<f32>,
    /// BM25 score of the best passage by words (0: no word of the query matched).
    pub bm25: f32,
    /// The best passage's text.
    pub passage: String,
}

/// The ranked results of one query.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    /// The query as run (trimmed, at most 4096 bytes).
    pub query: String,
    /// Hits, best first.
    pub hits: Vec<Hit>,
    /// Index generation the results were computed at.
    pub generation: u64,
}

/// State of a watched host directory.
#[derive(Clone, Debug, Serialize)]
pub struct WatchState {
    /// The directory.
    pub path: String,
    /// `watching`, `missing` (records dropped; re-scanned when it reappears) or `error: …`.
    pub state: String,
}

/// Progress and counters, as shown in `.magic/status` and by `magicfs index status`.
#[derive(Clone, Debug, Serialize)]
pub struct IndexStatus {
    /// `loading`, `ready` or `failed: …`.
    pub model: String,
    /// Model id of the vectors (once loaded).
    pub model_id: Option<String>,
    /// Chunker version of the passages.
    pub chunker: &'static str,
    /// Where the records and vectors are kept.
    pub store: String,
    /// How results are ranked.
    pub ranking: String,
    /// True when chat transcripts under `sessions/` are indexed.
    pub include_sessions: bool,
    /// Files with at least one passage in the index.
    pub files_indexed: usize,
    /// Passages in the index.
    pub passages: usize,
    /// Files waiting to be (re)indexed.
    pub queued: usize,
    /// True while a file is being indexed.
    pub indexing: bool,
    /// True until the stored records are loaded and the mount and every
    /// watched directory have been compared with them once (start-up reconciliation).
    pub scanning: bool,
    /// Files read and indexed since start.
    pub files_done: u64,
    /// Passages embedded since start.
    pub passages_embedded: u64,
    /// Passages whose vector was reused (unchanged text).
    pub passages_reused: u64,
    /// Files skipped by reason (binary, too_large, unreadable, not_regular), current records.
    pub skipped: HashMap<&'static str, u64>,
    /// Files that failed to index since start.
    pub errors: u64,
    /// Watched host directories.
    pub watch: Vec<WatchState>,
    /// Changes to the index so far (results cached at an older generation are stale).
    pub generation: u64,
    /// Results per query.
    pub top_k: usize,
    /// Lowest score listed.
    pub min_score: f32,
}

pub(crate) struct Queue {
    pub items: VecDeque<Job>,
    pub set: HashSet<Job>,
    /// Files closed or unlinked in the mount, each with the time of its
    /// last change: queued once quiet for [`SETTLE`], so a file rewritten or
    /// deleted right after it was closed is read once, or never.
    pub settling: HashMap<Job, Instant>,
    /// The same changes in the order they happened (older duplicates of a
    /// job are skipped when they come up).
    pub settle_order: VecDeque<(Job, Instant)>,
}

/// How long a closed file must stay untouched before it is indexed.
pub(crate) const SETTLE: Duration = Duration::from_millis(250);

/// Files that settle within this much of each other are promoted together:
/// a stream of small files (thousands a second) wakes the indexer a few
/// times a second, not once per file.
pub(crate) const SETTLE_BATCH: Duration = Duration::from_millis(100);

impl Queue {
    /// Moves the files that have settled to the front of the queue; returns
    /// how long to wait before the next call (until the next one settles,
    /// plus [`SETTLE_BATCH`] so those settling just after it come along).
    pub(crate) fn promote_settled(&mut self, now: Instant) -> Option<Duration> {
        while let Some((job, at)) = self.settle_order.front() {
            let age = now.saturating_duration_since(*at);
            if age < SETTLE {
                return Some(SETTLE - age + SETTLE_BATCH);
            }
            let (job, at) = (job.clone(), *at);
            self.settle_order.pop_front();
            if self.settling.get(&job) == Some(&at) {
                self.settling.remove(&job);
                if self.set.insert(job.clone()) {
                    self.items.push_front(job);
                }
            }
        }
        None
    }
}

/// The shared state behind [`Index`].
pub(crate) struct Inner {
    pub cfg: IndexConfig,
    pub fs: Option<Arc<Fs>>,
    pub model: Mutex<ModelState>,
    pub model_cv: Condvar,
    pub store: Arc<dyn IndexStore>,
    pub lexical: Lexical,
    pub last_commit: Mutex<Instant>,
    pub known: Mutex<HashMap<String, Known>>,
    pub skipped: Mutex<HashMap<String, Skip>>,
    pub recent: Mutex<HashMap<Hash, Vec<f32>>>,
    pub queue: Mutex<Queue>,
    pub queue_cv: Condvar,
    pub generation: AtomicU64,
    pub cache: Mutex<HashMap<(String, usize, u32), Arc<Results>>>,
    pub ranking: Ranking,
    pub files_done: AtomicU64,
    pub embedded: AtomicU64,
    pub reused: AtomicU64,
    pub errors: AtomicU64,
    pub busy: AtomicBool,
    pub stop: AtomicBool,
    pub startup: std::sync::atomic::AtomicUsize,
    pub roots: Mutex<Vec<(PathBuf, String)>>,
}

/// The search index of a mount (cheap to clone).
#[derive(Clone)]
pub struct Index {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").field("cfg", &self.inner.cfg).finish_non_exhaustive()
    }
}

/// Key of a mount file.
pub(crate) fn mount_key(ino: Ino) -> String {
    format!("m/{ino}")
}

/// Key of a host file.
pub(crate) fn host_key(p: &Path) -> String {
    format!("h/{}", p.to_string_lossy())
}

impl Index {
    /// Opens the index (records from `cfg.data_dir/search.redb`, or memory),
    /// starts loading the model and the indexing worker, and, for `fs`,
    /// follows the mount's files. Returns at once; the model loads in the background.
    pub fn start(cfg: IndexConfig, fs: Option<Arc<Fs>>) -> Result<Index, IndexError> {
        let store = Index::embedded_store(&cfg)?;
        Index::start_with(cfg, fs, store)
    }

    /// [`Index::start`] with the records and vectors in `store` (a cluster volume's shared store).
    pub fn start_with(cfg: IndexConfig, fs: Option<Arc<Fs>>, store: Arc<dyn IndexStore>) -> Result<Index, IndexError> {
        let index = Index::open_with(cfg, fs, store)?;
        let inner = index.inner.clone();
        std::thread::Builder::new()
            .name("magicfs-index".into())
            .spawn(move || crate::worker::run(inner))
            .map_err(|e| IndexError::Store(format!("cannot start the indexing thread: {e}")))?;
        Ok(index)
    }

    /// Opens the index without the worker (for one-off queries of an unmounted store).
    pub fn open(cfg: IndexConfig, fs: Option<Arc<Fs>>) -> Result<Index, IndexError> {
        let store = Index::embedded_store(&cfg)?;
        Index::open_with(cfg, fs, store)
    }

    /// The store of one mount: `search.redb` in the data directory, or memory.
    fn embedded_store(cfg: &IndexConfig) -> Result<Arc<dyn IndexStore>, IndexError> {
        Ok(match &cfg.data_dir {
            Some(d) => Arc::new(EmbeddedStore::open(&d.join("search.redb"))?),
            None => Arc::new(EmbeddedStore::memory()),
        })
    }

    /// [`Index::open`] with the records and vectors in `store`.
    pub fn open_with(cfg: IndexConfig, fs: Option<Arc<Fs>>, store: Arc<dyn IndexStore>) -> Result<Index, IndexError> {
        let mut roots = Vec::new();
        for w in &cfg.watch {
            let abs = std::path::absolute(w).unwrap_or_else(|_| w.clone());
            roots.push((abs, "starting".to_string()));
        }
        let startup = std::sync::atomic::AtomicUsize::new(1 + roots.len());
        let inner = Arc::new(Inner {
            startup,
            cfg,
            fs,
            model: Mutex::new(ModelState::Loading),
            model_cv: Condvar::new(),
            store,
            lexical: Lexical::new()?,
            last_commit: Mutex::new(Instant::now()),
            known: Mutex::new(HashMap::new()),
            skipped: Mutex::new(HashMap::new()),
            recent: Mutex::new(HashMap::new()),
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                set: HashSet::new(),
                settling: HashMap::new(),
                settle_order: VecDeque::new(),
            }),
            queue_cv: Condvar::new(),
            generation: AtomicU64::new(0),
            cache: Mutex::new(HashMap::new()),
            ranking: DEFAULT_RANKING,
            files_done: AtomicU64::new(0),
            embedded: AtomicU64::new(0),
            reused: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            roots: Mutex::new(roots),
        });
        let loader = inner.clone();
        std::thread::Builder::new()
            .name("magicfs-model".into())
            .spawn(move || {
                let r = Embedder::load(&loader.cfg.model_dir);
                let mut m = loader.model.lock();
                *m = match r {
                    Ok(e) => {
                        log::info!("search: model {} loaded", e.model_id());
                        ModelState::Ready(Arc::new(e))
                    }
                    Err(e) => {
                        log::error!("search: cannot load the model from {}: {e}", loader.cfg.model_dir.display());
                        ModelState::Failed(format!(
                            "{e} (run scripts/models.sh, or point --models / MAGICFS_MODELS at the models directory)"
                        ))
                    }
                };
                loader.model_cv.notify_all();
            })
            .map_err(|e| IndexError::Store(format!("cannot start the model loader: {e}")))?;
        Ok(Index { inner })
    }

    /// Loads the stored records into memory (done by the worker; for [`Index::open`] users).
    pub fn load_records(&self) -> Result<(), SearchError> {
        let emb = self.inner.wait_model()?;
        crate::worker::load_records(&self.inner, &emb, false).map_err(|e| SearchError::Index(e.to_string()))
    }

    /// Results per query.
    pub fn top_k(&self) -> usize {
        self.inner.cfg.top_k
    }

    /// Lowest score listed.
    pub fn min_score(&self) -> f32 {
        self.inner.cfg.min_score
    }

    /// The loaded model, waiting for it to load (call from a worker, never the request loop).
    pub fn embedder(&self) -> Result<Arc<Embedder>, SearchError> {
        self.inner.wait_model()
    }

    /// A file of the mount was closed after writing: re-index it soon.
    pub fn note_written(&self, ino: Ino) {
        self.inner.settle(Job::Mount(ino));
    }

    /// A name of a mount file went away (unlink or rename over it): re-check it.
    pub fn note_unlinked(&self, ino: Ino) {
        self.inner.settle(Job::Mount(ino));
    }

    /// Names in the mount changed (rename): cached results may show old
    /// paths. `moved` is the renamed node: its base name is indexed, and a
    /// file moved into or out of `sessions/` joins or leaves the index.
    pub fn note_renamed(&self, moved: Option<Ino>) {
        if let Some(ino) = moved {
            self.inner.settle(Job::Mount(ino));
        }
        self.inner.bump();
    }

    /// Runs `query` (the top `k`; matches by meaning need a cosine of at
    /// least `min`, matches by words are always candidates), from the cache
    /// when the index has not changed.
    pub fn search(&self, query: &str, k: usize, min: f32) -> Result<Arc<Results>, SearchError> {
        self.inner.search(query, k, min)
    }

    /// Runs `query` ranked by `ranking` (no cache): for benchmarks that compare rankings.
    pub fn search_ranked(&self, query: &str, k: usize, min: f32, ranking: Ranking) -> Result<Results, SearchError> {
        let q = normalize_query(query)?;
        let generation = self.inner.generation.load(Ordering::Acquire);
        self.inner.run(q, k, min, ranking, generation)
    }

    /// The nearest-passage search alone: best documents for a query vector.
    pub fn scan(&self, query: &[f32], k: usize, min: f32) -> Result<Vec<crate::vectors::Scored>, SearchError> {
        self.inner.store.nearest(query, k, min).map_err(|e| SearchError::Index(e.to_string()))
    }

    /// The lexical search alone: best documents for the words of a query.
    pub fn scan_words(&self, query: &str, k: usize) -> Result<Vec<crate::lexical::LexHit>, SearchError> {
        self.inner.lexical.search(query, k).map_err(|e| SearchError::Index(e.to_string()))
    }

    /// Results of `query` if they are cached and current (never waits).
    pub fn cached(&self, query: &str, k: usize, min: f32) -> Option<Arc<Results>> {
        let q = normalize_query(query).ok()?;
        let r = self.inner.cache.lock().get(&(q, k, min.to_bits())).cloned()?;
        (r.generation == self.inner.generation.load(Ordering::Acquire)).then_some(r)
    }

    /// Progress and counters.
    pub fn status(&self) -> IndexStatus {
        self.inner.status()
    }

    /// Waits until nothing is queued or being indexed (and the model has
    /// loaded or failed), at most `timeout`; true if idle.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            let s = self.status();
            if s.model.starts_with("failed") || (s.model == "ready" && s.queued == 0 && !s.indexing && !s.scanning) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Stops the worker and makes the records durable.
    pub fn shutdown(&self) -> Result<(), IndexError> {
        self.inner.stop.store(true, Ordering::Release);
        self.inner.queue_cv.notify_all();
        self.inner.store.sync()
    }

    /// Inserts pre-computed vectors for `key` (benchmarks: large synthetic corpora).
    /// The lexical index sees them after [`Index::commit_words`].
    pub fn insert_vectors(&self, key: &str, texts: Vec<String>, vectors: &[f32]) -> Result<(), IndexError> {
        let hashes: Vec<Hash> = texts.iter().map(|t| *blake3::hash(t.as_bytes()).as_bytes()).collect();
        let name = base_name(key).to_string();
        let rec = DocRecord {
            model: self.inner.model_id().unwrap_or_default(),
            chunker: crate::passage::CHUNKER_VERSION.into(),
            size: 0,
            mtime_ns: 0,
            skipped: None,
            hashes: hashes.iter().map(crate::store::hex).collect(),
            texts,
            name,
        };
        self.inner.store.put(key, &rec, vectors)?;
        self.inner.lexical.set(key, &rec.name, &rec.texts)?;
        self.inner.bump();
        Ok(())
    }

    /// Makes every lexical change so far searchable.
    pub fn commit_words(&self) -> Result<(), IndexError> {
        self.inner.commit_lexical()
    }
}

/// Trims a query and cuts it to [`MAX_QUERY_BYTES`]; an empty query is an error.
pub fn normalize_query(q: &str) -> Result<String, SearchError> {
    let mut q = q.trim();
    if q.is_empty() {
        return Err(SearchError::EmptyQuery);
    }
    if q.len() > MAX_QUERY_BYTES {
        let mut end = MAX_QUERY_BYTES;
        while !q.is_char_boundary(end) {
            end -= 1;
        }
        q = &q[..end];
    }
    Ok(q.to_string())
}

impl Inner {
    pub(crate) fn push(&self, job: Job, front: bool) {
        let mut q = self.queue.lock();
        if q.set.insert(job.clone()) {
            if front {
                q.items.push_front(job);
            } else {
                q.items.push_back(job);
            }
            self.queue_cv.notify_one();
        }
    }

    /// Queues `job` once it has been quiet for [`SETTLE`] (each call restarts the wait).
    pub(crate) fn settle(&self, job: Job) {
        let mut q = self.queue.lock();
        if !q.set.contains(&job) {
            let now = Instant::now();
            let first = q.settle_order.is_empty();
            q.settling.insert(job.clone(), now);
            q.settle_order.push_back((job, now));
            // Otherwise the worker already waits for the oldest to settle.
            if first {
                self.queue_cv.notify_one();
            }
        }
    }

    /// One part of the start-up reconciliation is done.
    pub(crate) fn startup_step(&self, n: usize) {
        let _ = self.startup.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| Some(v.saturating_sub(n)));
    }

    pub(crate) fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn model_id(&self) -> Option<String> {
        match &*self.model.lock() {
            ModelState::Ready(e) => Some(e.model_id().to_string()),
            _ => None,
        }
    }

    pub(crate) fn wait_model(&self) -> Result<Arc<Embedder>, SearchError> {
        let mut m = self.model.lock();
        loop {
            match &*m {
                ModelState::Ready(e) => return Ok(e.clone()),
                ModelState::Failed(msg) => return Err(SearchError::Model(msg.clone())),
                ModelState::Loading => {
                    self.model_cv.wait_for(&mut m, Duration::from_millis(200));
                }
            }
        }
    }

    fn search(&self, query: &str, k: usize, min: f32) -> Result<Arc<Results>, SearchError> {
        let q = normalize_query(query)?;
        let key = (q.clone(), k, min.to_bits());
        let generation = self.generation.load(Ordering::Acquire);
        if let Some(r) = self.cache.lock().get(&key) {
            if r.generation == generation {
                return Ok(r.clone());
            }
        }
        let r = Arc::new(self.run(q, k, min, self.ranking, generation)?);
        let mut cache = self.cache.lock();
        if cache.len() >= CACHE_QUERIES {
            cache.clear();
        }
        cache.insert(key, r.clone());
        Ok(r)
    }

    /// Ranks the documents for `q`: candidates by meaning and by words, fused, named.
    fn run(&self, q: String, k: usize, min: f32, ranking: Ranking, generation: u64) -> Result<Results, SearchError> {
        let index_err = |e: IndexError| SearchError::Index(e.to_string());
        let emb = self.wait_model()?;
        // Transcripts that slip through (a hard link, a directory moved in) are
        // filtered after fusion: take a few more than asked.
        let depth = k.max(FUSION_DEPTH);
        let qv = if ranking.uses_meaning() { Some(emb.embed_one(&q)) } else { None };
        let sem = match &qv {
            Some(v) => self.store.nearest(v, depth, min).map_err(index_err)?,
            None => Vec::new(),
        };
        let lex = match ranking.uses_words() {
            true if ranking.exact_words_only() => {
                self.lexical.search(&crate::lexical::exact_terms(&q), depth).map_err(index_err)?
            }
            true => self.lexical.search(&q, depth).map_err(index_err)?,
            false => Vec::new(),
        };
        // Cosines of the documents only words found.
        let extra = match &qv {
            Some(v) if !lex.is_empty() => {
                let have: HashSet<&str> = sem.iter().map(|s| s.key.as_str()).collect();
                let keys: Vec<String> =
                    lex.iter().filter(|l| !have.contains(l.key.as_str())).map(|l| l.key.clone()).collect();
                self.store.best_of(&keys, v).map_err(index_err)?
            }
            _ => Vec::new(),
        };
        let fused = fuse(ranking, &sem, &extra, &lex, depth);
        let inos: Vec<Ino> = fused.iter().filter_map(|s| s.key.strip_prefix("m/")?.parse().ok()).collect();
        let paths = match (&self.fs, inos.is_empty()) {
            (Some(fs), false) => fs.paths_of(&inos),
            _ => HashMap::new(),
        };
        let mut hits = Vec::with_capacity(k);
        let mut shown = Vec::with_capacity(k);
        for s in fused {
            if hits.len() == k {
                break;
            }
            let (path, in_mount) = if let Some(ino) = s.key.strip_prefix("m/") {
                match ino.parse::<Ino>().ok().and_then(|i| paths.get(&i)) {
                    Some(p) => (String::from_utf8_lossy(p).into_owned(), true),
                    None => continue,
                }
            } else if let Some(p) = s.key.strip_prefix("h/") {
                (p.to_string(), false)
            } else {
                continue;
            };
            if in_mount && !self.cfg.include_sessions && path.starts_with(SESSIONS_PREFIX) {
                continue;
            }
            shown.push((s.key, s.passage));
            hits.push(Hit {
                path,
                in_mount,
                score: s.score,
                similarity: s.similarity,
                bm25: s.bm25,
                passage: String::new(),
            });
        }
        // One look-up for every passage shown (one round trip on a shared store).
        for (h, t) in hits.iter_mut().zip(self.store.passage_texts(&shown).map_err(index_err)?) {
            h.passage = t.unwrap_or_default();
        }
        Ok(Results { query: q, hits, generation })
    }

    /// Makes the lexical changes so far searchable (and cached results stale).
    pub(crate) fn commit_lexical(&self) -> Result<(), IndexError> {
        *self.last_commit.lock() = Instant::now();
        if self.lexical.pending() == 0 {
            return Ok(());
        }
        self.lexical.commit()?;
        self.bump();
        Ok(())
    }

    /// Commits the lexical index if enough changed or a change waited long enough.
    pub(crate) fn maybe_commit_lexical(&self) -> Result<(), IndexError> {
        let due = self.lexical.pending() >= LEXICAL_BATCH || self.last_commit.lock().elapsed() >= LEXICAL_DELAY;
        if due {
            self.commit_lexical()
        } else {
            Ok(())
        }
    }

    fn status(&self) -> IndexStatus {
        let (model, model_id) = match &*self.model.lock() {
            ModelState::Loading => ("loading".to_string(), None),
            ModelState::Ready(e) => ("ready".to_string(), Some(e.model_id().to_string())),
            ModelState::Failed(m) => (format!("failed: {m}"), None),
        };
        let (files_indexed, passages) = self.store.counts();
        let mut skipped = HashMap::new();
        for s in self.skipped.lock().values() {
            *skipped.entry(s.name()).or_insert(0) += 1;
        }
        IndexStatus {
            model,
            model_id,
            store: self.store.describe(),
            ranking: format!("{:?}", self.ranking),
            include_sessions: self.cfg.include_sessions,
            chunker: crate::passage::CHUNKER_VERSION,
            files_indexed,
            passages,
            queued: {
                let q = self.queue.lock();
                q.items.len() + q.settling.len()
            },
            indexing: self.busy.load(Ordering::Acquire),
            scanning: self.startup.load(Ordering::Acquire) > 0,
            files_done: self.files_done.load(Ordering::Relaxed),
            passages_embedded: self.embedded.load(Ordering::Relaxed),
            passages_reused: self.reused.load(Ordering::Relaxed),
            skipped,
            errors: self.errors.load(Ordering::Relaxed),
            watch: self
                .roots
                .lock()
                .iter()
                .map(|(p, s)| WatchState { path: p.display().to_string(), state: s.clone() })
                .collect(),
            generation: self.generation.load(Ordering::Acquire),
            top_k: self.cfg.top_k,
            min_score: self.cfg.min_score,
        }
    }

    /// Vectors of passages by hash, from `key`'s current rows.
    pub(crate) fn reusable(&self, key: &str) -> HashMap<Hash, Vec<f32>> {
        self.store.vectors(key).unwrap_or_else(|e| {
            log::warn!("search: {e}");
            HashMap::new()
        })
    }

    /// Forgets `keys` (records, vectors, words, summaries); their vectors
    /// stay reusable for a while (a rename is a drop and an add).
    pub(crate) fn drop_keys(&self, keys: &[String]) {
        if keys.is_empty() {
            return;
        }
        {
            let mut recent = self.recent.lock();
            if recent.len() > 20_000 {
                recent.clear();
            }
            for k in keys {
                recent.extend(self.reusable(k));
            }
        }
        {
            let mut known = self.known.lock();
            let mut sk = self.skipped.lock();
            for k in keys {
                known.remove(k);
                sk.remove(k);
            }
        }
        self.lexical.remove(keys);
        if let Err(e) = self.store.remove(keys) {
            log::error!("search index: {e}");
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.bump();
    }

    /// Vector of a recently dropped passage.
    pub(crate) fn recent_vector(&self, h: &Hash) -> Option<Vec<f32>> {
        self.recent.lock().get(h).cloned()
    }
}

/// Width of a vector (re-exported for the worker).
pub(crate) const WIDTH: usize = DIM;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settling_files_are_promoted_in_batches() {
        let mut q = Queue {
            items: VecDeque::new(),
            set: HashSet::new(),
            settling: HashMap::new(),
            settle_order: VecDeque::new(),
        };
        let t0 = Instant::now();
        for i in 0..100u64 {
            let at = t0 + Duration::from_micros(250 * i);
            q.settling.insert(Job::Mount(i), at);
            q.settle_order.push_back((Job::Mount(i), at));
        }
        // Nothing has settled yet: wait past the first one, plus the batch window.
        let wait = q.promote_settled(t0).unwrap();
        assert_eq!(wait, SETTLE + SETTLE_BATCH);
        assert!(q.items.is_empty());
        // At the wake-up every file closed within the window is promoted at once.
        assert_eq!(q.promote_settled(t0 + wait), None);
        assert_eq!(q.items.len(), 100);
        assert!(q.settling.is_empty());
    }
}
