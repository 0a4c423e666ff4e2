//! `magicfs export` / `magicfs import` through the real binary: a host tree
//! with every kind of entry survives host → store → document and host →
//! host unchanged, byte for byte; a damaged document writes nothing.

mod common;

use common::{cpath, magicfs, noise, scratch};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "magicfs failed ({}): {}", o.status, stderr(&o));
    o
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid C strings and value buffer.
    let rc = unsafe { libc::lsetxattr(cpath(p).as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    assert_eq!(rc, 0, "setxattr {name} on {}", p.display());
}

fn set_times(p: &Path, atime: (i64, i64), mtime: (i64, i64)) {
    let t =
        [libc::timespec { tv_sec: atime.0, tv_nsec: atime.1 }, libc::timespec { tv_sec: mtime.0, tv_nsec: mtime.1 }];
    // SAFETY: valid C path and a two-element timespec array.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, cpath(p).as_ptr(), t.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    assert_eq!(rc, 0, "utimensat {}", p.display());
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A tree with every kind of entry, odd modes, xattrs and fixed times.
fn build_tree(root: &Path) {
    let p = |rel: &str| root.join(rel);
    std::fs::create_dir(root).unwrap();
    for d in ["docs/nested/deep", "empty-dir", "shared", "ro"] {
        std::fs::create_dir_all(p(d)).unwrap();
    }
    std::fs::write(p("docs/readme.txt"), "MagicFS snapshot\n\t\"quoted\" \\ back\\slash ünïcødé ✓ 𝄞\r\n").unwrap();
    std::fs::write(p("docs/nested/deep/note.md"), "# deep\n").unwrap();
    std::fs::write(p("blob.bin"), noise((3 << 20) + 123, 7)).unwrap();
    std::fs::write(p("zeros.bin"), vec![0u8; 5000]).unwrap();
    std::fs::write(p("empty"), b"").unwrap();
    std::fs::write(p("name with spaces"), b"spaces").unwrap();
    std::fs::write(p("quote\"back\\slash"), b"odd name").unwrap();
    std::fs::write(p("ünï✓"), b"unicode name").unwrap();
    std::fs::write(p("setuid-prog"), b"#!/bin/sh\n").unwrap();
    std::fs::write(p("ro/inside"), b"read-only dir").unwrap();
    std::os::unix::fs::symlink("../blob.bin", p("docs/up")).unwrap();
    std::os::unix::fs::symlink("dangling/target", p("dangling")).unwrap();
    std::fs::hard_link(p("blob.bin"), p("docs/blob-link")).unwrap();
    std::fs::hard_link(p("docs/readme.txt"), p("shared/readme-again")).unwrap();
    // SAFETY: valid C path.
    assert_eq!(unsafe { libc::mkfifo(cpath(&p("pipe")).as_ptr(), 0o640) }, 0);
    drop(std::os::unix::net::UnixListener::bind(p("sock")).unwrap());
    set_xattr(&p("docs/readme.txt"), "user.note", b"hello \"world\"");
    set_xattr(&p("blob.bin"), "user.bin", &[0, 1, 2, 255]);
    set_xattr(&p("docs"), "user.dir", b"on a directory");
    chmod(&p("setuid-prog"), 0o4755);
    chmod(&p("shared"), 0o1777);
    chmod(&p("docs/readme.txt"), 0o640);
    chmod(&p("empty"), 0o600);
    chmod(&p("sock"), 0o755);
    let mut t = 1_600_000_000;
    for f in
        ["docs/readme.txt", "blob.bin", "zeros.bin", "empty", "setuid-prog", "docs/up", "pipe", "sock", "ro/inside"]
    {
        t += 1000;
        set_times(&p(f), (t + 7, 111), (t, 123_456_789));
    }
    chmod(&p("ro"), 0o555);
    for d in ["docs/nested/deep", "docs/nested", "docs", "empty-dir", "shared", "ro", ""] {
        t += 1000;
        set_times(&p(d), (t + 1, 5), (t, 999_999_999));
    }
}

fn export(dir: &Path) -> Vec<u8> {
    ok(magicfs(&["export", dir.to_str().unwrap()])).stdout
}

/// Asserts two documents are the same bytes, showing the first line that differs.
fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let (g, w) = (String::from_utf8_lossy(got), String::from_utf8_lossy(want));
    let short = |l: &str| l.chars().take(400).collect::<String>();
    for (i, (a, b)) in g.lines().zip(w.lines()).enumerate() {
        assert_eq!(short(a), short(b), "{what}: line {} differs", i + 1);
        assert_eq!(a, b, "{what}: line {} differs past 400 characters", i + 1);
    }
    panic!("{what}: {} lines against {}", g.lines().count(), w.lines().count());
}

fn is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

#[test]
fn host_store_and_host_round_trips_are_byte_identical() {
    let tmp = scratch("snapshot-rt");
    let src = tmp.path().join("src");
    build_tree(&src);
    let doc = tmp.path().join("tree.json");
    ok(magicfs(&["export", src.to_str().unwrap(), "-o", doc.to_str().unwrap()]));
    let first = std::fs::read(&doc).unwrap();
    let text = String::from_utf8(first.clone()).expect("the document is UTF-8");
    assert!(text.starts_with("{\"format\":\"magicfs-snapshot\",\"version\":1,\"entries\":[\n"));
    assert!(
        text.contains(r#""path":"docs/blob-link","type":"file","link":"blob.bin"}"#),
        "hard link written as a link"
    );
    assert!(text.contains(r#""type":"fifo""#) && text.contains(r#""type":"socket""#));
    assert!(text.contains(r#""mode":2541"#) && text.contains(r#""mode":1023"#), "0o4755 and 0o1777 kept");
    assert!(text.contains(r#""content":{"utf8":"MagicFS snapshot\n\t\"quoted\" \\ back\\slash"#));
    assert!(text.contains(r#""user.bin":{"base64":"AAEC/w=="}"#));

    let data = tmp.path().join("data");
    let o = ok(magicfs(&["import", doc.to_str().unwrap(), "--new-store", data.to_str().unwrap()]));
    assert!(stderr(&o).contains("hard links"), "summary: {}", stderr(&o));
    assert!(data.join("magicfs.redb").is_file(), "a store was created");
    assert_same(&export(&data), &first, "store export against the host export");
    let again = tmp.path().join("again.json");
    ok(magicfs(&["export", data.to_str().unwrap(), "--output", again.to_str().unwrap()]));
    assert_same(&std::fs::read(&again).unwrap(), &first, "store export to a file");
    ok(magicfs(&["fsck", "--data", data.to_str().unwrap()]));

    let host = tmp.path().join("host");
    ok(magicfs(&["import", doc.to_str().unwrap(), host.to_str().unwrap()]));
    assert_same(&export(&host), &first, "host copy export against the original export");

    let piped = tmp.path().join("piped");
    std::fs::create_dir(&piped).unwrap();
    let mut child = Command::new(common::bin())
        .args(["import", "-", piped.to_str().unwrap()])
        .stdin(std::fs::File::open(&doc).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(child.wait().unwrap().success(), "import from standard input");
    assert_same(&export(&piped), &first, "import from standard input");
}

#[test]
fn damaged_documents_and_full_destinations_are_refused() {
    let tmp = scratch("snapshot-bad");
    let src = tmp.path().join("src");
    build_tree(&src);
    let full = export(&src);
    let cut = tmp.path().join("cut.json");
    std::fs::write(&cut, &full[..full.len() / 2]).unwrap();

    let dest = tmp.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    let o = magicfs(&["import", cut.to_str().unwrap(), dest.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "refused: {}", stderr(&o));
    let msg = stderr(&o);
    assert!(msg.contains("line") && msg.contains("column"), "position named: {msg}");
    assert!(is_empty(&dest), "nothing written");

    let data = tmp.path().join("data");
    let o = magicfs(&["import", cut.to_str().unwrap(), "--new-store", data.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "refused: {}", stderr(&o));
    assert!(!data.exists(), "no store created for a refused document");

    let missing = tmp.path().join("missing");
    let o = magicfs(&["import", cut.to_str().unwrap(), missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!missing.exists(), "no directory created for a refused document");

    let doc = tmp.path().join("tree.json");
    std::fs::write(&doc, &full).unwrap();
    let o = magicfs(&["import", doc.to_str().unwrap(), src.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));

    ok(magicfs(&["import", doc.to_str().unwrap(), "--new-store", data.to_str().unwrap()]));
    let o = magicfs(&["import", doc.to_str().unwrap(), data.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not empty"), "a store holding files is refused: {}", stderr(&o));
}

#[test]
fn export_and_import_through_live_mounts_round_trip() {
    use common::{sh, Mount};
    let tmp = scratch("snapmount");
    let mut a = Mount::start(&tmp.path().join("a"), Some(&tmp.path().join("data-a")), &[]);
    sh(
        &a.dir,
        "mkdir -p src/deep && seq 1 5000 > src/numbers.txt && head -c 300000 /dev/urandom > src/deep/blob.bin
         ln -s numbers.txt src/link && ln src/numbers.txt src/hard && mkfifo src/pipe
         setfattr -n user.note -v hello src/numbers.txt && chmod 1777 src/deep && touch -d '2020-01-02 03:04:05' src/hard",
    );
    let first = tmp.path().join("first.json");
    ok(magicfs(&["export", a.dir.to_str().unwrap(), "-o", first.to_str().unwrap()]));
    let doc = std::fs::read_to_string(&first).unwrap();
    assert!(!doc.contains(".magic"), "the control directory is not exported");

    // Into an empty live mount, then out again.
    let b = Mount::start(&tmp.path().join("b"), Some(&tmp.path().join("data-b")), &[]);
    ok(magicfs(&["import", first.to_str().unwrap(), b.dir.to_str().unwrap()]));
    let second = ok(magicfs(&["export", b.dir.to_str().unwrap()])).stdout;
    assert!(second == doc.as_bytes(), "export -> import into a mount -> export differs");

    // And from the unmounted store of the first mount.
    a.stop();
    let third = ok(magicfs(&["export", tmp.path().join("data-a").to_str().unwrap()])).stdout;
    assert!(third == doc.as_bytes(), "export of the unmounted store differs from the export through its mount");
}
