//! `magicfs fsck`: check a store and report.

use crate::cli::FsckArgs;
use anyhow::anyhow;
use magicfs_core::fsck;
use magicfs_store::Store;

pub fn run(a: FsckArgs) -> anyhow::Result<i32> {
    let (store, what) = match (&a.meta, &a.data) {
        (Some(meta), _) => {
            let store = super::volume::open_store(meta, None)?;
            let what = store.info().url.unwrap_or_default();
            (store, what)
        }
        (None, Some(d)) => (Store::open(d, false).map_err(|e| anyhow!("{e}"))?, d.display().to_string()),
        (None, None) => crate::exit::usage_bail!("name the store: --data DIR or --meta postgres://…"),
    };
    let bar = crate::progress::count(format!("fsck {what}"), 0, "chunks");
    let report = fsck::check_with_progress(&store, !a.no_data, &|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .map_err(|e| anyhow!("{e}"))?;
    bar.finish_and_clear();
    if let Some(s) = store.shared() {
        if let Err(e) = s.end_session() {
            log::warn!("ending the session: {e}");
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "magicfs fsck {}: {} inodes, {} entries, {} extents, {} chunks{}",
            what,
            report.inodes,
            report.dirents,
            report.extents,
            report.chunks,
            if a.no_data { "" } else { " (hashes verified)" }
        );
        for n in &report.notes {
            println!("note: {n}");
        }
        for e in &report.errors {
            println!("ERROR: {e}");
        }
        if report.is_clean() {
            println!("clean");
        } else {
            println!("{} problems found", report.errors.len());
        }
    }
    Ok(if report.is_clean() { crate::exit::OK } else { crate::exit::PROBLEMS })
}
