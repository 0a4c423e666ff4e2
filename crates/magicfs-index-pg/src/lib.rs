//! The search index of a cluster volume in PostgreSQL: [`PgIndexStore`]
//! implements [`IndexStore`] with every passage vector in a pgvector
//! column, shared by every mount of the volume.
//!
//! - `search_docs`: one row per document (key, the record without its
//!   texts as JSON, size and mtime, a change number `seq`, and `removed`
//!   for a removal the other mounts have yet to see).
//! - `search_passages`: one row per passage (key, index, hash, text, model,
//!   chunker, `vector(384)`). Below [`HNSW_FROM`] passages a query is an
//!   exact scan; from then on an HNSW index (cosine) answers it, built once
//!   by whichever mount sees the volume cross the line.
//! - `search_claims`: which mount indexes which version of a file, with a
//!   lease, so that a file is embedded once cluster-wide.
//! - `search_counts`: documents and passages, kept in the same transactions.
//!
//! [`cluster_store`] pairs it with a store of the mount's own machine for
//! watched host directories.
//!
//! Writes take one advisory transaction lock, so change numbers are
//! committed in order and a mount that reads changes past its last number
//! misses none. Queries never run on a FUSE request thread: the index runs
//! them on its search workers and indexing thread.

mod schema;

use futures_util::future::try_join;
use magicfs_embed::DIM;
use magicfs_index::records::DocRecord;
use magicfs_index::split::SplitStore;
use magicfs_index::store::{EmbeddedStore, Hash, IndexStore};
use magicfs_index::vectors::Scored;
use magicfs_index::IndexError;
use magicfs_pg::{Pg, PgError};
use parking_lot::Mutex;
use pgvector::Vector;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use schema::{Hnsw, DEFAULT_HNSW, HNSW_FROM, MIGRATIONS};

/// The index store of a cluster mount: the volume's files in `pg`'s
/// database, shared with every mount of the volume, and this machine's
/// watched host directories in `local_dir/search.redb` (memory when `None`).
/// A cluster mount starts its index with
/// `Index::start_with(cfg, Some(fs), cluster_store(pg, cfg.data_dir.as_deref())?)`.
pub fn cluster_store(pg: Pg, local_dir: Option<&Path>) -> Result<Arc<dyn IndexStore>, IndexError> {
    let shared: Arc<dyn IndexStore> = Arc::new(PgIndexStore::open(pg)?);
    let local: Arc<dyn IndexStore> = match local_dir {
        Some(d) => Arc::new(EmbeddedStore::open(&d.join("search.redb"))?),
        None => Arc::new(EmbeddedStore::memory()),
    };
    Ok(Arc::new(SplitStore::new(shared, local)))
}

/// The advisory lock that orders the index's writes ("search" in ASCII).
const WRITE_LOCK: i64 = 0x7365_6172_6368;

fn err(e: PgError) -> IndexError {
    IndexError::Store(e.to_string())
}

/// The index of a cluster volume in its PostgreSQL database.
pub struct PgIndexStore {
    pg: Pg,
    /// Names this handle in claims.
    holder: String,
    /// Model and chunker of the searchable records (set by `load`).
    current: Mutex<(String, String)>,
    /// Last change number seen.
    cursor: Mutex<i64>,
    /// Documents and passages, refreshed with the changes (never read on a request).
    counts: Mutex<(usize, usize)>,
    /// True once the HNSW index is known to exist.
    hnsw: Mutex<bool>,
    opts: PgIndexOptions,
    /// Candidates of an HNSW scan (starts as `opts.hnsw.ef_search`).
    ef_search: AtomicU32,
}

/// Settings of a [`PgIndexStore`].
#[derive(Clone, Copy, Debug)]
pub struct PgIndexOptions {
    /// Passages from which the HNSW index is built (`usize::MAX`: only by [`PgIndexStore::build_hnsw`]).
    pub hnsw_from: usize,
    /// The HNSW index's settings.
    pub hnsw: Hnsw,
}

impl Default for PgIndexOptions {
    fn default() -> Self {
        PgIndexOptions { hnsw_from: HNSW_FROM, hnsw: DEFAULT_HNSW }
    }
}

/// A record as stored: without its texts (they are in the passages).
fn record_json(rec: &DocRecord) -> Result<String, IndexError> {
    let mut bare = rec.clone();
    bare.texts.clear();
    serde_json::to_string(&bare).map_err(|e| IndexError::Store(format!("encode record: {e}")))
}

fn record_of(json: &str, texts: Option<Vec<String>>) -> Option<DocRecord> {
    let mut rec: DocRecord = serde_json::from_str(json).ok()?;
    rec.texts = texts.unwrap_or_default();
    Some(rec)
}

/// One document to write: key, record, vectors.
pub type Put<'a> = (&'a str, &'a DocRecord, &'a [f32]);

impl PgIndexStore {
    /// Opens the index of the volume in `pg`'s database, creating its tables
    /// (and the `vector` extension) if missing.
    pub fn open(pg: Pg) -> Result<PgIndexStore, IndexError> {
        PgIndexStore::open_with(pg, PgIndexOptions::default())
    }

    /// [`PgIndexStore::open`] with other settings (benchmarks choose the HNSW parameters).
    pub fn open_with(pg: Pg, opts: PgIndexOptions) -> Result<PgIndexStore, IndexError> {
        pg.migrate("search", MIGRATIONS).map_err(err)?;
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let store = PgIndexStore {
            pg,
            holder: format!("{}:{}:{nanos:x}", host.trim(), std::process::id()),
            current: Mutex::default(),
            cursor: Mutex::new(0),
            counts: Mutex::new((0, 0)),
            hnsw: Mutex::new(false),
            ef_search: AtomicU32::new(opts.hnsw.ef_search),
            opts,
        };
        store.refresh_counts()?;
        Ok(store)
    }

    /// The database handle.
    pub fn pg(&self) -> &Pg {
        &self.pg
    }

    fn refresh_counts(&self) -> Result<(), IndexError> {
        let (docs, passages) = self
            .pg
            .run(|c| {
                Box::pin(async move {
                    let r = c.query_one("SELECT docs, passages FROM search_counts", &[]).await?;
                    Ok((r.get::<_, i64>(0), r.get::<_, i64>(1)))
                })
            })
            .map_err(err)?;
        *self.counts.lock() = (docs.max(0) as usize, passages.max(0) as usize);
        Ok(())
    }

    /// Writes several documents in one transaction (a bulk load: the
    /// benchmark, an import). Same rules as [`IndexStore::put`].
    pub fn put_many(&self, docs: &[Put<'_>]) -> Result<(), IndexError> {
        let mut rows = Rows::default();
        for (key, rec, vectors) in docs {
            rows.add(key, rec, vectors)?;
        }
        let (model, chunker) = (rows.model.clone(), rows.chunker.clone());
        let holder = self.holder.clone();
        let added = self
            .pg
            .run(|c| {
                let (rows, holder) = (rows.clone(), holder.clone());
                let (model, chunker) = (model.clone(), chunker.clone());
                Box::pin(async move {
                    let tx = c.transaction().await?;
                    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK]).await?;
                    // A record is dropped when it is older than the stored one, or
                    // when another mount has claimed the file since this one did:
                    // that mount read a later view of it (a size at the same mtime,
                    // say) and its record is the one to keep.
                    let written = tx
                        .query(
                            "INSERT INTO search_docs AS d (key, seq, removed, record, size, mtime_ns)
                             SELECT k, nextval('search_seq'), false, r::jsonb, s, m
                             FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[]) AS t(k, r, s, m)
                             WHERE NOT EXISTS (SELECT 1 FROM search_claims c WHERE c.key = t.k AND c.holder <> $5)
                             ON CONFLICT (key) DO UPDATE SET seq = EXCLUDED.seq, removed = false,
                                record = EXCLUDED.record, size = EXCLUDED.size, mtime_ns = EXCLUDED.mtime_ns
                             WHERE d.removed OR d.mtime_ns <= EXCLUDED.mtime_ns
                             RETURNING key",
                            &[&rows.keys, &rows.records, &rows.sizes, &rows.mtimes, &holder],
                        )
                        .await?;
                    let written: Vec<String> = written.iter().map(|r| r.get(0)).collect();
                    let gone = tx
                        .execute("DELETE FROM search_passages WHERE key = ANY($1)", &[&written])
                        .await? as i64;
                    let added = tx
                        .execute(
                            "INSERT INTO search_passages (key, idx, hash, text, model, chunker, embedding)
                             SELECT k, i, h, t, $6, $7, e
                             FROM unnest($1::text[], $2::int4[], $3::bytea[], $4::text[], $5::vector[]) AS u(k, i, h, t, e)
                             WHERE k = ANY($8)",
                            &[&rows.p_keys, &rows.p_idx, &rows.p_hash, &rows.p_text, &rows.p_vec, &model, &chunker, &written],
                        )
                        .await? as i64;
                    tx.execute(
                        "UPDATE search_counts SET passages = passages + $1 - $2,
                            docs = (SELECT count(*) FROM search_docs WHERE NOT removed)",
                        &[&added, &gone],
                    )
                    .await?;
                    tx.execute(
                        "UPDATE search_claims SET done = true WHERE key = ANY($1) AND holder = $2",
                        &[&written, &holder],
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(added)
                })
            })
            .map_err(err)?;
        {
            let mut c = self.counts.lock();
            c.1 = c.1.saturating_add(added.max(0) as usize);
        }
        self.refresh_counts()?;
        self.maybe_build_hnsw()
    }

    /// Builds the HNSW index once the volume has [`HNSW_FROM`] passages.
    fn maybe_build_hnsw(&self) -> Result<(), IndexError> {
        if *self.hnsw.lock() || self.counts.lock().1 < self.opts.hnsw_from {
            return Ok(());
        }
        self.build_hnsw()
    }

    /// Builds the HNSW index now if it is missing (one mount does it; the others find it there),
    /// and refreshes the table's statistics so that queries use it.
    pub fn build_hnsw(&self) -> Result<(), IndexError> {
        log::info!("search index: building the HNSW index of {} passages ({:?})", self.counts.lock().1, self.opts.hnsw);
        let sql = self.opts.hnsw.create_sql();
        self.pg
            .run(|c| {
                let sql = sql.clone();
                Box::pin(async move {
                    // CREATE INDEX CONCURRENTLY runs outside a transaction, on this connection.
                    c.batch_execute(schema::HNSW_MEMORY).await?;
                    c.batch_execute(&sql).await?;
                    // Fresh statistics: without them the planner takes the model
                    // filter for a selective one and scans the table instead.
                    c.batch_execute("ANALYZE search_passages").await
                })
            })
            .map_err(err)?;
        *self.hnsw.lock() = true;
        Ok(())
    }

    /// Sets the candidates an HNSW scan keeps from the next query on (recall against speed).
    pub fn set_ef_search(&self, ef_search: u32) {
        self.ef_search.store(ef_search.max(1), Ordering::Relaxed);
    }

    /// True when the HNSW index exists.
    pub fn has_hnsw(&self) -> Result<bool, IndexError> {
        self.pg
            .run(|c| {
                Box::pin(async move {
                    let r =
                        c.query_opt("SELECT 1 FROM pg_indexes WHERE indexname = 'search_passages_hnsw'", &[]).await?;
                    Ok(r.is_some())
                })
            })
            .map_err(err)
    }
}

/// Column arrays of a write.
#[derive(Clone, Default)]
struct Rows {
    model: String,
    chunker: String,
    keys: Vec<String>,
    records: Vec<String>,
    sizes: Vec<i64>,
    mtimes: Vec<i64>,
    p_keys: Vec<String>,
    p_idx: Vec<i32>,
    p_hash: Vec<Vec<u8>>,
    p_text: Vec<String>,
    p_vec: Vec<Vector>,
}

impl Rows {
    fn add(&mut self, key: &str, rec: &DocRecord, vectors: &[f32]) -> Result<(), IndexError> {
        let bad = |m: String| IndexError::Store(format!("{key}: {m}"));
        if rec.hashes.len() != rec.texts.len() || rec.hashes.len() * DIM != vectors.len() {
            return Err(bad(format!(
                "{} passages, {} texts and {} vector values",
                rec.hashes.len(),
                rec.texts.len(),
                vectors.len()
            )));
        }
        if !self.keys.is_empty() && (self.model != rec.model || self.chunker != rec.chunker) {
            return Err(bad("one write holds records of one model and chunker".into()));
        }
        self.model.clone_from(&rec.model);
        self.chunker.clone_from(&rec.chunker);
        for (i, (h, t)) in rec.hashes.iter().zip(&rec.texts).enumerate() {
            let h = magicfs_index::store::unhex(h).ok_or_else(|| bad("malformed passage hash".into()))?;
            self.p_keys.push(key.to_string());
            self.p_idx.push(i as i32);
            self.p_hash.push(h.to_vec());
            self.p_text.push(t.clone());
            self.p_vec.push(Vector::from(vectors[i * DIM..(i + 1) * DIM].to_vec()));
        }
        self.keys.push(key.to_string());
        self.records.push(record_json(rec)?);
        self.sizes.push(rec.size as i64);
        self.mtimes.push(rec.mtime_ns);
        Ok(())
    }
}

/// The best passage per document from rows of (key, idx, score), best first.
fn best_per_doc(rows: impl IntoIterator<Item = (String, i32, f64)>, k: usize, min: f32) -> Vec<Scored> {
    let mut out: Vec<Scored> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (key, idx, score) in rows {
        let score = score as f32;
        if score < min || out.len() >= k {
            break;
        }
        if seen.insert(key.clone()) {
            out.push(Scored { key, score, passage: idx.max(0) as usize });
        }
    }
    out
}

impl IndexStore for PgIndexStore {
    fn describe(&self) -> String {
        format!("postgres {}", self.pg.url())
    }

    fn load(&self, model: &str, chunker: &str, each: &mut dyn FnMut(&str, &DocRecord, bool)) -> Result<(), IndexError> {
        *self.current.lock() = (model.to_string(), chunker.to_string());
        let (model, chunker) = (model.to_string(), chunker.to_string());
        let (cursor, rows) = self
            .pg
            .run(|c| {
                Box::pin(async move {
                    let tx = c.build_transaction().isolation_level(magicfs_pg::tokio_postgres::IsolationLevel::RepeatableRead).start().await?;
                    let cursor: i64 = tx.query_one("SELECT coalesce(max(seq), 0) FROM search_docs", &[]).await?.get(0);
                    let rows = tx
                        .query(
                            "SELECT d.key, d.record::text,
                                (SELECT array_agg(p.text ORDER BY p.idx) FROM search_passages p WHERE p.key = d.key),
                                (SELECT count(*) FROM search_passages p WHERE p.key = d.key AND p.model = d.record->>'model')
                             FROM search_docs d WHERE NOT d.removed",
                            &[],
                        )
                        .await?;
                    tx.commit().await?;
                    let rows: Vec<(String, String, Option<Vec<String>>, i64)> =
                        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
                    Ok((cursor, rows))
                })
            })
            .map_err(err)?;
        *self.cursor.lock() = cursor;
        for (key, json, texts, with_vectors) in rows {
            let Some(rec) = record_of(&json, texts) else {
                log::warn!("search index: an undecodable record for {key} is re-indexed");
                continue;
            };
            let searchable = rec.model == model
                && rec.chunker == chunker
                && rec.texts.len() == rec.hashes.len()
                && with_vectors as usize == rec.hashes.len();
            each(&key, &rec, searchable);
        }
        self.refresh_counts()?;
        *self.hnsw.lock() = self.has_hnsw()?;
        self.maybe_build_hnsw()
    }

    fn put(&self, key: &str, rec: &DocRecord, vectors: &[f32]) -> Result<(), IndexError> {
        self.put_many(&[(key, rec, vectors)])
    }

    fn remove(&self, keys: &[String]) -> Result<(), IndexError> {
        if keys.is_empty() {
            return Ok(());
        }
        let keys = keys.to_vec();
        self.pg
            .run(|c| {
                let keys = keys.clone();
                Box::pin(async move {
                    let tx = c.transaction().await?;
                    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK]).await?;
                    let gone = tx.execute("DELETE FROM search_passages WHERE key = ANY($1)", &[&keys]).await? as i64;
                    tx.execute(
                        "UPDATE search_docs SET removed = true, seq = nextval('search_seq'), record = 'null', removed_at = now()
                         WHERE key = ANY($1) AND NOT removed",
                        &[&keys],
                    )
                    .await?;
                    tx.execute(
                        "UPDATE search_counts SET passages = passages - $1,
                            docs = (SELECT count(*) FROM search_docs WHERE NOT removed)",
                        &[&gone],
                    )
                    .await?;
                    tx.execute("DELETE FROM search_claims WHERE key = ANY($1)", &[&keys]).await?;
                    // Removals are kept for the other mounts a while, then trimmed.
                    tx.execute(
                        "DELETE FROM search_docs WHERE removed AND removed_at < now() - interval '10 minutes'",
                        &[],
                    )
                    .await?;
                    tx.commit().await
                })
            })
            .map_err(err)?;
        self.refresh_counts()
    }

    fn nearest(&self, query: &[f32], k: usize, min: f32) -> Result<Vec<Scored>, IndexError> {
        if k == 0 {
            return Ok(Vec::new());
        }
        let (model, chunker) = self.current.lock().clone();
        let q = Vector::from(query.to_vec());
        // Passages, not documents, come back: ask for enough that k documents do.
        let limit = (k * 4).max(40) as i64;
        let ef_search = self.ef_search.load(Ordering::Relaxed);
        let session = Hnsw { ef_search, ..self.opts.hnsw }.session_sql();
        let mut rows = self
            .pg
            .run(|c| {
                let (q, model, chunker, session) = (q.clone(), model.clone(), chunker.clone(), session.clone());
                Box::pin(async move {
                    // The HNSW settings go with the query in one round trip
                    // (pipelined), whichever pooled connection answers.
                    // Before `load` named the current model, every record is searchable.
                    let rows = if model.is_empty() {
                        let st = c
                            .prepare_cached(
                                "SELECT key, idx, 1 - (embedding <=> $1) FROM search_passages
                                 ORDER BY embedding <=> $1 LIMIT $2",
                            )
                            .await?;
                        try_join(c.batch_execute(&session), c.query(&st, &[&q, &limit])).await?.1
                    } else {
                        let st = c
                            .prepare_cached(
                                "SELECT key, idx, 1 - (embedding <=> $1) FROM search_passages
                                 WHERE model = $2 AND chunker = $3
                                 ORDER BY embedding <=> $1 LIMIT $4",
                            )
                            .await?;
                        try_join(c.batch_execute(&session), c.query(&st, &[&q, &model, &chunker, &limit])).await?.1
                    };
                    Ok(rows
                        .iter()
                        .map(|r| (r.get::<_, String>(0), r.get::<_, i32>(1), r.get::<_, f64>(2)))
                        .collect::<Vec<_>>())
                })
            })
            .map_err(err)?;
        // An iterative scan returns rows nearly, not exactly, in order.
        rows.sort_by(|a, b| b.2.total_cmp(&a.2));
        Ok(best_per_doc(rows, k, min))
    }

    fn best_of(&self, keys: &[String], query: &[f32]) -> Result<Vec<Scored>, IndexError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let (model, chunker) = self.current.lock().clone();
        let q = Vector::from(query.to_vec());
        let keys = keys.to_vec();
        let rows = self
            .pg
            .run(|c| {
                let (q, model, chunker, keys) = (q.clone(), model.clone(), chunker.clone(), keys.clone());
                Box::pin(async move {
                    let rows = c
                        .query(
                            "SELECT DISTINCT ON (key) key, idx, 1 - (embedding <=> $1) FROM search_passages
                             WHERE key = ANY($2) AND ($3 = '' OR (model = $3 AND chunker = $4))
                             ORDER BY key, embedding <=> $1",
                            &[&q, &keys, &model, &chunker],
                        )
                        .await?;
                    Ok(rows
                        .iter()
                        .map(|r| (r.get::<_, String>(0), r.get::<_, i32>(1), r.get::<_, f64>(2)))
                        .collect::<Vec<_>>())
                })
            })
            .map_err(err)?;
        Ok(rows
            .into_iter()
            .map(|(key, idx, s)| Scored { key, score: s as f32, passage: idx.max(0) as usize })
            .collect())
    }

    fn texts(&self, key: &str) -> Result<Option<Vec<String>>, IndexError> {
        let key = key.to_string();
        self.pg
            .run(|c| {
                let key = key.clone();
                Box::pin(async move {
                    let r = c
                        .query_opt(
                            "SELECT coalesce((SELECT array_agg(p.text ORDER BY p.idx) FROM search_passages p WHERE p.key = d.key), '{}')
                             FROM search_docs d WHERE d.key = $1 AND NOT d.removed",
                            &[&key],
                        )
                        .await?;
                    Ok(r.map(|r| r.get::<_, Vec<String>>(0)))
                })
            })
            .map_err(err)
    }

    fn passage_texts(&self, wanted: &[(String, usize)]) -> Result<Vec<Option<String>>, IndexError> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = wanted.iter().map(|w| w.0.clone()).collect();
        let idx: Vec<i32> = wanted.iter().map(|w| w.1 as i32).collect();
        let found = self
            .pg
            .run(|c| {
                let (keys, idx) = (keys.clone(), idx.clone());
                Box::pin(async move {
                    let rows = c
                        .query(
                            "SELECT p.key, p.idx, p.text FROM search_passages p
                             JOIN unnest($1::text[], $2::int4[]) AS w(k, i) ON p.key = w.k AND p.idx = w.i",
                            &[&keys, &idx],
                        )
                        .await?;
                    Ok(rows
                        .iter()
                        .map(|r| ((r.get::<_, String>(0), r.get::<_, i32>(1)), r.get::<_, String>(2)))
                        .collect::<HashMap<_, _>>())
                })
            })
            .map_err(err)?;
        Ok(wanted.iter().map(|(k, i)| found.get(&(k.clone(), *i as i32)).cloned()).collect())
    }

    fn vectors(&self, key: &str) -> Result<HashMap<Hash, Vec<f32>>, IndexError> {
        let key = key.to_string();
        let rows = self
            .pg
            .run(|c| {
                let key = key.clone();
                Box::pin(async move {
                    let rows = c.query("SELECT hash, embedding FROM search_passages WHERE key = $1", &[&key]).await?;
                    Ok(rows.iter().map(|r| (r.get::<_, Vec<u8>>(0), r.get::<_, Vector>(1))).collect::<Vec<_>>())
                })
            })
            .map_err(err)?;
        Ok(rows
            .into_iter()
            .filter_map(|(h, v)| {
                let h: Hash = h.try_into().ok()?;
                Some((h, v.to_vec()))
            })
            .collect())
    }

    fn counts(&self) -> (usize, usize) {
        *self.counts.lock()
    }

    fn sync(&self) -> Result<(), IndexError> {
        // Every write is a committed transaction.
        Ok(())
    }

    fn claim(&self, key: &str, version: &str, lease: Duration) -> Result<bool, IndexError> {
        let (key, version, holder) = (key.to_string(), version.to_string(), self.holder.clone());
        let ms = lease.as_millis().min(i64::MAX as u128) as i64;
        self.pg
            .run(|c| {
                let (key, version, holder) = (key.clone(), version.clone(), holder.clone());
                Box::pin(async move {
                    let r = c
                        .query_opt(
                            "INSERT INTO search_claims AS c (key, version, holder, until, done)
                             VALUES ($1, $2, $3, now() + $4 * interval '1 millisecond', false)
                             ON CONFLICT (key) DO UPDATE SET version = EXCLUDED.version, holder = EXCLUDED.holder,
                                until = EXCLUDED.until, done = false
                             WHERE c.version <> EXCLUDED.version
                                OR (NOT c.done AND (c.until < now() OR c.holder = EXCLUDED.holder))
                             RETURNING 1",
                            &[&key, &version, &holder, &(ms as f64)],
                        )
                        .await?;
                    Ok(r.is_some())
                })
            })
            .map_err(err)
    }

    fn changes(&self) -> Result<Vec<(String, Option<DocRecord>)>, IndexError> {
        let since = *self.cursor.lock();
        let rows = self
            .pg
            .run(|c| {
                Box::pin(async move {
                    let rows = c
                        .query(
                            "SELECT d.seq, d.key, d.removed, d.record::text,
                                (SELECT array_agg(p.text ORDER BY p.idx) FROM search_passages p WHERE p.key = d.key)
                             FROM search_docs d WHERE d.seq > $1 ORDER BY d.seq LIMIT 10000",
                            &[&since],
                        )
                        .await?;
                    Ok(rows
                        .iter()
                        .map(|r| {
                            (
                                r.get::<_, i64>(0),
                                r.get::<_, String>(1),
                                r.get::<_, bool>(2),
                                r.get::<_, String>(3),
                                r.get::<_, Option<Vec<String>>>(4),
                            )
                        })
                        .collect::<Vec<_>>())
                })
            })
            .map_err(err)?;
        let mut out = Vec::with_capacity(rows.len());
        let mut last = since;
        for (seq, key, removed, json, texts) in rows {
            last = last.max(seq);
            out.push((key, if removed { None } else { record_of(&json, texts) }));
        }
        *self.cursor.lock() = last;
        if !out.is_empty() {
            self.refresh_counts()?;
            self.maybe_build_hnsw()?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_passage_per_document_in_order() {
        let rows = vec![
            ("a".to_string(), 2, 0.9),
            ("a".to_string(), 0, 0.8),
            ("b".to_string(), 1, 0.7),
            ("c".to_string(), 0, 0.1),
        ];
        let r = best_per_doc(rows.clone(), 10, 0.5);
        assert_eq!(r.iter().map(|s| (s.key.as_str(), s.passage)).collect::<Vec<_>>(), [("a", 2), ("b", 1)]);
        assert_eq!(best_per_doc(rows, 1, -1.0).len(), 1);
    }
}
