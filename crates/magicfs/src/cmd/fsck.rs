//! `magicfs fsck`: check a store and report.

use crate::cli::FsckArgs;
use anyhow::anyhow;
use magicfs_core::fsck;

pub fn run(a: FsckArgs) -> anyhow::Result<i32> {
    let (store, what) = super::volume::open_named(a.meta.as_deref(), a.data.as_deref())?;
    let bar = crate::progress::count(format!("fsck {what}"), 0, "chunks");
    let report = fsck::check_with_progress(&store, !a.no_data, &|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .map_err(|e| anyhow!("{e}"))?;
    bar.finish_and_clear();
    super::volume::end_session(&store);
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
