//! `magicfs bench-search --phases scale`: search at a million passages, the
//! PostgreSQL store of a cluster volume (pgvector) against the embedded
//! store's scan (the default: an int8 pre-scan and an exact re-rank over
//! all cores), on the same passages and the same queries in the same run.
//!
//! Each store answers the call a query makes (`nearest`, 50 documents deep
//! as the fusion asks); the figures are its p50 and p99 latency and its
//! recall@10 against a brute-force f32 scan. PostgreSQL is measured before
//! its HNSW index exists (an exact scan), then with the index at each
//! `ef_search` asked for; the index is built once and its build time and
//! size are reported.
//!
//! The passages stand in for embedded text: `--scale-bases` sentences are
//! embedded by the model; each passage mixes two of them (a + w·b, w in
//! [0, 1)) with uniform noise, normalised. Ten passages make a document and
//! share its first sentence (a document's passages are about one thing).
//! The queries are other sentences embedded by the model.

use crate::cli::BenchSearchArgs;
use crate::cmd::bench_search::{pct, sentence};
use anyhow::anyhow;
use magicfs_embed::{Embedder, DIM};
use magicfs_index::records::DocRecord;
use magicfs_index::store::{EmbeddedStore, IndexStore};
use magicfs_index_pg::{Hnsw, PgIndexOptions, PgIndexStore};
use magicfs_pg::{Pg, PgOptions, PgUrl};
use magicfs_types::noise::XorShift64;
use std::time::Instant;

/// Passages per document.
const PER_DOC: usize = 10;
/// Documents a query asks the store for (the fusion's depth).
const DEPTH: usize = 50;
/// Documents the recall is measured on.
const RECALL_AT: usize = 10;
/// Documents written per transaction while loading PostgreSQL.
const LOAD_BATCH: usize = 200;
/// Queries of PostgreSQL's exact scan (each reads the whole table).
const EXACT_QUERIES: usize = 10;
/// The database the phase creates (and drops, unless `--keep-db`).
const DB: &str = "magicfs_bench_scale";
/// Model id and chunker recorded with the passages.
const CHUNKER: &str = "bench-scale";

/// The synthetic corpus: regenerated, identically, for each consumer.
struct Corpus {
    bases: Vec<[f32; DIM]>,
    texts: Vec<String>,
    docs: usize,
    model: String,
}

impl Corpus {
    /// The passages (row-major vectors) and texts of document `d`.
    fn doc(&self, d: usize) -> (Vec<f32>, Vec<String>) {
        let mut r = XorShift64::new(0x5ca1e ^ (d as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let first = r.below(self.bases.len() as u64) as usize;
        let mut vecs = Vec::with_capacity(PER_DOC * DIM);
        let mut texts = Vec::with_capacity(PER_DOC);
        for p in 0..PER_DOC {
            let second = r.below(self.bases.len() as u64) as usize;
            let w = r.unit();
            let (a, b) = (&self.bases[first], &self.bases[second]);
            let mut v: Vec<f32> = (0..DIM).map(|i| a[i] + w * b[i] + 0.08 * (r.unit() - 0.5)).collect();
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter_mut().for_each(|x| *x /= n);
            vecs.extend_from_slice(&v);
            texts.push(format!("{} ({p}) {}", self.texts[first], self.texts[second]));
        }
        (vecs, texts)
    }

    fn key(d: usize) -> String {
        format!("m/{}", d + 1)
    }

    fn record(&self, d: usize, texts: Vec<String>) -> DocRecord {
        DocRecord {
            model: self.model.clone(),
            chunker: CHUNKER.into(),
            size: 0,
            mtime_ns: 0,
            skipped: None,
            // Distinct per passage (the stores key nothing on them here).
            hashes: (0..texts.len()).map(|i| format!("{d:032x}{i:032x}")).collect(),
            texts,
            name: String::new(),
        }
    }
}

/// The best `RECALL_AT` documents of each query by a brute-force f32 scan.
fn exact_top(corpus: &Corpus, queries: &[[f32; DIM]], threads: usize) -> Vec<Vec<usize>> {
    let per = queries.len().div_ceil(threads.max(1));
    let parts: Vec<Vec<Vec<usize>>> = std::thread::scope(|s| {
        let handles: Vec<_> = queries
            .chunks(per.max(1))
            .map(|qs| {
                s.spawn(move || {
                    // Per query: (score, doc) of the best documents so far, worst first.
                    let mut best: Vec<Vec<(f32, usize)>> = vec![Vec::with_capacity(RECALL_AT + 1); qs.len()];
                    for d in 0..corpus.docs {
                        let (vecs, _) = corpus.doc(d);
                        for (qi, q) in qs.iter().enumerate() {
                            let score = vecs
                                .chunks_exact(DIM)
                                .map(|v| v.iter().zip(q).map(|(a, b)| a * b).sum::<f32>())
                                .fold(f32::MIN, f32::max);
                            let b = &mut best[qi];
                            if b.len() < RECALL_AT || score > b[0].0 {
                                b.push((score, d));
                                b.sort_by(|x, y| x.0.total_cmp(&y.0));
                                if b.len() > RECALL_AT {
                                    b.remove(0);
                                }
                            }
                        }
                    }
                    best.into_iter().map(|b| b.into_iter().rev().map(|(_, d)| d).collect()).collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    parts.into_iter().flatten().collect()
}

/// Share of the exact top documents a store's answers found.
fn recall(answers: &[Vec<String>], exact: &[Vec<usize>]) -> f64 {
    let mut hit = 0usize;
    let mut all = 0usize;
    for (got, want) in answers.iter().zip(exact) {
        let got: std::collections::HashSet<&str> = got.iter().take(RECALL_AT).map(String::as_str).collect();
        hit += want.iter().filter(|d| got.contains(Corpus::key(**d).as_str())).count();
        all += want.len();
    }
    hit as f64 / all.max(1) as f64
}

/// Runs every query through `store`: latency p50 and p99 (ms) and the keys found.
fn measure(store: &dyn IndexStore, queries: &[[f32; DIM]]) -> anyhow::Result<(f64, f64, Vec<Vec<String>>)> {
    store.nearest(&queries[0], DEPTH, -1.0).map_err(|e| anyhow!("{e}"))?;
    let mut lat = Vec::with_capacity(queries.len());
    let mut found = Vec::with_capacity(queries.len());
    for q in queries {
        let t = Instant::now();
        let r = store.nearest(q, DEPTH, -1.0).map_err(|e| anyhow!("{e}"))?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        found.push(r.into_iter().map(|s| s.key).collect());
    }
    Ok((pct(&mut lat, 0.5), pct(&mut lat, 0.99), found))
}

fn pg_url(a: &BenchSearchArgs) -> anyhow::Result<PgUrl> {
    let admin = match &a.pg {
        Some(u) => u.clone(),
        None => magicfs_pg::testing::services().pg_admin.clone(),
    };
    admin.parse().map_err(|e| anyhow!("--pg: {e}"))
}

fn connect(url: &PgUrl) -> anyhow::Result<Pg> {
    Pg::connect(url, PgOptions { max_connections: 2, threads: 1, ..PgOptions::default() }).map_err(|e| anyhow!("{e}"))
}

fn scalar(pg: &Pg, sql: &str) -> anyhow::Result<Option<String>> {
    let sql = sql.to_string();
    pg.run(|c| {
        let sql = sql.clone();
        Box::pin(async move {
            let rows = c.simple_query(&sql).await?;
            Ok(rows.into_iter().find_map(|m| match m {
                magicfs_pg::tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            }))
        })
    })
    .map_err(|e| anyhow!("{e}"))
}

pub fn run(a: &BenchSearchArgs, emb: &Embedder, threads: usize) -> anyhow::Result<()> {
    let docs = a.scale_passages.div_ceil(PER_DOC).max(1);
    let hnsw = Hnsw {
        m: a.hnsw_m,
        ef_construction: a.hnsw_ef_construction,
        ef_search: magicfs_index_pg::DEFAULT_HNSW.ef_search,
    };
    println!(
        "\n## Search at scale: {} passages ({docs} documents of {PER_DOC}), {} queries, {} bases",
        docs * PER_DOC,
        a.queries,
        a.scale_bases
    );

    // The bases and the queries: sentences embedded by the model.
    let t = Instant::now();
    let mut rng = XorShift64::new(0x00b1_5ca1);
    let texts: Vec<String> = (0..a.scale_bases.max(2)).map(|_| sentence(&mut rng)).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let bases = emb.embed(&refs, threads);
    let qtexts: Vec<String> = (0..a.queries.max(1)).map(|_| sentence(&mut rng)).collect();
    let qrefs: Vec<&str> = qtexts.iter().map(String::as_str).collect();
    let queries = emb.embed(&qrefs, threads);
    let corpus = Corpus { bases, texts, docs, model: emb.model_id().to_string() };
    println!(
        "embedded {} bases and {} queries in {:.1} s",
        corpus.bases.len(),
        queries.len(),
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let exact = exact_top(&corpus, &queries, threads);
    println!("brute-force top {RECALL_AT} of every query in {:.1} s", t.elapsed().as_secs_f64());

    let mut table = vec![
        format!("| store | build | p50 ms | p99 ms | recall@{RECALL_AT} |"),
        "|---|---:|---:|---:|---:|".to_string(),
    ];

    // 1. The embedded store: today's scan.
    {
        let store = EmbeddedStore::memory();
        let t = Instant::now();
        for d in 0..docs {
            let (vecs, texts) = corpus.doc(d);
            store.put(&Corpus::key(d), &corpus.record(d, texts), &vecs).map_err(|e| anyhow!("{e}"))?;
        }
        let fill = t.elapsed().as_secs_f64();
        let (p50, p99, found) = measure(&store, &queries)?;
        table.push(format!(
            "| embedded: int8 pre-scan + exact re-rank, {threads} cores | fill {fill:.0} s | {p50:.2} | {p99:.2} | {:.3} |",
            recall(&found, &exact)
        ));
        println!("{}", table.last().map_or("", String::as_str));
    }

    // 2. PostgreSQL with pgvector.
    let admin = pg_url(a)?;
    let admin_pg = connect(&admin)?;
    let exists = scalar(&admin_pg, &format!("SELECT 1 FROM pg_database WHERE datname = '{DB}'"))?.is_some();
    if exists && !a.keep_db {
        admin_pg.execute_batch(&format!("DROP DATABASE {DB} WITH (FORCE)")).map_err(|e| anyhow!("{e}"))?;
    }
    if !exists || !a.keep_db {
        admin_pg.execute_batch(&format!("CREATE DATABASE {DB}")).map_err(|e| anyhow!("{e}"))?;
    }
    let opts = PgIndexOptions { hnsw_from: usize::MAX, hnsw };
    let store = PgIndexStore::open_with(connect(&admin.with_dbname(DB))?, opts).map_err(|e| anyhow!("{e}"))?;
    let have = store.counts().1;
    let load = if have == docs * PER_DOC {
        println!("(reusing the {have} passages of database {DB})");
        "reused".to_string()
    } else {
        if have != 0 {
            return Err(anyhow!("database {DB} holds {have} passages, not {}: run without --keep-db", docs * PER_DOC));
        }
        let t = Instant::now();
        let mut d = 0;
        while d < docs {
            let batch: Vec<(String, DocRecord, Vec<f32>)> = (d..(d + LOAD_BATCH).min(docs))
                .map(|d| {
                    let (vecs, texts) = corpus.doc(d);
                    (Corpus::key(d), corpus.record(d, texts), vecs)
                })
                .collect();
            let puts: Vec<magicfs_index_pg::Put<'_>> =
                batch.iter().map(|(k, r, v)| (k.as_str(), r, v.as_slice())).collect();
            store.put_many(&puts).map_err(|e| anyhow!("{e}"))?;
            d += batch.len();
            if d % (LOAD_BATCH * 50) == 0 {
                eprintln!("  loaded {} passages in {:.0} s", d * PER_DOC, t.elapsed().as_secs_f64());
            }
        }
        format!("put_many {:.0} s", t.elapsed().as_secs_f64())
    };
    // The queries run as a mount runs them, after `load` named the model.
    let t = Instant::now();
    store.load(&corpus.model, CHUNKER, &mut |_, _, _| {}).map_err(|e| anyhow!("{e}"))?;
    println!("load (a mount's start) of {} documents: {:.1} s", store.counts().0, t.elapsed().as_secs_f64());
    let size = |what: &str| -> anyhow::Result<String> {
        Ok(scalar(store.pg(), &format!("SELECT pg_size_pretty(pg_relation_size('{what}'))"))?.unwrap_or_default())
    };
    let build = if !store.has_hnsw().map_err(|e| anyhow!("{e}"))? {
        let few = &queries[..EXACT_QUERIES.min(queries.len())];
        let (p50, p99, found) = measure(&store, few)?;
        table.push(format!(
            "| PostgreSQL exact scan (no index; {} queries; table {}) | {load} | {p50:.2} | {p99:.2} | {:.3} |",
            few.len(),
            size("search_passages")?,
            recall(&found, &exact[..few.len()])
        ));
        println!("{}", table.last().map_or("", String::as_str));
        let t = Instant::now();
        store.build_hnsw().map_err(|e| anyhow!("{e}"))?;
        format!("HNSW {:.0} s, {}", t.elapsed().as_secs_f64(), size("search_passages_hnsw")?)
    } else {
        // Present: only the statistics are refreshed.
        store.build_hnsw().map_err(|e| anyhow!("{e}"))?;
        let opts = scalar(
            store.pg(),
            "SELECT array_to_string(reloptions, ',') FROM pg_class WHERE relname = 'search_passages_hnsw'",
        )?;
        format!("HNSW reused ({}), {}", opts.unwrap_or_default(), size("search_passages_hnsw")?)
    };
    for (i, &ef) in a.hnsw_ef_search.iter().enumerate() {
        store.set_ef_search(ef);
        let (p50, p99, found) = measure(&store, &queries)?;
        table.push(format!(
            "| PostgreSQL HNSW m={} ef_construction={} ef_search={ef} | {} | {p50:.2} | {p99:.2} | {:.3} |",
            hnsw.m,
            hnsw.ef_construction,
            if i == 0 { build.as_str() } else { "" },
            recall(&found, &exact)
        ));
        println!("{}", table.last().map_or("", String::as_str));
    }
    println!("\n{}", table.join("\n"));
    if !a.keep_db {
        admin_pg.execute_batch(&format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)")).map_err(|e| anyhow!("{e}"))?;
    }
    Ok(())
}
