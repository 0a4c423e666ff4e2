//! `magicfs bench-search`, relevance phase: the relevance set of the tests
//! (paraphrased questions, and exact-term queries over near-identical
//! sibling pages) indexed for real from a watched directory, then ranked
//! by meaning alone, by words alone, and by the fusions of the two, with
//! top-1 and top-3 counts per query set. The weights of the default
//! fusion were chosen from this table.

#[path = "../../tests/search_corpus/mod.rs"]
mod corpus;

use anyhow::{anyhow, bail};
use magicfs_index::fusion::{Ranking, DEFAULT_RANKING};
use magicfs_index::{Index, IndexConfig};
use std::path::Path;
use std::time::{Duration, Instant};

/// Top-1 and top-3 counts of one ranking on one query set.
#[derive(Default, Clone, Copy)]
struct Score {
    top1: usize,
    top3: usize,
}

fn run_set(index: &Index, set: &[(&str, &str)], ranking: Ranking, misses: &mut Vec<String>) -> anyhow::Result<Score> {
    let mut s = Score::default();
    for (query, want) in set {
        let r = index.search_ranked(query, 10, index.min_score(), ranking).map_err(|e| anyhow!("{e}"))?;
        let names: Vec<&str> = r.hits.iter().map(|h| h.path.rsplit('/').next().unwrap_or(&h.path)).collect();
        match names.iter().position(|n| n == want) {
            Some(0) => {
                s.top1 += 1;
                s.top3 += 1;
            }
            Some(p) if p < 3 => {
                s.top3 += 1;
                misses.push(format!("{query:?}: {want} at {}; first {:?}", p + 1, names.first()));
            }
            p => misses.push(format!(
                "{query:?}: {want} at {:?}; top 3 {:?}",
                p.map(|p| p + 1),
                &names[..names.len().min(3)]
            )),
        }
    }
    Ok(s)
}

/// The rankings compared: each single signal, then fusions.
fn rankings() -> Vec<(String, Ranking)> {
    let mut out =
        vec![("meaning only (cosine)".to_string(), Ranking::Semantic), ("words only (BM25)".into(), Ranking::Lexical)];
    for k in [20.0, 60.0] {
        for lexical in [0.5, 1.0] {
            out.push((format!("RRF k={k} lexical weight {lexical}"), Ranking::Rrf { k, lexical }));
        }
    }
    for lexical in [0.3, 0.6, 1.0] {
        out.push((format!("cos + {lexical}·BM25/max"), Ranking::WeightedMax { lexical }));
    }
    for saturation in [3.0, 6.0, 12.0] {
        for lexical in [0.3, 0.6, 1.0] {
            out.push((format!("cos + {lexical}·b/(b+{saturation})"), Ranking::Weighted { lexical, saturation }));
        }
    }
    for saturation in [3.0, 6.0, 12.0] {
        for lexical in [0.3, 0.6, 1.0, 2.0] {
            out.push((
                format!("cos + {lexical}·b/(b+{saturation}), BM25 of exact-looking tokens"),
                Ranking::WeightedExact { lexical, saturation },
            ));
        }
    }
    out
}

/// Indexes the relevance corpus and prints the table; returns an error if
/// the default ranking loses to meaning alone on either query set.
pub fn run(model_dir: &Path) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let docs: Vec<&(&str, &str)> = corpus::DOCS.iter().chain(corpus::SIBLINGS).collect();
    for (name, text) in &docs {
        std::fs::write(dir.path().join(name), text)?;
    }
    let cfg = IndexConfig {
        model_dir: model_dir.to_path_buf(),
        watch: vec![dir.path().to_path_buf()],
        ..IndexConfig::default()
    };
    let index = Index::start(cfg, None).map_err(|e| anyhow!("{e}"))?;
    let t = Instant::now();
    loop {
        let s = index.status();
        if s.model.starts_with("failed") {
            bail!("{}", s.model);
        }
        if index.wait_idle(Duration::from_secs(1)) && s.files_indexed >= docs.len() {
            break;
        }
        if t.elapsed() > Duration::from_secs(600) {
            bail!("the relevance corpus was not indexed in 10 minutes");
        }
    }
    println!(
        "\n## Relevance: {} pages ({} near-identical siblings), {} paraphrased queries, {} exact-term queries",
        docs.len(),
        corpus::SIBLINGS.len(),
        corpus::QUERIES.len(),
        corpus::EXACT.len()
    );
    println!("| ranking | paraphrase top-1 | paraphrase top-3 | exact top-1 | exact top-3 |");
    println!("|---|---:|---:|---:|---:|");
    let (np, ne) = (corpus::QUERIES.len(), corpus::EXACT.len());
    let mut base = None;
    let mut chosen = None;
    let mut default_misses = Vec::new();
    for (label, ranking) in rankings() {
        let mut misses = Vec::new();
        let p = run_set(&index, corpus::QUERIES, ranking, &mut misses)?;
        let e = run_set(&index, corpus::EXACT, ranking, &mut misses)?;
        let mark = if ranking == DEFAULT_RANKING { " **(default)**" } else { "" };
        println!("| {label}{mark} | {}/{np} | {}/{np} | {}/{ne} | {}/{ne} |", p.top1, p.top3, e.top1, e.top3);
        if ranking == Ranking::Semantic {
            base = Some((p, e));
            println!("<!-- meaning only misses: {} -->", misses.join("; "));
        }
        if ranking == DEFAULT_RANKING {
            chosen = Some((p, e));
            default_misses = misses;
        }
    }
    if !default_misses.is_empty() {
        println!("default ranking, queries not first: {}", default_misses.join("; "));
    }
    let _ = index.shutdown();
    let (Some((bp, be)), Some((cp, ce))) = (base, chosen) else { bail!("the default ranking is not in the table") };
    if cp.top1 < bp.top1 || cp.top3 < bp.top3 || ce.top1 <= be.top1 || ce.top3 < be.top3 {
        bail!("the default ranking does not beat meaning alone on this set");
    }
    Ok(())
}
