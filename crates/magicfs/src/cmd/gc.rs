//! `magicfs gc`: compact pack files of an unmounted store.

use crate::cli::GcArgs;
use anyhow::anyhow;
use magicfs_core::gc;

pub fn run(a: GcArgs) -> anyhow::Result<i32> {
    if !(0.0..=1.0).contains(&a.min_garbage) {
        crate::exit::usage_bail!("--min-garbage takes a fraction between 0.0 and 1.0");
    }
    let (store, what) = super::volume::open_named(a.meta.as_deref(), a.data.as_deref())?;
    let bar = crate::progress::count(format!("gc {what}"), 0, "chunks moved");
    let r = gc::compact_with_progress(&store, a.min_garbage, &|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .map_err(|e| anyhow!("{e}"));
    bar.finish_and_clear();
    super::volume::end_session(&store);
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
