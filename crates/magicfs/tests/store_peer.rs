//! Paths in the store as remote data: a `magicfs serve` whose root is a live
//! MagicFS mount serves compute over the store's files (directly and as an
//! `http://` source), and receives recipe transfers into the store, which
//! persist across a remount and pass fsck.

mod common;
mod edge;

use common::{scratch, Mount};
use edge::{bytes, magicfs_env, stderr, stdout, Serve};
use serde_json::{json, Value};

#[test]
fn a_mounted_store_serves_compute_and_receives_pushes() {
    let tmp = scratch("store-peer");
    let data_dir = tmp.path().join("data");
    let mut m = Mount::start(&tmp.path().join("mnt"), Some(&data_dir), &[]);
    let content = bytes((5 << 20) + 3, 12);
    std::fs::write(m.path("in-store.bin"), &content).unwrap();
    let s = Serve::start(&m.dir, Some("t"), &[]);

    // Compute over a file in the store, by path and as an http:// source.
    let local =
        magicfs_env(&["compute", m.path("in-store.bin").to_str().unwrap(), "--op", "crc32c", "--window", "1MiB"], &[]);
    assert_eq!(local.status.code(), Some(0), "{}", stderr(&local));
    let url = format!("{}/files/in-store.bin", s.url());
    let remote =
        magicfs_env(&["compute", &url, "--op", "crc32c", "--window", "1MiB"], &[("MAGICFS_SOURCE_TOKEN", "t")]);
    assert_eq!(stdout(&remote), stdout(&local), "{}", stderr(&remote));
    let r = s.post_json(
        "/compute",
        &json!({"data_url": format!("file://{}", s.root.join("in-store.bin").display()),
                "instructions": [{"op": "add", "offset": 0, "length": content.len()}]}),
    );
    let want: u64 = content.iter().map(|&b| u64::from(b)).sum();
    assert_eq!(r.json()["results"][0]["value"].as_u64(), Some(want));

    // A push into the store reuses the chunks of the file already there.
    let here = tempfile::tempdir().unwrap();
    let mut changed = content.clone();
    changed[4_000_000] ^= 0xff;
    let src = here.path().join("copy.bin");
    std::fs::write(&src, &changed).unwrap();
    let o =
        magicfs_env(&["push", src.to_str().unwrap(), &format!("{}/", s.url()), "--json"], &[("MAGICFS_TOKEN", "t")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let report: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert!(report["chunks_sent"].as_u64().unwrap() <= 2, "{report}");
    assert_eq!(std::fs::read(m.path("copy.bin")).unwrap(), changed);
    drop(s);

    // It is in the store: it survives a remount and the store checks clean.
    m.stop();
    let fsck = magicfs_env(&["fsck", "--data", data_dir.to_str().unwrap()], &[]);
    assert_eq!(fsck.status.code(), Some(0), "{}{}", stdout(&fsck), stderr(&fsck));
    m.remount();
    assert_eq!(std::fs::read(m.path("copy.bin")).unwrap(), changed);
}
