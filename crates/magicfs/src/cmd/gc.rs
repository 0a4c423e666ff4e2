//! `magicfs gc`: compact pack files of an unmounted store.

use crate::cli::GcArgs;
use anyhow::{anyhow, bail};
use magicfs_core::gc;
use magicfs_store::Store;

pub fn run(a: GcArgs) -> anyhow::Result<i32> {
    if !(0.0..=1.0).contains(&a.min_garbage) {
        bail!("--min-garbage takes a fraction between 0.0 and 1.0");
    }
    let (store, what) = match (&a.meta, &a.data) {
        (Some(meta), _) => {
            let store = super::volume::open_store(meta, None)?;
            let what = store.info().url.unwrap_or_default();
            (store, what)
        }
        (None, Some(d)) => (Store::open(d, false).map_err(|e| anyhow!("{e}"))?, d.display().to_string()),
        (None, None) => bail!("name the store: --data DIR or --meta postgres://…"),
    };
    let r = gc::compact(&store, a.min_garbage).map_err(|e| anyhow!("{e}"));
    if let Some(s) = store.shared() {
        if let Err(e) = s.end_session() {
            log::warn!("ending the session: {e}");
        }
    }
    let r = r?;
    println!(
        "magicfs gc {}: freed {} dead bytes in place, compacted {} of {} packs, moved {} live chunks, pack bytes {} -> {}",
        what,
        r.bytes_punched,
        r.packs_compacted,
        r.packs_before,
        r.chunks_moved,
        r.bytes_before,
        r.bytes_after
    );
    Ok(0)
}
