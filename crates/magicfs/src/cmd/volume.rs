//! Cluster volumes by URL: `--meta postgres://…` names the metadata
//! database; the store URL (where chunks live) was recorded there by
//! `magicfs format`, so later commands need only `--meta`.

use anyhow::{anyhow, bail, Context};
use magicfs_core::{ClusterConfig, Fs, FsConfig};
use magicfs_meta_pg::PgMeta;
use magicfs_pg::{PgOptions, PgUrl};
use magicfs_store::{ChunkStore, FilePacks, Store};
use std::path::PathBuf;
use std::sync::Arc;

/// Where a volume's chunks live.
enum StoreUrl {
    /// A directory every mount reaches (one machine, or a shared file system).
    Dir(PathBuf),
}

fn parse_store(url: &str) -> anyhow::Result<StoreUrl> {
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            bail!("--store {url}: a file URL takes an absolute path, like file:///var/lib/magicfs/chunks");
        }
        return Ok(StoreUrl::Dir(PathBuf::from(path)));
    }
    if url.starts_with("s3://") {
        bail!("--store {url}: this build stores chunks in a directory only; use --store file:///DIR");
    }
    bail!("--store {url}: expected s3://BUCKET/PREFIX or file:///DIR")
}

fn meta_url(meta: &str) -> anyhow::Result<PgUrl> {
    meta.parse().map_err(|e| anyhow!("--meta: {e}"))
}

/// Settings of the database connection: how long an unreachable server is
/// retried before an operation fails (`MAGICFS_PG_RETRY_SECS`, default 30).
fn pg_options() -> PgOptions {
    let retry = std::env::var("MAGICFS_PG_RETRY_SECS").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(30.0);
    PgOptions { retry_for: std::time::Duration::from_secs_f64(retry.max(0.0)), ..PgOptions::default() }
}

/// Timing of a cluster mount: a session silent for
/// `MAGICFS_SESSION_TIMEOUT_SECS` (default 30) is removed by the other
/// mounts, with what it kept open.
pub fn cluster_config() -> ClusterConfig {
    let mut c = ClusterConfig::default();
    if let Some(t) = std::env::var("MAGICFS_SESSION_TIMEOUT_SECS").ok().and_then(|s| s.parse::<f64>().ok()) {
        c.session_timeout = std::time::Duration::from_secs_f64(t.max(1.0));
        c.heartbeat = c.heartbeat.min(c.session_timeout / 4);
    }
    c
}

fn chunk_store(url: &str) -> anyhow::Result<Arc<dyn ChunkStore>> {
    match parse_store(url)? {
        StoreUrl::Dir(dir) => {
            let packs = FilePacks::open_shared(&dir)
                .with_context(|| format!("cannot use {} for the volume's chunks", dir.display()))?;
            Ok(Arc::new(packs))
        }
    }
}

/// Creates a volume: tables in the `meta` database, chunks at `store`.
pub fn format(meta: &str, store: &str) -> anyhow::Result<()> {
    let url = meta_url(meta)?;
    match parse_store(store)? {
        StoreUrl::Dir(dir) => std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the chunk directory {}", dir.display()))?,
    }
    PgMeta::format(&url, store, pg_options()).map_err(|e| anyhow!("{e}"))?;
    // The root directory, made once here rather than raced for by the first mounts.
    let fs = Fs::load(open_store(meta)?, FsConfig::default()).map_err(|e| anyhow!("{e}"))?;
    fs.shutdown().map_err(|e| anyhow!("{e}"))?;
    println!("magicfs: formatted a volume in {url} (chunks: {store})");
    println!("mount it (from any number of machines) with: magicfs mount MOUNTPOINT --meta {url}");
    Ok(())
}

/// Opens the volume whose metadata is in `meta`, as a new session.
pub fn open_store(meta: &str) -> anyhow::Result<Store> {
    let url = meta_url(meta)?;
    let engine = PgMeta::open(&url, pg_options()).map_err(|e| anyhow!("{e}"))?;
    let chunks = chunk_store(engine.store_url())?;
    Ok(Store::new(Arc::new(engine), chunks))
}

/// The volume's filesystem, for one-off commands (`stats`).
pub fn open_fs(meta: &str) -> anyhow::Result<Fs> {
    Fs::load(open_store(meta)?, FsConfig::default()).map_err(|e| anyhow!("{e}"))
}
