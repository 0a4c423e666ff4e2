//! `magicfs fsck`: check a store and report.

use crate::cli::FsckArgs;
use anyhow::anyhow;
use magicfs_core::fsck;
use magicfs_store::Store;

pub fn run(a: FsckArgs) -> anyhow::Result<i32> {
    let store = Store::open(&a.data, false).map_err(|e| anyhow!("{e}"))?;
    let bar = crate::progress::count(format!("fsck {}", a.data.display()), 0, "chunks");
    let report = fsck::check_with_progress(&store, !a.no_data, &|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .map_err(|e| anyhow!("{e}"))?;
    bar.finish_and_clear();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "magicfs fsck {}: {} inodes, {} entries, {} extents, {} chunks{}",
            a.data.display(),
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
