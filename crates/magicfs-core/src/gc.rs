//! `magicfs gc`: reclaims the space of chunks no file refers to any more.
//!
//! Unreferenced chunks leave the index in the same batch as their last
//! extent; their bytes stay in the pack files until `gc`. It first punches
//! holes where no live chunk lies (the space is freed in place, which needs
//! no free space: it works on a full disk), then compacts packs that are
//! mostly dead by copying their live chunks into a fresh pack and deleting
//! the old ones. Order for crash safety: copy chunks → commit their new locations →
//! sync packs and log → delete the old packs.

use magicfs_store::{Batch, ChunkMeta, Store, StoreError, Table};
use magicfs_types::ChunkId;
use serde::Serialize;
use std::collections::HashMap;

/// What a compaction did.
#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    /// Pack files before.
    pub packs_before: usize,
    /// Pack files rewritten and deleted.
    pub packs_compacted: usize,
    /// Live chunks copied.
    pub chunks_moved: u64,
    /// Pack bytes before.
    pub bytes_before: u64,
    /// Pack bytes after.
    pub bytes_after: u64,
    /// Retired segments deleted now that their grace period has passed
    /// (object stores keep a retired segment readable for a while).
    pub segments_reaped: usize,
    /// Disk space freed in place by punching holes where no live chunk lies.
    pub bytes_punched: u64,
}

/// Compacts every pack whose share of unreferenced bytes is at least
/// `min_garbage` (0.0–1.0). The store must not be mounted.
pub fn compact(store: &Store, min_garbage: f64) -> Result<GcReport, StoreError> {
    compact_with_progress(store, min_garbage, &|_, _| {})
}

/// [`compact`], calling `progress(done, total)` as live chunks are moved.
pub fn compact_with_progress(
    store: &Store,
    min_garbage: f64,
    progress: &dyn Fn(u64, u64),
) -> Result<GcReport, StoreError> {
    let packs = store.chunks();
    let io = |what: &str| {
        let what = what.to_string();
        move |e: std::io::Error| StoreError::io(what.clone(), e)
    };
    let mut live: HashMap<u32, Vec<(ChunkId, ChunkMeta)>> = HashMap::new();
    store.scan(Table::Chunks, |k, v| {
        if let (Ok(id), Some(m)) = (<[u8; 32]>::try_from(k), ChunkMeta::decode(v)) {
            live.entry(m.pack).or_default().push((ChunkId(id), m));
        }
    })?;
    // Free dead ranges in place first.
    let sizes = packs.segments().map_err(io("listing packs"))?;
    let allocated = packs.allocated().map_err(io("listing packs"))?;
    'packs: for &(id, len) in &sizes {
        let mut used: Vec<(u64, u64)> = live
            .get(&id)
            .map_or_else(Vec::new, |c| c.iter().map(|(_, m)| (m.offset, m.offset + m.stored_len as u64)).collect());
        used.sort_unstable();
        let mut at = 0u64;
        for (s, e) in used.into_iter().chain([(len, len)]) {
            if s > at {
                match packs.punch(id, at, s - at) {
                    Ok(()) => {}
                    // A filesystem without hole punching: compaction alone.
                    Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => break 'packs,
                    Err(e) => return Err(StoreError::io("freeing dead pack space", e)),
                }
            }
            at = at.max(e);
        }
    }
    let mut report = GcReport {
        packs_before: sizes.len(),
        bytes_before: sizes.iter().map(|(_, s)| s).sum(),
        bytes_punched: allocated.saturating_sub(packs.allocated().map_err(io("listing packs"))?),
        ..GcReport::default()
    };
    let victims: Vec<u32> = sizes
        .iter()
        .filter(|(id, size)| {
            let used: u64 = live.get(id).map_or(0, |c| c.iter().map(|(_, m)| m.stored_len as u64).sum());
            *size > 0 && (size.saturating_sub(used)) as f64 >= min_garbage * *size as f64
        })
        .map(|(id, _)| *id)
        .collect();
    report.segments_reaped = packs.reap().map_err(io("deleting retired segments"))?;
    if victims.is_empty() {
        report.bytes_after = report.bytes_before;
        return Ok(report);
    }
    // Live chunks go to a pack that is not being compacted.
    packs.roll().map_err(io("starting a new pack"))?;
    let mut batch = Batch::new();
    let total: u64 = victims.iter().map(|id| live.get(id).map_or(0, |c| c.len() as u64)).sum();
    for id in &victims {
        for (chunk, m) in live.get(id).into_iter().flatten() {
            progress(report.chunks_moved, total);
            let bytes = store.read_chunk(m.location())?;
            let loc = store.put_chunk(&bytes)?;
            let moved = ChunkMeta { pack: loc.pack, offset: loc.offset, ..*m };
            batch.put(Table::Chunks, chunk.0.to_vec(), moved.encode());
            report.chunks_moved += 1;
        }
    }
    progress(total, total);
    store.persist_chunks()?;
    store.commit(batch)?;
    store.sync()?;
    store.checkpoint()?;
    for id in &victims {
        packs.retire(*id).map_err(io("deleting a compacted pack"))?;
    }
    report.packs_compacted = victims.len();
    report.bytes_after = packs.segments().map_err(io("listing packs"))?.iter().map(|(_, s)| s).sum();
    Ok(report)
}
