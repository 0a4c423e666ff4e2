//! MagicFS chunk store on object storage.
//!
//! [`ObjectChunks`] implements `magicfs_store::ChunkStore` over any
//! `object_store` backend: S3 (`s3://BUCKET/PREFIX`, settings from the
//! standard `AWS_*` variables), a local directory (`file:///DIR`) or
//! memory. Chunks go into large immutable segment objects written
//! create-only; a commit's small tail is staged in the [`Catalog`]
//! (PostgreSQL for a cluster) until a background sealer writes the segment.
//! Reads go through a local block cache (memory and `--cache-dir`) with
//! read-ahead for sequential readers.

mod backend;
mod cache;
mod catalog;
mod chunks;
mod error;
mod pg_catalog;
mod url;

pub use backend::{Backend, S3Settings, DEFAULT_RETRY};
pub use cache::{BlockCache, CacheConfig, BLOCK};
pub use catalog::{Catalog, MemCatalog, SegInfo, SegState};
pub use chunks::{ObjectChunks, ObjectStats, Options};
pub use error::{ObjectsError, ObjectsResult};
pub use pg_catalog::PgCatalog;
pub use url::StoreUrl;

/// Makes rustls use the ring provider (once per process; a provider
/// installed already by another part of the program is kept).
pub(crate) fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // ring builds without a C toolchain step and is the provider the HTTPS
    // edge uses; object storage needs no post-quantum key exchange.
    #[allow(deprecated)]
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The chunk store of a cluster volume: `url`'s objects, segments recorded
/// in the volume's PostgreSQL database, blocks cached as `cache` says.
/// `volume` names the volume (its cache directory is kept apart). Small
/// tails are staged by the metadata commits that name them (the volume's
/// PostgreSQL engine writes [`magicfs_store::Batch::staged`]).
pub fn open(url: &StoreUrl, pg: magicfs_pg::Pg, volume: &str, cache: CacheConfig) -> ObjectsResult<ObjectChunks> {
    let catalog = std::sync::Arc::new(PgCatalog::open(pg)?);
    let opts = Options { cache, defer_staging: true, ..Options::default() };
    ObjectChunks::open(Backend::open(url)?, catalog, volume, opts)
}

/// Prepares a store URL for a new volume: creates the bucket when it is
/// missing (S3) and checks that no volume's segments are there already.
pub fn format(url: &StoreUrl) -> ObjectsResult<()> {
    install_tls_provider();
    let backend = Backend::open(url)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(ObjectsError::Io)?;
    let found = std::thread::scope(|s| {
        s.spawn(|| {
            rt.block_on(async {
                backend.ensure_bucket().await?;
                backend.check().await?;
                backend.list("segments").await
            })
        })
        .join()
        .unwrap_or_else(|_| Err(ObjectsError::Io(std::io::Error::other("format thread panicked"))))
    })?;
    if !found.is_empty() {
        return Err(ObjectsError::BadUrl(format!(
            "{url}: it already holds {} segments of a volume; choose another prefix (s3://BUCKET/OTHER-PREFIX) or an empty directory",
            found.len()
        )));
    }
    Ok(())
}
