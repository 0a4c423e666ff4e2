//! `magicfs gc`: compact pack files of an unmounted store.

use crate::cli::GcArgs;
use anyhow::anyhow;
use magicfs_core::gc;
use magicfs_store::Store;

pub fn run(a: GcArgs) -> anyhow::Result<i32> {
    if !(0.0..=1.0).contains(&a.min_garbage) {
        crate::exit::usage_bail!("--min-garbage takes a fraction between 0.0 and 1.0");
    }
    let (store, what) = match (&a.meta, &a.data) {
        (Some(meta), _) => {
            let store = super::volume::open_store(meta, None)?;
            let what = store.info().url.unwrap_or_default();
            (store, what)
        }
        (None, Some(d)) => (Store::open(d, false).map_err(|e| anyhow!("{e}"))?, d.display().to_string()),
        (None, None) => crate::exit::usage_bail!("name the store: --data DIR or --meta postgres://…"),
    };
    let bar = crate::progress::count(format!("gc {what}"), 0, "chunks moved");
    let r = gc::compact_with_progress(&store, a.min_garbage, &|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .map_err(|e| anyhow!("{e}"));
    bar.finish_and_clear();
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
