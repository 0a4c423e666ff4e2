//! Every input kept under `fuzz/seeds/<target>/` and `fuzz/regressions/<target>/`
//! (the seeds the fuzzers start from, and each input that once made a target
//! fail, kept after the fix) replayed through the fuzz targets' checks, so a
//! fixed crash stays fixed in every `cargo test`.

#[path = "../../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod checks;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut n = 0;
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else { continue };
        for e in entries {
            let p = e.unwrap().path();
            let data = std::fs::read(&p).unwrap();
            let r = std::panic::catch_unwind(|| check(&data));
            assert!(r.is_ok(), "{target}: {} fails again", p.display());
            n += 1;
        }
    }
    assert!(n > 0, "no inputs kept for {target}");
}

#[test]
fn transcript() {
    replay("transcript", checks::transcript);
}

#[test]
fn compute_json() {
    replay("compute_json", checks::compute_json);
}

#[test]
fn snapshot_import() {
    replay("snapshot_import", checks::snapshot_import);
}

#[test]
fn range_header() {
    replay("range_header", checks::range_header);
}

#[test]
fn tree_plan() {
    replay("tree_plan", checks::tree_plan);
}

#[test]
fn wal_records() {
    replay("wal_records", checks::wal_records);
}

#[test]
fn store_image() {
    replay("store_image", checks::store_image);
}

#[test]
fn search_names() {
    replay("search_names", checks::search_names);
}
