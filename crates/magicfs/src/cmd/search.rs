//! `magicfs search` and `magicfs index status`, and the start of a mount's
//! search index.

use crate::cli::{IndexArgs, IndexCmd, SearchArgs, SearchOpts};
use crate::exit::usage_bail;
use anyhow::{anyhow, bail, Context};
use magicfs_core::{Fs, FsConfig};
use magicfs_index::{Index, IndexConfig};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn model_dir(models: &Option<PathBuf>) -> PathBuf {
    models.as_ref().map(|m| m.join("minilm")).unwrap_or_else(magicfs_embed::default_model_dir)
}

/// Starts the search index of a mount (none with `--no-search`): in the
/// data directory's `search.redb` (or memory), or, on a cluster volume
/// (`shared`: its database and the mount's cache directory), in the
/// volume's database, shared by every mount, with watched host directories
/// in the cache directory (or memory). The model loads in the background;
/// a missing model is reported, not fatal.
pub fn start_index(
    o: &SearchOpts,
    data_dir: Option<PathBuf>,
    fs: &Arc<Fs>,
    shared: Option<(magicfs_pg::Pg, Option<PathBuf>)>,
) -> anyhow::Result<Option<Index>> {
    if o.no_search {
        return Ok(None);
    }
    if !(o.search_min_score.is_finite() && (-1.0..=1.0).contains(&o.search_min_score)) {
        usage_bail!("--search-min-score must be between -1 and 1");
    }
    if o.search_top_k == 0 || o.search_top_k > 1000 {
        usage_bail!("--search-top-k must be between 1 and 1000");
    }
    for w in &o.watch {
        if !w.is_dir() {
            usage_bail!("--watch {}: not a directory", w.display());
        }
    }
    let model = model_dir(&o.models);
    if !model.join("model.safetensors").is_file() {
        tracing::warn!(
            "no search model in {} (run scripts/models.sh); search/ answers with an error until it is there",
            model.display()
        );
    }
    let cfg = IndexConfig {
        model_dir: model,
        data_dir,
        watch: o.watch.iter().map(|w| w.canonicalize().unwrap_or_else(|_| w.clone())).collect(),
        top_k: o.search_top_k,
        min_score: o.search_min_score,
        index_threads: 1,
        include_sessions: o.search_sessions,
    };
    let index = match shared {
        Some((pg, local)) => {
            let store = magicfs_index_pg::cluster_store(pg, local.as_deref())
                .map_err(|e| anyhow!("the search index in the volume's database: {e}"))?;
            Index::start_with(cfg, Some(fs.clone()), store)
        }
        None => Index::start(cfg, Some(fs.clone())),
    }
    .map_err(|e| anyhow!("{e}"))?;
    report_scan(index.clone());
    Ok(Some(index))
}

/// Shows the start-up scan of a mount's index (a bar on a terminal, a log
/// line when done; `.magic/status` has it too) until the first pass is over.
fn report_scan(index: Index) {
    let _ = std::thread::Builder::new().name("magicfs-index-progress".into()).spawn(move || {
        let started = std::time::Instant::now();
        let bar = crate::progress::count("indexing", 0, "files");
        loop {
            let s = index.status();
            bar.set_length(s.files_done + s.queued as u64);
            bar.set_position(s.files_done);
            if s.model.starts_with("failed") {
                bar.finish_and_clear();
                return;
            }
            if s.model == "ready" && !s.scanning && !s.indexing && s.queued == 0 {
                bar.finish_and_clear();
                tracing::info!(
                    "index ready: {} files, {} passages ({:.1} s)",
                    s.files_indexed,
                    s.passages,
                    started.elapsed().as_secs_f64()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    });
}

use magicfs_volume::encode_query;

fn snippet(p: &str) -> String {
    let s: Vec<&str> = p.split_whitespace().collect();
    let mut out = s.join(" ");
    if out.len() > 160 {
        let mut end = 157;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push_str("...");
    }
    out
}

pub fn search(a: SearchArgs) -> anyhow::Result<i32> {
    if a.query.trim().is_empty() {
        usage_bail!("the query is empty: say what to look for, e.g. magicfs search \"how do I rotate logs\"");
    }
    let results: Value = if let Some(data) = &a.data {
        let fs = Fs::open_store(data, false, FsConfig::default())
            .map_err(|e| anyhow!("{e} (is the store mounted? then use --mount)"))?;
        let cfg = IndexConfig {
            model_dir: model_dir(&a.models),
            data_dir: Some(data.clone()),
            top_k: a.top_k,
            min_score: a.min_score,
            ..IndexConfig::default()
        };
        let index = Index::open(cfg, Some(Arc::new(fs))).map_err(|e| anyhow!("{e}"))?;
        index.load_records().map_err(|e| anyhow!("{e}"))?;
        let r = index.search(&a.query, a.top_k, a.min_score).map_err(|e| anyhow!("{e}"))?;
        serde_json::json!({ "query": r.query, "results": r.hits })
    } else {
        let m = a.mount.clone().unwrap_or_else(|| PathBuf::from("."));
        let dir = m.join("search").join(encode_query(a.query.trim()));
        let p = dir.join(".results.json");
        let text = std::fs::read_to_string(&p).with_context(|| {
            format!("cannot read {} (is {} a MagicFS mount with search?)", p.display(), m.display())
        })?;
        let v: Value = serde_json::from_str(&text).context("results are not valid JSON")?;
        if let Some(e) = v.get("error").and_then(Value::as_str) {
            bail!("{e}");
        }
        v
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
        return Ok(0);
    }
    let hits = results.get("results").and_then(Value::as_array).cloned().unwrap_or_default();
    if hits.is_empty() {
        println!("no matches");
        return Ok(crate::exit::NO_MATCH);
    }
    for h in hits {
        let score = h.get("score").and_then(Value::as_f64).unwrap_or(0.0);
        let path = h.get("path").and_then(Value::as_str).unwrap_or("");
        println!("{score:.2}  {path}");
        println!("      {}", snippet(h.get("passage").and_then(Value::as_str).unwrap_or("")));
    }
    Ok(0)
}

fn read_status(m: &Path) -> anyhow::Result<Value> {
    let p = m.join(".magic/status");
    let text = std::fs::read_to_string(&p)
        .with_context(|| format!("cannot read {} (is {} a MagicFS mount?)", p.display(), m.display()))?;
    let v: Value = serde_json::from_str(&text).context("status is not valid JSON")?;
    v.get("search").cloned().ok_or_else(|| anyhow!("{} has no search index (mounted with --no-search?)", m.display()))
}

fn n(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

pub fn index(a: IndexArgs) -> anyhow::Result<i32> {
    let IndexCmd::Status { mountpoint, wait, json } = a.cmd;
    let mut s = read_status(&mountpoint)?;
    if wait {
        let bar = crate::progress::count(format!("indexing {}", mountpoint.display()), 0, "files");
        loop {
            let done = n(&s, "files_done");
            let queued = n(&s, "queued");
            bar.set_length(done + queued);
            bar.set_position(done);
            bar.set_message(format!(
                "indexing {}: {} passages, model {}",
                mountpoint.display(),
                n(&s, "passages"),
                s.get("model").and_then(Value::as_str).unwrap_or("?")
            ));
            let model = s.get("model").and_then(Value::as_str).unwrap_or("");
            if model.starts_with("failed") {
                bar.abandon();
                bail!("{model}");
            }
            let idle = s.get("indexing") == Some(&Value::Bool(false)) && s.get("scanning") == Some(&Value::Bool(false));
            if queued == 0 && idle && model == "ready" {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
            s = read_status(&mountpoint)?;
        }
        bar.finish_and_clear();
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(0);
    }
    let st = |k: &str| s.get(k).map(|v| v.to_string().trim_matches('"').to_string()).unwrap_or_default();
    println!("model          {} {}", st("model"), st("model_id"));
    println!("indexed        {} files, {} passages", n(&s, "files_indexed"), n(&s, "passages"));
    println!("queued         {} files{}", n(&s, "queued"), if st("indexing") == "true" { " (indexing)" } else { "" });
    println!(
        "since start    {} files read, {} passages embedded, {} reused, {} errors",
        n(&s, "files_done"),
        n(&s, "passages_embedded"),
        n(&s, "passages_reused"),
        n(&s, "errors")
    );
    println!("skipped        {}", st("skipped"));
    for w in s.get("watch").and_then(Value::as_array).cloned().unwrap_or_default() {
        println!(
            "watch          {} ({})",
            w.get("path").and_then(Value::as_str).unwrap_or(""),
            w.get("state").and_then(Value::as_str).unwrap_or("")
        );
    }
    Ok(0)
}
