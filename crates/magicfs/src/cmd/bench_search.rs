//! `magicfs bench-search`: the numbers behind BENCHMARKS.md's search section.
//!
//! 0. Relevance of each ranking on the relevance set (`bench_relevance.rs`).
//! 1. Embedding throughput (passages/s) of the in-process encoder, one and
//!    two threads, against the Python sentence-transformers encoder of the
//!    same model files on the same passages, in the same run.
//! 2. Query latency (model loaded, every query new: embed + exact scan +
//!    BM25 + fusion + result assembly) at several index sizes; the index is
//!    filled with real passages: their texts, and their vectors perturbed.
//! 3. Through a real mount: a repeated `ls search/<query>/` (result cache),
//!    and `stat` latency on ordinary files while four searches loop and an
//!    initial scan of a watched directory runs.
//! 4. At scale (asked for with `--phases scale`): PostgreSQL with pgvector
//!    against the embedded scan at a million passages (`bench_scale.rs`).

use crate::cli::BenchSearchArgs;
use anyhow::{anyhow, bail, Context};
use magicfs_core::{Fs, FsConfig};
use magicfs_embed::{Embedder, DIM};
use magicfs_fuse::{mount, MountOptions};
use magicfs_index::fusion::Ranking;
use magicfs_index::{Index, IndexConfig};
use magicfs_types::noise::XorShift64;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ST_SCRIPT: &str = include_str!("../../../../scripts/st_reference.py");

const WORDS: &[&str] = &[
    "the",
    "system",
    "file",
    "network",
    "memory",
    "process",
    "user",
    "data",
    "log",
    "rotate",
    "server",
    "client",
    "request",
    "cache",
    "disk",
    "kernel",
    "thread",
    "lock",
    "queue",
    "time",
    "error",
    "backup",
    "index",
    "search",
    "model",
    "garden",
    "river",
    "mountain",
    "recipe",
    "bread",
    "coffee",
    "music",
    "guitar",
    "history",
    "empire",
    "planet",
    "orbit",
    "energy",
    "battery",
    "engine",
    "bicycle",
    "train",
    "city",
    "market",
    "price",
    "trade",
    "language",
    "grammar",
    "poem",
    "novel",
    "chapter",
    "teacher",
    "student",
    "lesson",
    "health",
    "sleep",
    "heart",
    "exercise",
    "weather",
    "storm",
    "winter",
    "summer",
    "forest",
    "animal",
    "bird",
    "ocean",
    "fish",
    "boat",
    "and",
    "of",
    "to",
    "in",
    "is",
    "for",
    "with",
    "on",
    "that",
    "by",
    "this",
    "from",
    "are",
    "be",
    "or",
    "as",
    "when",
    "how",
    "why",
    "which",
    "every",
    "after",
    "before",
    "under",
    "between",
    "through",
    "without",
    "configure",
    "measure",
    "compress",
    "deliver",
    "explain",
    "remember",
    "protect",
    "travel",
    "build",
    "grow",
];

pub(crate) fn sentence(r: &mut XorShift64) -> String {
    let n = 8 + (r.next_u64() % 9) as usize;
    let mut s: Vec<&str> = (0..n).map(|_| WORDS[(r.next_u64() % WORDS.len() as u64) as usize]).collect();
    let first = s[0].to_string();
    let cap = first[..1].to_uppercase() + &first[1..];
    s[0] = &cap;
    format!("{}.", s.join(" "))
}

fn document(r: &mut XorShift64, sentences: usize) -> String {
    (0..sentences).map(|_| sentence(r)).collect::<Vec<_>>().join(" ")
}

pub(crate) fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn default_st_python() -> PathBuf {
    magicfs_types::dirs::cache_dir().join("st-venv/bin/python")
}

pub fn run(a: BenchSearchArgs) -> anyhow::Result<i32> {
    let model_dir = a.models.as_ref().map(|m| m.join("minilm")).unwrap_or_else(magicfs_embed::default_model_dir);
    let t = Instant::now();
    let emb = Embedder::load(&model_dir).map_err(|e| anyhow!("{e} (run scripts/models.sh)"))?;
    println!("model {} loaded in {} ms", emb.model_id(), t.elapsed().as_millis());
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("machine: {cpus} CPUs");
    let phase = |p: &str| a.phases.iter().any(|x| x == p);
    if phase("relevance") {
        crate::cmd::bench_relevance::run(&model_dir)?;
    }
    if phase("scale") {
        crate::cmd::bench_scale::run(&a, &emb, cpus)?;
    }
    if !(phase("throughput") || phase("latency") || phase("mount")) {
        return Ok(0);
    }

    // 1. Throughput.
    let mut rng = XorShift64::new(0x9e37_79b9_7f4a_7c15);
    let mut texts = Vec::new();
    while texts.len() < a.passages.max(8) {
        let doc = document(&mut rng, 40);
        for p in magicfs_index::passage::passages(emb.tokenizer(), &doc) {
            if texts.len() < a.passages.max(8) {
                texts.push(p.text);
            }
        }
    }
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| emb.tokenizer().encode(t, magicfs_embed::MAX_TOKENS)).collect();
    let mean_tokens = ids.iter().map(Vec::len).sum::<usize>() as f64 / ids.len() as f64;
    println!("\n## Embedding throughput: {} passages, {mean_tokens:.0} tokens each on average", ids.len());
    emb.embed_ids(&ids[..4], 2);
    let mut ours = Vec::new();
    let mut real_vectors = Vec::new();
    for threads in [1, 2] {
        if !phase("throughput") {
            real_vectors = emb.embed_ids(&ids, 2);
            break;
        }
        let t = Instant::now();
        let v = emb.embed_ids(&ids, threads);
        let s = t.elapsed().as_secs_f64();
        println!("magicfs-embed, {threads} thread(s): {:.1} passages/s ({s:.2} s)", ids.len() as f64 / s);
        ours.push((threads, ids.len() as f64 / s));
        real_vectors = v;
    }
    if !a.no_st && phase("throughput") {
        match sentence_transformers(&a, &model_dir, &texts) {
            Ok((rate, threads)) => {
                println!("sentence-transformers (torch, {threads} threads): {rate:.1} passages/s");
                for (t, r) in &ours {
                    println!("ratio magicfs-embed {t} thread(s) / sentence-transformers: {:.2}x", r / rate);
                }
            }
            Err(e) => println!("sentence-transformers: not measured: {e:#}"),
        }
    }

    // 2. Query latency.
    if phase("latency") {
        latency(&a, &model_dir, &texts, &real_vectors, &mut rng, cpus)?;
    }

    // 3. Through a real mount.
    if phase("mount") {
        mount_phase(&a, &model_dir)?;
    }
    Ok(0)
}

/// Identifiers spread over the latency phase's passages (`ERR-<n>`).
const IDENTS: usize = 1000;

fn latency(
    a: &BenchSearchArgs,
    model_dir: &Path,
    texts: &[String],
    real_vectors: &[[f32; DIM]],
    rng: &mut XorShift64,
    cpus: usize,
) -> anyhow::Result<()> {
    println!(
        "\n## Query latency (model loaded, each query new: embed + scan over {cpus} cores + BM25 + fusion + results)"
    );
    println!("Hybrid: the default ranking; meaning only: the ranking before BM25 (same queries, alternating).");
    println!(
        "| passages | hybrid p50 ms | hybrid p99 ms | meaning-only p50 ms | meaning-only p99 ms | hybrid/meaning p50 | vector scan p50 ms | BM25 p50 ms |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let index = Index::open(IndexConfig { model_dir: model_dir.to_path_buf(), ..IndexConfig::default() }, None)
        .map_err(|e| anyhow!("{e}"))?;
    index.embedder().map_err(|e| anyhow!("{e}"))?;
    let mut filled = 0usize;
    let mut doc = 0usize;
    let mut noise = XorShift64::new(42);
    let mut sizes = a.sizes.clone();
    sizes.sort_unstable();
    let mut qn = 0usize;
    for &size in &sizes {
        while filled < size {
            let n = 4.min(size - filled);
            let mut vecs = Vec::with_capacity(n * DIM);
            let mut ts = Vec::with_capacity(n);
            for j in 0..n {
                let base = &real_vectors[(filled + j) % real_vectors.len()];
                let mut v: Vec<f32> = base.iter().map(|x| x + 0.08 * (noise.unit() - 0.5)).collect();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter_mut().for_each(|x| *x /= norm);
                vecs.extend_from_slice(&v);
                // Every passage carries an identifier, shared by a few dozen
                // documents at 100k passages: the queries' exact terms find them.
                ts.push(format!("{} ERR-{}", texts[(filled + j) % texts.len()], doc % IDENTS));
            }
            index.insert_vectors(&format!("h/bench/doc{doc}.txt"), ts, &vecs).map_err(|e| anyhow!("{e}"))?;
            filled += n;
            doc += 1;
        }
        index.commit_words().map_err(|e| anyhow!("{e}"))?;
        let mut lat = Vec::new();
        let mut meaning = Vec::new();
        let mut scan = Vec::new();
        let mut words = Vec::new();
        let e = index.embedder().map_err(|e| anyhow!("{e}"))?;
        for i in 0..a.queries {
            let q = format!("{} {} ERR-{}", sentence(rng), WORDS[qn % WORDS.len()], qn % IDENTS);
            qn += 1;
            // Alternate which ranking runs first, so neither gains from warm caches.
            let mut hybrid = || -> anyhow::Result<()> {
                let t = Instant::now();
                let r = index.search(&q, 20, -1.0).map_err(|e| anyhow!("{e}"))?;
                lat.push(t.elapsed().as_secs_f64() * 1e3);
                if r.hits.is_empty() {
                    bail!("a query found nothing in {size} passages");
                }
                Ok(())
            };
            if i % 2 == 0 {
                hybrid()?;
            }
            let t = Instant::now();
            let r = index.search_ranked(&q, 20, -1.0, Ranking::Semantic).map_err(|e| anyhow!("{e}"))?;
            meaning.push(t.elapsed().as_secs_f64() * 1e3);
            std::hint::black_box(r);
            if i % 2 == 1 {
                hybrid()?;
            }
            let qv = e.embed_one(&q);
            let t = Instant::now();
            let found = index.scan(&qv, 20, -1.0).map_err(|e| anyhow!("{e}"))?;
            scan.push(t.elapsed().as_secs_f64() * 1e3);
            std::hint::black_box(found);
            let t = Instant::now();
            let found = index.scan_words(&magicfs_index::lexical::exact_terms(&q), 50).map_err(|e| anyhow!("{e}"))?;
            words.push(t.elapsed().as_secs_f64() * 1e3);
            std::hint::black_box(found);
        }
        let (h50, m50) = (pct(&mut lat, 0.5), pct(&mut meaning, 0.5));
        println!(
            "| {} | {h50:.2} | {:.2} | {m50:.2} | {:.2} | {:.2}x | {:.2} | {:.2} |",
            index.status().passages,
            pct(&mut lat, 0.99),
            pct(&mut meaning, 0.99),
            h50 / m50.max(1e-9),
            pct(&mut scan, 0.5),
            pct(&mut words, 0.5)
        );
    }
    Ok(())
}

fn sentence_transformers(a: &BenchSearchArgs, model_dir: &Path, texts: &[String]) -> anyhow::Result<(f64, u64)> {
    let py = a.st_python.clone().unwrap_or_else(default_st_python);
    if !py.exists() {
        bail!("{} not found (run scripts/st-venv.sh, or pass --st-python)", py.display());
    }
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("st_reference.py");
    std::fs::write(&script, ST_SCRIPT)?;
    let input = dir.path().join("passages.json");
    std::fs::write(&input, serde_json::to_vec(texts)?)?;
    let models = model_dir.parent().unwrap_or(Path::new("."));
    let out = std::process::Command::new(&py)
        .arg(&script)
        .arg("throughput")
        .arg(&input)
        .env("MAGICFS_MODELS", models)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .with_context(|| format!("cannot run {}", py.display()))?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("failed"));
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(line.trim().lines().last().unwrap_or(""))?;
    let n = v["passages"].as_f64().unwrap_or(0.0);
    let s = v["seconds"].as_f64().unwrap_or(1.0);
    Ok((n / s, v["threads"].as_u64().unwrap_or(0)))
}

fn mount_phase(a: &BenchSearchArgs, model_dir: &Path) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let mnt = scratch.path().join("mnt");
    let host = scratch.path().join("watched");
    std::fs::create_dir_all(&mnt)?;
    std::fs::create_dir_all(&host)?;
    let mut rng = XorShift64::new(7);
    for i in 0..400 {
        std::fs::write(host.join(format!("note{i:03}.txt")), document(&mut rng, 12))?;
    }
    let fs = Arc::new(Fs::memory(FsConfig::default()));
    let cfg = IndexConfig { model_dir: model_dir.to_path_buf(), watch: vec![host.clone()], ..IndexConfig::default() };
    let index = Index::start(cfg, Some(fs.clone())).map_err(|e| anyhow!("{e}"))?;
    // No attribute caching in the kernel: every `stat` below reaches the daemon.
    let opts = MountOptions { search: Some(index.clone()), ttl: Duration::ZERO, ..MountOptions::default() };
    let mounted = mount(fs.clone(), &mnt, &opts).map_err(|e| anyhow!("cannot mount {}: {e}", mnt.display()))?;
    let r = (|| -> anyhow::Result<()> {
        for i in 0..200 {
            std::fs::write(mnt.join(format!("plain{i:03}.dat")), format!("file {i}\n"))?;
        }
        index.embedder().map_err(|e| anyhow!("{e}"))?;
        // Let the scan get going.
        let t = Instant::now();
        while index.status().files_done < 5 && t.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(20));
        }
        println!("\n## Through the mount (FUSE, in-process daemon)");
        let q = mnt.join("search/how to rotate server logs every night");
        let t = Instant::now();
        let n = std::fs::read_dir(&q)?.count();
        println!("first `ls search/<query>/` (runs the query): {:.2} ms, {n} entries", t.elapsed().as_secs_f64() * 1e3);
        // The scan keeps changing the index; measure the cache between changes.
        let mut cached = Vec::new();
        while cached.len() < 200 {
            let before = index.status().generation;
            std::fs::read_dir(&q)?.count();
            let t = Instant::now();
            std::fs::read_dir(&q)?.count();
            let ms = t.elapsed().as_secs_f64() * 1e3;
            if index.status().generation == before {
                cached.push(ms);
            }
        }
        println!(
            "repeated `ls search/<query>/` (result cache): p50 {:.3} ms, p99 {:.3} ms",
            pct(&mut cached, 0.5),
            pct(&mut cached, 0.99)
        );
        let stop = Arc::new(AtomicBool::new(false));
        let searches = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        for w in 0..4 {
            let (stop, searches, mnt) = (stop.clone(), searches.clone(), mnt.clone());
            threads.push(std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let d = mnt.join(format!("search/backup the disk before winter {w} {i}"));
                    let _ = std::fs::read_dir(&d).map(|r| r.count());
                    searches.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            }));
        }
        let done_before = index.status().files_done;
        let mut lat = Vec::new();
        let t = Instant::now();
        let mut i = 0;
        while t.elapsed() < Duration::from_secs(a.load_seconds) {
            let p = mnt.join(format!("plain{:03}.dat", i % 200));
            let s = Instant::now();
            std::fs::symlink_metadata(&p)?;
            lat.push(s.elapsed().as_secs_f64() * 1e3);
            i += 1;
            std::thread::sleep(Duration::from_micros(500));
        }
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            let _ = t.join();
        }
        let st = index.status();
        println!(
            "`stat` under 4 looping searches + initial scan: {} stats, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; {} searches done, {} files indexed meanwhile (scan queue left: {})",
            lat.len(),
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.99),
            pct(&mut lat, 1.0),
            searches.load(Ordering::Relaxed),
            st.files_done - done_before,
            st.queued
        );
        Ok(())
    })();
    let _ = index.shutdown();
    if let Err(e) = mounted.unmount() {
        log::warn!("unmount: {e}");
    }
    r
}
