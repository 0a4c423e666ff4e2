//! Cluster volumes by URL: `--meta postgres://…` names the metadata
//! database; the store URL (where chunks live) was recorded there by
//! `magicfs format`, so later commands need only `--meta`.

use anyhow::anyhow;
use magicfs_core::{ClusterConfig, Fs, FsConfig};
use magicfs_meta_pg::PgMeta;
use magicfs_objects::{CacheConfig, StoreUrl};
use magicfs_pg::{Pg, PgOptions, PgUrl};
use magicfs_store::Store;
use std::path::Path;
use std::sync::Arc;

fn store_url(url: &str) -> anyhow::Result<StoreUrl> {
    StoreUrl::parse(url).map_err(|e| anyhow!("--store {e}"))
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

/// Creates a volume: tables in the `meta` database, chunks at `store`.
pub fn format(meta: &str, store: &str) -> anyhow::Result<()> {
    let url = meta_url(meta)?;
    let objects = store_url(store)?;
    PgMeta::check_unformatted(&url, pg_options()).map_err(|e| anyhow!("{e}"))?;
    // The bucket (created if missing) and the prefix are checked first: a
    // volume is recorded only once its chunks have somewhere to go.
    magicfs_objects::format(&objects).map_err(|e| anyhow!("{e}"))?;
    let store = objects.to_string();
    let store = store.as_str();
    PgMeta::format(&url, store, pg_options()).map_err(|e| anyhow!("{e}"))?;
    // The root directory, made once here rather than raced for by the first mounts.
    let fs = Fs::load(open_store(meta, None)?, FsConfig::default()).map_err(|e| anyhow!("{e}"))?;
    fs.shutdown().map_err(|e| anyhow!("{e}"))?;
    println!("magicfs: formatted a volume in {url} (chunks: {store})");
    println!("mount it (from any number of machines) with: magicfs mount MOUNTPOINT --meta {url}");
    Ok(())
}

/// Opens the volume whose metadata is in `meta`, as a new session; chunk
/// blocks are cached in memory and, with `cache_dir`, on disk.
pub fn open_store(meta: &str, cache_dir: Option<&Path>) -> anyhow::Result<Store> {
    open_volume(meta, cache_dir).map(|(store, _)| store)
}

/// [`open_store`], with the connection to the volume's database (which
/// the mount's search index shares).
pub fn open_volume(meta: &str, cache_dir: Option<&Path>) -> anyhow::Result<(Store, Pg)> {
    let url = meta_url(meta)?;
    let engine = PgMeta::open(&url, pg_options()).map_err(|e| anyhow!("{e}"))?;
    let objects = StoreUrl::parse(engine.store_url())
        .map_err(|e| anyhow!("the volume in {url} records a store URL this build cannot use: {e}"))?;
    let cache = CacheConfig { dir: cache_dir.map(Path::to_path_buf), ..CacheConfig::default() };
    let chunks = magicfs_objects::open(&objects, engine.pg().clone(), &engine.volume_id(), cache)
        .map_err(|e| anyhow!("the chunk store of the volume in {url}: {e}"))?;
    let pg = engine.pg().clone();
    Ok((Store::new(Arc::new(engine), Arc::new(chunks)), pg))
}

/// The volume's filesystem, for one-off commands (`stats`).
pub fn open_fs(meta: &str) -> anyhow::Result<Fs> {
    Fs::load(open_store(meta, None)?, FsConfig::default()).map_err(|e| anyhow!("{e}"))
}

/// The store a maintenance command (`fsck`, `gc`) names: a cluster volume by
/// `--meta`, else a data directory; with the words that name it.
pub fn open_named(meta: Option<&str>, data: Option<&Path>) -> anyhow::Result<(Store, String)> {
    match (meta, data) {
        (Some(meta), _) => {
            let store = open_store(meta, None)?;
            let what = store.info().url.unwrap_or_default();
            Ok((store, what))
        }
        (None, Some(d)) => Ok((Store::open(d, false).map_err(|e| anyhow!("{e}"))?, d.display().to_string())),
        (None, None) => crate::exit::usage_bail!("name the store: --data DIR or --meta postgres://…"),
    }
}

/// A `--meta` URL as it may be shown to anyone: without its password.
pub fn shown_meta(meta: &str) -> String {
    meta_url(meta).map_or_else(|_| magicfs_pg::redact(meta), |u| u.to_string())
}

/// Ends a cluster store's session (the volume forgets this process at once
/// instead of when its heartbeat runs out).
pub fn end_session(store: &Store) {
    if let Some(s) = store.shared() {
        if let Err(e) = s.end_session() {
            log::warn!("ending the session: {e}");
        }
    }
}
