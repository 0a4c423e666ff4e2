//! Deduplication and compression are real and visible in `.magic/status`
//! and `magicfs stats`.

mod common;

use common::{magicfs, noise, scratch, sh, Mount};

fn num(v: &serde_json::Value, k: &str) -> f64 {
    v.get(k).and_then(|x| x.as_f64()).unwrap_or_else(|| panic!("status lacks {k}: {v}"))
}

#[test]
fn a_copy_of_a_100_mib_file_adds_almost_nothing() {
    let tmp = scratch("dedup");
    let m = Mount::start(&tmp.path().join("mnt"), Some(&tmp.path().join("data")), &[]);
    std::fs::write(m.path("a.bin"), noise(100 << 20, 3)).unwrap();
    let before = m.status();
    sh(&m.dir, "cp a.bin b.bin && cmp a.bin b.bin");
    let after = m.status();
    let added = num(&after, "stored_bytes") - num(&before, "stored_bytes");
    assert!(added < (1 << 20) as f64, "the copy added {added} stored bytes");
    assert!(num(&after, "dedup_ratio") > 1.9, "{after}");
    assert!(num(&after, "pack_bytes") < 1.02 * (100 << 20) as f64, "{after}");
}

#[test]
fn text_compresses_and_the_ratio_is_reported() {
    let tmp = scratch("compress");
    let mut m = Mount::start(&tmp.path().join("mnt"), Some(&tmp.path().join("data")), &[]);
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dst = m.path("corpus");
    std::fs::create_dir(&dst).unwrap();
    // A text corpus: the project's sources and the system's manual pages.
    sh(&src, &format!("find crates -name '*.rs' -exec cat {{}} + > {}/sources.txt", dst.display()));
    sh(&dst, "for i in $(seq 1 20); do seq $((i * 5000)) | sed 's/$/ log line with some words/' > log$i.txt; done");
    let st = m.status();
    assert!(num(&st, "compression_ratio") > 3.0, "{st}");
    let out = String::from_utf8(magicfs(&["stats", m.dir.to_str().unwrap()]).stdout).unwrap();
    assert!(out.contains("compression ratio"), "{out}");
    // Per-file codec: gzip through the xattr, still readable after remount.
    sh(&m.dir, "touch g.txt && setfattr -n user.magic.codec -v gzip g.txt && seq 100000 > g.txt");
    m.remount();
    assert_eq!(sh(&m.dir, "tail -n1 g.txt").trim(), "100000");
}

#[test]
fn a_random_write_in_a_large_file_rewrites_few_chunks() {
    let tmp = scratch("rewrite");
    let m = Mount::start(&tmp.path().join("mnt"), Some(&tmp.path().join("data")), &[]);
    std::fs::write(m.path("big.bin"), noise(64 << 20, 9)).unwrap();
    let before = m.status();
    sh(&m.dir, "printf 'XXXX' | dd of=big.bin bs=1 seek=33554432 conv=notrunc status=none");
    let after = m.status();
    let added = num(&after, "pack_bytes") - num(&before, "pack_bytes");
    assert!(added < (600 << 10) as f64, "a 4-byte write stored {added} new bytes");
    assert_eq!(sh(&m.dir, "dd if=big.bin bs=1 skip=33554432 count=4 status=none"), "XXXX");
}

#[test]
fn writing_a_4_gib_file_keeps_the_daemon_small() {
    use std::io::Write;
    let tmp = scratch("huge");
    let m = Mount::start(&tmp.path().join("mnt"), Some(&tmp.path().join("data")), &[]);
    let block = noise(1 << 20, 11);
    let mut f = std::fs::File::create(m.path("huge")).unwrap();
    let blocks = 4096u64;
    for i in 0..blocks {
        let mut b = block.clone();
        b[..8].copy_from_slice(&i.to_le_bytes());
        f.write_all(&b).unwrap();
    }
    f.sync_all().unwrap();
    drop(f);
    let peak = m.peak_rss();
    assert!(peak < 600 << 20, "daemon peak RSS {} MiB while writing 4 GiB", peak >> 20);
    assert_eq!(std::fs::metadata(m.path("huge")).unwrap().len(), blocks << 20);
    let f = std::fs::File::open(m.path("huge")).unwrap();
    for i in [0u64, 1234, 4095] {
        let mut got = vec![0u8; 1 << 20];
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut got, i << 20).unwrap();
        assert_eq!(&got[..8], &i.to_le_bytes());
        assert_eq!(&got[8..], &block[8..]);
    }
    eprintln!("peak RSS while writing 4 GiB: {} MiB", peak >> 20);
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum()
}

#[test]
fn gc_reclaims_the_space_of_deleted_files() {
    let tmp = scratch("gc");
    let data = tmp.path().join("data");
    let mut m = Mount::start(&tmp.path().join("mnt"), Some(&data), &[]);
    std::fs::write(m.path("gone.bin"), noise(20 << 20, 21)).unwrap();
    let kept = noise(5 << 20, 22);
    std::fs::write(m.path("kept.bin"), &kept).unwrap();
    std::fs::remove_file(m.path("gone.bin")).unwrap();
    assert!(num(&m.status(), "garbage_bytes") >= (20 << 20) as f64);
    m.stop();
    let before = dir_bytes(&data.join("packs"));
    let out = magicfs(&["gc", "--data", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = dir_bytes(&data.join("packs"));
    assert!(before >= 25 << 20 && after < 6 << 20, "packs {before} -> {after} bytes");
    let fsck = magicfs(&["fsck", "--data", data.to_str().unwrap()]);
    assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stdout));
    m.restart();
    assert_eq!(std::fs::read(m.path("kept.bin")).unwrap(), kept);
    assert_eq!(num(&m.status(), "garbage_bytes"), 0.0);
}
